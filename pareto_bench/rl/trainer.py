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

import copy
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
    DenoisingBatch,
    block_views,
    build_batch,
    per_token,
    target_logprobs,
    trajectory_views,
)
from pareto_bench.models import DiffusionLM, load_model
from pareto_bench.progress import progress_bar
from pareto_bench.records import TrainStepRecord, append_jsonl, read_jsonl
from pareto_bench.rl.advantages import compute_advantages
from pareto_bench.rl.config import TrainConfig
from pareto_bench.rl.filtering import drop_reason, fill_batch
from pareto_bench.rl.losses import lightningrl_loss
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

    policy = load_model(checkpoint if resume else config.model)
    policy.model.train()
    # The KL reference is the initial policy: on resume it is read again from config.model.
    reference = None
    if config.loss.kl_beta > 0:
        reference = _frozen_copy(load_model(config.model) if resume else policy)
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
                config, step, policy, reference, optimizer, train_task, train_problems, budget
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
) -> TrainStepRecord:
    started = time.perf_counter()
    rc, fc = config.rollout, config.filter

    # 1. Rollout with TPF-aware filtering, refilled until B groups pass.
    rounds = itertools.count()

    def sample_round(missing: int) -> list[Group]:
        round_index = next(rounds)
        rng = random.Random(_seed(config.seed, step, round_index))
        chosen = [problems[rng.randrange(len(problems))] for _ in range(missing)]
        policy.model.eval()
        groups = rollout(
            policy,
            task,
            chosen,
            rc,
            seed=_seed(config.seed, step, round_index, 1),
            max_new_tokens=budget,
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
    correct = torch.tensor([g.correct for g in groups]).reshape(-1)
    rewards = combine_rewards(score, tpf, **config.reward.model_dump())
    advantages = compute_advantages(rewards.total, config.advantage.mode).reshape(-1)

    # 3. Block-diffusion likelihood of every kept trajectory (old and reference policies first).
    trajectories = [(g.prompt_ids, gen) for g in groups for gen in g.generations]
    batch, starts, lengths = _likelihood_batch(policy, trajectories, config.likelihood.mode)
    mask = _token_mask(lengths)
    t0 = time.perf_counter()
    with torch.no_grad():
        logp_ref = _logprobs(reference, batch, starts, lengths) if reference is not None else None
        logp_old = (
            _logprobs(policy, batch, starts, lengths) if config.optim.updates_per_step > 1 else None
        )
    likelihood_time = time.perf_counter() - t0

    # 4. Policy update: clipped surrogate + KL to the reference + NLL on correct trajectories.
    backward_time = 0.0
    lr = config.optim.lr * min(1.0, (step + 1) / max(1, config.optim.warmup_steps))
    for group in optimizer.param_groups:
        group["lr"] = lr
    order = torch.randperm(
        len(trajectories), generator=torch.Generator().manual_seed(_seed(config.seed, step, 0, 2))
    )
    for chunk in order.chunk(config.optim.updates_per_step):
        idx = chunk.tolist()
        t0 = time.perf_counter()
        sub = _select(batch, idx)
        logp = _logprobs(policy, sub, [starts[i] for i in idx], [lengths[i] for i in idx])
        likelihood_time += time.perf_counter() - t0
        t0 = time.perf_counter()
        terms = lightningrl_loss(
            logp,
            logp.detach() if logp_old is None else logp_old[chunk],
            None if logp_ref is None else logp_ref[chunk],
            advantages[chunk],
            mask[chunk],
            correct[chunk],
            **config.loss.model_dump(),
        )
        if not torch.isfinite(terms.loss):
            return _empty_record(
                step,
                filled,
                rollout_time,
                time.perf_counter() - started,
                optimizer,
                loss=terms.loss.item(),
            )
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
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
        accuracy=100.0 * float(correct.float().mean()),
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
    )


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


def _likelihood_batch(
    policy: DiffusionLM, trajectories: Sequence[tuple[list[int], Generation]], mode: str
) -> tuple[DenoisingBatch, list[int], list[int]]:
    b = policy.block_size
    sequences, views, starts, lengths = [], [], [], []
    for prompt_ids, gen in trajectories:
        p = len(prompt_ids)
        sequences.append(list(prompt_ids) + list(gen.tokens))
        if mode == "trajectory":
            views.append(trajectory_views(p, gen.step_map, b))
        else:
            views.append(block_views(p, len(gen.tokens), b))
        starts.append(p)
        lengths.append(len(gen.tokens))
    pad = (
        policy.tokenizer.pad_token_id
        if policy.tokenizer.pad_token_id is not None
        else policy.eos_id
    )
    batch = build_batch(
        sequences, views, block_size=b, mask_id=policy.mask_id, pad_id=pad, dtype=policy.model.dtype
    )
    return batch, starts, lengths


def _select(batch: DenoisingBatch, idx: list[int]) -> DenoisingBatch:
    """Rows ``idx`` of a DenoisingBatch."""
    index = torch.tensor(idx)
    return DenoisingBatch(
        *(
            t.index_select(0, index)
            for t in (
                batch.input_ids,
                batch.position_ids,
                batch.attention_mask,
                batch.targets,
                batch.target_pos,
            )
        )
    )


def _logprobs(
    lm: DiffusionLM, batch, starts: Sequence[int], lengths: Sequence[int]
) -> torch.Tensor:
    slot_logp = target_logprobs(lm.model, batch, lm.mask_id)
    return per_token(batch, slot_logp, starts, lengths)


def _token_mask(lengths: Sequence[int]) -> torch.Tensor:
    width = max(lengths, default=0)
    return torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]


def _frozen_copy(lm: DiffusionLM) -> DiffusionLM:
    model = copy.deepcopy(lm.model).eval()
    model.requires_grad_(False)
    return DiffusionLM(
        model, lm.tokenizer, lm.mask_id, lm.eos_id, lm.block_size, name=f"{lm.name}-reference"
    )


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
