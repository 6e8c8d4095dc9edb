"""``TrainConfig``: the one typed config of an RL training run, and the single source of its
defaults. The defaults are the paper's LightningRL (docs/LIGHTNINGRL.md), scaled to the ``tiny``
model; a recipe in ``trainers/`` only lists what differs from them.

This module stays free of torch so that reading a recipe is cheap. The ``Literal`` choice types
below are the choices that ``rl/step.py`` implements (a test runs every one, and checks that an
unknown one is refused).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from pareto_bench.core.defaults import MODEL, OPERATING_THRESHOLD, THRESHOLDS
from pareto_bench.core.placement import DEVICE_HELP, DTYPE_HELP, DeviceName, DtypeName
from pareto_bench.core.schema import ConfigError, StrictModel, load, read_yaml, resolve_named_file

TpfNorm = Literal["zscore", "minmax", "raw", "none"]
AccNorm = Literal["plus_minus_one", "zscore"]
AdvantageMode = Literal["batch", "group", "group_centered"]
KlEstimator = Literal["k1", "k2", "k3"]
Reduction = Literal["seq", "tok"]
LikelihoodMode = Literal["trajectory", "block_surrogate"]
Strategy = Literal["dynamic", "static"]

Threshold = Annotated[float, Field(ge=0.0)]


class RolloutConfig(StrictModel):
    prompts_per_step: int = Field(
        16, ge=1, description="B: prompt groups per RL step (kept after filtering and refill)."
    )
    group_size: int = Field(8, description="G: trajectories sampled per prompt.")
    threshold: float = Field(
        OPERATING_THRESHOLD,
        ge=0.0,
        description="tau: the dynamic strategy commits every token with confidence >= tau.",
    )
    temperature: float = Field(
        1.0, gt=0.0, description="Sampling temperature; RL needs sampling on, so it must be > 0."
    )
    top_k: int = Field(
        0, ge=0, description="Keep the k most likely tokens when sampling; 0 turns it off."
    )
    top_p: float = Field(
        1.0, gt=0.0, le=1.0, description="Nucleus sampling mass; 1.0 turns it off."
    )
    strategy: Strategy = Field(
        "dynamic", description="Commit rule: 'dynamic' (threshold tau) or 'static' (k per forward)."
    )
    steps_per_block: int | None = Field(
        None,
        ge=1,
        validate_default=True,
        description="Static strategy only: forwards per block, k = max(1, block_size // steps_per_block).",
    )
    max_new_tokens: int | None = Field(
        None, ge=1, description="Generation budget per trajectory; None uses the task's default."
    )
    block_size: int | None = Field(
        None,
        ge=1,
        description="Decoding block size; None uses the model's own. The likelihood replays with the same size.",
    )
    batch_size: int = Field(
        256,
        ge=1,
        description="Sequences per sampler call; a round of B x G trajectories is decoded in chunks of this many.",
    )

    @field_validator("group_size")
    @classmethod
    def _group_needs_two(cls, value: int) -> int:
        if value < 2:
            raise ValueError(
                "group normalisation needs at least two trajectories per prompt; set rollout.group_size >= 2"
            )
        return value

    @field_validator("steps_per_block")
    @classmethod
    def _static_needs_steps(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None and info.data.get("strategy") == "static":
            raise ValueError(
                "the static strategy needs it; set rollout.steps_per_block (for example 4) "
                "or use rollout.strategy=dynamic"
            )
        return value


class RewardConfig(StrictModel):
    tpf_weight: float = Field(
        1.0,
        ge=0.0,
        description="w_tpf in r = r_acc + w_tpf * r_tpf; 0 gives an accuracy-only (GRPO) reward.",
    )
    tpf_norm: TpfNorm = Field(
        "zscore",
        description=(
            "Speed reward from TPF within each prompt group: 'zscore' (population std, 0 when all equal), "
            "'minmax' to [0, 1] (0.5 when all equal), 'raw' (TPF itself, scaled by tpf_weight) "
            "or 'none' (no speed reward)."
        ),
    )
    acc_norm: AccNorm = Field(
        "plus_minus_one",
        description=(
            "Accuracy reward: 'plus_minus_one' (+1 correct, -1 wrong; code maps its pass rate p to 2p - 1), "
            "the paper's choice, or 'zscore' within the prompt group (the reference code's)."
        ),
    )
    decoupled: bool = Field(
        True,
        description=(
            "Normalise each reward separately within its group before summing (LightningRL). False is the "
            "no_decoupled_norm ablation: r = r_acc(+-1) + w_tpf * raw TPF, normalised only by the advantage; "
            "tpf_norm and acc_norm are then ignored."
        ),
    )


class FilterConfig(StrictModel):
    enabled: bool = Field(
        True, description="Filter prompt groups and refill the batch (dynamic sampling)."
    )
    drop_all_wrong: bool = Field(
        True, description="Drop a group whose G trajectories are all wrong."
    )
    min_tpf_range: float = Field(
        0.01,
        ge=0.0,
        description="delta: drop a group when max(TPF) - min(TPF) < delta (no speed contrast); 0 turns it off.",
    )
    max_refill_rounds: int = Field(
        8,
        ge=0,
        description=(
            "Extra rollout rounds allowed to refill the batch after filtering; when they run out the step "
            "trains on the groups it has and reports that the cap was hit."
        ),
    )


class AdvantageConfig(StrictModel):
    mode: AdvantageMode = Field(
        "batch",
        description=(
            "'batch': z-score of r over all kept trajectories (paper Eq. 7); 'group': z-score within each "
            "prompt group; 'group_centered': r minus its group mean, no division by the std."
        ),
    )


class LikelihoodConfig(StrictModel):
    mode: LikelihoodMode = Field(
        "trajectory",
        description=(
            "'trajectory': follow step_map, one view per denoising step (exact, costs more tokens); "
            "'block_surrogate': mask the whole current block once for every target (cheaper)."
        ),
    )
    attention: Literal["auto", "sdpa", "flex"] = Field(
        "auto",
        description=(
            "Attention of the likelihood's forwards: 'flex' (FlexAttention with a BlockMask, no dense "
            "mask; GPU only), 'sdpa' (a boolean mask per forward) or 'auto' (flex on GPU, sdpa on CPU)."
        ),
    )
    max_tokens_per_forward: int = Field(
        2048,
        ge=1,
        description=(
            "Tokens per row in one forward of the packed likelihood: a trajectory's denoising views are "
            "split into forwards of at most this many slots, each reading the clean sequence's cached keys."
        ),
    )


class LossConfig(StrictModel):
    eps: float = Field(
        0.2, gt=0.0, lt=1.0, description="Lower clip: the ratio is clipped at 1 - eps."
    )
    eps_high: float = Field(
        0.2, gt=0.0, description="Upper clip: the ratio is clipped at 1 + eps_high."
    )
    kl_beta: float = Field(
        0.01,
        ge=0.0,
        description="beta: weight of the KL to the frozen reference policy; 0 turns it off.",
    )
    kl_estimator: KlEstimator = Field(
        "k3",
        description="KL estimator with d = logp - logp_ref: 'k1' d, 'k2' d^2/2, 'k3' exp(-d) - 1 + d.",
    )
    nll_weight: float = Field(
        0.1,
        ge=0.0,
        description="w_nll: weight of the token NLL on verifier-correct trajectories; 0 turns it off.",
    )
    policy_reduction: Reduction = Field(
        "seq",
        description="Policy loss reduction: 'seq' (mean per sequence, then over sequences) or 'tok'.",
    )
    kl_reduction: Reduction = Field(
        "tok", description="KL reduction: 'seq' or 'tok' (mean over all tokens)."
    )
    nll_reduction: Reduction = Field(
        "tok", description="NLL reduction: 'seq' or 'tok' (mean over all tokens)."
    )
    reference_device: Literal["policy", "cpu"] = Field(
        "policy",
        description=(
            "Where the frozen KL reference lives between its passes: 'policy' (the policy's device) or "
            "'cpu' (parked off the GPU, moved in for its forward). Loaded only when kl_beta > 0."
        ),
    )


class OptimConfig(StrictModel):
    lr: float = Field(
        1e-4,
        gt=0.0,
        description="AdamW learning rate; 1e-4 suits tiny, the paper used 1e-6 for 8B.",
    )
    warmup_steps: int = Field(
        10, ge=0, description="Linear warm-up steps of the otherwise constant schedule."
    )
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    grad_clip: float = Field(
        1.0, gt=0.0, description="Clip the global gradient norm to this value."
    )
    betas: tuple[float, float] = Field(
        (0.9, 0.999), description="AdamW (beta1, beta2), each in [0, 1)."
    )
    micro_batch_size: int = Field(
        16,
        ge=1,
        description=(
            "Trajectories per forward/backward; gradients accumulate over micro-batches and the loss "
            "keeps the whole batch's normalisers, so the update does not depend on it."
        ),
    )
    updates_per_step: int = Field(
        1,
        ge=1,
        description=(
            "Optimizer updates per rollout batch, each on one shuffled mini-batch of the kept "
            "trajectories; above 1 the policy moves off the rollout policy and the clip binds."
        ),
    )

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in value):
            raise ValueError("each beta must be in [0, 1); for example optim.betas=[0.9, 0.999]")
        return value


class TrainConfig(StrictModel):
    name: str = Field(
        "lightningrl",
        min_length=1,
        description="Run name: names the default output directory and tracker runs.",
    )
    model: str = Field(
        MODEL,
        min_length=1,
        description="Policy to train: 'tiny' (the shipped model) or a checkpoint path.",
    )
    task: str = Field(
        "synthetic",
        min_length=1,
        description="Registered task whose training problems are the prompts.",
    )
    data_dir: Path | None = Field(
        None, description="Directory with the task's data files; None uses PARETO_BENCH_DATA."
    )
    steps: int = Field(
        50, ge=1, description="RL steps (one rollout batch and one policy update each)."
    )
    seed: int = Field(0, description="Seed for prompt order, sampling and initialisation.")
    out_dir: Path | None = Field(None, description="Output directory; None uses runs/<name>.")
    eval_every: int = Field(
        10, ge=0, description="Evaluate greedily every this many steps; 0 only at the end."
    )
    save_every: int = Field(
        10,
        ge=0,
        description="Save a resumable checkpoint every this many steps; 0 only at the end.",
    )
    eval_thresholds: list[Threshold] = Field(
        list(THRESHOLDS),
        min_length=1,
        description="Thresholds tau of the greedy evaluations (sorted, unique).",
    )
    eval_limit: int | None = Field(
        None, ge=1, description="Evaluate on at most this many held-out problems; None uses all."
    )
    device: DeviceName = Field("auto", description=f"Device: {DEVICE_HELP}")
    dtype: DtypeName = Field(
        "auto",
        description=f"Compute dtype: {DTYPE_HELP} Weights and optimizer state stay float32.",
    )
    parallel: Literal["auto", "none", "ddp", "fsdp"] = Field(
        "auto",
        description=(
            "How processes launched by torchrun share the policy: 'ddp' (whole model per rank), "
            "'fsdp' (FSDP2: weights, gradients and AdamW state sharded; bf16 compute, fp32 "
            "reduction) or 'none' "
            "(one process); 'auto': none for one process, else fsdp on GPU and ddp on CPU."
        ),
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute each likelihood forward during backward instead of keeping its activations.",
    )

    rollout: RolloutConfig = Field(
        default_factory=RolloutConfig, description="Sampling G trajectories per prompt."
    )
    reward: RewardConfig = Field(
        default_factory=RewardConfig,
        description="Accuracy and speed rewards and their normalisation.",
    )
    filter: FilterConfig = Field(
        default_factory=FilterConfig, description="TPF-aware group filtering with refill."
    )
    advantage: AdvantageConfig = Field(
        default_factory=AdvantageConfig, description="Rewards to advantages."
    )
    likelihood: LikelihoodConfig = Field(
        default_factory=LikelihoodConfig, description="Block-diffusion log-likelihood."
    )
    loss: LossConfig = Field(default_factory=LossConfig, description="Policy, KL and NLL terms.")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="AdamW and its schedule.")

    @field_validator("eval_thresholds")
    @classmethod
    def _sorted_unique(cls, value: list[float]) -> list[float]:
        # Frontier curves are read in threshold order; duplicates would evaluate twice.
        return sorted(set(value))


def load_recipe(
    path: str | Path | None = None, overrides: Iterable[str] = (), *, base: str | Path | None = None
) -> TrainConfig:
    """A recipe YAML (optional; a path, or a name in trainers/ of the cwd or the source checkout)
    over a ``base`` recipe (optional, e.g. ``lightningrl-tiny``: a scale to train the method at),
    plus ``key=value`` overrides -> a validated ``TrainConfig``.

    Raises ``pareto_bench.core.schema.ConfigError`` naming the file, the dotted field and the fix;
    an unknown key names the closest valid one.
    """
    path = None if path is None else recipe_path(path)
    layer = None if base is None else read_yaml(recipe_path(base))
    return load(TrainConfig, path, overrides, base=layer)


def recipe_path(name_or_path: str | Path, anchor: Path | None = None) -> Path:
    """A recipe's YAML: a path, or a name in trainers/ (of the cwd, beside ``anchor`` or of the
    source checkout)."""
    try:
        return resolve_named_file(name_or_path, "trainers", anchor=anchor, what="trainer recipe")
    except FileNotFoundError as e:
        raise ConfigError(f"{name_or_path}: no such file ({e})") from None
