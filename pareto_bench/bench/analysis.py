"""Benchmarks of the Pareto analysis (``bench frontier``) and of reports (``bench report``)."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pareto_bench.core.defaults import HV_REFERENCE

FRONTIER_TARGET_S = 0.5
REPORT_TARGET_S = 30.0


def _median_time(fn: Callable[[], Any], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _point_sets(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    tpf = rng.uniform(1.0, 10.0, n)
    return {
        # Uniform noise: a small frontier, the usual case.
        "uniform": np.column_stack([tpf, rng.uniform(0.0, 100.0, n)]),
        # Every point on one falling curve: all n points are non-dominated (the worst case).
        "all_non_dominated": np.column_stack([tpf, 100.0 - 9.0 * (tpf - 1.0)]),
    }


def bench_frontier(n: int = 100_000, seed: int = 0) -> dict[str, Any]:
    """Median wall time of each frontier function on ``n`` points (two point layouts)."""
    import moocore

    from pareto_bench.analysis import frontier as F

    rng = np.random.default_rng(seed)
    results: dict[str, Any] = {"n_points": n, "target_s": FRONTIER_TARGET_S, "seconds": {}}
    for layout, points in _point_sets(n, rng).items():
        sets = np.array_split(points, 10)
        timings = {
            "pareto_front": _median_time(lambda p=points: F.pareto_front(p)),
            "hypervolume": _median_time(lambda p=points: F.hypervolume(p, HV_REFERENCE)),
            "aup": _median_time(lambda p=points: F.aup(p, F.FIXED_Y_MAX)),
            "frontier_aup": _median_time(lambda p=points: F.frontier_aup(p, F.FIXED_Y_MAX)),
            "attainment_surfaces_10_sets": _median_time(lambda s=sets: F.attainment_surfaces(s)),
            "moocore_hypervolume (peer)": _median_time(
                lambda p=points: moocore.hypervolume(p, ref=HV_REFERENCE, maximise=True)
            ),
        }
        results["seconds"][layout] = timings
    ours = [
        t for layout in results["seconds"].values() for k, t in layout.items() if "peer" not in k
    ]
    results["slowest_s"] = max(ours)
    results["within_target"] = results["slowest_s"] < FRONTIER_TARGET_S
    return results


def bench_report(trials: int = 50) -> dict[str, Any]:
    """Time a full report (read, findings with 1000-replicate CIs, plots, importances, PDF)
    on a synthetic recorded sweep of ``trials`` trials and two baselines."""
    from pareto_bench.analysis.report.build import build_report
    from pareto_bench.analysis.report.sweep_data import load_sweep_dir
    from pareto_bench.analysis.report.synthetic_sweep import write_synthetic_sweep
    from pareto_bench.analysis.report.template import load_template

    with tempfile.TemporaryDirectory(prefix="pareto-bench-report-") as tmp:
        start = time.perf_counter()
        sweep_dir = write_synthetic_sweep(Path(tmp) / "bench-sweep", trials=trials)
        write_s = time.perf_counter() - start

        stages: dict[str, float] = {}
        start = last = time.perf_counter()
        sweep = load_sweep_dir(sweep_dir)
        stages["read"] = time.perf_counter() - last
        last = time.perf_counter()

        def step(stage: str) -> None:
            nonlocal last
            now = time.perf_counter()
            stages[stage] = now - last
            last = now

        result = build_report(sweep, Path(tmp) / "report.pdf", load_template(), step=step)
        report_s = time.perf_counter() - start
        pages = _page_count(result.path)
        size = result.path.stat().st_size
    return {
        "trials": trials,
        "baselines": 2,
        "tasks": len(sweep.tasks),
        "write_synthetic_sweep_s": round(write_s, 3),
        "report_s": round(report_s, 3),
        "stages_s": {k: round(v, 3) for k, v in stages.items()},
        "pages": pages,
        "pdf_bytes": size,
        "target_s": REPORT_TARGET_S,
        "within_target": report_s < REPORT_TARGET_S,
    }


def _page_count(path: Path) -> int | None:
    try:
        from pypdf import PdfReader
    except ImportError:  # a dev dependency; the count is a convenience
        return None
    return len(PdfReader(path).pages)
