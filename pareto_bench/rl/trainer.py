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
trajectory's ``step_map`` (``pareto_bench.dllm.likelihood``). The GRPO baseline is this same loop
with ``reward.tpf_weight = 0``.

Resuming is exact: every random choice (prompts, sampling) is a pure function of
``(seed, step, round)``, so a checkpoint needs only the weights, the optimizer and the step.
"""

from __future__ import annotations

import contextlib
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

from pareto_bench.core.files import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    EVAL_STEPS_FILE,
    OPTIMIZER_STATE,
    TRAIN_FILE,
    TRAINER_STATE,
)
from pareto_bench.core.placement import World, autocast, resolve_device, resolve_dtype
from pareto_bench.core.progress import progress_bar
from pareto_bench.core.records import TrainStepRecord, append_jsonl, read_jsonl
from pareto_bench.core.schema import dump_yaml
from pareto_bench.dllm.likelihood import (
    Scorer,
    block_views,
    forwards_per_row,
    pack,
    trajectory_views,
)
from pareto_bench.dllm.models import DiffusionLM, load_model
from pareto_bench.dllm.sampler import Generation, aggregate_tpf
from pareto_bench.evaluate import evaluate_sharded
from pareto_bench.rl.advantages import compute_advantages
from pareto_bench.rl.config import TrainConfig
from pareto_bench.rl.distributed import (
    full_state_dicts,
    load_optimizer_state,
    no_gradient_sync,
    resolve_parallel,
    sync_weights,
    wrap,
)
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
    """Train ``config.steps`` RL steps. Under torchrun every rank calls this; rank 0 prints
    progress, writes the records and the checkpoint, and calls ``on_step``."""
    out = Path(out_dir or config.out_dir or Path("runs") / config.name)
    checkpoint = out / CHECKPOINT_DIR
    if resume and not (checkpoint / TRAINER_STATE).is_file():
        raise FileNotFoundError(
            f"--resume {out}: no checkpoint to resume from ({checkpoint / TRAINER_STATE} is missing)"
        )
    run = TrainingRun.start(config, checkpoint if resume else None)
    if run.world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(dump_yaml(config))
    start_step = 0
    if resume:
        load_optimizer_state(run.scorer, run.optimizer, checkpoint / OPTIMIZER_STATE, run.world)
        start_step = int(torch.load(checkpoint / TRAINER_STATE, weights_only=True)["step"])
    kept = _records_before(out / TRAIN_FILE, start_step) if run.world.is_main else []
    result = TrainResult(checkpoint, kept)
    main = run.world.is_main
    with progress_bar(f"train {config.name}", config.steps, enabled=progress and main) as bar:
        bar.advance(start_step)
        for step in range(start_step, config.steps):
            record = train_step(run, step)
            if not math.isfinite(record.loss):
                _save(out, run, step)  # the weights before this step are good
                raise TrainingDiverged(
                    f"step {step}: the loss is {record.loss}; the last good checkpoint is {checkpoint}. "
                    "Lower optim.lr or raise optim.warmup_steps."
                )
            if main:
                append_jsonl(out / TRAIN_FILE, [record])
                result.steps.append(record)
                if on_step is not None:
                    on_step(record)
            bar.advance(
                status=f"reward {record.reward:+.2f} acc {record.accuracy:.0f}% TPF {record.tpf:.2f} "
                f"filtered {record.filtered_fraction:.0%}"
            )
            done = step + 1
            if config.save_every and done % config.save_every == 0 and done < config.steps:
                _save(out, run, done)
            if config.eval_every and done % config.eval_every == 0 and done < config.steps:
                _evaluate_during_training(run, out, done)
    _save(out, run, config.steps)
    return result


@dataclass
class TrainingRun:
    """Everything a training run holds across steps."""

    config: TrainConfig
    world: World
    compute_dtype: torch.dtype
    policy: DiffusionLM  # fp32 master weights; its model is also inside ``scorer``
    scorer: torch.nn.Module  # Scorer(policy.model), wrapped for DDP or FSDP when distributed
    decoder: DiffusionLM  # decodes rollouts and evaluations: the policy, or under FSDP a full copy
    reference: Scorer | None  # the frozen KL reference, in the compute dtype
    optimizer: torch.optim.Optimizer
    eval_task: Task
    task: Task
    problems: Sequence[Problem]
    budget: int

    @classmethod
    def start(cls, config: TrainConfig, checkpoint: Path | None) -> TrainingRun:
        world = World.from_env()
        device = resolve_device(config.device)
        world.start(device)
        compute_dtype = resolve_dtype(config.dtype, device)
        parallel = resolve_parallel(config.parallel, world, device)
        task = get_task(training_task_name(config.task))
        problems = task.load(resolve_data_dir(config.data_dir))  # before the model: fail fast
        # The trained weights stay fp32 (master weights); forwards run under autocast or FSDP's
        # mixed precision in the compute dtype.
        policy = load_model(checkpoint or config.model, device=device, dtype="float32")
        policy.model.train()
        decoder = policy
        if parallel == "fsdp":
            decoder = load_model(checkpoint or config.model, device=device, dtype=compute_dtype)
        scorer = wrap(Scorer(policy.model), parallel, world, compute_dtype)
        reference = _load_reference(config, device, compute_dtype)
        optim = config.optim
        return cls(
            config=config,
            world=world,
            compute_dtype=compute_dtype,
            policy=policy,
            scorer=scorer,
            decoder=decoder,
            reference=None if reference is None else Scorer(reference.model),
            optimizer=torch.optim.AdamW(
                scorer.parameters(),
                lr=optim.lr,
                betas=optim.betas,
                weight_decay=optim.weight_decay,
            ),
            eval_task=get_task(config.task),
            task=task,
            problems=problems,
            budget=config.rollout.max_new_tokens or task.max_new_tokens,
        )

    @property
    def device(self) -> torch.device:
        return self.policy.device

    def sync_decoder(self) -> None:
        """Bring the decoder up to the policy's weights (a no-op when it is the policy)."""
        if self.decoder is not self.policy:
            sync_weights(self.decoder.model, self.scorer)

    def decoding(self) -> contextlib.AbstractContextManager:
        """The decoder in eval mode, under autocast."""
        return _decoding(self.decoder.model, self.autocast())

    def autocast(self):
        return autocast(self.device, self.compute_dtype)


def train_step(run: TrainingRun, step: int) -> TrainStepRecord:
    started = time.perf_counter()
    config, world, policy = run.config, run.world, run.policy
    rc, fc = config.rollout, config.filter
    device = run.device
    block_size = rc.block_size or policy.block_size  # rollout and likelihood use the same blocks

    # 1. Rollout with TPF-aware filtering, refilled until B groups pass. Prompts and seeds depend
    #    on (seed, step, round, position in the round) only: each rank decodes a contiguous share
    #    of the round, and every rank sees every group.
    run.sync_decoder()
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
                rc,
                seed=_seed(config.seed, step, round_index, 1)
                + (mine[0] if mine else 0) * rc.group_size,
                max_new_tokens=run.budget,
                block_size=block_size,
            )
        reward_waits.append(decoded.reward_wait)
        return [group for share in world.gather(decoded.groups) for group in share]

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
    reward_wait = sum(reward_waits)
    if not groups:  # every group was filtered out, even after refills: nothing to learn from
        return _empty_record(
            step, filled, rollout_time, reward_wait, time.perf_counter() - started, run.optimizer
        )

    # 2. Rewards, decoupled per reward within each group, then advantages (every rank computes
    #    the same, from the same groups).
    score = torch.tensor([g.score for g in groups])
    tpf = torch.tensor([g.tpf for g in groups])
    correct_cpu = torch.tensor([g.correct for g in groups]).reshape(-1)
    rewards = combine_rewards(score, tpf, **config.reward.model_dump())
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
    t0 = time.perf_counter()
    with torch.no_grad():
        logp_ref = None
        if run.reference is not None:
            logp_ref = _frozen_logprobs(run.reference, replay, mine, device)
        logp_old = None
        if config.optim.updates_per_step > 1:
            with run.autocast():
                logp_old = replay.all_logprobs(run.scorer, mine, device)
    likelihood_time = time.perf_counter() - t0

    # 4. Policy update: clipped surrogate + KL to the reference + NLL on correct trajectories,
    #    each update over one shuffled mini-batch, accumulated over micro-batches and ranks.
    backward_time = 0.0
    lr = config.optim.lr * min(1.0, (step + 1) / max(1, config.optim.warmup_steps))
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    inputs = LossInputs(advantages, mask, correct, logp_old, logp_ref)
    for rows in updates:
        run.optimizer.zero_grad(set_to_none=True)
        terms, seconds = accumulate_gradients(
            run.scorer, replay, rows, inputs, config, run.compute_dtype, world
        )
        likelihood_time += seconds["likelihood"]
        backward_time += seconds["backward"]
        if not torch.isfinite(terms.loss):
            run.optimizer.zero_grad(set_to_none=True)
            return _empty_record(
                step,
                filled,
                rollout_time,
                reward_wait,
                time.perf_counter() - started,
                run.optimizer,
                loss=terms.loss.item(),
            )
        t0 = time.perf_counter()
        grad_norm = torch.nn.utils.clip_grad_norm_(run.scorer.parameters(), config.optim.grad_clip)
        run.optimizer.step()
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
        reward_wait_time=reward_wait,
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
    scorer: torch.nn.Module,
    replay: Replay,
    rows: Sequence[int],
    inputs: LossInputs,
    config: TrainConfig,
    compute_dtype: torch.dtype,
    world: World = World(),
) -> tuple[LossTerms, dict[str, float]]:
    """Backpropagate the loss of trajectories ``rows`` micro-batch by micro-batch, this rank's
    share of them. Every micro-batch is reduced with the normalisers of all ``rows``, and each
    rank's loss is scaled by the world size (DDP and FSDP average over ranks), so the gradient and
    the returned terms are those of one pass over ``rows`` on one process. Also returns the
    seconds spent."""
    device = inputs.mask.device
    index = torch.tensor(rows, device=device)
    normalizers = Normalizers.of(inputs.mask[index], inputs.correct[index])
    seconds = {"likelihood": 0.0, "backward": 0.0}
    parts: list[LossTerms] = []
    shares = replay.shares(rows, world)
    for k, (micro, real) in enumerate(shares):
        # A rank with fewer micro-batches than another repeats one with weight 0 (``real`` is
        # false): every rank must run the same number of synchronised backward passes.
        weight = float(world.size) if real else 0.0
        t0 = time.perf_counter()
        with autocast(device, compute_dtype), no_gradient_sync(scorer, k < len(shares) - 1):
            logp = replay.logprobs(scorer, micro, checkpoint=config.gradient_checkpointing)
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
            (terms.loss * weight).backward()
        if real:
            parts.append(_detached(terms))
        seconds["backward"] += time.perf_counter() - t0
    return _all_ranks(_summed(parts, device), world), seconds


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
        by_size = sorted(rows, key=lambda i: (len(self.packed[i].views.ids), self.lengths[i], i))
        size = self.micro_batch_size
        return [by_size[i : i + size] for i in range(0, len(by_size), size)]

    def shares(self, rows: Sequence[int], world: World) -> list[tuple[list[int], bool]]:
        """This rank's micro-batches of ``rows`` (every ``world.size``-th), each with whether it
        is real. Every rank gets as many: the short ones are padded with copies marked unreal."""
        micro = self.micro_batches(rows)
        mine = [(m, True) for m in micro[world.rank :: world.size]]
        count = -(-len(micro) // world.size)
        return mine + [(micro[0], False)] * (count - len(mine))

    def logprobs(
        self, scorer: torch.nn.Module, rows: Sequence[int], *, checkpoint: bool
    ) -> torch.Tensor:
        """``[len(rows), T]`` log-probabilities of the rows' response tokens under ``scorer``."""
        slots = scorer(
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

    def all_logprobs(
        self, scorer: torch.nn.Module, rows: Sequence[int], device: torch.device
    ) -> torch.Tensor:
        """``[B, T]`` with the log-probabilities of ``rows`` (zeros elsewhere), micro-batch by
        micro-batch, without recomputation."""
        out = torch.zeros((len(self.packed), self.width), device=device)
        for micro in self.micro_batches(sorted(set(rows))):
            logp = self.logprobs(scorer, micro, checkpoint=False)
            out[torch.tensor(micro, device=device)] = logp.to(device, out.dtype)
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


def _frozen_logprobs(
    reference: Scorer, replay: Replay, rows: Sequence[int], device: torch.device
) -> torch.Tensor:
    """The reference's log-probabilities of ``rows``, moving it to the policy's device for its
    pass when it is parked on the CPU."""
    home = next(reference.parameters()).device
    reference.to(device)
    try:
        return replay.all_logprobs(reference, rows, device)
    finally:
        reference.to(home)


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


@contextlib.contextmanager
def _decoding(model: torch.nn.Module, precision: contextlib.AbstractContextManager):
    model.eval()
    try:
        with precision:
            yield
    finally:
        model.train()


def _records_before(path: Path, step: int) -> list[TrainStepRecord]:
    """Keep the rows of steps before ``step`` (the checkpoint's), dropping any written after it,
    so that a resumed run's train.jsonl has each step once. A fresh run (step 0) starts empty."""
    kept = [r for r in read_jsonl(path, TrainStepRecord) if r.step < step] if path.is_file() else []
    path.unlink(missing_ok=True)
    append_jsonl(path, kept)
    if step == 0:
        (path.parent / EVAL_STEPS_FILE).unlink(missing_ok=True)
    return kept


def _seed(*parts: int) -> int:
    """A stable seed from integers (Python's hash of ints is stable across runs)."""
    value = 0
    for part in parts:
        value = (value * 1_000_003 + part + 1) % (2**31 - 1)
    return value


def _save(out: Path, run: TrainingRun, step: int) -> None:
    """Gather the full model and optimizer state (every rank takes part), then rank 0 writes a
    ``save_pretrained`` checkpoint to a temporary directory and swaps it in: a kill never leaves
    half of one. The optimizer state is saved whole, so a resume may use another world size."""
    model_state, optimizer_state = full_state_dicts(run.scorer, run.optimizer)
    if run.world.is_main:
        _write_checkpoint(out, run, step, model_state, optimizer_state)
    run.world.barrier()  # no rank reads the checkpoint before it is whole


def _write_checkpoint(
    out: Path, run: TrainingRun, step: int, model_state: dict, optimizer_state: dict
) -> None:
    final = out / CHECKPOINT_DIR
    tmp = out / f".{CHECKPOINT_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    run.policy.save(tmp, state_dict=model_state)
    torch.save(optimizer_state, tmp / OPTIMIZER_STATE)
    torch.save({"step": step}, tmp / TRAINER_STATE)
    old = out / f".{CHECKPOINT_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _evaluate_during_training(run: TrainingRun, out: Path, step: int) -> None:
    """Greedy evaluation at ``eval_thresholds``, the problems shared among the ranks."""
    config = run.config
    run.sync_decoder()
    with run.decoding():
        records = evaluate_sharded(
            run.decoder,
            run.eval_task,
            config.eval_thresholds,
            run.world,
            limit=config.eval_limit,
            data_dir=config.data_dir,
            progress=False,
        )
    if run.world.is_main:
        for record in records:
            record.extra["train_step"] = float(step)
        append_jsonl(out / EVAL_STEPS_FILE, records)


def _empty_record(
    step, filled, rollout_time, reward_wait, step_time, optimizer, loss: float = 0.0
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
        reward_wait_time=reward_wait,
        likelihood_time=0.0,
        backward_time=0.0,
        lr=optimizer.param_groups[0]["lr"],
    )
