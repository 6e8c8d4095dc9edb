"""Block-diffusion token log-likelihoods, for pretraining and for the RL policy update.

A sequence is laid out once in its clean form, followed by *views*: noisy copies of one block
in which some positions hold the mask token. A view attends to the clean blocks before its own
block and to itself, exactly as the sampler's current block does; clean positions never attend
to views. One forward then scores every view of every sequence.

- Pretraining: one view per block, each response position masked with a random rate.
- RL, trajectory-aware (default): for each denoising step ``s`` of a block, the positions
  committed at steps ``>= s`` are masked and those committed at ``s`` are the targets, so every
  token is scored in the context in which it was decoded. Cost: one view per forward of the
  rollout, i.e. about ``len / TPF`` views of ``b`` slots per sequence.
- RL, block surrogate: one fully masked view per block, every generated position a target.
  Cost: one view per block; cheaper, but it scores tokens in a context they were not decoded in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from pareto_bench.models.attention import block_causal_mask

IGNORE = -100


@dataclass(frozen=True)
class View:
    """A noisy copy of block ``block`` with ``masked`` positions; ``targets`` are scored."""

    block: int
    masked: frozenset[int]
    targets: frozenset[int]


@dataclass
class DenoisingBatch:
    input_ids: torch.Tensor  # [B, S]
    position_ids: torch.Tensor  # [B, S]
    attention_mask: torch.Tensor  # [B, 1, S, S]
    targets: torch.Tensor  # [B, S], IGNORE where nothing is scored
    target_pos: torch.Tensor  # [B, S], the sequence position a target slot scores (-1 if none)


def build_batch(
    sequences: Sequence[Sequence[int]],
    views: Sequence[Sequence[View]],
    *,
    block_size: int,
    mask_id: int,
    pad_id: int,
    dtype: torch.dtype = torch.float32,
) -> DenoisingBatch:
    b = block_size
    batch = len(sequences)
    clean_len = max(len(s) for s in sequences)
    num_views = max((len(v) for v in views), default=0)
    width = clean_len + num_views * b
    ids = torch.full((batch, width), pad_id, dtype=torch.long)
    pos = torch.zeros((batch, width), dtype=torch.long)
    valid = torch.zeros((batch, width), dtype=torch.bool)
    view_id = torch.full((batch, width), -1, dtype=torch.long)
    targets = torch.full((batch, width), IGNORE, dtype=torch.long)
    target_pos = torch.full((batch, width), -1, dtype=torch.long)
    for i, (seq, seq_views) in enumerate(zip(sequences, views, strict=True)):
        n = len(seq)
        clean = torch.tensor(seq, dtype=torch.long)
        ids[i, :n] = clean
        pos[i, :clean_len] = torch.arange(clean_len)
        valid[i, :n] = True
        for v, view in enumerate(seq_views):
            start = clean_len + v * b
            block_pos = torch.arange(view.block * b, view.block * b + b)
            pos[i, start : start + b] = block_pos
            view_id[i, start : start + b] = v
            for j, p in enumerate(block_pos.tolist()):
                # Masked slots past the sequence's end are the undecided tail of its last block.
                if p in view.masked:
                    ids[i, start + j] = mask_id
                elif p < n:
                    ids[i, start + j] = seq[p]
                else:
                    continue
                valid[i, start + j] = True
                if p in view.targets:
                    targets[i, start + j] = seq[p]
                    target_pos[i, start + j] = p
    mask = block_causal_mask(pos, pos, valid, b, dtype, query_view=view_id, key_view=view_id)
    return DenoisingBatch(ids, pos, mask, targets, target_pos)


def target_logprobs(model: PreTrainedModel, batch: DenoisingBatch, mask_id: int) -> torch.Tensor:
    """``[B, S]`` log-probabilities of the target tokens (0 where nothing is scored).

    The mask token is excluded from the distribution, as it is never a sampling candidate.
    """
    device = next(model.parameters()).device
    logits = model(
        input_ids=batch.input_ids.to(device),
        position_ids=batch.position_ids.to(device),
        attention_mask=batch.attention_mask.to(device=device, dtype=model.dtype),
    ).logits
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # never below fp32
    logits[..., mask_id] = float("-inf")
    targets = batch.targets.to(device)
    scored = targets != IGNORE
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    return torch.where(scored, logp, torch.zeros_like(logp))


def per_token(
    batch: DenoisingBatch, slot_values: torch.Tensor, starts: Sequence[int], lengths: Sequence[int]
) -> torch.Tensor:
    """Gather slot values into ``[B, T]`` aligned with each sequence's response tokens.

    Response token ``j`` of sequence ``i`` sits at position ``starts[i] + j``; every response
    token must be a target exactly once.
    """
    batch_size = slot_values.shape[0]
    width = max(lengths, default=0)
    out = slot_values.new_zeros((batch_size, width))
    target_pos = batch.target_pos.to(slot_values.device)
    for i in range(batch_size):
        slots = (target_pos[i] >= starts[i]).nonzero()[:, 0]
        index = target_pos[i, slots] - starts[i]
        keep = index < lengths[i]
        out[i, index[keep]] = slot_values[i, slots[keep]]
    return out


def trajectory_views(prompt_len: int, step_map: Sequence[int], block_size: int) -> list[View]:
    """Views that replay a decoded trajectory step by step (see the module docstring)."""
    b = block_size
    views: list[View] = []
    by_block: dict[int, dict[int, int]] = {}
    for j, step in enumerate(step_map):
        p = prompt_len + j
        by_block.setdefault(p // b, {})[p] = step
    for block in sorted(by_block):
        steps = by_block[block]
        # Positions of this block that the returned tokens do not cover (after EOS) stay masked.
        tail = {p for p in range(block * b, block * b + b) if p >= prompt_len and p not in steps}
        for s in sorted(set(steps.values())):
            masked = frozenset({p for p, t in steps.items() if t >= s} | tail)
            views.append(View(block, masked, frozenset(p for p, t in steps.items() if t == s)))
    return views


def block_views(prompt_len: int, num_tokens: int, block_size: int) -> list[View]:
    """One fully masked view per block: the cheaper surrogate likelihood."""
    b = block_size
    positions = range(prompt_len, prompt_len + num_tokens)
    views = []
    for block in sorted({p // b for p in positions}):
        gen = frozenset(p for p in range(block * b, block * b + b) if p >= prompt_len)
        views.append(View(block, gen, frozenset(p for p in gen if p < prompt_len + num_tokens)))
    return views
