"""The LightningRL training loop, top to bottom.

LightningRL is GRPO for block-wise dLLMs with three changes (LIGHTNINGRL.md):

1. **Decoupled reward normalisation.** The accuracy and speed (TPF) rewards are normalised
   separately within each prompt group before they are summed (``rewards.combine_rewards``).
2. **Token-level NLL on verifier-correct trajectories**, anchoring the policy to correct
   answers while the speed reward pushes it towards parallel trajectories (``losses``).
3. **TPF-aware filtering with dynamic sampling.** Groups that are all wrong or show no TPF
   contrast are dropped, and new prompts are rolled out until the batch is full (``filtering``).

Other departures from textbook GRPO: trajectories come from the block sampler with a
confidence threshold, and the token log-likelihood is the block-diffusion one, replaying each
trajectory's ``step_map`` (``pareto_bench.likelihood``). The GRPO baseline is this same loop
with ``reward.tpf_weight = 0``.

Resuming is exact: every random choice (prompts, sampling) is a pure function of
``(seed, step, round)``, so a checkpoint needs only the weights, the optimizer and the step.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pareto_bench.config import dump_yaml
from pareto_bench.decoding import Generation, aggregate_tpf
from pareto_bench.evaluate import evaluate
from pareto_bench.likelihood import (
    block_views,
    forwards_per_row,
    pack,
    sequence_logprobs,
    trajectory_views,
)
from pareto_bench.models import DiffusionLM, load_model
from pareto_bench.placement import autocast, resolve_device, resolve_dtype
from pareto_bench.progress import progress_bar
from pareto_bench.records import TrainStepRecord, append_jsonl, read_jsonl
from pareto_bench.rl.advantages import compute_advantages
from pareto_bench.rl.config import TrainConfig
from pareto_bench.rl.filtering import drop_reason, fill_batch
from pareto_bench.rl.losses import LossTerms, Normalizers, lightningrl_loss
from pareto_bench.rl.rewards import combine_rewards
from pareto_bench.rl.rollout import Group, rollout
from pareto_bench.tasks.base import (
    Problem,
    Task,
    get_task,
    resolve_data_dir,
    training_task_name,
)

CHECKPOINT = "checkpoint"
TRAINER_STATE = "trainer_state.pt"
DEFAULT_MAX_NEW_TOKENS = 512


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    checkpoint_dir: Path
    steps: list[TrainStepRecord] = field(default_factory=list)


def train(
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    on_step: Callable[[TrainStepRecord], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    out = Path(out_dir or config.out_dir or Path("runs") / config.name)
    checkpoint = out / CHECKPOINT
    if resume and not (checkpoint / TRAINER_STATE).is_file():
        raise FileNotFoundError(
            f"--resume {out}: no checkpoint to resume from ({checkpoint / TRAINER_STATE} is missing)"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_yaml(config))

    device = resolve_device(config.device)
    compute_dtype = resolve_dtype(config.dtype, device)
    # The trained weights stay fp32 (master weights); forwards run under autocast(compute_dtype).
    policy = load_model(checkpoint if resume else config.model, device=device, dtype="float32")
    policy.model.train()
    reference = _load_reference(config, device, compute_dtype)
    eval_task = get_task(config.task)
    train_task = get_task(training_task_name(config.task))
    train_problems = train_task.load(resolve_data_dir(config.data_dir))
    budget = config.rollout.max_new_tokens or getattr(
        train_task, "max_new_tokens", DEFAULT_MAX_NEW_TOKENS
    )
    optimizer = torch.optim.AdamW(
        policy.model.parameters(),
        lr=config.optim.lr,
        betas=config.optim.betas,
        weight_decay=config.optim.weight_decay,
    )
    start_step = 0
    if resume:
        state = torch.load(checkpoint / TRAINER_STATE, weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        start_step = int(state["step"])
    result = TrainResult(checkpoint, _records_before(out / "train.jsonl", start_step))
    with progress_bar(f"train {config.name}", config.steps, enabled=progress) as bar:
        bar.advance(start_step)
        for step in range(start_step, config.steps):
            record = _train_step(
                config,
                step,
                policy,
                reference,
                optimizer,
                train_task,
                train_problems,
                budget,
                compute_dtype,
            )
            if not math.isfinite(record.loss):
                _save(out, policy, optimizer, step)  # the weights before this step are good
                raise TrainingDiverged(
                    f"step {step}: the loss is {record.loss}; the last good checkpoint is {checkpoint}. "
                    "Lower optim.lr or raise optim.warmup_steps."
                )
            append_jsonl(out / "train.jsonl", [record])
            result.steps.append(record)
            if on_step is not None:
                on_step(record)
            bar.advance(
                status=f"reward {record.reward:+.2f} acc {record.accuracy:.0f}% TPF {record.tpf:.2f} "
                f"filtered {record.filtered_fraction:.0%}"
            )
            done = step + 1
            if config.save_every and done % config.save_every == 0 and done < config.steps:
                _save(out, policy, optimizer, done)
            if config.eval_every and done % config.eval_every == 0 and done < config.steps:
                with autocast(device, compute_dtype):
                    _evaluate_during_training(config, policy, eval_task, out, done)
    _save(out, policy, optimizer, config.steps)
    return result


def _train_step(
    config: TrainConfig,
    step: int,
    policy: DiffusionLM,
    reference: DiffusionLM | None,
    optimizer: torch.optim.Optimizer,
    task: Task,
    problems: Sequence[Problem],
    budget: int,
    compute_dtype: torch.dtype,
) -> TrainStepRecord:
    started = time.perf_counter()
    rc, fc = config.rollout, config.filter
    device = policy.device
    block_size = rc.block_size or policy.block_size  # rollout and likelihood use the same blocks

    # 1. Rollout with TPF-aware filtering, refilled until B groups pass.
    rounds = itertools.count()

    def sample_round(missing: int) -> list[Group]:
        round_index = next(rounds)
        rng = random.Random(_seed(config.seed, step, round_index))
        chosen = [problems[rng.randrange(len(problems))] for _ in range(missing)]
        policy.model.eval()
        with autocast(device, compute_dtype):
            groups = rollout(
                policy,
                task,
                chosen,
                rc,
                seed=_seed(config.seed, step, round_index, 1),
                max_new_tokens=budget,
                block_size=block_size,
            )
        policy.model.train()
        return groups

    def reason(group: Group) -> str | None:
        if not fc.enabled:
            return None
        return drop_reason(
            group.correct,
            group.tpf,
            drop_all_wrong=fc.drop_all_wrong,
            min_tpf_range=fc.min_tpf_range,
        )

    filled = fill_batch(
        sample_round, rc.prompts_per_step, max_refill_rounds=fc.max_refill_rounds, reason=reason
    )
    groups = filled.groups
    rollout_time = time.perf_counter() - started
    if not groups:  # every group was filtered out, even after refills: nothing to learn from
        return _empty_record(step, filled, rollout_time, time.perf_counter() - started, optimizer)

    # 2. Rewards, decoupled per reward within each group, then advantages.
    score = torch.tensor([g.score for g in groups])
    tpf = torch.tensor([g.tpf for g in groups])
    correct_cpu = torch.tensor([g.correct for g in groups]).reshape(-1)
    rewards = combine_rewards(score, tpf, **config.reward.model_dump())
    advantages = compute_advantages(rewards.total, config.advantage.mode).reshape(-1).to(device)
    correct = correct_cpu.to(device)

    # 3. Block-diffusion likelihoods of every kept trajectory under the reference and, when the
    #    policy moves within the step, under the rollout policy; micro-batch by micro-batch.
    trajectories = [(g.prompt_ids, gen) for g in groups for gen in g.generations]
    replay = Replay(trajectories, config, policy, block_size)
    mask = replay.token_mask.to(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        logp_ref = _frozen_logprobs(reference, replay, config) if reference is not None else None
        logp_old = None
        if config.optim.updates_per_step > 1:
            with autocast(device, compute_dtype):
                logp_old = replay.all_logprobs(policy, checkpoint=False)
    likelihood_time = time.perf_counter() - t0

    # 4. Policy update: clipped surrogate + KL to the reference + NLL on correct trajectories,
    #    each update over one shuffled mini-batch, accumulated over micro-batches.
    backward_time = 0.0
    lr = config.optim.lr * min(1.0, (step + 1) / max(1, config.optim.warmup_steps))
    for group in optimizer.param_groups:
        group["lr"] = lr
    order = torch.randperm(
        len(trajectories), generator=torch.Generator().manual_seed(_seed(config.seed, step, 0, 2))
    )
    inputs = LossInputs(advantages, mask, correct, logp_old, logp_ref)
    for chunk in order.chunk(config.optim.updates_per_step):
        optimizer.zero_grad(set_to_none=True)
        terms, seconds = accumulate_gradients(
            policy, replay, chunk.tolist(), inputs, config, compute_dtype
        )
        likelihood_time += seconds["likelihood"]
        backward_time += seconds["backward"]
        if not torch.isfinite(terms.loss):
            optimizer.zero_grad(set_to_none=True)
            return _empty_record(
                step,
                filled,
                rollout_time,
                time.perf_counter() - started,
                optimizer,
                loss=terms.loss.item(),
            )
        t0 = time.perf_counter()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            policy.model.parameters(), config.optim.grad_clip
        )
        optimizer.step()
        backward_time += time.perf_counter() - t0

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
        step_time=time.perf_counter() - started,
        rollout_time=rollout_time,
        likelihood_time=likelihood_time,
        backward_time=backward_time,
        lr=lr,
        likelihood_forwards=replay.mean_forwards(),
    )


@dataclass
class LossInputs:
    """Per trajectory of the batch, on the policy's device: what the loss needs besides ``logp``."""

    advantages: torch.Tensor  # [B]
    mask: torch.Tensor  # [B, T] real response tokens
    correct: torch.Tensor  # [B] the verifier's verdict
    logp_old: torch.Tensor | None  # [B, T] rollout policy; None when it is the current one
    logp_ref: torch.Tensor | None  # [B, T] KL reference; None when kl_beta is 0


def accumulate_gradients(
    policy: DiffusionLM,
    replay: Replay,
    rows: Sequence[int],
    inputs: LossInputs,
    config: TrainConfig,
    compute_dtype: torch.dtype,
) -> tuple[LossTerms, dict[str, float]]:
    """Backpropagate the loss of trajectories ``rows`` micro-batch by micro-batch. Every
    micro-batch is reduced with the normalisers of all ``rows``, so the accumulated gradient and
    the returned terms are those of one pass over ``rows``. Also returns the seconds spent."""
    device = policy.device
    index = torch.tensor(rows, device=device)
    normalizers = Normalizers.of(inputs.mask[index], inputs.correct[index])
    seconds = {"likelihood": 0.0, "backward": 0.0}
    parts: list[LossTerms] = []
    for micro in replay.micro_batches(rows):
        t0 = time.perf_counter()
        with autocast(device, compute_dtype):
            logp = replay.logprobs(policy, micro, checkpoint=config.gradient_checkpointing)
        seconds["likelihood"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        at = torch.tensor(micro, device=device)
        terms = lightningrl_loss(
            logp,
            logp.detach() if inputs.logp_old is None else inputs.logp_old[at],
            None if inputs.logp_ref is None else inputs.logp_ref[at],
            inputs.advantages[at],
            inputs.mask[at],
            inputs.correct[at],
            **_loss_options(config),
            normalizers=normalizers,
        )
        terms.loss.backward()
        parts.append(_detached(terms))
        seconds["backward"] += time.perf_counter() - t0
    return _summed(parts), seconds


class Replay:
    """The kept trajectories laid out for the likelihood: each as its sequence and its views,
    scored in micro-batches of ``optim.micro_batch_size``, each row's response tokens aligned
    to ``[B, T]`` (``T`` the longest response)."""

    def __init__(
        self,
        trajectories: Sequence[tuple[list[int], Generation]],
        config: TrainConfig,
        policy: DiffusionLM,
        block_size: int,
    ) -> None:
        self.block_size = block_size
        self.mask_id = policy.mask_id
        self.max_tokens = config.likelihood.max_tokens_per_forward
        self.attention = config.likelihood.attention
        if self.attention == "auto":
            self.attention = "flex" if policy.device.type == "cuda" else "sdpa"
        self.micro_batch_size = config.optim.micro_batch_size
        self.packed, self.starts, self.lengths = [], [], []
        for prompt_ids, gen in trajectories:
            p = len(prompt_ids)
            if config.likelihood.mode == "trajectory":
                views = trajectory_views(p, gen.step_map, block_size)
            else:
                views = block_views(p, len(gen.tokens), block_size)
            sequence = list(prompt_ids) + list(gen.tokens)
            self.packed.append(pack(sequence, views, block_size=block_size, mask_id=self.mask_id))
            self.starts.append(p)
            self.lengths.append(len(gen.tokens))
        self.width = max(self.lengths, default=0)
        self.token_mask = torch.arange(self.width)[None, :] < torch.tensor(self.lengths)[:, None]

    def micro_batches(self, rows: Sequence[int]) -> list[list[int]]:
        """``rows`` in micro-batches of similar packed length, so that little is padding."""
        by_size = sorted(rows, key=lambda i: (len(self.packed[i].views.ids), self.lengths[i]))
        size = self.micro_batch_size
        return [by_size[i : i + size] for i in range(0, len(by_size), size)]

    def logprobs(self, lm: DiffusionLM, rows: Sequence[int], *, checkpoint: bool) -> torch.Tensor:
        """``[len(rows), T]`` log-probabilities of the rows' response tokens under ``lm``."""
        slots = sequence_logprobs(
            lm.model,
            [self.packed[i] for i in rows],
            block_size=self.block_size,
            mask_id=self.mask_id,
            max_tokens_per_forward=self.max_tokens,
            checkpoint=checkpoint,
            attention=self.attention,
        )
        out = slots.new_zeros((len(rows), self.width))
        for r, i in enumerate(rows):
            out[r, : self.lengths[i]] = slots[r, self.starts[i] : self.starts[i] + self.lengths[i]]
        return out

    def mean_forwards(self) -> float:
        """Forwards per trajectory of one likelihood pass, each trajectory on its own."""
        counts = [
            forwards_per_row(
                row, block_size=self.block_size, max_tokens_per_forward=self.max_tokens
            )
            for row in self.packed
        ]
        return sum(counts) / max(1, len(counts))

    def all_logprobs(self, lm: DiffusionLM, *, checkpoint: bool) -> torch.Tensor:
        """``[B, T]`` over every trajectory, computed micro-batch by micro-batch."""
        out = torch.zeros((len(self.packed), self.width), device=lm.device)
        for micro in self.micro_batches(range(len(self.packed))):
            out[torch.tensor(micro, device=lm.device)] = self.logprobs(
                lm, micro, checkpoint=checkpoint
            ).to(out.dtype)
        return out


def _load_reference(
    config: TrainConfig, device: torch.device, dtype: torch.dtype
) -> DiffusionLM | None:
    """The frozen KL reference (the initial policy), only when the KL term is on: in the compute
    dtype, on the policy's device or parked on the CPU (``loss.reference_device``)."""
    if config.loss.kl_beta <= 0:
        return None
    home = torch.device("cpu") if config.loss.reference_device == "cpu" else device
    reference = load_model(config.model, device=home, dtype=dtype)
    reference.model.eval().requires_grad_(False)
    reference.name = f"{reference.name}-reference"
    return reference


def _frozen_logprobs(reference: DiffusionLM, replay: Replay, config: TrainConfig) -> torch.Tensor:
    """The reference's log-probabilities, moving it to the policy's device for its pass when it is
    parked on the CPU."""
    device = resolve_device(config.device)
    parked = reference.device != device
    if parked:
        reference.model.to(device)
    try:
        return replay.all_logprobs(reference, checkpoint=False)
    finally:
        if parked:
            reference.model.to("cpu")


def _loss_options(config: TrainConfig) -> dict[str, object]:
    loss = config.loss
    return {
        "eps": loss.eps,
        "eps_high": loss.eps_high,
        "kl_beta": loss.kl_beta,
        "kl_estimator": loss.kl_estimator,
        "nll_weight": loss.nll_weight,
        "policy_reduction": loss.policy_reduction,
        "kl_reduction": loss.kl_reduction,
        "nll_reduction": loss.nll_reduction,
    }


def _terms(terms: LossTerms) -> list[torch.Tensor]:
    return [getattr(terms, f.name) for f in dataclasses.fields(terms)]


def _detached(terms: LossTerms) -> LossTerms:
    return LossTerms(*(t.detach() for t in _terms(terms)))


def _summed(parts: Sequence[LossTerms]) -> LossTerms:
    """The whole batch's terms: micro-batch terms share its normalisers, so they add up."""
    return LossTerms(*(sum(column) for column in zip(*map(_terms, parts), strict=True)))


def _records_before(path: Path, step: int) -> list[TrainStepRecord]:
    """Keep the rows of steps before ``step`` (the checkpoint's), dropping any written after it,
    so that a resumed run's train.jsonl has each step once. A fresh run (step 0) starts empty."""
    kept = [r for r in read_jsonl(path, TrainStepRecord) if r.step < step] if path.is_file() else []
    path.unlink(missing_ok=True)
    append_jsonl(path, kept)
    if step == 0:
        (path.parent / "eval_steps.jsonl").unlink(missing_ok=True)
    return kept


def _seed(*parts: int) -> int:
    """A stable seed from integers (Python's hash of ints is stable across runs)."""
    value = 0
    for part in parts:
        value = (value * 1_000_003 + part + 1) % (2**31 - 1)
    return value


def _save(out: Path, policy: DiffusionLM, optimizer: torch.optim.Optimizer, step: int) -> None:
    """Write the checkpoint to a temporary directory, then swap it in: a kill never leaves half of one."""
    final = out / CHECKPOINT
    tmp = out / f".{CHECKPOINT}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save(tmp)
    torch.save({"optimizer": optimizer.state_dict(), "step": step}, tmp / TRAINER_STATE)
    old = out / f".{CHECKPOINT}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _evaluate_during_training(
    config: TrainConfig, policy: DiffusionLM, task: Task, out: Path, step: int
) -> None:
    policy.model.eval()
    records = evaluate(
        policy,
        task,
        config.eval_thresholds,
        limit=config.eval_limit,
        data_dir=config.data_dir,
        progress=False,
    )
    for record in records:
        record.extra["train_step"] = float(step)
    append_jsonl(out / "eval_steps.jsonl", records)
    policy.model.train()


def _empty_record(
    step, filled, rollout_time, step_time, optimizer, loss: float = 0.0
) -> TrainStepRecord:
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
        step_time=step_time,
        rollout_time=rollout_time,
        likelihood_time=0.0,
        backward_time=0.0,
        lr=optimizer.param_groups[0]["lr"],
    )
