"""Evaluation: model x task x thresholds -> EvalRecord rows. Knows nothing of trackers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pareto_bench.core.defaults import EVAL_BATCH_SIZE
from pareto_bench.core.placement import World
from pareto_bench.core.progress import progress_bar
from pareto_bench.core.records import EvalRecord, SampleResult
from pareto_bench.dllm.models import DiffusionLM
from pareto_bench.dllm.sampler import Generation, generate
from pareto_bench.tasks.base import Problem, Task, resolve_data_dir


def evaluate(
    model: DiffusionLM,
    task: Task,
    thresholds: Sequence[float],
    *,
    limit: int | None = None,
    data_dir: str | Path | None = None,
    batch_size: int = EVAL_BATCH_SIZE,
    max_new_tokens: int | None = None,
    strategy: str = "dynamic",
    seed: int = 0,
    progress: bool = True,
    problems: Sequence[Problem] | None = None,
) -> list[EvalRecord]:
    """Greedy-decode every problem at every threshold, score, and return one record per threshold."""
    if problems is None:
        problems = task.load(resolve_data_dir(data_dir))
    problems = list(problems)[:limit] if limit else list(problems)
    budget = max_new_tokens or task.max_new_tokens
    prompts = [model.encode_prompt(task.prompt(p)) for p in problems]
    # Similar lengths together: less padding, and results do not depend on the batching.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    records = []
    with progress_bar(f"eval {task.name}", len(problems) * len(thresholds), progress) as bar:
        for threshold in thresholds:
            bar.describe(f"eval {task.name} tau={threshold:g}")
            generations: list[Generation | None] = [None] * len(problems)
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                outs = generate(
                    model,
                    [prompts[i] for i in chunk],
                    threshold=threshold,
                    max_new_tokens=budget,
                    strategy=strategy,
                    seed=seed,
                )
                for i, out in zip(chunk, outs, strict=True):
                    generations[i] = out
                bar.advance(len(chunk))
            done = [g for g in generations if g is not None]
            responses = [model.decode(g.tokens) for g in done]
            verdicts = task.score(problems, responses)
            samples = [
                SampleResult(
                    problem_id=p.id,
                    correct=v.correct,
                    score=v.score,
                    num_tokens=len(g.tokens),
                    num_forwards=g.num_forwards,
                    hit_budget=g.hit_budget,
                    answer_correct=v.answer_correct,
                    detail=v.detail,
                    response=r,
                )
                for p, g, r, v in zip(problems, done, responses, verdicts, strict=True)
            ]
            records.append(
                EvalRecord.from_samples(
                    task.name,
                    threshold,
                    samples,
                    model=model.name,
                    task_version=task.version,
                    block_size=model.block_size,
                    strategy=strategy,
                )
            )
    return records


def evaluate_sharded(
    model: DiffusionLM,
    task: Task,
    thresholds: Sequence[float],
    world: World,
    *,
    limit: int | None = None,
    data_dir: str | Path | None = None,
    problems: Sequence[Problem] | None = None,
    progress: bool = True,
    **options: Any,
) -> list[EvalRecord]:
    """``evaluate`` with the problems (the task's, from ``data_dir``, unless given) split among
    the ranks of ``world`` (contiguous shares); every rank gets the same records as one process
    would write, samples in problem order."""
    if problems is None:
        problems = task.load(resolve_data_dir(data_dir))
    problems = list(problems)[:limit] if limit else list(problems)
    mine = [problems[i] for i in world.share(problems)]
    records = evaluate(
        model, task, thresholds, problems=mine, progress=progress and world.is_main, **options
    )
    if not world.distributed:
        return records
    shares = world.gather(records)
    return [
        EvalRecord.from_samples(
            record.task,
            record.threshold,
            [sample for share in shares for sample in share[i].samples],
            model=record.model,
            task_version=record.task_version,
            block_size=record.block_size,
            strategy=record.strategy,
        )
        for i, record in enumerate(records)
    ]
