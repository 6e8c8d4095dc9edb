"""``pareto-bench bench sweep``: what tracking costs, and what a second worker buys.

Two runs of a shortened ``sweeps/tiny.yaml`` (real training and evaluation, MLflow on a fresh
SQLite store), each in its own temporary directory:

1. one worker (this process): trials per hour, and the tracking overhead, the wall time spent
   inside tracker calls (and rendering plots) as a percentage of the trials' wall time, with
   and without the one-time setup (MLflow import, store creation, parent run);
2. two ``--worker`` processes on one study: trials per hour, the speed-up over one worker,
   and a check that no trial was lost or run twice.

Every trial uses one torch thread, as tiny.yaml does (tiny gains nothing from more, and on a
shared machine two threads per trial contend badly).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pareto_bench.core.files import TRIALS_JSONL
from pareto_bench.core.records import TrialRecord, read_jsonl
from pareto_bench.sweep.runner import SweepOptions, run_sweep
from pareto_bench.sweep.spec import load_spec, resolve_spec_path


def _overrides(trials: int, steps: int | None, threads: int, extra: list[str]) -> list[str]:
    overrides = [
        *extra,
        f"trials={trials}",
        "baselines=[]",  # every measured trial costs the same
        f"executor.threads={threads}",
        "executor.workers=1",  # the bench starts the workers it measures
    ]
    return overrides + ([f"train.steps={steps}"] if steps else [])


def _check_records(out: Path, trials: int) -> dict[str, Any]:
    rows = read_jsonl(out / TRIALS_JSONL, TrialRecord)
    final = {r.number: r for r in rows}
    completes = Counter(r.number for r in rows if r.state == "COMPLETE")
    return {
        "trials_complete": sum(r.state == "COMPLETE" for r in final.values()),
        "trials_failed": sum(r.state == "FAIL" for r in final.values()),
        "lost": trials - len(final),
        "duplicated": sum(count - 1 for count in completes.values() if count > 1),
    }


def bench_sweep(
    *,
    spec: str = "tiny",
    overrides: list[str] | None = None,
    trials: int = 4,
    steps: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """``steps=None`` keeps the spec's own trial length, which is what the overhead is a
    fraction of; ``overrides`` are ``--set`` strings applied first."""
    extra = list(overrides or [])
    spec_path = resolve_spec_path(spec)
    cores = os.cpu_count() or 1
    result: dict[str, Any] = {
        "spec": str(spec_path),
        "overrides": extra,
        "trials": trials,
        "steps_per_trial": steps or load_spec(spec_path, extra).train.get("steps"),
        "cpu_cores": cores,
        "threads_per_trial": 1,
        "load_average_before": round(os.getloadavg()[0], 2),
    }
    with tempfile.TemporaryDirectory(prefix="pareto-bench-sweep-") as tmp:
        one_dir = Path(tmp) / "one"
        one_dir.mkdir()
        sweep_spec = load_spec(spec_path, _overrides(trials, steps, 1, extra))
        options = SweepOptions(
            spec_path=spec_path,
            out_dir=one_dir / "out",
            tracking_uri=f"sqlite:///{one_dir}/mlruns/mlflow.db",
            progress=progress,
        )
        start = time.perf_counter()
        one = run_sweep(sweep_spec, options)
        one_wall = time.perf_counter() - start
        trial_wall = sum(r.wall_time for r in one.ran)
        result["one_worker"] = {
            "wall_s": round(one_wall, 1),
            "trials_per_hour": round(3600 * len(one.ran) / one_wall, 1),
            **_check_records(one_dir / "out", trials),
        }
        time_ = one.tracking
        result["trial_wall_seconds"] = round(trial_wall, 1)
        result["tracking"] = {
            # What tracking costs the sweep: the time its worker loop waited on tracking.
            "overhead_pct": round(100 * time_.blocking / trial_wall, 3),
            "overhead_pct_excluding_setup": round(
                100 * (time_.blocking - time_.setup) / trial_wall, 3
            ),
            "blocking_seconds": round(time_.blocking, 3),
            "setup_seconds": round(time_.setup, 3),
            # All tracking work, including what ran beside the trials (curve batches, plots).
            "busy_seconds": round(time_.busy, 3),
            "busy_pct": round(100 * time_.busy / trial_wall, 3),
        }

        two_dir = Path(tmp) / "two"
        two_dir.mkdir()
        command = [
            str(Path(sys.executable).with_name("pareto-bench")),
            "sweep",
            str(spec_path),
            "--out",
            str(two_dir / "out"),
            "--tracking-uri",
            f"sqlite:///{two_dir}/mlruns/mlflow.db",
            "--worker",
            "--no-progress",
        ]
        for override in _overrides(trials, steps, 1, extra):
            command += ["--set", override]
        start = time.perf_counter()
        workers = [
            subprocess.Popen(
                command, cwd=two_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        outputs = [w.communicate() for w in workers]
        two_wall = time.perf_counter() - start
        for worker, (_, err) in zip(workers, outputs, strict=True):
            if worker.returncode != 0:
                raise RuntimeError(f"a bench worker failed: {err.strip().splitlines()[-1:]}")
        result["two_workers"] = {
            "wall_s": round(two_wall, 1),
            "trials_per_hour": round(3600 * trials / two_wall, 1),
            **_check_records(two_dir / "out", trials),
        }
    result["speedup_two_vs_one"] = round(
        result["two_workers"]["trials_per_hour"] / result["one_worker"]["trials_per_hour"], 3
    )
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    return result
