"""``pareto-bench pretrain-tiny``: train the tiny model from scratch on the synthetic task.

The objective is block-diffusion masked denoising: every block that holds response tokens
gets a noisy view in which each response position is masked with a rate drawn uniformly per
view; the loss is the cross-entropy on masked positions, given clean earlier blocks. The
response is followed by EOS up to the end of its block, so the model learns to close a block.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch
from pydantic import Field

from pareto_bench.core.schema import StrictModel
from pareto_bench.dllm.checkpoint import load_checkpoint
from pareto_bench.dllm.likelihood import View, pack, sequence_logprobs
from pareto_bench.dllm.models import DiffusionLM
from pareto_bench.dllm.tiny import build_tiny
from pareto_bench.tasks.synthetic import training_stream


class PretrainConfig(StrictModel):
    steps: int = Field(1200, ge=1, description="Optimizer steps (1200 built the shipped model).")
    batch_size: int = Field(128, ge=1, description="Sequences per step.")
    lr: float = Field(3e-3, gt=0, description="Peak AdamW learning rate.")
    warmup_steps: int = Field(100, ge=0, description="Linear warm-up steps.")
    min_lr_ratio: float = Field(
        0.05, ge=0, le=1, description="Cosine decay floor, as a fraction of lr."
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    min_mask_rate: float = Field(0.05, gt=0, le=1, description="Lowest per-view masking rate.")
    hidden_size: int = Field(128, ge=16, description="Model width.")
    layers: int = Field(4, ge=1, description="Transformer layers.")
    seed: int = Field(0, description="Seed for initialisation and data.")
    time_limit_minutes: float | None = Field(
        None, gt=0, description="Stop early after this many minutes."
    )
    checkpoint_every: int = Field(
        0, ge=0, description="Also save <out>/step-N every N steps; 0 saves only at the end."
    )
    init_from: Path | None = Field(
        None, description="Continue from this checkpoint instead of a fresh initialisation."
    )


def training_example(
    lm: DiffusionLM, prompt: str, response: str, rng: random.Random, min_rate: float
) -> tuple[list[int], list[View]]:
    b = lm.block_size
    prompt_ids = lm.encode_prompt(prompt)
    seq = prompt_ids + lm.tokenizer.encode(response, add_special_tokens=False) + [lm.eos_ids[0]]
    seq += [lm.eos_ids[0]] * (-len(seq) % b)  # close the final block with EOS
    start = len(prompt_ids)
    views = []
    for block in range(start // b, len(seq) // b):
        positions = [p for p in range(block * b, block * b + b) if p >= start]
        rate = rng.uniform(min_rate, 1.0)
        masked = [p for p in positions if rng.random() < rate] or [rng.choice(positions)]
        views.append(View(block, frozenset(masked), frozenset(masked)))
    return seq, views


def pretrain_tiny(
    config: PretrainConfig,
    out_dir: str | Path,
    *,
    on_step: Callable[[int, float], None] | None = None,
) -> DiffusionLM:
    """Train from scratch and save a checkpoint (``save_pretrained``) to ``out_dir``."""
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    if config.init_from is not None:
        lm = load_checkpoint(config.init_from)
    else:
        lm = build_tiny(config.seed, hidden_size=config.hidden_size, layers=config.layers)
    model = lm.model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )

    def lr_at(step: int) -> float:
        if step < config.warmup_steps:
            return config.lr * (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        floor = config.min_lr_ratio
        return config.lr * (
            floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        )

    stream = training_stream(config.seed)
    started = time.monotonic()
    for step in range(config.steps):
        examples = [
            training_example(lm, *next(stream), rng, config.min_mask_rate)
            for _ in range(config.batch_size)
        ]
        packed = [pack(s, v, block_size=lm.block_size, mask_id=lm.mask_id) for s, v in examples]
        logp = sequence_logprobs(model, packed, block_size=lm.block_size, mask_id=lm.mask_id)
        loss = -logp.sum() / sum(len(v.targets) for _, views in examples for v in views)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if on_step is not None:
            on_step(step, loss.item())
        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0:
            lm.save(Path(out_dir) / f"step-{step + 1}")
        if (
            config.time_limit_minutes
            and time.monotonic() - started > 60 * config.time_limit_minutes
        ):
            break
    model.eval()
    lm.name = "tiny"
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    lm.save(out_dir)
    return lm
