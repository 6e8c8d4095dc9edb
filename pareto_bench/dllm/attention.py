"""The block-causal attention rule, as a boolean or a 4-D additive mask, a FlexAttention
``mask_mod``, or a compact boolean mask for forwards of views: one rule (``block_rule``), four
forms, and the two attention functions the likelihood registers with transformers.

A query attends to every valid key whose block index (``position // block_size``) is at most
its own. Positions are per-sequence, so left padding and other layouts need no special cases:
validity and position ids say everything. Masks are built on the device of the position ids.

The additive form (0 or ``finfo.min``) is what the sampler passes, because a bool mask is
silently wrong with ``eager`` attention; the likelihood passes the boolean form (a quarter of
the memory) to SDPA, which reads it correctly, and the compact form to its own view attention.
"""

from __future__ import annotations

import functools

import torch


def block_rule(
    q_pos: torch.Tensor,
    k_pos: torch.Tensor,
    k_valid: torch.Tensor,
    block_size: int,
    q_view: torch.Tensor | None = None,
    k_view: torch.Tensor | None = None,
) -> torch.Tensor:
    """May a query read a key, elementwise over broadcastable tensors (see
    ``block_causal_allowed`` for the arguments' meaning)."""
    q_block = q_pos // block_size
    k_block = k_pos // block_size
    allowed = (k_block <= q_block) & k_valid
    if q_view is None or k_view is None:
        return allowed
    clean_key = k_view < 0
    same_view = (q_view == k_view) & (q_view >= 0)
    # A noisy query sees clean keys of earlier blocks (its own block comes from its view).
    noisy_query_ok = (clean_key & (k_block < q_block)) | same_view
    return allowed & torch.where(q_view >= 0, noisy_query_ok, clean_key)


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
    views = query_view is not None and key_view is not None
    return block_rule(
        query_pos[:, :, None],
        key_pos[:, None, :],
        key_valid[:, None, :],
        block_size,
        query_view[:, :, None] if views else None,
        key_view[:, None, :] if views else None,
    )


def block_mask_mod(
    query_pos: torch.Tensor,
    key_pos: torch.Tensor,
    key_valid: torch.Tensor,
    block_size: int,
    query_view: torch.Tensor,
    key_view: torch.Tensor,
):
    """The same rule as a FlexAttention ``mask_mod(b, h, q, kv)`` over ``[B, Q]``/``[B, K]``
    per-slot tensors, for ``create_block_mask``: no ``Q x K`` tensor is ever built."""

    def mask_mod(b, h, q, kv):
        return block_rule(
            query_pos[b, q],
            key_pos[b, kv],
            key_valid[b, kv],
            block_size,
            query_view[b, q],
            key_view[b, kv],
        )

    return mask_mod


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


def own_view_allowed(
    query_pos: torch.Tensor,
    query_valid: torch.Tensor,
    query_view: torch.Tensor,
    clean_pos: torch.Tensor,
    clean_valid: torch.Tensor,
    clean_view: torch.Tensor,
    block_size: int,
) -> torch.Tensor:
    """``[B, Q, C + b]`` bool: the rule for a forward whose ``Q`` queries are whole views of
    ``b = block_size`` slots each, against ``C`` cached clean keys (``[B, C]`` tensors) and its
    own slots. A view's queries read no other view's slots, so the own part holds only the
    query's view: column ``C + j`` is slot ``j`` of its ``b``-slot group. ``view_attention_forward``
    reads this form; it is ``block_causal_allowed`` without the columns that are always false."""
    rows, queries = query_pos.shape

    def own(t: torch.Tensor) -> torch.Tensor:  # [B, Q] -> [B, Q, b]: each query's view's slots
        return (
            t.reshape(rows, queries // block_size, 1, block_size)
            .expand(-1, -1, block_size, -1)
            .reshape(rows, queries, block_size)
        )

    q_pos, q_view = query_pos[:, :, None], query_view[:, :, None]
    clean = block_rule(
        q_pos, clean_pos[:, None], clean_valid[:, None], block_size, q_view, clean_view[:, None]
    )
    mine = block_rule(q_pos, own(query_pos), own(query_valid), block_size, q_view, own(query_view))
    return torch.cat([clean, mine], dim=-1)


def view_attention_forward(
    module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs
):
    """Transformers' attention interface over ``own_view_allowed``'s compact mask (``[B, 1, Q,
    C + b]``): each query scores the ``C`` cached keys and its own view's ``b`` keys, not the
    ``C + Q`` of a dense mask, most of which are other views' slots. Exact, with the softmax in
    at least fp32. The scores are materialised, so it suits forwards whose ``B x H x Q x (C + b)``
    is small (the CPU likelihood of small models); there an RL step on tiny is about 5% faster
    than with SDPA and the dense mask."""
    if dropout:
        raise ValueError("view attention has no dropout; the likelihood runs without it")
    rows, heads, queries, dim = query.shape
    groups = key.shape[1]  # key/value heads; each serves heads // groups query heads
    per = heads // groups
    cached = key.shape[2] - queries
    b = attention_mask.shape[-1] - cached
    views = queries // b
    # Queries in view-major order, [R, groups, views * per * b, d], so that a view's queries of
    # every head in its group are one run: the own part is then one batched product per view.
    q = query.unflatten(1, (groups, per)).unflatten(3, (views, b)).transpose(2, 3)
    q = q.reshape(rows, groups, views * per * b, dim) * (dim**-0.5 if scaling is None else scaling)
    own_keys = key[:, :, cached:].unflatten(2, (views, b))
    own_values = value[:, :, cached:].unflatten(2, (views, b))
    by_view = q.view(rows, groups, views, per * b, dim)
    scores = torch.cat(
        [
            q @ key[:, :, :cached].transpose(-1, -2),
            (by_view @ own_keys.transpose(-1, -2)).flatten(2, 3),
        ],
        dim=-1,
    )
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
    allowed = attention_mask.view(rows, 1, views, 1, b, cached + b)  # the same for every head
    shape = (rows, groups, views, per, b, cached + b)
    probs = scores.view(shape).masked_fill(~allowed, float("-inf")).softmax(-1)
    probs = probs.to(query.dtype).view(rows, groups, views * per * b, cached + b)
    own_probs = probs[..., cached:].view(rows, groups, views, per * b, b)
    out = probs[..., :cached] @ value[:, :, :cached] + (own_probs @ own_values).flatten(2, 3)
    out = out.view(rows, groups, views, per, b, dim).permute(0, 2, 4, 1, 3, 5)
    return out.reshape(rows, queries, heads, dim), None


@functools.cache
def view_implementation() -> str:
    """The name under which ``view_attention_forward`` is registered with transformers."""
    from transformers import AttentionInterface

    name = "pareto_bench_views"
    AttentionInterface.register(name, view_attention_forward)
    return name


FLEX_RECOMPILE_LIMIT = 64


@functools.cache
def flex_implementation() -> str:
    """The name under which ``flex_attention_forward`` is registered with transformers, for
    ``config._attn_implementation``; registers it on first use."""
    from transformers import AttentionInterface

    name = "pareto_bench_flex"
    AttentionInterface.register(name, flex_attention_forward)
    return name


@functools.cache
def _compiled_flex_attention():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention)


def flex_attention_forward(module, query, key, value, attention_mask, scaling=None, **kwargs):
    """Transformers' attention interface over FlexAttention with a ``BlockMask``, compiled once
    per process. Transformers' own flex path compiles anew whenever a module's ``training``
    flag differs from the previous call's, as a policy and its frozen reference do each step;
    past dynamo's recompile limit it would run unfused, with the full score matrix."""
    # The likelihood calls this with and without grad, on inputs that need grad or not (policy,
    # frozen reference, cached clean keys): each combination is a cache entry, compiled once
    # for static and once for dynamic shapes, more than dynamo's default limit of 8 in all.
    with torch._dynamo.config.patch(recompile_limit=FLEX_RECOMPILE_LIMIT):
        out = _compiled_flex_attention()(
            query,
            key,
            value,
            block_mask=attention_mask,
            scale=scaling,
            enable_gqa=query.shape[1] != key.shape[1],
            # Short queries would otherwise get the flex-decoding kernel, which inductor could
            # not lower here (an H200, torch 2.11); the main kernel takes every length.
            kernel_options={"FORCE_USE_FLEX_ATTENTION": True},
        )
    return out.transpose(1, 2).contiguous(), None
