"""The block-diffusion likelihood against a direct, step-by-step recomputation."""

from __future__ import annotations

import torch

from pareto_bench.decoding import generate
from pareto_bench.likelihood import (
    block_views,
    build_batch,
    per_token,
    target_logprobs,
    trajectory_views,
)
from pareto_bench.models.attention import block_causal_mask


def direct_logprobs(lm, prompt, tokens, step_map, b, surrogate=False):
    """Replay the trajectory: for each step s of each block, run prompt + earlier blocks + the
    current block with positions committed at steps >= s masked, and read the targets."""
    seq = list(prompt) + list(tokens)
    p = len(prompt)
    out = [None] * len(tokens)
    for block in sorted({(p + j) // b for j in range(len(tokens))}):
        lo, hi = block * b, block * b + b
        in_block = {i: step_map[i - p] for i in range(max(lo, p), min(hi, len(seq)))}
        steps = [None] if surrogate else sorted(set(in_block.values()))
        for s in steps:
            current = []
            for i in range(lo, hi):
                if i < p or i in in_block and not surrogate and in_block[i] < s:
                    current.append(seq[i])
                else:
                    current.append(lm.mask_id)  # undecided, or the tail after EOS
            ids = torch.tensor([seq[:lo] + current])
            pos = torch.arange(ids.shape[1])[None]
            mask = block_causal_mask(
                pos, pos, torch.ones_like(pos, dtype=torch.bool), b, lm.model.dtype
            )
            with torch.no_grad():
                logits = (
                    lm.model(input_ids=ids, position_ids=pos, attention_mask=mask)
                    .logits[0]
                    .double()
                )
            logits[:, lm.mask_id] = float("-inf")
            logp = torch.log_softmax(logits, -1)
            for i, t in in_block.items():
                if surrogate or t == s:
                    out[i - p] = float(logp[i, seq[i]])
    return out


def test_trajectory_and_surrogate_likelihoods_equal_direct_computation(random_tiny):
    lm = random_tiny
    b = 4
    prompts = [[3, 4, 5], [5, 6, 7, 8, 9, 10]]
    gens = generate(
        lm.model,
        prompts,
        mask_id=lm.mask_id,
        eos_id=lm.eos_id,
        block_size=b,
        threshold=0.0,
        max_new_tokens=11,
        strategy="static",
        steps_per_block=2,
        temperature=1.0,
        seed=1,
    )
    assert any(
        len(set(g.step_map)) < len(g.step_map) for g in gens
    )  # several tokens per forward happened
    for surrogate in (False, True):
        views = [
            block_views(len(p), len(g.tokens), b)
            if surrogate
            else trajectory_views(len(p), g.step_map, b)
            for p, g in zip(prompts, gens, strict=True)
        ]
        batch = build_batch(
            [p + g.tokens for p, g in zip(prompts, gens, strict=True)],
            views,
            block_size=b,
            mask_id=lm.mask_id,
            pad_id=0,
            dtype=lm.model.dtype,
        )
        with torch.no_grad():
            slots = target_logprobs(lm.model, batch, lm.mask_id)
        ours = per_token(batch, slots, [len(p) for p in prompts], [len(g.tokens) for g in gens])
        for i, (p, g) in enumerate(zip(prompts, gens, strict=True)):
            expected = direct_logprobs(lm, p, g.tokens, g.step_map, b, surrogate=surrogate)
            assert torch.allclose(
                ours[i, : len(g.tokens)].double(),
                torch.tensor(expected, dtype=torch.float64),
                atol=1e-6,
            )


def test_every_response_token_is_scored_exactly_once():
    views = trajectory_views(prompt_len=3, step_map=[1, 1, 2, 1, 3, 2, 2], block_size=4)
    targets = [p for v in views for p in v.targets]
    assert sorted(targets) == list(range(3, 10))
    # position 3 (block 0) has step 1; positions 4-7 (block 1) steps 1,2,1,3; 8-9 (block 2) steps 2,2
    assert [(v.block, sorted(v.masked), sorted(v.targets)) for v in views] == [
        (0, [3], [3]),
        (1, [4, 5, 6, 7], [4, 6]),
        (1, [5, 7], [5]),
        (1, [7], [7]),
        (2, [8, 9, 10, 11], [8, 9]),  # 10-11 lie after EOS: masked context, never targets
    ]
