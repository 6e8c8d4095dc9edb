"""The names of the files that the stages write and read, each named once (the layout is in
docs/ARCHITECTURE.md, "A sweep's output directory")."""

# A training run's directory (``pareto-bench train``, and each trial of a sweep).
CONFIG_FILE = "config.yaml"  # the resolved TrainConfig
TRAIN_FILE = "train.jsonl"  # TrainStepRecord rows
EVAL_FILE = "eval.jsonl"  # EvalRecord rows, one per (task, threshold)
EVAL_STEPS_FILE = "eval_steps.jsonl"  # evaluations during training (eval_every)
CHECKPOINT_DIR = "checkpoint"  # save_pretrained output, plus the two states below
TRAINER_STATE = "trainer_state.pt"
OPTIMIZER_STATE = "optimizer.pt"
TRIAL_SPEC_FILE = "trial_spec.json"  # a subprocess trial's TrialSpec
TRIAL_LOG_FILE = "trial.log"  # a subprocess trial's stderr

# A sweep's directory.
SWEEP_JSON = "sweep.json"
SPEC_YAML = "spec.yaml"
TRIALS_JSONL = "trials.jsonl"
TRIALS_DIR = "trials"
REPLICATES_JSONL = "replicates.jsonl"


def replicate_dir_name(seed: int) -> str:
    """The directory of one seed replicate, inside its configuration's trial directory."""
    return f"seed-{seed}"
