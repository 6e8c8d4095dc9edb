"""The sampler against docs/DESIGN.md "Decoding": an independent reference and the six invariants."""

from __future__ import annotations

import pytest
import torch

from pareto_bench.dllm.attention import block_causal_mask
from pareto_bench.dllm.sampler import Generation, aggregate_tpf, generate

PROMPTS = [
    [3, 4, 5],
    [5, 6, 7, 8, 9, 10, 11, 12, 13],
    [7] * 11,
    [4, 5, 6, 7, 8, 9, 10, 11],
    [9] * 16,
]


def reference_generate(
    model, prompt, *, mask_id, eos_id, b, tau, n, strategy="dynamic", steps_per_block=None
):
    """A deliberately plain re-implementation: one sequence, no cache, the full sequence every
    forward, written from the spec without reusing the library's layout code."""
    seq = list(prompt)
    p = len(prompt)
    end = p + n
    step_of: dict[int, int] = {}
    forwards = 0
    block_start = p
    while block_start < end:
        block_end = min((block_start // b + 1) * b, end)
        seq += [mask_id] * (block_end - block_start)
        while any(seq[i] == mask_id for i in range(block_start, block_end)):
            ids = torch.tensor([seq])
            pos = torch.arange(len(seq))[None]
            mask = torch.zeros(1, 1, len(seq), len(seq), dtype=model.dtype)
            for q in range(len(seq)):
                for k in range(len(seq)):
                    if k // b > q // b:
                        mask[0, 0, q, k] = torch.finfo(model.dtype).min
            with torch.no_grad():
                logits = (
                    model(input_ids=ids, position_ids=pos, attention_mask=mask).logits[0].float()
                )
            logits[:, mask_id] = float("-inf")
            probs = torch.softmax(logits, -1)
            masked = [i for i in range(block_start, block_end) if seq[i] == mask_id]
            conf = {i: float(probs[i].max()) for i in masked}  # noqa: B023
            if strategy == "dynamic":
                chosen = [i for i in masked if conf[i] >= tau] or [
                    max(masked, key=lambda i: (conf[i], -i))
                ]
            else:
                k = max(1, b // steps_per_block)
                chosen = sorted(masked, key=lambda i: -conf[i])[:k]
            forwards += 1
            for i in chosen:
                seq[i] = int(probs[i].argmax())
                step_of[i] = forwards
        if eos_id in seq[block_start:block_end]:
            break
        block_start = block_end
    tokens = seq[p:]
    if eos_id in tokens:
        tokens = tokens[: tokens.index(eos_id) + 1]
    return tokens, [step_of[p + j] for j in range(len(tokens))], forwards


def run(lm, prompts, **kw):
    defaults = dict(block_size=8, threshold=0.1, max_new_tokens=20)
    return generate(lm, prompts, **{**defaults, **kw})


@pytest.mark.parametrize("tau", [0.0, 0.08, 0.12, 2.0])
@pytest.mark.parametrize("b", [1, 4, 8])
def test_matches_independent_reference(random_tiny, tau, b):
    lm = random_tiny
    for prompt in PROMPTS[:3]:
        ours = run(lm, [prompt], threshold=tau, block_size=b, max_new_tokens=13)[0]
        tokens, steps, forwards = reference_generate(
            lm.model, prompt, mask_id=lm.mask_id, eos_id=lm.eos_id, b=b, tau=tau, n=13
        )
        assert (ours.tokens, ours.step_map, ours.num_forwards) == (tokens, steps, forwards)


def test_static_strategy_matches_reference(random_tiny):
    lm = random_tiny
    ours = run(lm, [PROMPTS[1]], strategy="static", steps_per_block=4, max_new_tokens=16)[0]
    tokens, steps, forwards = reference_generate(
        lm.model,
        PROMPTS[1],
        mask_id=lm.mask_id,
        eos_id=lm.eos_id,
        b=8,
        tau=0,
        n=16,
        strategy="static",
        steps_per_block=4,
    )
    assert (ours.tokens, ours.step_map, ours.num_forwards) == (tokens, steps, forwards)
    assert all(steps.count(s) <= 2 for s in set(steps))  # k = 8 // 4 = 2 per forward


@pytest.mark.parametrize("tau", [0.0, 0.1, 0.9, 1.5])
def test_cached_equals_uncached(random_tiny, tau):
    assert run(random_tiny, PROMPTS, threshold=tau) == run(
        random_tiny, PROMPTS, threshold=tau, use_cache=False
    )


@pytest.mark.parametrize("tau", [0.0, 0.1, 0.9])
def test_batched_equals_unbatched_for_mixed_prompt_lengths(random_tiny, tau):
    batched = run(random_tiny, PROMPTS, threshold=tau)
    alone = [run(random_tiny, [p], threshold=tau)[0] for p in PROMPTS]
    assert batched == alone


def test_a_group_runs_its_prompt_once_and_decodes_as_each_copy_alone(random_tiny):
    """G copies of a prompt (an RL group) share one prefill: it runs over the distinct prompts,
    and each row, sampling with its own generator, decodes as it would alone."""
    prompts = [p for p in PROMPTS for _ in range(3)]
    batch_rows = []
    hook = random_tiny.model.base_model.register_forward_pre_hook(
        lambda module, args, kwargs: batch_rows.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True,
    )
    kw = dict(threshold=0.1, temperature=1.0, seed=5)
    try:
        batched = run(random_tiny, prompts, **kw)
    finally:
        hook.remove()
    assert batch_rows[0] == len(PROMPTS) and max(batch_rows) == len(prompts)
    alone = [run(random_tiny, [p], **{**kw, "seed": 5 + i})[0] for i, p in enumerate(prompts)]
    assert batched == alone


def test_only_undecided_slots_are_finished_and_projected(random_tiny):
    """Committing one token per forward, a block's forwards read b, b - 1, ..., 1 slots: the
    output head and the last layer's MLP see just those, and nothing of the prefill or of a
    finished block riding along."""
    b, prompt = 4, [9] * 8  # whole blocks, so that every generated block has b slots
    head_rows, mlp_rows = [], []
    hooks = [
        random_tiny.model.get_output_embeddings().register_forward_pre_hook(
            lambda module, args: head_rows.append(args[0].shape[0])
        ),
        random_tiny.model.base_model.layers[-1].mlp.down_proj.register_forward_pre_hook(
            lambda module, args: mlp_rows.append(args[0].shape[:-1].numel())
        ),
    ]
    try:
        (gen,) = run(random_tiny, [prompt], block_size=b, threshold=2.0, max_new_tokens=12)
    finally:
        for hook in hooks:
            hook.remove()
    blocks = -(-len(gen.tokens) // b)
    assert head_rows == [b, b - 1, b - 2, b - 3] * blocks
    assert [n for n in mlp_rows if n] == head_rows and mlp_rows[0] == 0  # the prefill reads none


@pytest.mark.parametrize("use_cache", [True, False])
def test_rows_done_with_a_block_are_left_out_of_its_later_forwards(random_tiny, use_cache):
    rows_per_forward = []
    hook = random_tiny.model.base_model.register_forward_pre_hook(
        lambda module, args, kwargs: rows_per_forward.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True,
    )
    kw = dict(threshold=0.1, temperature=1.0, seed=3, use_cache=use_cache)
    try:
        batched = run(random_tiny, PROMPTS, **kw)
    finally:
        hook.remove()
    assert min(rows_per_forward) < len(PROMPTS) == max(rows_per_forward)
    # Row i draws from generator seed + i, so alone it is row 0 of a run seeded seed + i.
    alone = [run(random_tiny, [p], **{**kw, "seed": 3 + i})[0] for i, p in enumerate(PROMPTS)]
    assert batched == alone


def test_threshold_above_one_commits_one_token_per_forward(random_tiny):
    for g in run(random_tiny, PROMPTS, threshold=1.01):
        assert len(set(g.step_map)) == len(g.step_map)  # no forward commits two tokens
        if g.hit_budget:
            assert sorted(g.step_map) == list(range(1, len(g.tokens) + 1))
            assert g.num_forwards == len(g.tokens)
        else:  # positions after EOS in the final block still cost one forward each
            assert g.num_forwards >= len(g.tokens)


def test_threshold_zero_commits_a_whole_block_per_forward(random_tiny):
    b = 8
    for prompt, g in zip(
        PROMPTS,
        run(random_tiny, PROMPTS, threshold=0.0, block_size=b, max_new_tokens=20),
        strict=True,
    ):
        p = len(prompt)
        # every position of a block is committed by the same forward, one forward per block
        blocks = [(p + j) // b for j in range(len(g.tokens))]
        assert all(s == blocks[j] - blocks[0] + 1 for j, s in enumerate(g.step_map))
        assert (
            g.num_forwards == len({(p + j) // b for j in range(20)})
            or random_tiny.eos_id in g.tokens
        )


def test_block_size_one_is_greedy_autoregressive(random_tiny):
    lm = random_tiny
    prompt = PROMPTS[0]
    g = run(lm, [prompt], block_size=1, threshold=0.9, max_new_tokens=10)[0]
    seq = list(prompt)
    for _ in range(10):
        # causal attention, logits at the masked position predict that position
        with torch.no_grad():
            logits = lm.model(torch.tensor([seq + [lm.mask_id]])).logits[0, -1].clone()
        logits[lm.mask_id] = float("-inf")
        seq.append(int(logits.argmax()))
        if seq[-1] == lm.eos_id:
            break
    assert g.tokens == seq[len(prompt) :]
    assert g.num_forwards == len(g.tokens)


def test_fixed_seed_gives_identical_samples(random_tiny):
    a = run(random_tiny, PROMPTS, temperature=1.0, top_k=5, top_p=0.9, seed=7, threshold=0.2)
    b = run(random_tiny, PROMPTS, temperature=1.0, top_k=5, top_p=0.9, seed=7, threshold=0.2)
    c = run(random_tiny, PROMPTS, temperature=1.0, top_k=5, top_p=0.9, seed=8, threshold=0.2)
    assert a == b
    assert a != c


def test_mask_token_is_never_generated(random_tiny):
    lm = random_tiny
    with torch.no_grad():
        lm.model.lm_head.weight[lm.mask_id] += 50.0  # make the mask token the model's favourite
    try:
        for g in run(lm, PROMPTS, threshold=0.5):
            assert lm.mask_id not in g.tokens
    finally:
        with torch.no_grad():
            lm.model.lm_head.weight[lm.mask_id] -= 50.0


def test_generation_stops_at_budget_and_tpf_counts_exactly(random_tiny):
    outs = run(random_tiny, PROMPTS, threshold=0.1, max_new_tokens=5)
    for g in outs:
        assert len(g.tokens) <= 5
        assert g.hit_budget == (random_tiny.eos_id not in g.tokens)
        assert g.tpf == len(g.tokens) / g.num_forwards
    assert aggregate_tpf(outs) == sum(len(g.tokens) for g in outs) / sum(
        g.num_forwards for g in outs
    )


def test_eos_ends_the_sequence_after_its_block():
    g = Generation(tokens=[5, 1], step_map=[1, 1], num_forwards=2)
    assert g.tpf == 1.0


def test_block_causal_mask_is_additive_and_block_causal():
    pos = torch.arange(6)[None]
    mask = block_causal_mask(pos, pos, torch.ones(1, 6, dtype=torch.bool), 2)
    allowed = mask[0, 0] == 0
    assert allowed.tolist()[0] == [True, True, False, False, False, False]
    assert allowed.tolist()[3] == [True, True, True, True, False, False]
    assert mask.dtype == torch.float32 and mask.min() == torch.finfo(torch.float32).min


def test_bad_arguments_are_rejected(random_tiny):
    with pytest.raises(ValueError, match="strategy"):
        run(random_tiny, PROMPTS, strategy="greedy")
    with pytest.raises(ValueError, match="prompt"):
        run(random_tiny, [[]])


@pytest.mark.slow
def test_batched_equals_unbatched_on_the_shipped_model_in_float32():
    """The precision users run: tiny in float32, all 500 held-out problems, every threshold of
    the README's table, batch 32 against one problem at a time, sample for sample."""
    from pareto_bench.dllm.models import load_model
    from pareto_bench.evaluate import evaluate
    from pareto_bench.tasks.synthetic import SyntheticTask

    lm = load_model("tiny", device="cpu", dtype="float32")
    thresholds = [0.3, 0.5, 0.7, 0.9, 0.95, 1.01]
    batched, alone = (
        evaluate(lm, SyntheticTask(), thresholds, batch_size=size, progress=False)
        for size in (32, 1)
    )
    for a, b in zip(batched, alone, strict=True):
        assert len(a.samples) == 500
        assert [(s.response, s.num_forwards) for s in a.samples] == [
            (s.response, s.num_forwards) for s in b.samples
        ], a.threshold
