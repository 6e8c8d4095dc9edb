"""The defaults that several stages share, each stated once. A stage's own defaults live in its
config model (``TrainConfig``, ``SweepSpec``); these are the ones that the evaluator, the
trainer, the sweep, the analysis and the command line must agree on."""

from pareto_bench.core.records import BASE_MODEL_BASELINE

# The model to train or evaluate when none is named: the shipped tiny model (``load_model``).
MODEL = "tiny"

THRESHOLDS = (0.5, 0.7, 0.9)  # decoding thresholds tau of an evaluation: one frontier point each
OPERATING_THRESHOLD = 0.9  # the paper's tau: the headline accuracy and TPF, and RL rollouts
EVAL_BATCH_SIZE = 32  # prompts decoded together
# The hypervolume's reference point (TPF, accuracy). TPF 1 is autoregressive decoding, so the
# hypervolume is the area gained over "no parallelism, no accuracy".
HV_REFERENCE = (1.0, 0.0)
# A sweep's baselines unless its spec names others; the report reads a sweep's own from its
# spec.yaml.
BASELINES = (BASE_MODEL_BASELINE, "grpo")
