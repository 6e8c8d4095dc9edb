"""``pareto-bench bench scale``: one RL step at real-model shapes, for memory and time.

The policy is a random SDAR-layout checkpoint with the real 151,936-row vocabulary, written by
the bench (``sdar_shaped``). A random model is never confident, so trajectories are decoded
with the static strategy at a fixed number of tokens per forward, and they never stop before
their budget: every trajectory has exactly ``tokens`` tokens. Each configuration runs in a
fresh process, so that its peak RSS is its own.
"""

from __future__ import annotations

import math
import multiprocessing
import resource
import tempfile
from pathlib import Path
from typing import Any

STEP = {
    "prompts_per_step": 2,
    "group_size": 2,  # 4 trajectories
    "tokens_per_forward": 4,
    "max_tokens_per_forward": 8192,
    "micro_batch_size": 1,
    "gradient_checkpointing": True,
}
TARGET_RSS_GB_AT_1K = 3.0
TARGET_GROWTH_1K_TO_4K = 5.0
TARGET_FSDP_STATE_RATIO = 0.6  # state per rank at 2 processes vs 1
DISTRIBUTED_TOKENS = 256


def bench_scale(
    lengths: tuple[int, ...] = (256, 1024, 4096),
    block_sizes: tuple[int, ...] = (4, 32),
    likelihoods: tuple[str, ...] = ("trajectory", "block_surrogate"),
    distributed: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    from pareto_bench.bench.sdar_shaped import SDAR_BLOCK, write_sdar_shaped_checkpoint
    from pareto_bench.core.progress import progress_bar

    runs = []
    grid = [(n, b, mode) for n in lengths for b in block_sizes for mode in likelihoods]
    with tempfile.TemporaryDirectory() as tmp:
        checkpoints = {
            b: write_sdar_shaped_checkpoint(Path(tmp) / f"b{b}", block_size=b) for b in block_sizes
        }
        context = multiprocessing.get_context("spawn")
        with progress_bar("bench scale", len(grid), enabled=progress) as bar:
            for tokens, block, mode in grid:
                with context.Pool(1) as pool:
                    run = pool.apply(
                        _one_step, (str(checkpoints[block]), tokens, block, mode, Path(tmp))
                    )
                runs.append(run)
                bar.advance(
                    status=f"{tokens} tokens, block {block}, {mode}: {run['peak_rss_gb']:.2f} GB"
                )
        result = {"settings": STEP, "runs": runs, "targets": _targets(runs)}
        if distributed:
            sdar = checkpoints.get(SDAR_BLOCK) or write_sdar_shaped_checkpoint(Path(tmp) / "b32")
            result["distributed"] = {
                name: _distributed(str(checkpoint), Path(tmp) / f"dist-{name}")
                for name, checkpoint in (("tiny", "tiny"), ("sdar_shaped", sdar))
            }
            result["targets"]["fsdp_state_ratio"] = {
                name: {
                    "value": part["fsdp_state_ratio"],
                    "max": TARGET_FSDP_STATE_RATIO,
                    "met": part["fsdp_state_ratio"] <= TARGET_FSDP_STATE_RATIO,
                }
                for name, part in result["distributed"].items()
            }
    return result


def _distributed(checkpoint: str, out: Path) -> dict[str, Any]:
    """One RL step at 1 process and at 2 (ddp and fsdp, gloo): time, peak RSS and the trained
    state (weights, gradients, AdamW) per rank, from ``bench.distributed_step``."""
    from pareto_bench.bench.distributed_step import launch

    settings = {"1": ("none", 1), "2-ddp": ("ddp", 2), "2-fsdp": ("fsdp", 2)}
    report: dict[str, Any] = {"tokens": DISTRIBUTED_TOKENS, "trajectories": 4}
    for name, (parallel, processes) in settings.items():
        ranks = launch(
            out / name, checkpoint, DISTRIBUTED_TOKENS, processes, [f"parallel={parallel}"]
        )
        report[name] = {
            "step_seconds": max(r["step_seconds"] for r in ranks),
            "peak_rss_gb_per_rank": [r["peak_rss_gb"] for r in ranks],
            "state_gb_per_rank": [r["state_gb"] for r in ranks],
        }
    one = report["1"]["state_gb_per_rank"][0]["total"]
    report["fsdp_state_ratio"] = (
        max(r["total"] for r in report["2-fsdp"]["state_gb_per_rank"]) / one
    )
    report["measured"] = (
        "state: bytes of the rank's local tensors after the step (a sharded tensor counts its "
        "shard): weights, their gradients and the AdamW state; peak RSS: getrusage per rank"
    )
    return report


def _one_step(checkpoint: str, tokens: int, block: int, mode: str, tmp: Path) -> dict[str, Any]:
    """One RL step in this (fresh) process; its peak RSS includes the interpreter and torch."""
    from pareto_bench.bench.sdar_shaped import one_rl_step

    record = one_rl_step(
        checkpoint,
        tmp / f"run-{tokens}-{block}-{mode}",
        tokens=tokens,
        tokens_per_forward=STEP["tokens_per_forward"],
        block_size=block,
        groups=STEP["prompts_per_step"],
        group_size=STEP["group_size"],
        overrides=(
            f"likelihood.mode={mode}",
            f"likelihood.max_tokens_per_forward={STEP['max_tokens_per_forward']}",
            f"optim.micro_batch_size={STEP['micro_batch_size']}",
            f"gradient_checkpointing={str(STEP['gradient_checkpointing']).lower()}",
            "device=cpu",
        ),
    )
    tpf = min(block, STEP["tokens_per_forward"])
    nfe = math.ceil(tokens / tpf)
    return {
        "tokens": tokens,
        "block_size": block,
        "likelihood": mode,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "step_seconds": record.step_time,
        "seconds": {
            "rollout": record.rollout_time,
            "likelihood": record.likelihood_time,
            "backward": record.backward_time,
        },
        "tpf": record.tpf,
        "nfe": nfe,
        "forwards_per_trajectory": record.likelihood_forwards,
        "forwards_bound": math.ceil(nfe * block / STEP["max_tokens_per_forward"]) + 1,
        "loss": record.loss,
    }


def _targets(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def rss(tokens: int, block: int, mode: str) -> float | None:
        match = [
            r["peak_rss_gb"]
            for r in runs
            if (r["tokens"], r["block_size"], r["likelihood"]) == (tokens, block, mode)
        ]
        return match[0] if match else None

    out: dict[str, Any] = {}
    at_1k = rss(1024, 32, "trajectory")
    if at_1k is not None:
        out["rss_gb_1k_block32"] = {
            "value": at_1k,
            "max": TARGET_RSS_GB_AT_1K,
            "met": at_1k < TARGET_RSS_GB_AT_1K,
        }
    at_4k = rss(4096, 32, "trajectory")
    if at_1k is not None and at_4k is not None:
        growth = at_4k / at_1k
        out["rss_growth_1k_to_4k"] = {
            "value": growth,
            "max": TARGET_GROWTH_1K_TO_4K,
            "met": growth <= TARGET_GROWTH_1K_TO_4K,
        }
    packed = [r for r in runs if r["likelihood"] == "trajectory"]
    if packed:
        out["forwards_within_bound"] = {
            "met": all(r["forwards_per_trajectory"] <= r["forwards_bound"] for r in packed)
        }
    return out
