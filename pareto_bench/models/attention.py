"""The block-causal attention rule, as a boolean or a 4-D additive mask.

A query attends to every valid key whose block index (``position // block_size``) is at most
its own. Positions are per-sequence, so left padding and other layouts need no special cases:
validity and position ids say everything. Masks are built on the device of the position ids.

The additive form (0 or ``finfo.min``) is what the sampler passes, because a bool mask is
silently wrong with ``eager`` attention; the likelihood passes the boolean form (a quarter of
the memory) to SDPA, which reads it correctly.
"""

from __future__ import annotations

import torch


def block_causal_allowed(
    query_pos: torch.Tensor,
    key_pos: torch.Tensor,
    key_valid: torch.Tensor,
    block_size: int,
    query_view: torch.Tensor | None = None,
    key_view: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[B, Q, K]`` bool: may query ``q`` read key ``k``.

    ``query_pos``/``key_pos`` are ``[B, Q]``/``[B, K]`` position ids, ``key_valid`` is ``[B, K]``.
    Optional ``*_view`` ids (``[B, Q]``/``[B, K]``, -1 = clean context) separate noisy copies of
    blocks used in training: a noisy view sees clean keys of strictly earlier blocks and keys of
    its own view only; clean queries never see noisy views.
    """
    q_block = (query_pos // block_size)[:, :, None]
    k_block = (key_pos // block_size)[:, None, :]
    allowed = (k_block <= q_block) & key_valid[:, None, :]
    if query_view is not None and key_view is not None:
        qv = query_view[:, :, None]
        kv = key_view[:, None, :]
        clean_key = kv < 0
        same_view = (qv == kv) & (qv >= 0)
        # A noisy query sees clean keys of earlier blocks (its own block comes from its view).
        noisy_query_ok = (clean_key & (k_block < q_block)) | same_view
        allowed = allowed & torch.where(qv >= 0, noisy_query_ok, clean_key)
    return allowed


def block_causal_mask(
    query_pos: torch.Tensor,
    key_pos: torch.Tensor,
    key_valid: torch.Tensor,
    block_size: int,
    dtype: torch.dtype = torch.float32,
    query_view: torch.Tensor | None = None,
    key_view: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[B, 1, Q, K]`` additive mask of ``block_causal_allowed`` (same arguments)."""
    allowed = block_causal_allowed(query_pos, key_pos, key_valid, block_size, query_view, key_view)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.unsqueeze(1)
