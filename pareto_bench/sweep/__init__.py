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
tracker_layout how a trial appears in the tracker
outdir     the sweep's output directory
display    the live display
runner     the worker loop tying them together
plan       --dry-run: the resolved trials, through the same code
ui         `pareto-bench ui`: an mlflow server for a sweep's store
child      the entry point of a subprocess trial
"""

import importlib

# The public names, each with the module that owns it. They are imported on first use, so that
# a trial's subprocess (``python -m pareto_bench.sweep.child``, once per torchrun rank) loads
# only the modules it runs, not the runner, the planner and their imports.
_OWNERS = {
    "EXECUTORS": "executors",
    "Executor": "executors",
    "make_executor": "executors",
    "SubprocessExecutor": "executors.child_process",
    "InProcessExecutor": "executors.inprocess",
    "PlannedTrial": "plan",
    "plan_trials": "plan",
    "render_plan": "plan",
    "preflight": "resolve",
    "resolve_trial_config": "resolve",
    "SweepOptions": "runner",
    "SweepResult": "runner",
    "default_out_dir": "runner",
    "run_sweep": "runner",
    "SAMPLERS": "samplers",
    "SearchParam": "spec",
    "SweepSpec": "spec",
    "load_spec": "spec",
    "resolve_spec_path": "spec",
    "spec_warnings": "spec",
    "TrialFailed": "trial",
    "TrialSpec": "trial",
    "TrialTimeout": "trial",
    "summarize": "trial",
}
__all__ = sorted(_OWNERS)


def __getattr__(name: str) -> object:
    if name not in _OWNERS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_OWNERS[name]}"), name)
    globals()[name] = value
    return value
