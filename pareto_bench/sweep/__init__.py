"""Sweeps: ``sweeps/*.yaml`` -> an Optuna study -> trials (train + evaluate) -> MLflow.

    from pareto_bench.sweep import load_spec, run_sweep, SweepOptions
    spec = load_spec("sweeps/tiny.yaml", ["trials=2"])
    result = run_sweep(spec, SweepOptions(spec_path=Path("sweeps/tiny.yaml")))

One module per concern:

spec       SweepSpec from sweeps/*.yaml, --set overrides, validation
samplers   Optuna samplers by name; the baseline-free view they see
study      storage, one-time setup, atomic claims, heartbeats, dead-worker recovery
resolve    a trial's trainer config (recipe + shared fields + sampled params); preflight
trial      TrialSpec, the trial body (train + evaluate), objectives
executors/ where a trial runs: in-process, a subprocess (torchrun), or Slurm
replicates seed replicates of one configuration, as jobs of a second study
layout     how a trial appears in the tracker
outdir     the sweep's output directory
display    the live display
runner     the worker loop tying them together
plan       --dry-run: the resolved trials, through the same code
ui         `pareto-bench ui`: an mlflow server for a sweep's store
child      the entry point of a subprocess trial
"""

from pareto_bench.sweep.executors import EXECUTORS, Executor, make_executor
from pareto_bench.sweep.executors.child_process import SubprocessExecutor
from pareto_bench.sweep.executors.inprocess import InProcessExecutor
from pareto_bench.sweep.plan import PlannedTrial, plan_trials, render_plan
from pareto_bench.sweep.resolve import preflight, resolve_trial_config
from pareto_bench.sweep.runner import SweepOptions, SweepResult, default_out_dir, run_sweep
from pareto_bench.sweep.samplers import SAMPLERS
from pareto_bench.sweep.spec import (
    SearchParam,
    SweepSpec,
    load_spec,
    resolve_spec_path,
    spec_warnings,
)
from pareto_bench.sweep.trial import TrialFailed, TrialSpec, TrialTimeout, summarize

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
