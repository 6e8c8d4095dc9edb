"""The sweep harness, one module per concern; ``pareto_bench.sweep`` is its public face.

spec       SweepSpec from sweeps/*.yaml, --set overrides, validation
samplers   Optuna samplers by name; the baseline-free view they see
study      storage, one-time setup, atomic claims, heartbeats, dead-worker recovery
resolve    a trial's trainer config (recipe + shared fields + sampled params); preflight
trial      TrialSpec, the trial body (train + evaluate), objectives
executors  where a trial runs: in-process or a subprocess
layout     how a trial appears in the tracker
outdir     the sweep's output directory
progress   the live display
runner     the worker loop tying them together
plan       --dry-run: the resolved trials, through the same code
ui         `pareto-bench ui`: an mlflow server for a sweep's store
bench      `pareto-bench bench sweep`: tracking overhead, 1 vs 2 workers
child      the entry point of a subprocess trial
"""
