"""Block-wise confidence-threshold decoding, with TPF and ``step_map`` counted exactly.

The semantics are docs/DESIGN.md, "Decoding". In short, for each prompt of length P:

- blocks are aligned at the first token; the first generated block is the rest of the prompt's
  last block, and generation stops at position ``P + max_new_tokens``;
- each forward runs the current block (all undecided positions set to the mask token) after
  the prompt and the committed blocks, under the block-causal mask, and commits positions:
  ``dynamic``: every masked position whose confidence is ``>= threshold``, at least the most
  confident one; ``static``: the ``max(1, b // steps_per_block)`` most confident;
- a finished block is written to the KV cache with its final tokens (not counted as a forward;
  it rides along in the next block's first forward);
  a block that contains EOS ends the sequence;
- a forward finishes (the last layer's MLP and the output head) only the slots whose logits
  are read, the current block's undecided positions, and copies of one prompt (an RL group)
  share one prefill.

Batching: every sequence keeps its own positions, so a batch is laid out in *slots*. Slots
``[0, Lp)`` hold each prompt's complete blocks, left-padded; then every decoding round appends
``b`` slots per sequence, holding that sequence's next block. Position ids and a per-sequence
validity mask make the batched computation the same as decoding each prompt alone. The results
are identical in float64 (tested on random models) and, for the shipped tiny model in float32,
on all 500 held-out problems at every README threshold (tested). In bf16, rounding that depends
on the batch's shape can flip a near-threshold commit: on tiny, 1 problem in 500 at tau 0.5.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from pareto_bench.dllm.attention import block_causal_mask
from pareto_bench.dllm.models import DiffusionLM
from pareto_bench.dllm.readout import last_mlp_at

STRATEGIES = ("dynamic", "static")


@dataclass
class Generation:
    """One decoded sequence."""

    tokens: list[int]  # generated tokens, up to and including the first EOS
    step_map: list[int]  # for each token, the 1-based index of the forward that committed it
    num_forwards: int  # forwards that committed at least one generated position
    hit_budget: bool = False  # no EOS within max_new_tokens

    @property
    def tpf(self) -> float:
        return len(self.tokens) / self.num_forwards if self.num_forwards else 0.0


def aggregate_tpf(generations: list[Generation]) -> float:
    """TPF over a set of sequences: total tokens over total forwards, not a mean of ratios."""
    forwards = sum(g.num_forwards for g in generations)
    return sum(len(g.tokens) for g in generations) / forwards if forwards else 0.0


@torch.no_grad()
def generate(
    lm: DiffusionLM,
    prompts: list[list[int]],
    *,
    threshold: float,
    max_new_tokens: int,
    block_size: int | None = None,
    eos_ids: Collection[int] | None = None,
    strategy: str = "dynamic",
    steps_per_block: int | None = None,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    use_cache: bool = True,
) -> list[Generation]:
    """Decode ``prompts`` with ``lm`` block-wise. See the module docstring for the exact
    semantics.

    With sampling on (``temperature > 0``), sequence ``i`` draws from its own generator seeded
    with ``seed + i``, so a fixed seed gives identical output. A block holding any of
    ``eos_ids`` ends its sequence. ``block_size`` and ``eos_ids`` are ``lm``'s unless given:
    the trainer decodes at its own block size, and the benchmarks stop at no id.
    """
    model, mask_id = lm.model, lm.mask_id
    block_size = lm.block_size if block_size is None else block_size
    stop = lm.eos_ids if eos_ids is None else eos_ids
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if block_size < 1 or max_new_tokens < 1:
        raise ValueError("block_size and max_new_tokens must be at least 1")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    if not prompts:
        return []
    commit_per_forward = max(1, block_size // (steps_per_block or block_size))
    layout = _SlotLayout(prompts, block_size, max_new_tokens, mask_id, model.device)
    sampler = _CandidateSampler(
        mask_id, temperature, top_k, top_p, seed, len(prompts), model.device
    )
    stop_ids = torch.tensor(sorted(set(stop)))
    device = model.device
    dtype = (
        torch.get_autocast_dtype(device.type)
        if torch.is_autocast_enabled(device.type)
        else model.dtype
    )
    b = block_size
    head = model.get_output_embeddings()

    def forward(
        start: int,
        end: int,
        cache: DynamicCache | None,
        rows: torch.Tensor | None = None,
        read: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """Slots [start, end) given all slots before them, for ``rows`` (default all); returns
        the logits of the ``read`` slots (``[R, k]`` bool over the last k slots; None: none)
        as ``[n, V]``, in ``read``'s row-major order. Only the read slots are finished and
        projected."""
        pick = slice(None) if rows is None else rows
        pos, valid, tokens = layout.pos[pick], layout.valid[pick], layout.tokens[pick]
        context = 0 if cache is None else start
        mask = block_causal_mask(
            pos[:, start:end] if cache is not None else pos[:, :end],
            pos[:, :end],
            valid[:, :end],
            b,
            dtype,
        )
        if read is not None:  # over every input slot
            read = torch.nn.functional.pad(read, (end - context - read.shape[1], 0), value=False)
        with last_mlp_at(model, read):
            hidden = model.base_model(
                input_ids=tokens[:, context:end],
                position_ids=pos[:, context:end],
                attention_mask=mask,
                cache=cache,
                use_cache=cache is not None,
            ).last_hidden_state
        return None if read is None else head(hidden[read])

    cache = DynamicCache() if use_cache else None
    if cache is not None and layout.prefix_slots:
        _prefill(forward, layout, cache)
    cached_until = layout.prefix_slots  # the cache holds the keys and values of slots before it

    def denoise(start: int, end: int, todo: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """One denoising forward of the block [start, end): logits at its ``todo`` slots, in
        their row-major order, computed for the ``rows`` that have any. Its keys and values are
        dropped (the block is not final), but finished blocks not yet cached ride along and
        are kept, so writing a final block costs no forward of its own."""
        nonlocal cached_until
        if cache is not None and cached_until < start:
            if rows.all():
                logits = forward(cached_until, end, cache, read=todo)
                cache.crop(-b)
                cached_until = start
                return logits
            forward(cached_until, start, cache)
            cached_until = start
        if rows.all():
            logits = forward(start, end, cache, read=todo)
            if cache is not None:
                cache.crop(-b)
            return logits
        # Rows done with this block would otherwise wait for the slowest one at full cost.
        active = rows.nonzero()[:, 0]
        subset = None if cache is None else _rows_of(cache, active)
        return forward(start, end, subset, active, read=todo[active])

    num_forwards = torch.zeros(layout.batch, dtype=torch.long, device=device)
    finished = torch.zeros(layout.batch, dtype=torch.bool, device=device)
    stop_ids = stop_ids.to(device)
    for start in range(layout.prefix_slots, layout.num_slots, b):
        end = start + b
        todo = layout.generated[:, start:end] & ~finished[:, None]
        while todo.any():
            rows = todo.any(dim=1)
            logits = denoise(start, end, todo, rows)
            candidates, confidence = sampler(logits, todo)
            commit = _select(confidence, todo, strategy, threshold, commit_per_forward)
            num_forwards += rows.long()
            slots = layout.tokens[:, start:end]
            slots[commit] = candidates[commit]
            layout.step[:, start:end][commit] = num_forwards[:, None].expand(-1, b)[commit]
            todo &= ~commit
        block_done = layout.generated[:, start:end] & torch.isin(
            layout.tokens[:, start:end], stop_ids
        )
        finished |= block_done.any(dim=1)
        if finished.all():
            break
    return layout.results(set(stop_ids.tolist()), num_forwards)


def _prefill(forward, layout: _SlotLayout, cache: DynamicCache) -> None:
    """The prompts' complete blocks into ``cache``. Rows with the same prompt (a group's G
    trajectories) run it once and share its keys and values."""
    slots = layout.prefix_slots
    prefix = torch.cat([layout.tokens[:, :slots], layout.valid[:, :slots].long()], dim=1)
    distinct, owner = torch.unique(prefix, dim=0, return_inverse=True)
    if len(distinct) == layout.batch:
        forward(0, slots, cache)
        return
    rows = torch.arange(layout.batch, device=owner.device)
    first = torch.full((len(distinct),), layout.batch, device=owner.device)
    forward(0, slots, cache, first.scatter_reduce(0, owner, rows, "amin"))
    cache.batch_select_indices(owner)


def _rows_of(cache: DynamicCache, rows: torch.Tensor) -> DynamicCache:
    """A new cache holding only ``rows`` of ``cache`` (a copy: the forward appends to it)."""
    subset = DynamicCache()
    for i, layer in enumerate(cache.layers):
        subset.update(layer.keys[rows], layer.values[rows], i)
    return subset


class _SlotLayout:
    """Token ids, positions and validity of every slot of every sequence in the batch."""

    def __init__(
        self,
        prompts: list[list[int]],
        b: int,
        max_new_tokens: int,
        mask_id: int,
        device: torch.device,
    ) -> None:
        self.batch = len(prompts)
        self.b = b
        lengths = [len(p) for p in prompts]
        first_block = [n // b for n in lengths]
        limits = [n + max_new_tokens for n in lengths]  # generation stops here (exclusive)
        rounds = max(-(-limit // b) - k for limit, k in zip(limits, first_block, strict=True))
        self.prefix_slots = max(k * b for k in first_block)
        self.num_slots = self.prefix_slots + rounds * b

        pos = torch.zeros(self.batch, self.num_slots, dtype=torch.long)
        tokens = torch.full((self.batch, self.num_slots), mask_id, dtype=torch.long)
        valid = torch.zeros(self.batch, self.num_slots, dtype=torch.bool)
        for i, prompt in enumerate(prompts):
            prefix = first_block[i] * b
            pad = self.prefix_slots - prefix
            pos[i, pad : self.prefix_slots] = torch.arange(prefix)
            valid[i, pad : self.prefix_slots] = True
            block_pos = torch.arange(prefix, prefix + rounds * b)
            pos[i, self.prefix_slots :] = block_pos
            valid[i, self.prefix_slots :] = block_pos < limits[i]
            tokens[i, pad : pad + len(prompt)] = torch.tensor(prompt)  # prompt tail sits in round 0
        self.lengths = torch.tensor(lengths)
        self.pos = pos.to(device)
        self.valid = valid.to(device)
        self.tokens = tokens.to(device)
        # Slots this call must fill: valid positions at or after the prompt's end.
        self.generated = self.valid & (self.pos >= self.lengths.to(device)[:, None])
        self.step = torch.zeros_like(self.tokens)

    def results(self, eos_ids: set[int], num_forwards: torch.Tensor) -> list[Generation]:
        tokens, steps, generated = self.tokens.cpu(), self.step.cpu(), self.generated.cpu()
        num_forwards = num_forwards.cpu()
        out = []
        for i in range(self.batch):
            row_tokens = tokens[i][generated[i]]
            row_steps = steps[i][generated[i]]
            committed = row_steps > 0
            row_tokens, row_steps = row_tokens[committed].tolist(), row_steps[committed].tolist()
            ends = [j for j, t in enumerate(row_tokens) if t in eos_ids]
            hit_budget = not ends
            if not hit_budget:
                cut = ends[0] + 1
                row_tokens, row_steps = row_tokens[:cut], row_steps[:cut]
            out.append(Generation(row_tokens, row_steps, int(num_forwards[i]), hit_budget))
        return out


class _CandidateSampler:
    """Per masked position: a candidate token and its confidence (softmax probability after
    temperature, over the whole vocabulary except the mask token, which is never a candidate)."""

    def __init__(
        self,
        mask_id: int,
        temperature: float,
        top_k: int,
        top_p: float,
        seed: int | None,
        batch: int,
        device: torch.device,
    ):
        self.mask_id = mask_id
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        base = 0 if seed is None else seed
        self.generators = None
        if temperature > 0:
            self.generators = []
            for i in range(batch):
                # On the model's device, so that sampling never copies probabilities to the host.
                g = torch.Generator(device)
                if seed is None:
                    g.seed()
                else:
                    g.manual_seed(base + i)
                self.generators.append(g)

    def __call__(
        self, logits: torch.Tensor, todo: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``logits``: ``[n, V]`` at the ``n`` true slots of ``todo`` (``[R, b]``), row-major."""
        candidates = torch.zeros(todo.shape, dtype=torch.long, device=todo.device)
        confidence = torch.zeros(todo.shape, dtype=torch.float32, device=todo.device)
        picked = logits.float()  # the masked positions' rows only: keeps big vocabularies cheap
        picked[:, self.mask_id] = float("-inf")
        if self.temperature <= 0:
            probs = torch.softmax(picked, dim=-1)
            conf, cand = probs.max(dim=-1)
        else:
            scaled = picked / self.temperature
            probs = torch.softmax(scaled, dim=-1)
            filtering = self.top_k > 0 or self.top_p < 1.0
            sample_probs = (
                torch.softmax(_top_k_top_p(scaled, self.top_k, self.top_p), dim=-1)
                if filtering
                else probs
            )
            # The slots come row by row, so each row's are one run: drawn with its own generator.
            counts = todo.sum(dim=1).tolist()
            cand = torch.cat(
                [
                    torch.multinomial(part, 1, generator=self.generators[row])[:, 0]
                    for row, part in enumerate(sample_probs.split(counts))
                    if counts[row]
                ]
            )
            conf = probs.gather(-1, cand[:, None])[:, 0]
        candidates[todo] = cand
        confidence[todo] = conf
        return candidates, confidence


def _top_k_top_p(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    out = logits.clone()
    if top_k > 0 and top_k < out.shape[-1]:
        kth = torch.topk(out, top_k, dim=-1).values[:, -1:]
        out[out < kth] = float("-inf")
    if top_p < 1.0:
        sorted_logits, order = torch.sort(out, descending=True, dim=-1)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop_sorted = (
            cumulative - torch.softmax(sorted_logits, dim=-1) > top_p
        )  # keep the token that crosses p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        out[drop] = float("-inf")
    return out


def _select(
    confidence: torch.Tensor, todo: torch.Tensor, strategy: str, threshold: float, per_forward: int
) -> torch.Tensor:
    """Which masked positions to commit in this forward (at least one per row with work)."""
    masked_conf = torch.where(todo, confidence, torch.full_like(confidence, -1.0))
    rows = todo.any(dim=1)
    if strategy == "dynamic":
        commit = todo & (confidence >= threshold)
        fallback = rows & ~commit.any(dim=1)
    else:
        commit = torch.zeros_like(todo)
        fallback = torch.zeros_like(rows)
        k = min(per_forward, todo.shape[1])
        top = torch.topk(masked_conf, k, dim=1).indices
        commit.scatter_(1, top, True)
        commit &= todo & rows[:, None]
    if fallback.any():
        best = masked_conf.argmax(dim=1)
        commit[fallback, best[fallback]] = True
    return commit
