"""Rollout: G sampled trajectories per prompt through the batched, cached sampler, each chunk
scored while the next one decodes."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pareto_bench.dllm.models import DiffusionLM
from pareto_bench.dllm.sampler import Generation, generate
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
            0.0 if g.hit_budget else v.reward
            for v, g in zip(self.verdicts, self.generations, strict=True)
        ]

    @property
    def tpf(self) -> list[float]:
        return [g.tpf for g in self.generations]


@dataclass
class Rollout:
    groups: list[Group]
    reward_wait: float  # seconds the rewards took after the last chunk was decoded


def rollout(
    lm: DiffusionLM,
    task: Task,
    problems: Sequence[Problem],
    config: RolloutConfig,
    *,
    seed: int,
    max_new_tokens: int,
    block_size: int,
) -> Rollout:
    """Decode ``config.group_size`` trajectories for each problem, ``config.batch_size``
    sequences per sampler call, scoring each call's responses while the next call decodes.
    Sequence ``i`` of the round samples with seed ``seed + i`` whatever the chunking."""
    g = config.group_size
    prompt_ids = [lm.encode_prompt(task.prompt(p)) for p in problems]
    sequences = [ids for ids in prompt_ids for _ in range(g)]
    generations: list[Generation] = []

    def decoded_chunks() -> Iterable[list[str]]:
        for start in range(0, len(sequences), config.batch_size):
            chunk = generate(
                lm,
                sequences[start : start + config.batch_size],
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
            generations.extend(chunk)
            yield [lm.decode(out.tokens) for out in chunk]

    verdicts, waited = score_while_decoding(
        task, [p for p in problems for _ in range(g)], decoded_chunks()
    )
    groups = [
        Group(problem, ids, generations[i * g : (i + 1) * g], verdicts[i * g : (i + 1) * g])
        for i, (problem, ids) in enumerate(zip(problems, prompt_ids, strict=True))
    ]
    return Rollout(groups, waited)


def score_while_decoding(
    task: Task, problems: Sequence[Problem], chunks: Iterable[Sequence[str]]
) -> tuple[list[Verdict], float]:
    """Score each chunk of responses on a background thread as soon as ``chunks`` yields it,
    so that code runs in its sandboxes while the next chunk decodes; ``problems[i]`` is
    response ``i``'s problem. The last chunk is scored on this thread, which has nothing else
    to do by then and where a code task's replays need no process of their own. Returns the
    verdicts in order and the seconds spent waiting for them once the last chunk was in."""
    if not problems:  # a rank with no share of the round
        return [], 0.0
    stream = iter(chunks)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewards") as scorer:
        pending, done = [], 0
        for responses in stream:
            mine, done = problems[done : done + len(responses)], done + len(responses)
            if done < len(problems):
                pending.append(scorer.submit(task.score, mine, list(responses)))
                continue
            if done > len(problems) or next(stream, None) is not None:
                raise ValueError(f"{len(problems)} problems but more responses")
            waiting = time.perf_counter()
            verdicts = [v for future in pending for v in future.result()]
            verdicts += task.score(mine, list(responses))
            return verdicts, time.perf_counter() - waiting
    raise ValueError(f"{len(problems)} problems but {done} responses")
