"""Sweeps: ``sweeps/*.yaml`` -> an Optuna study -> trials (train + evaluate) -> MLflow.

The public API of the sweep harness; the parts live in ``pareto_bench.sweeping``.

    from pareto_bench.sweep import load_spec, run_sweep, SweepOptions
    spec = load_spec("sweeps/tiny.yaml", ["trials=2"])
    result = run_sweep(spec, SweepOptions(spec_path=Path("sweeps/tiny.yaml")))
"""

from pareto_bench.sweeping.executors import (
    EXECUTORS,
    Executor,
    InProcessExecutor,
    SubprocessExecutor,
    make_executor,
)
from pareto_bench.sweeping.plan import PlannedTrial, plan_trials, render_plan
from pareto_bench.sweeping.resolve import preflight, resolve_trial_config
from pareto_bench.sweeping.runner import SweepOptions, SweepResult, default_out_dir, run_sweep
from pareto_bench.sweeping.samplers import SAMPLERS
from pareto_bench.sweeping.spec import (
    SearchParam,
    SweepSpec,
    load_spec,
    resolve_spec_path,
    spec_warnings,
)
from pareto_bench.sweeping.trial import TrialFailed, TrialSpec, TrialTimeout, summarize

__all__ = [
    "EXECUTORS",
    "SAMPLERS",
    "Executor",
    "InProcessExecutor",
    "PlannedTrial",
    "SearchParam",
    "SubprocessExecutor",
    "SweepOptions",
    "SweepResult",
    "SweepSpec",
    "TrialFailed",
    "TrialSpec",
    "TrialTimeout",
    "preflight",
    "default_out_dir",
    "load_spec",
    "make_executor",
    "plan_trials",
    "render_plan",
    "resolve_spec_path",
    "resolve_trial_config",
    "run_sweep",
    "spec_warnings",
    "summarize",
]
