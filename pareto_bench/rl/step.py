"""One LightningRL step, top to bottom: roll out and filter, reward, take advantages, score the
kept trajectories under the block-diffusion likelihood, and update the policy.

LightningRL is GRPO for block-wise dLLMs with three changes (docs/LIGHTNINGRL.md):

1. **Decoupled reward normalisation.** The accuracy and speed (TPF) rewards are normalised
   separately within each prompt group before they are summed (``combine_rewards``).
2. **Token-level NLL on verifier-correct trajectories**, anchoring the policy to correct
   answers while the speed reward pushes it towards parallel trajectories (``lightningrl_loss``).
3. **TPF-aware filtering with dynamic sampling.** Groups that are all wrong or show no TPF
   contrast are dropped, and new prompts are rolled out until the batch is full
   (``drop_reason``, ``fill_batch``).

Other departures from textbook GRPO: trajectories come from the block sampler with a
confidence threshold, and the token log-likelihood is the block-diffusion one, replaying each
trajectory's ``step_map`` (``pareto_bench.dllm.likelihood``). The GRPO baseline is this same
step with ``reward.tpf_weight = 0``.

Shapes: per-trajectory values are ``[num_groups, G]`` tensors, row i holding prompt i's G
trajectories; ``.reshape(-1)`` gives the group-major ``[B]`` order of the ``[B, T]`` token
tensors (B trajectories by T response positions, ``mask`` true on real response tokens).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, Self, TypeVar

import torch
from torch import Tensor

from pareto_bench.core.flops import (
    backward_flops,
    forward_flops,
    mfu,
    non_embedding_parameters,
    peak_flops,
)
from pareto_bench.core.placement import World, autocast
from pareto_bench.core.records import TrainStepRecord
from pareto_bench.dllm.sampler import aggregate_tpf
from pareto_bench.rl.config import (
    AccNorm,
    AdvantageMode,
    FilterConfig,
    KlEstimator,
    LossConfig,
    Reduction,
    RewardConfig,
    TpfNorm,
    TrainConfig,
)
from pareto_bench.rl.distributed import no_gradient_sync
from pareto_bench.rl.replay import Replay, frozen_logprobs
from pareto_bench.rl.rollout import Group, rollout
from pareto_bench.rl.run import TrainingRun


def train_step(run: TrainingRun, step: int, clock: Stopwatch | None = None) -> TrainStepRecord:
    """RL step ``step`` of ``run``: the policy updated, and the step's record. A step whose
    groups were all filtered out updates nothing; a non-finite loss stops the step's updates
    before the optimizer steps on it. Either way the record says so. ``clock`` (default: a new
    one) times the phases and counts their model FLOPs."""
    clock = clock or Stopwatch(run.device, run.compute_dtype)
    models = [run.policy.model, run.decoder.model]
    if run.reference is not None:
        models.append(run.reference.model)
    with clock.counting(models):
        return _train_step(run, step, clock)


def _train_step(run: TrainingRun, step: int, clock: Stopwatch) -> TrainStepRecord:
    config, world, policy = run.config, run.world, run.policy
    device = run.device
    block_size = config.rollout.block_size or policy.block_size  # rollout and likelihood agree

    # 1. Rollout with TPF-aware filtering, refilled until B groups pass. Prompts and seeds depend
    #    on (seed, step, round, position in the round) only: each rank decodes a contiguous share
    #    of the round, and every rank sees every group.
    with clock("rollout"):
        run.sync_decoder()
        filled, reward_wait = _fill(run, step, block_size)
    groups = filled.groups
    if not groups:  # every group was filtered out, even after refills: nothing to learn from
        return _empty_record(step, filled, clock, reward_wait, run.optimizer)

    # 2. Rewards, decoupled per reward within each group, then advantages (every rank computes
    #    the same, from the same groups).
    score = torch.tensor([g.score for g in groups])
    tpf = torch.tensor([g.tpf for g in groups])
    correct_cpu = torch.tensor([g.correct for g in groups]).reshape(-1)
    rewards = combine_rewards(score, tpf, config.reward)
    advantages = compute_advantages(rewards.total, config.advantage.mode).reshape(-1).to(device)
    correct = correct_cpu.to(device)

    # 3. Block-diffusion likelihoods of this rank's trajectories under the reference and, when
    #    the policy moves within the step, under the rollout policy; micro-batch by micro-batch.
    trajectories = [(g.prompt_ids, gen) for g in groups for gen in g.generations]
    replay = Replay(trajectories, config, policy, block_size)
    order = torch.randperm(
        len(trajectories), generator=torch.Generator().manual_seed(_seed(config.seed, step, 0, 2))
    )
    updates = [chunk.tolist() for chunk in order.chunk(config.optim.updates_per_step)]
    mine = {row for rows in updates for micro, _ in replay.shares(rows, world) for row in micro}
    mask = replay.token_mask.to(device)
    with torch.no_grad():
        logp_ref = None
        if run.reference is not None:
            with clock("reference"):
                logp_ref = frozen_logprobs(run.reference, replay, mine, device)
        logp_old = None
        if config.optim.updates_per_step > 1:
            with clock("likelihood"), run.autocast():
                logp_old = replay.all_logprobs(run.scorer, mine, device)

    # 4. Policy update: clipped surrogate + KL to the reference + NLL on correct trajectories,
    #    each update over one shuffled mini-batch, accumulated over micro-batches and ranks.
    lr = config.optim.lr * min(1.0, (step + 1) / max(1, config.optim.warmup_steps))
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    inputs = LossInputs(advantages, mask, correct, logp_old, logp_ref)
    for rows in updates:
        run.optimizer.zero_grad(set_to_none=True)
        terms = accumulate_gradients(
            run.scorer, replay, rows, inputs, config, run.compute_dtype, world, clock
        )
        if not torch.isfinite(terms.loss):
            run.optimizer.zero_grad(set_to_none=True)
            return _empty_record(
                step, filled, clock, reward_wait, run.optimizer, loss=terms.loss.item()
            )
        with clock("optimizer"):
            grad_norm = torch.nn.utils.clip_grad_norm_(
                run.scorer.parameters(), config.optim.grad_clip
            )
            run.optimizer.step()

    return TrainStepRecord(
        step=step,
        reward=float(rewards.total.mean()),
        reward_acc=float(rewards.acc.mean()),
        reward_tpf=float(rewards.tpf.mean()),
        accuracy=100.0 * float(correct_cpu.float().mean()),
        tpf=aggregate_tpf([gen for _, gen in trajectories]),
        filtered_fraction=filled.filtered_fraction,
        refill_rounds=filled.refill_rounds,
        policy_loss=terms.policy_loss.item(),
        kl=terms.kl.item(),
        nll=terms.nll.item(),
        loss=terms.loss.item(),
        clip_fraction=terms.clip_fraction.item(),
        grad_norm=float(grad_norm),
        reward_wait_time=reward_wait,
        lr=lr,
        **clock.record_fields(),
        likelihood_forwards=replay.mean_forwards(),
    )


class Stopwatch:
    """Per phase of a step (``with clock("rollout"): ...``, summed over a phase's sections): its
    seconds, the model FLOPs of the backbone forwards run in it (``core/flops.py``), and with
    ``memory`` on a GPU its peak GPU memory; and the seconds since the step began.

    The phases: ``rollout``, ``reference`` (the KL reference's pass), ``likelihood`` (the
    policy's forwards), ``backward`` and ``optimizer``. On a GPU each phase ends with a
    synchronize, so that its kernels are timed in it and not in the next one. A forward run with
    grad outside ``backward`` will be backpropagated: its backward (4N per token) is counted in
    ``backward``; a forward inside ``backward`` is a checkpoint's recompute, counted as a forward.
    Each phase is also a ``torch.profiler`` range, so that a profile can be cut by phase."""

    def __init__(
        self,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        memory: bool = False,
    ) -> None:
        self.started = time.perf_counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.flops: defaultdict[str, float] = defaultdict(float)
        self.peak_memory: dict[str, int] = {}  # bytes, with ``memory`` on a GPU
        self.phase = "other"  # forwards outside every phase
        self.device = None if device is None else torch.device(device)
        self.cuda = self.device is not None and self.device.type == "cuda"
        self.memory = memory and self.cuda
        self.peak = None if self.device is None else peak_flops(self.device, dtype)

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        outer, self.phase = self.phase, phase
        if self.memory:
            torch.cuda.reset_peak_memory_stats(self.device)
        began = time.perf_counter()
        try:
            with torch.profiler.record_function(phase):
                yield
                if self.cuda:
                    torch.cuda.synchronize(self.device)
        finally:
            self.seconds[phase] += time.perf_counter() - began
            if self.memory:
                peak = torch.cuda.max_memory_allocated(self.device)
                self.peak_memory[phase] = max(self.peak_memory.get(phase, 0), peak)
            self.phase = outer

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @contextlib.contextmanager
    def counting(self, models: Sequence[torch.nn.Module]) -> Iterator[None]:
        """Count the model FLOPs of every backbone forward of ``models`` (transformers models)
        while inside; a model listed twice is counted once."""
        handles = []
        for model in {id(m): m for m in models}.values():
            count = functools.partial(self._count, non_embedding_parameters(model))
            handles.append(model.base_model.register_forward_pre_hook(count, with_kwargs=True))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _count(self, parameters: int, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        tokens = (kwargs["input_ids"] if "input_ids" in kwargs else args[0]).numel()
        self.flops[self.phase] += forward_flops(parameters, tokens)
        if torch.is_grad_enabled() and self.phase != "backward":
            self.flops["backward"] += backward_flops(parameters, tokens)

    def record_fields(self) -> dict[str, float | None]:
        """The step's times, model FLOPs and MFU, as ``TrainStepRecord`` fields."""
        seconds = self.elapsed()
        flops = sum(self.flops.values())
        return {
            "step_time": seconds,
            **{f"{phase}_time": self.seconds[phase] for phase in PHASES},
            "flops": flops,
            "mfu": mfu(flops, seconds, self.peak),
        }


PHASES = ("rollout", "reference", "likelihood", "backward", "optimizer")


# --------------------------------------------------------------------------- 1. rollout


def _fill(run: TrainingRun, step: int, block_size: int) -> tuple[FillResult[Group], float]:
    """B groups that pass the filter, and the seconds spent waiting for rewards after decoding."""
    config, world = run.config, run.world
    rounds = itertools.count()
    reward_waits: list[float] = []  # per round: rewards still scoring after the last chunk

    def sample_round(missing: int) -> list[Group]:
        round_index = next(rounds)
        rng = random.Random(_seed(config.seed, step, round_index))
        chosen = [run.problems[rng.randrange(len(run.problems))] for _ in range(missing)]
        mine = world.share(chosen)
        with run.decoding():
            decoded = rollout(
                run.decoder,
                run.task,
                [chosen[i] for i in mine],
                config.rollout,
                seed=_seed(config.seed, step, round_index, 1)
                + (mine[0] if mine else 0) * config.rollout.group_size,
                max_new_tokens=run.budget,
                block_size=block_size,
            )
        reward_waits.append(decoded.reward_wait)
        return [group for share in world.gather(decoded.groups) for group in share]

    def reason(group: Group) -> str | None:
        return drop_reason(group.correct, group.tpf, config.filter)

    filled = fill_batch(
        sample_round,
        config.rollout.prompts_per_step,
        max_refill_rounds=config.filter.max_refill_rounds,
        reason=reason,
    )
    return filled, sum(reward_waits)


def _seed(*parts: int) -> int:
    """A stable seed from integers (Python's hash of ints is stable across runs)."""
    value = 0
    for part in parts:
        value = (value * 1_000_003 + part + 1) % (2**31 - 1)
    return value


# --------------------------------------------------------------------------- 1. filtering
# (LightningRL change 3: a dropped group is replaced by new prompts, paper Algorithm 1)

DropReason = Literal["all_wrong", "flat_tpf"]

G = TypeVar("G")


def drop_reason(
    correct: Sequence[bool] | Tensor, tpf: Sequence[float] | Tensor, rules: FilterConfig
) -> DropReason | None:
    """Why one group (its G correctness flags and TPFs) is dropped, or ``None`` to keep it:
    all its trajectories are wrong (``rules.drop_all_wrong``), or its TPF range ``max - min`` is
    below ``rules.min_tpf_range`` (no speed contrast to learn from); all-wrong wins when both
    apply. ``correct`` is the verifier's verdict (for code: every test passed)."""
    if not rules.enabled:
        return None
    correct = torch.as_tensor(correct, dtype=torch.bool)
    tpf = torch.as_tensor(tpf, dtype=torch.float64)
    if correct.numel() == 0 or correct.shape != tpf.shape:
        raise ValueError(
            f"a group needs as many flags as TPFs, at least one: got {correct.numel()} and {tpf.numel()}"
        )
    if rules.drop_all_wrong and not bool(correct.any()):
        return "all_wrong"
    if float(tpf.max() - tpf.min()) < rules.min_tpf_range:
        return "flat_tpf"
    return None


@dataclass
class FillResult(Generic[G]):
    """What ``fill_batch`` collected and what it cost."""

    groups: list[G]  # the kept groups in sampling order; batch_size of them unless hit_cap
    rounds: int  # rollout rounds used, the first one included
    num_sampled: int  # groups sampled over all rounds
    num_filtered: int  # groups dropped by the filter
    reasons: Counter[str] = field(default_factory=Counter)  # drop reason -> count
    hit_cap: bool = False  # the refill cap ran out before the batch was full

    @property
    def refill_rounds(self) -> int:
        return self.rounds - 1

    @property
    def filtered_fraction(self) -> float:
        return self.num_filtered / self.num_sampled if self.num_sampled else 0.0


def fill_batch(
    sample_round: Callable[[int], Sequence[G]],
    batch_size: int,
    *,
    max_refill_rounds: int,
    reason: Callable[[G], str | None],
) -> FillResult[G]:
    """Collect ``batch_size`` kept groups from successive rollout rounds.

    ``sample_round(n)`` rolls out n new prompt groups (n = the groups still missing) and returns
    them; ``reason(group)`` says why a group is dropped, ``None`` to keep it (for example
    ``lambda g: drop_reason(g.correct, g.tpf, config.filter)``; ``lambda g: None`` disables filtering). After the
    first round at most ``max_refill_rounds`` more are run. If the batch is still short, the result
    holds fewer groups (possibly none) and ``hit_cap`` is set. Kept groups beyond ``batch_size`` (a
    round that returned more than asked) are left out and not counted as filtered.
    """
    if batch_size < 1 or max_refill_rounds < 0:
        raise ValueError(
            f"need batch_size >= 1 and max_refill_rounds >= 0, got {batch_size} and {max_refill_rounds}"
        )
    result: FillResult[G] = FillResult(groups=[], rounds=0, num_sampled=0, num_filtered=0)
    while len(result.groups) < batch_size and result.rounds <= max_refill_rounds:
        result.rounds += 1
        for group in sample_round(batch_size - len(result.groups)):
            result.num_sampled += 1
            why = reason(group)
            if why is not None:
                result.num_filtered += 1
                result.reasons[why] += 1
            elif len(result.groups) < batch_size:
                result.groups.append(group)
    result.hit_cap = len(result.groups) < batch_size
    return result


# --------------------------------------------------------------------------- 2. rewards
# (LightningRL change 1)

STD_FLOOR = 1e-8


def zscore(x: Tensor, dim: int | None = -1, std_floor: float = STD_FLOOR) -> Tensor:
    """``(x - mean) / max(std, std_floor)`` along ``dim`` (``None``: over all elements), with the
    population std. A slice whose values are all equal gives exactly 0: testing the range rather
    than the std avoids dividing float rounding noise by a tiny std."""
    x = _as_float(x)
    if dim is None:
        return zscore(x.reshape(1, -1), dim=-1, std_floor=std_floor).reshape(x.shape)
    mean = x.mean(dim, keepdim=True)
    std = x.std(dim, keepdim=True, correction=0).clamp_min(std_floor)
    flat = x.amax(dim, keepdim=True) == x.amin(dim, keepdim=True)
    return torch.where(flat, torch.zeros_like(x), (x - mean) / std)


def minmax(x: Tensor, dim: int = -1) -> Tensor:
    """``(x - min) / (max - min)`` along ``dim``, in [0, 1]; 0.5 where all values are equal."""
    x = _as_float(x)
    low = x.amin(dim, keepdim=True)
    span = x.amax(dim, keepdim=True) - low
    return torch.where(span == 0, torch.full_like(x, 0.5), (x - low) / span.clamp_min(STD_FLOOR))


def raw_accuracy_reward(score: Tensor) -> Tensor:
    """The paper's accuracy reward: +1 correct, -1 wrong; a code pass rate p maps to ``2p - 1``,
    so that all tests passing is +1 and none is -1, the same scale as maths."""
    return 2.0 * _as_float(score) - 1.0


def accuracy_reward(score: Tensor, norm: AccNorm) -> Tensor:
    """The accuracy reward of each trajectory, ``[num_groups, G]`` -> ``[num_groups, G]``:
    ``plus_minus_one`` (the paper's) or its ``zscore`` within the group (a z-score is invariant
    to the affine map 2p - 1, so the raw score gives the same)."""
    score = _check_groups(score, "score")
    if norm == "plus_minus_one":
        return raw_accuracy_reward(score)
    if norm == "zscore":
        return zscore(score)
    raise ValueError(f"accuracy normalisation {norm!r}: expected plus_minus_one or zscore")


def speed_reward(tpf: Tensor, norm: TpfNorm) -> Tensor:
    """The speed reward of each trajectory, normalised within its group (before weighting):
    ``zscore``, ``minmax``, ``raw`` (TPF itself; ``tpf_weight`` is the coefficient) or ``none``
    (no speed reward, as ``tpf_weight = 0``)."""
    tpf = _as_float(_check_groups(tpf, "tpf"))
    if norm == "zscore":
        return zscore(tpf)
    if norm == "minmax":
        return minmax(tpf)
    if norm == "raw":
        return tpf.clone()
    if norm == "none":
        return torch.zeros_like(tpf)
    raise ValueError(f"TPF normalisation {norm!r}: expected zscore, minmax, raw or none")


@dataclass(frozen=True)
class Rewards:
    """Per-trajectory rewards, each ``[num_groups, G]``."""

    total: Tensor  # r = acc + tpf_weight * tpf: what the advantage normalises
    acc: Tensor  # the accuracy term as it entered the sum
    tpf: Tensor  # the speed term as it entered the sum, before tpf_weight


def combine_rewards(score: Tensor, tpf: Tensor, reward: RewardConfig) -> Rewards:
    """``r = r_acc + tpf_weight * r_tpf`` for ``[num_groups, G]`` scores and TPFs.

    ``score``: the verifier's score in [0, 1], 1/0 for maths, the pass rate for code (a
    trajectory that hit the length budget arrives as 0). ``reward.decoupled`` (LightningRL)
    normalises each reward in its group first, because raw rewards on different scales (+-1
    against a TPF of 2-10) would let one drown the other. Without it (the no_decoupled_norm
    ablation) the raw sum ``(2*score - 1) + tpf_weight * tpf`` goes to the advantage, which
    normalises it jointly; ``tpf_norm`` and ``acc_norm`` are then ignored.
    """
    score = _check_groups(score, "score")
    tpf = _check_groups(tpf, "tpf")
    if score.shape != tpf.shape:
        raise ValueError(
            f"score {tuple(score.shape)} and tpf {tuple(tpf.shape)} must have the same shape"
        )
    if reward.decoupled:
        acc, speed = accuracy_reward(score, reward.acc_norm), speed_reward(tpf, reward.tpf_norm)
    else:
        acc, speed = raw_accuracy_reward(score), _as_float(tpf)
    return Rewards(total=acc + reward.tpf_weight * speed, acc=acc, tpf=speed)


def _as_float(x: Tensor) -> Tensor:
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


def _check_groups(x: Tensor, name: str) -> Tensor:
    if x.dim() != 2:
        raise ValueError(
            f"{name} must be [num_groups, G], one row per prompt group; got shape {tuple(x.shape)}"
        )
    return x


# --------------------------------------------------------------------------- 2. advantages


def compute_advantages(rewards: Tensor, mode: AdvantageMode) -> Tensor:
    """``[num_groups, G]`` total rewards -> ``[num_groups, G]`` advantages, one per trajectory
    (every token of a trajectory shares it): ``batch`` (paper Eq. 7: the z-score over every kept
    trajectory, std floored at 1e-8), ``group`` (the z-score within each prompt group, GRPO's
    usual form) or ``group_centered`` (r minus its group mean, keeping the reward's scale)."""
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [num_groups, G]; got shape {tuple(rewards.shape)}")
    rewards = _as_float(rewards)
    if mode == "batch":
        return zscore(rewards, dim=None)
    if mode == "group":
        return zscore(rewards, dim=-1)
    if mode == "group_centered":
        return rewards - rewards.mean(-1, keepdim=True)
    raise ValueError(f"advantage mode {mode!r}: expected batch, group or group_centered")


# --------------------------------------------------------------------------- 4. the loss
# Clipped surrogate + beta * KL + w_nll * NLL (LightningRL change 2), each with its own
# reduction. ``seq`` averages each sequence over its tokens, then over sequences (every sequence
# weighs the same); ``tok`` averages over all tokens of the batch (long sequences weigh more).
# Sequences without tokens are left out of both, and an empty selection gives a zero that keeps
# the graph, so ``backward`` always works. Given the whole batch's ``Normalizers``, each
# reduction divides a micro-batch's sum by the whole batch's count, so the micro-batches'
# losses (and gradients) add up to the whole batch's.

LOG_RATIO_CLIP = 10.0  # |log rho| and |logp - logp_ref| are clipped here so exp() stays finite


def token_mean(values: Tensor, mask: Tensor, count: float | None = None) -> Tensor:
    """Mean of ``values`` over every masked-in token of the batch (of ``count`` tokens if given)."""
    weights = mask.to(values.dtype)
    return (values * weights).sum() / (weights.sum() if count is None else count).clamp_min(1.0)


def sequence_mean(values: Tensor, mask: Tensor, count: float | None = None) -> Tensor:
    """Mean over each sequence's masked-in tokens, then over the sequences that have any
    (``count`` of them if given)."""
    weights = mask.to(values.dtype)
    counts = weights.sum(-1)
    per_sequence = (values * weights).sum(-1) / counts.clamp_min(1.0)
    present = (counts > 0).to(values.dtype)
    return (per_sequence * present).sum() / (present.sum() if count is None else count).clamp_min(
        1.0
    )


@dataclass(frozen=True)
class Normalizers:
    """Token and sequence counts of a whole batch, the denominators of its reductions."""

    tokens: Tensor
    sequences: Tensor
    correct_tokens: Tensor
    correct_sequences: Tensor

    @classmethod
    def of(cls, mask: Tensor, correct: Tensor) -> Self:
        mask = mask.to(torch.bool)
        on_correct = mask & correct.to(torch.bool).reshape(-1, 1)
        return cls(
            tokens=mask.sum().float(),
            sequences=mask.any(-1).sum().float(),
            correct_tokens=on_correct.sum().float(),
            correct_sequences=on_correct.any(-1).sum().float(),
        )

    def count(self, mode: Reduction, *, correct_only: bool = False) -> Tensor:
        if mode == "tok":
            return self.correct_tokens if correct_only else self.tokens
        return self.correct_sequences if correct_only else self.sequences


def reduce(values: Tensor, mask: Tensor, mode: Reduction, count: Tensor | None = None) -> Tensor:
    """``[B, T]`` per-token values -> a scalar, with the ``seq`` or ``tok`` reduction; ``count``
    is the denominator (the whole batch's tokens or sequences), by default this batch's own."""
    if values.shape != mask.shape:
        raise ValueError(
            f"values {tuple(values.shape)} and mask {tuple(mask.shape)} must both be [B, T]"
        )
    if mode == "tok":
        return token_mean(values, mask, count)
    if mode == "seq":
        return sequence_mean(values, mask, count)
    raise ValueError(f"reduction {mode!r}: expected seq or tok")


def log_ratio(logp: Tensor, logp_old: Tensor, clip: float = LOG_RATIO_CLIP) -> Tensor:
    """``logp - logp_old`` clipped to ``[-clip, clip]``."""
    return (logp - logp_old).clamp(-clip, clip)


def ratio(logp: Tensor, logp_old: Tensor) -> Tensor:
    """The importance ratio ``rho = exp(clip(logp - logp_old, +-10))``."""
    return log_ratio(logp, logp_old).exp()


def clipped_surrogate(
    logp: Tensor, logp_old: Tensor, advantages: Tensor, *, eps: float = 0.2, eps_high: float = 0.2
) -> tuple[Tensor, Tensor]:
    """Per-token policy loss ``-min(rho*A, clip(rho, 1-eps, 1+eps_high)*A)`` and a bool tensor
    that is true where the clip binds (the clipped term is the smaller one, so no gradient flows):
    ``rho > 1+eps_high`` with ``A > 0``, or ``rho < 1-eps`` with ``A < 0``."""
    rho = ratio(logp, logp_old)
    unclipped = rho * advantages
    clipped = rho.clamp(1.0 - eps, 1.0 + eps_high) * advantages
    binds = ((rho > 1.0 + eps_high) & (advantages > 0)) | ((rho < 1.0 - eps) & (advantages < 0))
    return -torch.minimum(unclipped, clipped), binds


def kl_estimate(logp: Tensor, logp_ref: Tensor, estimator: KlEstimator) -> Tensor:
    """Per-token KL estimate to the reference with ``d = logp - logp_ref`` (clipped to +-10):
    k1 ``d``, k2 ``d^2 / 2``, k3 ``exp(-d) - 1 + d`` (unbiased and never negative: with
    ``x = p_ref / p = exp(-d)``, ``x - 1 - log x >= 0``)."""
    d = log_ratio(logp, logp_ref)
    if estimator == "k1":
        return d
    if estimator == "k2":
        return 0.5 * d.square()
    if estimator == "k3":
        return torch.expm1(-d) + d
    raise ValueError(f"KL estimator {estimator!r}: expected k1, k2 or k3")


def nll_on_correct(
    logp: Tensor,
    mask: Tensor,
    correct: Tensor,
    reduction: Reduction,
    count: Tensor | None = None,
) -> Tensor:
    """``-mean(logp)`` over the tokens of the trajectories the verifier marked correct.

    ``correct`` is one bool per sequence (``[B]``), the verdict itself, not "reward >= 0": with
    normalised rewards a wrong but fast trajectory can have a positive reward. Zero (with graph)
    when no trajectory is correct.
    """
    correct = correct.to(torch.bool).reshape(-1)
    if correct.shape[0] != logp.shape[0]:
        raise ValueError(f"{correct.shape[0]} correctness flags for {logp.shape[0]} sequences")
    return reduce(-logp, mask.to(torch.bool) & correct.unsqueeze(-1), reduction, count)


@dataclass(frozen=True)
class LossTerms:
    """Scalar tensors; ``loss`` carries the graph, the rest are for logging."""

    loss: Tensor  # policy_loss + kl_beta * kl + nll_weight * nll
    policy_loss: Tensor
    kl: Tensor  # the unweighted KL estimate
    nll: Tensor  # the unweighted NLL on correct trajectories
    clip_fraction: Tensor  # share of response tokens where the clip binds


def lightningrl_loss(
    logp: Tensor,
    logp_old: Tensor,
    logp_ref: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    correct: Tensor,
    terms: LossConfig,
    normalizers: Normalizers | None = None,
) -> LossTerms:
    """Policy + ``kl_beta`` * KL + ``nll_weight`` * NLL on ``[B, T]`` token log-probs, with the
    clip, estimator and reductions of ``terms``.

    ``logp`` is the policy's log-probability of each committed token under the block-diffusion
    likelihood (with gradient); ``logp_old`` the rollout policy's and ``logp_ref`` the frozen
    reference's (no gradient; ``None`` when ``kl_beta`` is 0). ``advantages`` is ``[B]`` (one per
    trajectory, broadcast here) or already ``[B, T]``; ``correct`` is ``[B]`` bool.
    ``normalizers`` are the whole batch's when these rows are one micro-batch of it.
    """
    if logp.dim() != 2 or logp.shape != mask.shape:
        raise ValueError(
            f"logp {tuple(logp.shape)} and mask {tuple(mask.shape)} must both be [B, T]"
        )
    mask = mask.to(torch.bool)
    if advantages.dim() == 1 and advantages.shape[0] == logp.shape[0]:
        advantages = advantages.unsqueeze(-1).expand_as(logp)
    elif advantages.shape != logp.shape:
        raise ValueError(
            f"advantages {tuple(advantages.shape)} must be [B] or [B, T] like logp {tuple(logp.shape)}; "
            "flatten [num_groups, G] advantages with .reshape(-1)"
        )
    advantages = advantages.to(logp.dtype)
    norm = normalizers or Normalizers.of(mask, correct)

    per_token, binds = clipped_surrogate(
        logp, logp_old.detach(), advantages, eps=terms.eps, eps_high=terms.eps_high
    )
    policy = terms.policy_reduction
    policy_loss = reduce(per_token, mask, policy, norm.count(policy))

    if logp_ref is None:
        if terms.kl_beta != 0:
            raise ValueError("kl_beta > 0 needs the reference log-probs logp_ref")
        kl = logp.new_zeros(())
    else:
        kl = reduce(
            kl_estimate(logp, logp_ref.detach(), terms.kl_estimator),
            mask,
            terms.kl_reduction,
            norm.count(terms.kl_reduction),
        )

    nll_mode = terms.nll_reduction
    nll = nll_on_correct(logp, mask, correct, nll_mode, norm.count(nll_mode, correct_only=True))
    loss = policy_loss + terms.kl_beta * kl + terms.nll_weight * nll
    clip_fraction = token_mean(binds.to(logp.dtype), mask, norm.tokens).detach()
    return LossTerms(
        loss=loss, policy_loss=policy_loss, kl=kl, nll=nll, clip_fraction=clip_fraction
    )


# --------------------------------------------------------------------------- 4. the update, micro-batch by micro-batch


@dataclass
class LossInputs:
    """Per trajectory of the batch, on the policy's device: what the loss needs besides ``logp``."""

    advantages: torch.Tensor  # [B]
    mask: torch.Tensor  # [B, T] real response tokens
    correct: torch.Tensor  # [B] the verifier's verdict
    logp_old: torch.Tensor | None  # [B, T] rollout policy; None when it is the current one
    logp_ref: torch.Tensor | None  # [B, T] KL reference; None when kl_beta is 0


def accumulate_gradients(
    scorer: torch.nn.Module,
    replay: Replay,
    rows: Sequence[int],
    inputs: LossInputs,
    config: TrainConfig,
    compute_dtype: torch.dtype,
    world: World = World(),
    clock: Stopwatch | None = None,
) -> LossTerms:
    """Backpropagate the loss of trajectories ``rows`` micro-batch by micro-batch, this rank's
    share of them. Every micro-batch is reduced with the normalisers of all ``rows``, and each
    rank's loss is scaled by the world size (DDP and FSDP average over ranks), so the gradient and
    the returned terms are those of one pass over ``rows`` on one process. ``clock`` times the
    likelihood's forwards and the backward passes."""
    clock = clock or Stopwatch()
    device = inputs.mask.device
    index = torch.tensor(rows, device=device)
    normalizers = Normalizers.of(inputs.mask[index], inputs.correct[index])
    parts: list[LossTerms] = []
    shares = replay.shares(rows, world)
    for k, (micro, real) in enumerate(shares):
        # A rank with fewer micro-batches than another repeats one with weight 0 (``real`` is
        # false): every rank must run the same number of synchronised backward passes.
        weight = float(world.size) if real else 0.0
        with autocast(device, compute_dtype), no_gradient_sync(scorer, k < len(shares) - 1):
            with clock("likelihood"):
                logp = replay.logprobs(scorer, micro, checkpoint=config.gradient_checkpointing)
            with clock("backward"):
                at = torch.tensor(micro, device=device)
                terms = lightningrl_loss(
                    logp,
                    logp.detach() if inputs.logp_old is None else inputs.logp_old[at],
                    None if inputs.logp_ref is None else inputs.logp_ref[at],
                    inputs.advantages[at],
                    inputs.mask[at],
                    inputs.correct[at],
                    config.loss,
                    normalizers,
                )
                (terms.loss * weight).backward()
        if real:
            parts.append(_detached(terms))
    return _all_ranks(_summed(parts, device), world)


def _terms(terms: LossTerms) -> list[torch.Tensor]:
    return [getattr(terms, f.name) for f in dataclasses.fields(terms)]


def _detached(terms: LossTerms) -> LossTerms:
    return LossTerms(*(t.detach() for t in _terms(terms)))


def _summed(parts: Sequence[LossTerms], device: torch.device) -> LossTerms:
    """The whole batch's terms: micro-batch terms share its normalisers, so they add up."""
    zero = torch.zeros((), device=device)
    columns = (
        zip(*map(_terms, parts), strict=True)
        if parts
        else [[]] * len(dataclasses.fields(LossTerms))
    )
    return LossTerms(*(sum(column, zero) for column in columns))


def _all_ranks(terms: LossTerms, world: World) -> LossTerms:
    """Each rank's partial sums, added over ranks: the global batch's terms on every rank."""
    if not world.distributed:
        return terms
    stacked = torch.stack(_terms(terms)).float()
    torch.distributed.all_reduce(stacked)
    return LossTerms(*stacked.unbind())


def _empty_record(
    step: int,
    filled: FillResult[Group],
    clock: Stopwatch,
    reward_wait: float,
    optimizer: torch.optim.Optimizer,
    loss: float = 0.0,
) -> TrainStepRecord:
    """The record of a step that updated nothing: every group filtered out, or a loss that is
    not finite (which stops training)."""
    return TrainStepRecord(
        step=step,
        reward=0.0,
        reward_acc=0.0,
        reward_tpf=0.0,
        accuracy=0.0,
        tpf=0.0,
        filtered_fraction=filled.filtered_fraction,
        refill_rounds=filled.refill_rounds,
        policy_loss=0.0,
        kl=0.0,
        nll=0.0,
        loss=loss,
        clip_fraction=0.0,
        grad_norm=0.0,
        reward_wait_time=reward_wait,
        lr=optimizer.param_groups[0]["lr"],
        **clock.record_fields(),
    )
