"""Real-model scale on one device: micro-batches, precision, real vocabulary and EOS lists."""

from __future__ import annotations

import json

import pytest
import torch
from test_trainer import small_config

from pareto_bench.bench.sdar_shaped import QWEN_ENDOFTEXT, SDAR_VOCAB, write_sdar_shaped_checkpoint
from pareto_bench.core.records import TrainStepRecord, read_jsonl
from pareto_bench.dllm.likelihood import Scorer
from pareto_bench.dllm.models import load_model
from pareto_bench.dllm.sampler import generate
from pareto_bench.rl.replay import Replay
from pareto_bench.rl.step import LossInputs, accumulate_gradients
from pareto_bench.rl.trainer import train


def config_with(*overrides: str):
    return small_config(*overrides, steps=1)


@pytest.fixture(scope="module")
def sdar_checkpoint(tmp_path_factory):
    return write_sdar_shaped_checkpoint(tmp_path_factory.mktemp("sdar") / "checkpoint")


@pytest.mark.parametrize("reduction", ["seq", "tok"])
def test_micro_batched_update_equals_the_whole_batch_update(random_tiny, reduction):
    """float64: gradients accumulated over micro-batches of 3 (with the whole batch's
    normalisers) equal one pass over all 8 trajectories, for every loss term and reduction."""
    lm = random_tiny
    prompts = [[3, 4, 5], [5, 6, 7, 8, 9, 10]]
    gens = generate(
        lm,
        [p for p in prompts for _ in range(4)],
        block_size=4,
        threshold=0.0,
        max_new_tokens=9,
        strategy="static",
        steps_per_block=2,
        temperature=1.0,
        seed=3,
    )
    trajectories = [
        (p, g) for p, g in zip([p for p in prompts for _ in range(4)], gens, strict=True)
    ]
    overrides = [f"loss.{term}_reduction={reduction}" for term in ("policy", "kl", "nll")]
    generator = torch.Generator().manual_seed(0)
    width = max(len(g.tokens) for g in gens)
    mask = torch.arange(width)[None] < torch.tensor([len(g.tokens) for g in gens])[:, None]
    inputs = LossInputs(
        advantages=torch.randn(8, generator=generator, dtype=torch.float64),
        mask=mask,
        correct=torch.tensor([True, False, True, True, False, False, True, False]),
        logp_old=-torch.rand(8, width, generator=generator, dtype=torch.float64),
        logp_ref=-torch.rand(8, width, generator=generator, dtype=torch.float64),
    )

    def gradients(micro_batch_size: int):
        config = config_with(f"optim.micro_batch_size={micro_batch_size}", *overrides)
        replay = Replay(trajectories, config, lm, block_size=4)
        lm.model.zero_grad(set_to_none=True)
        terms = accumulate_gradients(
            Scorer(lm.model), replay, list(range(8)), inputs, config, torch.float64
        )
        return terms, [p.grad.clone() for p in lm.model.parameters()]

    whole, whole_grads = gradients(8)
    micro, micro_grads = gradients(3)
    for a, b in zip(
        (whole.loss, whole.policy_loss, whole.kl, whole.nll, whole.clip_fraction),
        (micro.loss, micro.policy_loss, micro.kl, micro.nll, micro.clip_fraction),
        strict=True,
    ):
        assert torch.allclose(a.double(), b.double(), rtol=0, atol=1e-12)
    for a, b in zip(whole_grads, micro_grads, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


def test_bf16_training_on_cpu_has_finite_losses_and_keeps_fp32_master_weights(tmp_path):
    result = train(
        small_config("dtype=bfloat16", "device=cpu", "optim.micro_batch_size=3", steps=2),
        out_dir=tmp_path,
        progress=False,
    )
    assert len(result.steps) == 2
    assert all(torch.isfinite(torch.tensor([r.loss, r.grad_norm])).all() for r in result.steps)
    saved = load_model(result.checkpoint_dir, dtype="float32")
    assert json.loads((result.checkpoint_dir / "config.json").read_text())["dtype"] == "float32"
    assert all(p.dtype == torch.float32 for p in saved.model.parameters())


def test_a_real_vocabulary_sdar_checkpoint_trains_one_step(sdar_checkpoint, tmp_path):
    """151,936 rows, a 40-token tokenizer, block 32: the random policy samples ids beyond the
    tokenizer, which decode to nothing and score as wrong; the step trains and saves."""
    result = train(
        config_with(
            f"model={sdar_checkpoint}",
            "rollout.group_size=2",
            "rollout.prompts_per_step=1",
            "rollout.max_new_tokens=64",
            "rollout.strategy=static",
            "rollout.steps_per_block=8",
            "filter.enabled=false",
            "optim.micro_batch_size=1",
            "likelihood.max_tokens_per_forward=256",
            "gradient_checkpointing=true",
            "loss.reference_device=cpu",
        ),
        out_dir=tmp_path,
        progress=False,
    )
    (record,) = read_jsonl(tmp_path / "train.jsonl", TrainStepRecord)
    assert record.tpf == pytest.approx(4.0)  # static: 32 / 8 tokens per forward
    assert torch.isfinite(torch.tensor(record.loss))
    assert load_model(result.checkpoint_dir).model.config.vocab_size == SDAR_VOCAB


def test_checkpoint_eos_ids_come_from_tokenizer_config_and_generation_config(sdar_checkpoint):
    lm = load_model(sdar_checkpoint)
    assert lm.eos_ids == (lm.tokenizer.eos_token_id, QWEN_ENDOFTEXT)
    assert lm.block_size == 32
    assert len(lm.tokenizer) < lm.model.config.vocab_size
    assert lm.decode([QWEN_ENDOFTEXT, SDAR_VOCAB - 1]) == ""  # rows beyond the tokenizer


def test_generation_stops_at_any_of_several_eos_ids(random_tiny):
    lm = random_tiny
    kwargs = dict(block_size=4, threshold=0.5, max_new_tokens=24)
    (plain,) = generate(lm, [[3, 4, 5]], **kwargs)
    stop = next(t for t in plain.tokens if t != lm.eos_id)
    (stopped,) = generate(lm, [[3, 4, 5]], eos_ids=[lm.eos_id, stop], **kwargs)
    cut = plain.tokens.index(stop) + 1
    assert stopped.tokens == plain.tokens[:cut]
    assert not stopped.hit_budget


def test_the_gpu_check_runs_end_to_end_at_small_shapes_on_cpu(sdar_checkpoint, tmp_path):
    """scripts/gpu-check.sh is first run on a lent GPU with minutes to spare: its code paths
    run here on the CPU, at small shapes, so that it does not fail there on a typo."""
    from pareto_bench.bench.gpu_check import check_decode, check_profile, check_rl_step
    from pareto_bench.core.flops import UNKNOWN, non_embedding_parameters
    from pareto_bench.rl.step import PHASES

    lm = load_model(sdar_checkpoint, device="cpu", dtype="bfloat16")
    decode = check_decode(lm, batch_size=2, new_tokens=32)
    assert {(r["block_size"], round(r["tokens_per_forward"])) for r in decode["sampler"]} == {
        (4, 1),
        (4, 4),
        (32, 1),
        (32, 4),
        (32, 8),
    }
    assert decode["hf_generate_tokens_per_s"] > 0
    assert all(r["seconds_per_forward"] > 0 and r["vs_bare_forward"] > 0 for r in decode["sampler"])

    step = check_rl_step(sdar_checkpoint, device="cpu", tokens=32, groups=1, group_size=2)
    assert step["tpf"] == pytest.approx(8.0) and step["peak_gpu_memory_gb"] is None
    assert step["flex_ran_unfused"] is False  # the CPU's likelihood uses SDPA
    assert step["non_embedding_parameters"] == non_embedding_parameters(lm.model)
    phases = step["phases"]
    assert set(phases) == set(PHASES) and all(p["seconds"] > 0 for p in phases.values())
    # 2N per token forward, 4N backward, and with gradient checkpointing one more 2N forward:
    # the reference reads the same slots as the policy's forward with grad, and the backward of
    # those slots costs 4N + 2N for every 2N the forward did.
    likelihood = phases["likelihood"]["flops"]
    assert likelihood > 0 and phases["reference"]["flops"] == likelihood
    assert phases["backward"]["flops"] == 3 * likelihood
    assert phases["rollout"]["flops"] > 0 and phases["optimizer"]["flops"] == 0
    assert phases["rollout"]["flops"] % (2 * step["non_embedding_parameters"]) == 0
    assert step["step_flops"] == sum(p["flops"] for p in phases.values())
    assert step["step_mfu"] == step["likelihood_and_backward"]["mfu"] == UNKNOWN
    assert all(p["mfu"] == UNKNOWN and p["peak_gpu_memory_gb"] is None for p in phases.values())
    assert step["peak_bf16_flops"] == UNKNOWN

    out = tmp_path / "out"
    profile = check_profile(sdar_checkpoint, out, device="cpu", tokens=32, groups=1, group_size=2)
    assert sorted(p.name for p in out.iterdir()) == sorted(profile["files"])
    assert "aten::" in (out / "profile-top-kernels.txt").read_text()
    gaps = json.loads((out / "profile-gaps.json").read_text())
    assert gaps["busy_seconds"] > 0 and gaps["idle_seconds"] >= 0
    assert set(gaps["idle_by_phase"]) <= {*PHASES, "other"}


def test_idle_gaps_are_the_time_between_busy_intervals_split_by_phase():
    from pareto_bench.bench.gpu_check import idle_gaps

    busy = [(0, 10), (5, 20), (30, 40), (100, 110)]  # microseconds; the first two overlap
    phases = [("rollout", 0, 35), ("backward", 35, 200)]
    gaps = idle_gaps(busy, phases, longest=1)
    assert gaps["gaps"] == 2 and gaps["idle_seconds"] == pytest.approx(70e-6)
    assert gaps["busy_seconds"] == pytest.approx(40e-6)
    assert gaps["idle_by_phase"] == pytest.approx({"rollout": 10e-6, "backward": 60e-6})
    assert gaps["longest"] == [{"seconds": pytest.approx(60e-6), "phase": "backward"}]
    outside = idle_gaps([(0, 1), (3, 4)], [])["idle_by_phase"]
    assert outside == pytest.approx({"other": 2e-6})


def test_a_failing_gpu_check_part_is_reported_and_the_next_still_runs(tmp_path):
    from pareto_bench.bench.gpu_check import run_parts

    def broken():
        raise RuntimeError("CUDA out of memory")

    result = run_parts({"device": "cpu"}, [("decode", broken), ("rl_step", lambda: {})], tmp_path)
    assert "RuntimeError: CUDA out of memory" in result["decode"]["error"]
    assert result["rl_step"]["wall_seconds"] >= 0
    assert json.loads((tmp_path / "gpu-check.json").read_text()) == result


def test_rollout_in_chunks_of_batch_size_equals_one_call(random_tiny):
    """float64: a round decoded 3 sequences per sampler call equals the round in one call, since
    sequence i samples with seed + i whatever the chunking."""
    from pareto_bench.rl.config import RolloutConfig
    from pareto_bench.rl.rollout import rollout
    from pareto_bench.tasks.synthetic import SyntheticTask

    task = SyntheticTask()
    problems = task.load()[:2]

    def tokens(batch_size: int):
        config = RolloutConfig(group_size=4, threshold=0.5, batch_size=batch_size)
        decoded = rollout(
            random_tiny, task, problems, config, seed=7, max_new_tokens=16, block_size=4
        )
        return [(g.tokens, g.step_map) for group in decoded.groups for g in group.generations]

    assert tokens(3) == tokens(256)


@pytest.mark.parametrize("kl_beta, loads", [(0.0, 1), (0.01, 2)])
def test_the_reference_is_loaded_only_when_the_kl_term_is_on(tmp_path, monkeypatch, kl_beta, loads):
    from pareto_bench.rl import run as run_module

    calls = []
    real = run_module.load_model
    monkeypatch.setattr(run_module, "load_model", lambda *a, **k: calls.append(k) or real(*a, **k))
    train(config_with(f"loss.kl_beta={kl_beta}"), out_dir=tmp_path, progress=False)
    assert len(calls) == loads
    if kl_beta:
        assert calls[1]["dtype"] == torch.float32  # the policy's compute dtype on this CPU


def test_the_likelihood_replays_with_the_block_size_the_rollout_decoded_with(tmp_path, monkeypatch):
    """rollout.block_size 4 on tiny (block 8): the replay uses 4, so every view is a 4-slot block."""
    from pareto_bench.rl import step as step_module

    seen = []
    real = step_module.Replay

    def spy(trajectories, config, policy, block_size):
        replay = real(trajectories, config, policy, block_size)
        seen.append(
            (block_size, {n for p in replay.packed for n in p.views.view.bincount().tolist()})
        )
        return replay

    monkeypatch.setattr(step_module, "Replay", spy)
    train(
        config_with("rollout.block_size=4", "filter.enabled=false"),
        out_dir=tmp_path,
        progress=False,
    )
    ((block_size, slots_per_view),) = seen
    assert block_size == 4 and slots_per_view == {4}
