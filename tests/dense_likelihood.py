"""The dense reference likelihood: every view of every sequence in one forward, under one
``[B, 1, S, S]`` mask, with a full-vocabulary log-softmax. Quadratic in memory, so it lives in
the tests, as the oracle that the packed, chunked likelihood must equal."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pareto_bench.dllm.attention import block_causal_mask
from pareto_bench.dllm.likelihood import View, view_slots


def dense_logprobs(
    model,
    sequences: Sequence[Sequence[int]],
    views: Sequence[Sequence[View]],
    *,
    block_size,
    mask_id,
    pad_id,
) -> torch.Tensor:
    """``[B, S]`` like ``likelihood.sequence_logprobs``."""
    batch = len(sequences)
    clean_len = max(len(s) for s in sequences)
    slots = [view_slots(s, v, block_size, mask_id) for s, v in zip(sequences, views, strict=True)]
    width = clean_len + max(len(s.ids) for s in slots)
    ids = torch.full((batch, width), pad_id, dtype=torch.long)
    pos = torch.zeros((batch, width), dtype=torch.long)
    valid = torch.zeros((batch, width), dtype=torch.bool)
    view = torch.full((batch, width), -1, dtype=torch.long)
    target = torch.full((batch, width), -1, dtype=torch.long)
    for i, (seq, s) in enumerate(zip(sequences, slots, strict=True)):
        ids[i, : len(seq)] = torch.tensor(list(seq))
        pos[i, :clean_len] = torch.arange(clean_len)
        valid[i, : len(seq)] = True
        end = clean_len + len(s.ids)
        ids[i, clean_len:end], pos[i, clean_len:end], valid[i, clean_len:end] = (
            s.ids,
            s.pos,
            s.valid,
        )
        view[i, clean_len:end], target[i, clean_len:end] = s.view, s.target
    mask = block_causal_mask(
        pos, pos, valid, block_size, model.dtype, query_view=view, key_view=view
    )
    logits = model(input_ids=ids, position_ids=pos, attention_mask=mask).logits.double()
    logits[..., mask_id] = float("-inf")
    logp = torch.log_softmax(logits, dim=-1)
    out = torch.zeros((batch, clean_len), dtype=torch.float64)
    for i in range(batch):
        for slot in (target[i] >= 0).nonzero()[:, 0].tolist():
            p = int(target[i, slot])
            out[i, p] = logp[i, slot, sequences[i][p]]
    return out
