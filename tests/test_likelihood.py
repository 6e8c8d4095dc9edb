"""The block-diffusion likelihood against a direct, step-by-step recomputation."""

from __future__ import annotations

import copy

import pytest
import torch
from dense_likelihood import dense_logprobs

from pareto_bench.dllm import likelihood
from pareto_bench.dllm.attention import block_causal_mask
from pareto_bench.dllm.likelihood import block_views, pack, sequence_logprobs, trajectory_views
from pareto_bench.dllm.sampler import generate


@pytest.fixture(autouse=True)
def session_model_unchanged(random_tiny):
    """random_tiny is shared by the whole session: a test here may use it, never change its
    dtype, device, mode or weights (one that needs another precision works on a copy)."""
    model = random_tiny.model

    def state():
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        return model.dtype, model.device, [m.training for m in model.modules()], weights

    dtype, device, modes, weights = state()
    yield
    after = state()
    assert (after[0], after[1], after[2]) == (dtype, device, modes), "random_tiny was changed"
    assert all(torch.equal(weights[k], v) for k, v in after[3].items()), "its weights changed"


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


def _sampled_trajectories(lm, b=4, prompts=([3, 4, 5], [5, 6, 7, 8, 9, 10], [7])):
    prompts = [list(p) for p in prompts]
    gens = generate(
        lm,
        prompts,
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
    return prompts, gens


def _views(prompts, gens, b, surrogate):
    return [
        block_views(len(p), len(g.tokens), b)
        if surrogate
        else trajectory_views(len(p), g.step_map, b)
        for p, g in zip(prompts, gens, strict=True)
    ]


def _packed(prompts, gens, b, mask_id, surrogate):
    return [
        pack(p + g.tokens, v, block_size=b, mask_id=mask_id)
        for p, g, v in zip(prompts, gens, _views(prompts, gens, b, surrogate), strict=True)
    ]


def _score_in_forwards_of_8(lm, prompts, gens, b):
    with torch.no_grad():
        return sequence_logprobs(
            lm.model,
            _packed(prompts, gens, b, lm.mask_id, surrogate=False),
            block_size=b,
            mask_id=lm.mask_id,
            max_tokens_per_forward=8,
        )


@pytest.mark.parametrize("surrogate", [False, True], ids=["trajectory", "block_surrogate"])
@pytest.mark.parametrize("max_tokens", [4, 8, 2048], ids=lambda n: f"max_tokens={n}")
def test_packed_likelihood_equals_direct_per_step_computation(random_tiny, surrogate, max_tokens):
    """Split into forwards of every size down to one view each, the packed likelihood equals
    replaying each denoising step with its own forward."""
    lm, b = random_tiny, 4
    prompts, gens = _sampled_trajectories(lm, b)
    with torch.no_grad():
        ours = sequence_logprobs(
            lm.model,
            _packed(prompts, gens, b, lm.mask_id, surrogate),
            block_size=b,
            mask_id=lm.mask_id,
            max_tokens_per_forward=max_tokens,
        )
    for i, (p, g) in enumerate(zip(prompts, gens, strict=True)):
        expected = direct_logprobs(lm, p, g.tokens, g.step_map, b, surrogate=surrogate)
        got = ours[i, len(p) : len(p) + len(g.tokens)].double()
        assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("view_attention", ["compact", "sdpa"])
@pytest.mark.parametrize("surrogate", [False, True], ids=["trajectory", "block_surrogate"])
def test_packed_likelihood_and_its_gradient_equal_the_dense_reference(
    random_tiny, surrogate, view_attention, monkeypatch
):
    """Values and gradients equal the one-forward dense-mask, full-log-softmax reference, with and
    without recomputation in backward (float64, so only the order of sums differs), whether the
    views' attention reads the compact mask or, past its budget, SDPA's dense one."""
    if view_attention == "sdpa":
        monkeypatch.setattr(likelihood, "VIEW_SCORES_BUDGET", 0)
    lm, b = random_tiny, 4
    _assert_equals_dense_reference(lm, *_sampled_trajectories(lm, b), b, surrogate)


def test_rows_that_share_a_prompt_run_it_once_with_the_same_values_and_gradients(random_tiny):
    """A group's trajectories share their prompt: its clean pass runs once per group, and the
    values and gradients are still those of the dense reference."""
    lm, b = random_tiny, 4
    group_a, group_b = [3, 4, 5, 6, 7, 8, 9, 10, 11], [5, 6, 7, 8, 9, 10, 11, 12]
    prompts, gens = _sampled_trajectories(lm, b, prompts=[group_a] * 3 + [group_b] * 2)
    sequences = [p + g.tokens for p, g in zip(prompts, gens, strict=True)]
    shared, owner = likelihood._shared_prefix(sequences, min(map(len, sequences)), b)
    assert shared == 8 and owner == [0, 0, 0, 3, 3]  # two blocks each, run for 2 rows, not 5
    # The gradients of the 3 (and 2) rows are summed before the norms' backward, not after;
    # transformers' RMSNorm computes in float32 even in a float64 model, hence the tolerance.
    _assert_equals_dense_reference(lm, prompts, gens, b, surrogate=False, grad_atol=1e-6)


def _assert_equals_dense_reference(lm, prompts, gens, b, surrogate, grad_atol=1e-9):
    sequences = [p + g.tokens for p, g in zip(prompts, gens, strict=True)]
    views = _views(prompts, gens, b, surrogate)
    kwargs = dict(block_size=b, mask_id=lm.mask_id, pad_id=0)
    weights = torch.randn(len(sequences), max(len(s) for s in sequences), dtype=torch.float64)

    def loss_and_grads(compute):
        lm.model.zero_grad(set_to_none=True)
        loss = (compute() * weights).sum()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in lm.model.parameters()]

    expected, expected_grads = loss_and_grads(
        lambda: dense_logprobs(lm.model, sequences, views, **kwargs)
    )
    for recompute in (False, True):
        got, grads = loss_and_grads(
            lambda recompute=recompute: sequence_logprobs(
                lm.model,
                _packed(prompts, gens, b, lm.mask_id, surrogate),
                block_size=b,
                mask_id=lm.mask_id,
                max_tokens_per_forward=8,
                checkpoint=recompute,
            ).double()
        )
        assert torch.allclose(got, expected, atol=1e-9)
        for g, e in zip(grads, expected_grads, strict=True):
            assert torch.allclose(g, e, atol=grad_atol), (g - e).abs().max()


def test_target_logprobs_in_chunks_equal_the_full_log_softmax(monkeypatch):
    """Target-only, chunked log-probabilities equal a full log-softmax gathered at the targets,
    with the mask token left out of the distribution; chunks of 3 rows force several chunks."""
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False).double()
    hidden = torch.randn(10, 16, dtype=torch.float64)
    targets = torch.randint(0, 49, (10,))
    monkeypatch.setattr(likelihood, "LOGIT_ROWS_BUDGET", 3 * 50)
    got = likelihood.target_logprobs(hidden, targets, head, mask_id=49)
    logits = head(hidden)
    logits[:, 49] = float("-inf")
    expected = torch.log_softmax(logits, -1).gather(-1, targets[:, None])[:, 0]
    assert torch.allclose(got.double(), expected, atol=1e-6)


def test_forwards_are_the_read_clean_blocks_plus_the_views_split_by_the_budget(
    random_tiny, monkeypatch
):
    lm, b = random_tiny, 4
    prompts, gens = _sampled_trajectories(lm, b)
    sequences = [p + g.tokens for p, g in zip(prompts, gens, strict=True)]
    views = _views(prompts, gens, b, surrogate=False)
    calls = []
    real = likelihood._forward
    monkeypatch.setattr(
        likelihood,
        "_forward",
        lambda m, ids, *a, **k: calls.append(ids.shape) or real(m, ids, *a, **k),
    )
    _score_in_forwards_of_8(lm, prompts, gens, b)
    # The clean pass covers the blocks before each row's last view: nothing reads the others.
    context = max(
        min(len(s), max(v.block for v in vs) * b) for s, vs in zip(sequences, views, strict=True)
    )
    assert context < max(len(s) for s in sequences)
    most_views = max(len(v) for v in views)
    assert len(calls) == -(-context // 8) + -(-most_views * b // 8)
    assert all(shape[1] <= 8 for shape in calls)
    for row in _packed(prompts, gens, b, lm.mask_id, surrogate=False):
        calls.clear()
        with torch.no_grad():
            sequence_logprobs(
                lm.model, [row], block_size=b, mask_id=lm.mask_id, max_tokens_per_forward=8
            )
        assert len(calls) == likelihood.forwards_per_row(
            row, block_size=b, max_tokens_per_forward=8
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


def test_flex_mask_mod_is_the_same_rule_as_the_dense_mask():
    """The FlexAttention mask_mod, materialised, equals the boolean mask on random layouts with
    clean slots, views of several blocks, padding and invalid keys."""
    from torch.nn.attention.flex_attention import create_mask

    from pareto_bench.dllm.attention import block_causal_allowed, block_mask_mod

    generator = torch.Generator().manual_seed(0)
    rows, queries, keys, b = 3, 12, 20, 4
    query_pos = torch.randint(0, 16, (rows, queries), generator=generator)
    key_pos = torch.randint(0, 16, (rows, keys), generator=generator)
    key_valid = torch.rand(rows, keys, generator=generator) > 0.2
    query_view = torch.randint(-2, 3, (rows, queries), generator=generator)
    key_view = torch.randint(-2, 3, (rows, keys), generator=generator)
    dense = block_causal_allowed(query_pos, key_pos, key_valid, b, query_view, key_view)
    rule = block_mask_mod(query_pos, key_pos, key_valid, b, query_view, key_view)
    flex = create_mask(rule, rows, 1, queries, keys, device="cpu")[:, 0]
    assert dense.any() and not dense.all()
    assert torch.equal(flex, dense)


def test_compact_view_mask_is_the_dense_mask_less_its_always_false_columns(random_tiny):
    """On real views (several per row, padding rows included), the compact mask's clean columns
    are the dense mask's, its own columns are the query's view's slots, and the dense mask
    allows nothing else."""
    from pareto_bench.dllm.attention import block_causal_allowed, own_view_allowed

    lm, b = random_tiny, 4
    prompts, gens = _sampled_trajectories(lm, b)
    packed = _packed(prompts, gens, b, lm.mask_id, surrogate=False)
    sequences = [r.tokens for r in packed]
    clean = likelihood._clean_slots(sequences, max(map(len, sequences)))
    part = likelihood._stack([r.views for r in packed])
    cached = clean.pos.shape[1]
    compact = own_view_allowed(
        part.pos, part.valid, part.view, clean.pos, clean.valid, clean.view, b
    )
    dense = block_causal_allowed(
        part.pos,
        torch.cat([clean.pos, part.pos], 1),
        torch.cat([clean.valid, part.valid], 1),
        b,
        part.view,
        torch.cat([clean.view, part.view], 1),
    )
    assert (part.view == -2).any() and compact.any()
    assert torch.equal(compact[..., :cached], dense[..., :cached])
    own = dense[..., cached:].reshape(*dense.shape[:2], -1, b)  # [R, Q, views, b]
    view_of_query = torch.arange(part.pos.shape[1]) // b
    for q, view in enumerate(view_of_query.tolist()):
        assert torch.equal(compact[:, q, cached:], own[:, q, view])
        others = torch.cat([own[:, q, :view], own[:, q, view + 1 :]], dim=1)
        assert not others.any()


def test_the_likelihoods_flex_attention_is_what_transformers_calls():
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from pareto_bench.dllm.attention import flex_attention_forward, flex_implementation

    name = flex_implementation()
    assert ALL_ATTENTION_FUNCTIONS.get_interface(name, None) is flex_attention_forward
    assert flex_implementation() == name  # registered once


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.filterwarnings("error:flex_attention called without torch.compile")
@pytest.mark.parametrize("surrogate", [False, True], ids=["trajectory", "block_surrogate"])
def test_flex_likelihood_equals_sdpa_on_gpu(random_tiny, surrogate):
    """On a GPU, FlexAttention with a BlockMask gives the SDPA path's values and gradients."""
    lm, b = random_tiny, 4
    prompts, gens = _sampled_trajectories(lm, b)
    model = copy.deepcopy(lm.model).to("cuda", torch.float32)  # the session's model stays as is
    rows = _packed(prompts, gens, b, lm.mask_id, surrogate)

    def score(attention):
        return sequence_logprobs(
            model,
            rows,
            block_size=b,
            mask_id=lm.mask_id,
            max_tokens_per_forward=8,
            attention=attention,
        )

    results = []
    for attention in ("sdpa", "flex"):
        model.zero_grad(set_to_none=True)
        logp = score(attention)
        logp.sum().backward()
        results.append((logp.detach(), [p.grad.clone() for p in model.parameters()]))
    with torch.no_grad():  # a reference pass: no autograd, queries shorter than 128
        model.eval()
        assert torch.allclose(score("sdpa"), score("flex"), atol=1e-4)
    (a, grads_a), (f, grads_f) = results
    assert torch.allclose(a, f, atol=1e-4)
    for x, y in zip(grads_a, grads_f, strict=True):
        assert torch.allclose(x, y, atol=1e-3)


def test_the_last_mlp_runs_on_target_slots_only(random_tiny):
    """The last layer's MLP sees each target slot once (its other outputs are never read), and
    nothing of the clean pass, whose last layer only leaves keys and values."""
    lm, b = random_tiny, 4
    prompts, gens = _sampled_trajectories(lm, b)
    rows_seen = []
    hook = lm.model.model.layers[-1].mlp.down_proj.register_forward_pre_hook(
        lambda module, args: rows_seen.append(args[0].shape[:-1].numel())
    )
    try:
        _score_in_forwards_of_8(lm, prompts, gens, b)
    finally:
        hook.remove()
    clean_forwards = [n for n in rows_seen if n == 0]
    assert clean_forwards, "the clean pass runs no MLP at the last layer"
    assert sum(rows_seen) == sum(len(g.tokens) for g in gens)  # every token is one view's target
