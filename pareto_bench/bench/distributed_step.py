"""One RL step on every rank of a torchrun job, for ``bench scale``'s distributed section.

``python -m pareto_bench.bench.distributed_step OUT CHECKPOINT TOKENS [--set k=v ...]`` writes
``OUT/rank<r>.json``: the step's time, the rank's peak RSS (and GPU memory), and the bytes this rank holds of
the trained weights, their gradients and the AdamW state, counted from the tensors themselves
(a sharded tensor counts its local shard).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import torch


def local_bytes(tensors) -> int:
    total = 0
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            continue
        local = t.to_local() if hasattr(t, "to_local") else t
        total += local.numel() * local.element_size()
    return total


def main(argv: list[str]) -> None:
    from pareto_bench.bench.sdar_shaped import SDAR_BLOCK, rl_step_config
    from pareto_bench.rl.run import TrainingRun
    from pareto_bench.rl.step import train_step

    out, checkpoint, tokens, *rest = argv
    overrides = tuple(v for k, v in zip(rest[::2], rest[1::2], strict=True) if k == "--set")
    block = SDAR_BLOCK if checkpoint != "tiny" else 8
    config = rl_step_config(
        checkpoint,
        tokens=int(tokens),
        tokens_per_forward=4,
        block_size=block,
        groups=2,
        group_size=2,
        overrides=("device=cpu", *overrides),
    )
    run = TrainingRun.start(config, None)
    record = train_step(run, 0)
    params = list(run.scorer.parameters())
    report = {
        "rank": run.world.rank,
        "world_size": run.world.size,
        "step_seconds": record.step_time,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "peak_gpu_memory_gb": (
            torch.cuda.max_memory_allocated() / 2**30 if run.device.type == "cuda" else None
        ),
        "state_gb": {
            "weights": local_bytes(params) / 2**30,
            "gradients": local_bytes(p.grad for p in params) / 2**30,
            "optimizer": local_bytes(
                v for state in run.optimizer.state.values() for v in state.values()
            )
            / 2**30,
        },
        "loss": record.loss,
    }
    report["state_gb"]["total"] = sum(report["state_gb"].values())
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / f"rank{run.world.rank}.json").write_text(json.dumps(report))


def launch(
    out: Path,
    checkpoint: str | Path,
    tokens: int,
    processes: int,
    settings: Sequence[str] = (),
    timeout: float | None = None,
) -> list[dict]:
    """Run this module on ``processes`` ranks (torchrun above 1, one thread each) and return
    every rank's report, in rank order."""
    command = [sys.executable]
    if processes > 1:
        command += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    command += ["-m", "pareto_bench.bench.distributed_step", str(out), str(checkpoint), str(tokens)]
    command += [arg for setting in settings for arg in ("--set", setting)]
    subprocess.run(
        command,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        timeout=timeout,
    )
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(processes)]


if __name__ == "__main__":
    main(sys.argv[1:])
