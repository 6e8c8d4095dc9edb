"""The LightningRL training loop: ``config.steps`` RL steps (``step.train_step``), with the
records, checkpoints and evaluations around them.

Resuming is exact: every random choice (prompts, sampling) is a pure function of
``(seed, step, round)``, so a checkpoint needs only the weights, the optimizer and the step.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
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
from pareto_bench.core.progress import progress_bar
from pareto_bench.core.records import TrainStepRecord, append_jsonl, read_jsonl
from pareto_bench.core.schema import dump_yaml
from pareto_bench.evaluate import evaluate_sharded
from pareto_bench.rl.config import TrainConfig
from pareto_bench.rl.distributed import full_state_dicts, load_optimizer_state
from pareto_bench.rl.run import TrainingRun
from pareto_bench.rl.step import train_step


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


def _records_before(path: Path, step: int) -> list[TrainStepRecord]:
    """Keep the rows of steps before ``step`` (the checkpoint's), dropping any written after it,
    so that a resumed run's train.jsonl has each step once. A fresh run (step 0) starts empty."""
    kept = [r for r in read_jsonl(path, TrainStepRecord) if r.step < step] if path.is_file() else []
    path.unlink(missing_ok=True)
    append_jsonl(path, kept)
    if step == 0:
        (path.parent / EVAL_STEPS_FILE).unlink(missing_ok=True)
    return kept


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
