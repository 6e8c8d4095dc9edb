"""Rollout: G sampled trajectories per prompt through the batched, cached sampler, then scored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pareto_bench.decoding import Generation, generate
from pareto_bench.models.base import DiffusionLM
from pareto_bench.rl.config import RolloutConfig
from pareto_bench.tasks.base import Problem, Task, Verdict


@dataclass
class Group:
    """One prompt and its G scored trajectories."""

    problem: Problem
    prompt_ids: list[int]
    generations: list[Generation]
    verdicts: list[Verdict]

    @property
    def correct(self) -> list[bool]:
        # A trajectory that ran out of budget is wrong, whatever the verifier saw.
        return [
            v.correct and not g.hit_budget
            for v, g in zip(self.verdicts, self.generations, strict=True)
        ]

    @property
    def score(self) -> list[float]:
        """1/0 for maths; for code the fraction of tests passed (the paper's pass rate)."""
        return [
            0.0 if g.hit_budget else getattr(v, "pass_fraction", v.score)
            for v, g in zip(self.verdicts, self.generations, strict=True)
        ]

    @property
    def tpf(self) -> list[float]:
        return [g.tpf for g in self.generations]


def rollout(
    lm: DiffusionLM,
    task: Task,
    problems: Sequence[Problem],
    config: RolloutConfig,
    *,
    seed: int,
    max_new_tokens: int,
    block_size: int,
) -> list[Group]:
    """Decode ``config.group_size`` trajectories for each problem, ``config.batch_size``
    sequences per sampler call. Sequence ``i`` of the round samples with seed ``seed + i``
    whatever the chunking."""
    g = config.group_size
    prompt_ids = [lm.encode_prompt(task.prompt(p)) for p in problems]
    sequences = [ids for ids in prompt_ids for _ in range(g)]
    generations = []
    for start in range(0, len(sequences), config.batch_size):
        generations += generate(
            lm.model,
            sequences[start : start + config.batch_size],
            mask_id=lm.mask_id,
            eos_id=lm.eos_ids,
            block_size=block_size,
            threshold=config.threshold,
            max_new_tokens=max_new_tokens,
            strategy=config.strategy,
            steps_per_block=config.steps_per_block,
            temperature=config.temperature,
            top_k=config.top_k,
            top_p=config.top_p,
            seed=seed + start,
        )
    responses = [lm.decode(out.tokens) for out in generations]
    verdicts = task.score([p for p in problems for _ in range(g)], responses)
    return [
        Group(problem, ids, generations[i * g : (i + 1) * g], verdicts[i * g : (i + 1) * g])
        for i, (problem, ids) in enumerate(zip(problems, prompt_ids, strict=True))
    ]
