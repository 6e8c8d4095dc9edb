"""Block-diffusion token log-likelihoods, for pretraining and for the RL policy update.

A sequence is laid out once in its clean form, followed by *views*: noisy copies of one block
in which some positions hold the mask token. A view attends to the clean blocks before its own
block and to itself, exactly as the sampler's current block does; clean positions never attend
to views.

- Pretraining: one view per block, each response position masked with a random rate.
- RL, trajectory-aware (default): for each denoising step ``s`` of a block, the positions
  committed at steps ``>= s`` are masked and those committed at ``s`` are the targets, so every
  token is scored in the context in which it was decoded. A trajectory of NFE forwards costs
  ``len + NFE * b`` tokens.
- RL, block surrogate: one fully masked view per block, every generated position a target.
  Cost: ``len + len`` tokens; cheaper, but it scores tokens in a context they were not decoded in.

Memory is linear in sequence length: the clean sequences run first (in forwards of at most
``max_tokens`` slots per row) and leave their keys and values in a cache; the views then run
in forwards of at most ``max_tokens`` slots, each reading that cache. A view reads no other
view, so on SDPA a forward of views attends through a compact mask (the cached keys and its own
view's ``b`` slots, not every slot of the forward) while its scores are small. Rows that share their
first blocks (a group's prompt) run those once and each gets a copy of their cache. A mask
covers one forward's queries against the cache plus its own slots, never the whole packed row.
Log-probabilities are computed at target slots only, from the backbone's hidden states,
``LOGIT_ROWS_BUDGET`` logits at a time, in fp32; no ``[B, S, V]`` tensor exists. The last
layer's MLP runs at those slots only (a clean forward needs none of it), which spares most of
a layer's work.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn.attention.flex_attention import BlockMask
from torch.utils.checkpoint import checkpoint as recompute_in_backward
from transformers import DynamicCache, PreTrainedModel

from pareto_bench.dllm.attention import (
    block_causal_allowed,
    block_mask_mod,
    flex_implementation,
    own_view_allowed,
    view_implementation,
)
from pareto_bench.dllm.readout import last_mlp_at

LOGIT_ROWS_BUDGET = 2**23  # logits per chunk (rows x vocabulary): 32 MB in fp32
PAD = 0  # the id in slots no query reads (padding, and a view's slots past a sequence's end)

Attention = Literal["sdpa", "flex"]
KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values of the clean slots


@dataclass(frozen=True)
class View:
    """A noisy copy of block ``block`` with ``masked`` positions; ``targets`` are scored."""

    block: int
    masked: frozenset[int]
    targets: frozenset[int]


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


@dataclass
class Slots:
    """One forward's query slots for a set of rows: ids, positions and what the attention rule
    and the scorer need. ``view`` is -1 on clean slots; ``target`` is the scored sequence
    position (-1 where nothing is scored)."""

    ids: torch.Tensor
    pos: torch.Tensor
    valid: torch.Tensor
    view: torch.Tensor
    target: torch.Tensor

    def to(self, device: torch.device) -> Slots:
        return Slots(*(t.to(device) for t in _fields(self)))


def view_slots(
    sequence: Sequence[int], views: Sequence[View], block_size: int, mask_id: int
) -> Slots:
    """The ``len(views) * b`` slots of one sequence's views, as 1-D tensors."""
    b = block_size
    n = len(sequence)
    ids, pos, valid, view, target = [], [], [], [], []
    for v, spec in enumerate(views):
        for p in range(spec.block * b, spec.block * b + b):
            # Masked slots past the sequence's end are the undecided tail of its last block.
            masked = p in spec.masked
            ids.append(mask_id if masked else sequence[p] if p < n else PAD)
            pos.append(p)
            valid.append(masked or p < n)
            view.append(v)
            target.append(p if p in spec.targets else -1)
    return Slots(
        torch.tensor(ids, dtype=torch.long),
        torch.tensor(pos, dtype=torch.long),
        torch.tensor(valid, dtype=torch.bool),
        torch.tensor(view, dtype=torch.long),
        torch.tensor(target, dtype=torch.long),
    )


@dataclass
class Packed:
    """One sequence laid out for the likelihood: its clean tokens and its views' slots."""

    tokens: Sequence[int]
    views: Slots


def pack(
    sequence: Sequence[int], views: Sequence[View], *, block_size: int, mask_id: int
) -> Packed:
    return Packed(list(sequence), view_slots(sequence, views, block_size, mask_id))


def sequence_logprobs(
    model: PreTrainedModel,
    rows: Sequence[Packed],
    *,
    block_size: int,
    mask_id: int,
    max_tokens_per_forward: int | None = None,
    checkpoint: bool = False,
    attention: Attention = "sdpa",
) -> torch.Tensor:
    """``[B, S]`` log-probabilities (fp32, or fp64 for an fp64 model) of each packed sequence's
    tokens at the positions its views target (0 elsewhere), on the model's device. ``S`` is the
    longest sequence.

    The mask token is excluded from the distribution, as it is never a sampling candidate.
    With ``checkpoint``, each forward is recomputed in the backward pass instead of keeping
    its activations. ``max_tokens_per_forward`` None runs the clean pass and the views in one
    forward each. ``attention``: ``sdpa`` with a boolean mask per forward (queries x cached
    and own keys), or ``flex``: FlexAttention with a ``BlockMask`` from ``block_mask_mod``, which
    skips masked-out blocks and builds no dense mask (the GPU path). Forwards per row:
    ``forwards_per_row``.
    """
    device = next(model.parameters()).device
    b = block_size
    sequences = [r.tokens for r in rows]
    batch = len(rows)
    width = max(len(s) for s in sequences)
    longest = max(max(len(r.tokens), len(r.views.ids)) for r in rows)
    chunk = _chunk_slots(b, max_tokens_per_forward or longest)
    heads = model.config.num_attention_heads
    record_grad = checkpoint and torch.is_grad_enabled()

    clean = _clean_slots(sequences, width).to(device)
    context = max(_context(r, b) for r in rows)
    # A prefix that rows share (a group's prompt) is run once and its cache copied to them.
    shared, owner = _shared_prefix(sequences, context, b)
    kv: KV = []
    if shared:
        unique = sorted(set(owner))
        head = Slots(*(t[unique] for t in _fields(clean)))
        kv = _clean_pass(model, head, kv, 0, shared, chunk, b, attention, record_grad)
        place = {row: k for k, row in enumerate(unique)}
        copies = torch.tensor([place[o] for o in owner], device=device)
        kv = [(k[copies], v[copies]) for k, v in kv]
    kv = _clean_pass(model, clean, kv, shared, context, chunk, b, attention, record_grad)

    per_row = [r.views for r in rows]
    rows_out, cols_out, values_out = [], [], []
    for start in range(0, max(len(r.ids) for r in per_row), chunk):
        active = [i for i, r in enumerate(per_row) if len(r.ids) > start]
        part = _stack([_window(per_row[i], start, chunk) for i in active])
        # The clean slots these views read: those before the latest block among them.
        read = min(context, int(part.pos.max()) // b * b)
        part = part.to(device)
        scored = part.target >= 0
        if not scored.any():
            continue
        index = torch.tensor(active, device=device)
        rows = index if len(active) < batch else slice(None)  # a view, not a copy, of all rows
        row_kv = [(k[rows, :, :read], v[rows, :, :read]) for k, v in kv]
        row_clean = Slots(*(t[index] for t in _fields(clean)))
        mask = _mask(part, row_clean, read, b, attention, heads)
        target_ids = row_clean.ids.gather(1, part.target.clamp(min=0))[scored]
        logp = _run(
            _scoring_forward(scored, target_ids, mask_id), model, row_kv, part, mask, record_grad
        )
        rows_out.append(index[:, None].expand_as(scored)[scored])
        cols_out.append(part.target[scored])
        values_out.append(logp)
    dtype = torch.promote_types(next(model.parameters()).dtype, torch.float32)
    out = torch.zeros((batch, width), dtype=dtype, device=device)
    if not values_out:
        return out
    return out.index_put((torch.cat(rows_out), torch.cat(cols_out)), torch.cat(values_out))


class Scorer(torch.nn.Module):
    """A model whose forward is ``sequence_logprobs``: the unit that DDP and FSDP wrap, so that
    their hooks see one forward (and one backward) per micro-batch, however many model forwards
    the likelihood makes inside it."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, rows: Sequence[Packed], **options) -> torch.Tensor:
        return sequence_logprobs(self.model, rows, **options)


def forwards_per_row(row: Packed, *, block_size: int, max_tokens_per_forward: int) -> int:
    """Forwards that ``sequence_logprobs`` spends on ``row`` alone: its clean pass (the blocks its
    views read) and its views, each split into forwards of at most ``max_tokens_per_forward``
    slots (whole blocks)."""
    chunk = _chunk_slots(block_size, max_tokens_per_forward)
    return -(-_context(row, block_size) // chunk) + -(-len(row.views.ids) // chunk)


def _context(row: Packed, b: int) -> int:
    """Clean slots that some view reads: the blocks before its last view's block. The clean pass
    stops there, since clean queries are never scored and later blocks are never read."""
    last_block = int(row.views.pos.max()) // b if len(row.views.pos) else 0
    return min(len(row.tokens), last_block * b)


def _shared_prefix(
    sequences: Sequence[Sequence[int]], context: int, b: int
) -> tuple[int, list[int]]:
    """The clean prefix worth running once for all the rows that share it: the whole-block
    length (at most ``context``) that spares the most slots, and for each row the first row
    (in their order) with the same tokens up to there. ``(0, [0, 1, ...])`` when that spares
    less than a block per row."""
    n = len(sequences)
    # Sorted, the rows that share a prefix are neighbours, and the lengths neighbours have in
    # common say how many distinct prefixes of each length there are.
    order = sorted(range(n), key=lambda i: list(sequences[i]))
    common = [_common_length(sequences[i], sequences[j]) for i, j in itertools.pairwise(order)]
    best, spared = 0, n * b - 1
    for length in range(b, context + 1, b):
        distinct = 1 + sum(c < length for c in common)
        if (n - distinct) * length > spared:
            best, spared = length, (n - distinct) * length
    owner = list(range(n))
    if best:
        cuts = [0] + [k + 1 for k, c in enumerate(common) if c < best] + [n]
        for lo, hi in itertools.pairwise(cuts):
            first = min(order[lo:hi])
            for i in order[lo:hi]:
                owner[i] = first
    return best, owner


def _common_length(a: Sequence[int], c: Sequence[int]) -> int:
    differ = (k for k, (x, y) in enumerate(zip(a, c, strict=False)) if x != y)
    return next(differ, min(len(a), len(c)))


def _clean_pass(
    model: PreTrainedModel,
    clean: Slots,
    kv: KV,
    start: int,
    stop: int,
    chunk: int,
    b: int,
    attention: Attention,
    record_grad: bool,
) -> KV:
    """``kv`` extended with the clean slots ``[start, stop)``, ``chunk`` slots a forward."""
    for begin in range(start, stop, chunk):
        part = Slots(*(t[:, begin : min(begin + chunk, stop)] for t in _fields(clean)))
        mask = _mask(part, clean, begin, b, attention)
        kv = _run(_extend_cache, model, kv, part, mask, record_grad)
    return kv


def _chunk_slots(block_size: int, max_tokens_per_forward: int) -> int:
    """Slots per forward: whole blocks, so a clean block never straddles two forwards."""
    return max(block_size, max_tokens_per_forward // block_size * block_size)


def target_logprobs(
    hidden: torch.Tensor, targets: torch.Tensor, lm_head: torch.nn.Module, mask_id: int
) -> torch.Tensor:
    """``log p(targets)`` from hidden states ``[N, H]``, in fp32, ``LOGIT_ROWS_BUDGET`` logits at a
    time. Under autograd each chunk's logits are recomputed in backward, so only ``hidden`` is kept."""
    vocab = lm_head.weight.shape[0]
    rows = max(1, LOGIT_ROWS_BUDGET // vocab)

    def chunk_logp(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        logits = lm_head(h)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # never below fp32
        logits[:, mask_id] = float("-inf")
        return logits.gather(-1, t[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)

    parts = []
    for start in range(0, hidden.shape[0], rows):
        h, t = hidden[start : start + rows], targets[start : start + rows]
        if torch.is_grad_enabled() and h.requires_grad:
            parts.append(recompute_in_backward(chunk_logp, h, t, use_reentrant=False))
        else:
            parts.append(chunk_logp(h, t))
    return torch.cat(parts) if parts else hidden.new_zeros((0,), dtype=torch.float32)


def _fields(slots: Slots) -> tuple[torch.Tensor, ...]:
    return slots.ids, slots.pos, slots.valid, slots.view, slots.target


def _clean_slots(sequences: Sequence[Sequence[int]], width: int) -> Slots:
    batch = len(sequences)
    ids = torch.full((batch, width), PAD, dtype=torch.long)
    valid = torch.zeros((batch, width), dtype=torch.bool)
    for i, seq in enumerate(sequences):
        ids[i, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        valid[i, : len(seq)] = True
    pos = torch.arange(width).expand(batch, width)
    minus = torch.full((batch, width), -1, dtype=torch.long)
    return Slots(ids, pos, valid, minus, minus)


def _window(slots: Slots, start: int, size: int) -> Slots:
    return Slots(*(t[start : start + size] for t in _fields(slots)))


def _stack(rows: list[Slots]) -> Slots:
    """Rows of different lengths, right-padded with invalid slots."""
    width = max(len(r.ids) for r in rows)

    def pad(t: torch.Tensor, value: int | bool) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - len(t)), value=value)

    return Slots(
        torch.stack([pad(r.ids, PAD) for r in rows]),
        torch.stack([pad(r.pos, 0) for r in rows]),
        torch.stack([pad(r.valid, False) for r in rows]),
        torch.stack([pad(r.view, -2) for r in rows]),  # -2: padding, no view of its own
        torch.stack([pad(r.target, -1) for r in rows]),
    )


@dataclass(frozen=True)
class _Mask:
    """One forward's mask and the attention implementation that reads it."""

    value: torch.Tensor | BlockMask
    implementation: str


# Scores (rows x heads x queries x keys) of one layer of a compact view-attention forward; past
# it the views go to SDPA's flash kernel, whose memory stays linear in the keys.
VIEW_SCORES_BUDGET = 2**22


def _mask(
    part: Slots, clean: Slots, cached: int, b: int, attention: Attention, heads: int = 0
) -> _Mask:
    """The mask of one forward's queries against the ``cached`` clean slots and their own slots:
    a ``BlockMask`` for flex, else ``[R, 1, Q, K]`` bool for SDPA. A forward of views (``heads``
    given) whose scores fit ``VIEW_SCORES_BUDGET`` gets the compact form of ``own_view_allowed``
    instead (``K = cached + b``), read by ``view_attention_forward``."""
    rows, queries = part.pos.shape
    if (
        attention == "sdpa"
        and heads
        and rows * heads * queries * (cached + b) <= VIEW_SCORES_BUDGET
    ):
        allowed = own_view_allowed(
            part.pos,
            part.valid,
            part.view,
            *(t[:, :cached] for t in (clean.pos, clean.valid, clean.view)),
            b,
        )
        implementation = view_implementation()
    else:
        key_pos = torch.cat([clean.pos[:, :cached], part.pos], dim=1)
        key_valid = torch.cat([clean.valid[:, :cached], part.valid], dim=1)
        key_view = torch.cat([clean.view[:, :cached], part.view], dim=1)
        if attention == "flex":
            from torch.nn.attention.flex_attention import create_block_mask

            rule = block_mask_mod(part.pos, key_pos, key_valid, b, part.view, key_view)
            # A padding query that may read nothing gets zeros from flex (no NaN): no fix needed.
            block_mask = create_block_mask(
                rule, rows, None, queries, key_pos.shape[1], device=part.pos.device
            )
            return _Mask(block_mask, flex_implementation())
        allowed = block_causal_allowed(part.pos, key_pos, key_valid, b, part.view, key_view)
        implementation = "sdpa"
    # A padding query that may read nothing would give NaN: let it read the first key.
    allowed[:, :, 0] |= ~allowed.any(dim=-1)
    return _Mask(allowed[:, None], implementation)


def _run(
    step: Callable[..., object],
    model: PreTrainedModel,
    kv: KV,
    part: Slots,
    mask: _Mask,
    record_grad: bool,
):
    flat = [t for pair in kv for t in pair]
    if record_grad:
        return recompute_in_backward(
            step, model, part.ids, part.pos, mask, *flat, use_reentrant=False
        )
    return step(model, part.ids, part.pos, mask, *flat)


def _forward(
    model: PreTrainedModel,
    ids: torch.Tensor,
    pos: torch.Tensor,
    mask: _Mask,
    flat_kv: Sequence[torch.Tensor],
    read: torch.Tensor | None = None,
) -> tuple[torch.Tensor, DynamicCache]:
    """The backbone over ``ids`` after the cached clean slots; returns hidden states and the cache
    (a fresh one: the cached tensors are shared, never written). Only the ``read`` slots' hidden
    states are computed in full (``[R, Q]`` bool; None: none, as a clean forward reads only the
    cache); the others are left unfinished (``readout.last_mlp_at``)."""
    cache = DynamicCache()
    for layer in range(len(flat_kv) // 2):
        cache.update(flat_kv[2 * layer], flat_kv[2 * layer + 1], layer)
    # Set here, inside what a checkpoint recomputes, so that the backward's replay matches.
    saved = model.config._attn_implementation
    model.config._attn_implementation = mask.implementation
    try:
        with last_mlp_at(model, read):
            hidden = model.base_model(
                input_ids=ids,
                position_ids=pos,
                # A 4-D mask (or BlockMask) is used as it is by every family's mask logic.
                attention_mask=mask.value,
                cache=cache,
                use_cache=True,
            ).last_hidden_state
    finally:
        model.config._attn_implementation = saved
    return hidden, cache


def _extend_cache(model, ids, pos, mask, *flat_kv) -> KV:
    """A clean forward: the cache of every clean slot so far, this forward's included."""
    _, cache = _forward(model, ids, pos, mask, flat_kv)
    return [(layer.keys, layer.values) for layer in cache.layers]


def _scoring_forward(scored: torch.Tensor, target_ids: torch.Tensor, mask_id: int):
    """A view forward that returns the log-probabilities of its ``scored`` slots' targets."""

    def view_forward(model, ids, pos, mask, *flat_kv) -> torch.Tensor:
        hidden, _ = _forward(model, ids, pos, mask, flat_kv, read=scored)
        return target_logprobs(hidden[scored], target_ids, model.get_output_embeddings(), mask_id)

    return view_forward
