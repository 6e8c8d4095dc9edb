"""``pareto-bench bench decode``: sampler throughput, cached vs uncached, vs AR, vs batch size.

Every measurement uses the same model and prompts. EOS is ignored so that every sequence
decodes exactly ``max_new_tokens`` tokens and throughput is comparable across settings.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import torch

from pareto_bench.core.defaults import OPERATING_THRESHOLD, THRESHOLDS
from pareto_bench.dllm.models import DiffusionLM
from pareto_bench.dllm.sampler import aggregate_tpf, generate
from pareto_bench.tasks.synthetic import SyntheticTask

NEVER = (-1,)  # EOS ids no token has: every sequence decodes its whole budget


def _run(
    lm: DiffusionLM, prompts: list[list[int]], *, repeats: int = 3, **kw: Any
) -> dict[str, float]:
    generate(lm, prompts[:1], eos_ids=NEVER, **{**kw, "max_new_tokens": 8})  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        outs = generate(lm, prompts, eos_ids=NEVER, **kw)
        best = min(best, time.perf_counter() - start)
    tokens = sum(len(g.tokens) for g in outs)
    return {
        "tokens_per_s": tokens / best,
        "tpf": aggregate_tpf(outs),
        "seconds": best,
        "tokens": tokens,
    }


def bench_decode(
    lm: DiffusionLM,
    *,
    max_new_tokens: int = 128,
    batch_sizes: tuple[int, ...] = (1, 8, 32),
    thresholds: tuple[float, ...] = (*THRESHOLDS, 1.01),  # 1.01: one token per forward
    main_batch: int = 8,
) -> dict[str, Any]:
    task = SyntheticTask()
    prompts = [
        lm.encode_prompt(task.prompt(p)) for p in task.load()[: max(batch_sizes + (main_batch,))]
    ]
    common = {"block_size": lm.block_size, "max_new_tokens": max_new_tokens}
    batch = prompts[:main_batch]
    result: dict[str, Any] = {
        "model": lm.name,
        "block_size": lm.block_size,
        "max_new_tokens": max_new_tokens,
        "device": str(lm.device),
        "dtype": str(next(lm.model.parameters()).dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "eos": "ignored: every sequence decodes max_new_tokens tokens",
        "thresholds": {},
    }
    for tau in thresholds:
        cached = _run(lm, batch, threshold=tau, **common)
        uncached = _run(lm, batch, threshold=tau, use_cache=False, **common)
        result["thresholds"][str(tau)] = {
            "cached": cached,
            "uncached": uncached,
            "cached_over_uncached": cached["tokens_per_s"] / uncached["tokens_per_s"],
        }
    ar = _run(lm, batch, threshold=1.01, block_size=1, max_new_tokens=max_new_tokens)
    result["autoregressive"] = ar
    for row in result["thresholds"].values():
        row["sampler_over_ar"] = row["cached"]["tokens_per_s"] / ar["tokens_per_s"]
    result["batch_sizes"] = {
        str(n): _run(lm, prompts[:n], threshold=OPERATING_THRESHOLD, **common) for n in batch_sizes
    }
    smallest, largest = str(min(batch_sizes)), str(max(batch_sizes))
    result["batch_speedup"] = (
        result["batch_sizes"][largest]["tokens_per_s"]
        / result["batch_sizes"][smallest]["tokens_per_s"]
    )
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result
