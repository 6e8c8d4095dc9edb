"""The one-device path on a GPU in bf16: decode, the likelihood, one RL step and a short eval,
each value compared with the same computation on the CPU (skipped without CUDA)."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
import torch

from pareto_bench.core.flops import device_entry
from pareto_bench.dllm.likelihood import pack, sequence_logprobs, trajectory_views
from pareto_bench.dllm.models import build_tiny, load_model
from pareto_bench.dllm.sampler import aggregate_tpf, generate
from pareto_bench.evaluate import evaluate
from pareto_bench.rl.config import load_recipe
from pareto_bench.rl.trainer import train
from pareto_bench.tasks.synthetic import SyntheticTask

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _decode(lm, prompts, **options):
    return generate(
        lm,
        prompts,
        max_new_tokens=64,
        **options,
    )


def test_decode_on_cuda_in_bf16_matches_the_cpu():
    """Greedy decoding of 16 problems by the trained tiny in bf16, on the GPU and on the CPU.
    The two devices' bf16 kernels round differently, and a rounding flips a near-tie: on tiny
    in bf16 a change of batch size flips about 1 problem in 500. So at most 1 of the 16 may
    differ, and the TPF over all 16 within 5%."""
    gpu = load_model("tiny", device="cuda", dtype="bfloat16")
    cpu = load_model("tiny", device="cpu", dtype="bfloat16")
    assert gpu.device.type == "cuda" and gpu.model.dtype == torch.bfloat16
    prompts = [gpu.encode_prompt(SyntheticTask().prompt(p)) for p in SyntheticTask().load()[:16]]
    on_gpu, on_cpu = (_decode(lm, prompts, threshold=0.9) for lm in (gpu, cpu))
    same = [
        (g.tokens, g.step_map) == (c.tokens, c.step_map)
        for g, c in zip(on_gpu, on_cpu, strict=True)
    ]
    assert sum(same) >= 15, f"{16 - sum(same)} of 16 decodes differ between GPU and CPU"
    assert aggregate_tpf(on_gpu) == pytest.approx(aggregate_tpf(on_cpu), rel=0.05)


def test_likelihood_in_bf16_on_cuda_matches_the_cpu():
    """The log-probabilities of trajectories that tiny sampled (their step maps replayed) under
    a random model of tiny's shape in bf16: the GPU with FlexAttention, the training path,
    against the CPU with SDPA. Tolerance: the GPU's bf16 may be as far from the exact (float64)
    values as the CPU's bf16 is, so the two differ by at most twice the CPU's own bf16 error."""
    tiny = load_model("tiny", device="cpu", dtype="float32")
    prompts = [tiny.encode_prompt(SyntheticTask().prompt(p)) for p in SyntheticTask().load()[:4]]
    gens = _decode(tiny, prompts, threshold=0.7, temperature=1.0, seed=0)
    exact = build_tiny(seed=1)
    exact.model.to(torch.float64)
    b, mask_id = tiny.block_size, tiny.mask_id
    rows = [
        pack(p + g.tokens, trajectory_views(len(p), g.step_map, b), block_size=b, mask_id=mask_id)
        for p, g in zip(prompts, gens, strict=True)
    ]

    def logprobs(model, attention):
        with torch.no_grad():
            return sequence_logprobs(
                model, rows, block_size=b, mask_id=mask_id, attention=attention
            )

    reference = logprobs(exact.model, "sdpa")
    cpu = logprobs(copy.deepcopy(exact.model).to(torch.bfloat16), "sdpa").double()
    gpu = logprobs(copy.deepcopy(exact.model).to("cuda", torch.bfloat16), "flex").double().cpu()
    scored = reference != 0
    assert scored.sum() >= sum(len(g.tokens) for g in gens)  # every response token is scored
    cpu_error = (cpu - reference)[scored].abs().max().item()
    assert 0 < cpu_error < 0.5  # bf16 rounds, but not wildly
    assert (gpu - cpu)[scored].abs().max().item() <= 2 * cpu_error


# The likelihood's FlexAttention must stay compiled: unfused, it holds the full score matrix.
UNFUSED_FLEX = "error:flex_attention called without torch.compile"


@pytest.mark.filterwarnings(UNFUSED_FLEX)
def test_rl_steps_on_cuda_in_bf16_keep_fp32_master_weights(tmp_path):
    """Three steps, so that the policy's and the frozen reference's passes alternate."""
    config = load_recipe(
        Path(__file__).resolve().parents[1] / "trainers" / "lightningrl.yaml",
        [
            "steps=3",
            "eval_every=0",
            "save_every=0",
            "device=cuda",
            "dtype=bfloat16",
            "rollout.prompts_per_step=2",
            "rollout.group_size=4",
            "filter.enabled=false",
            "optim.micro_batch_size=3",
            "gradient_checkpointing=true",
        ],
    )
    assert config.loss.kl_beta > 0  # a reference model takes part
    records = train(config, out_dir=tmp_path, progress=False).steps
    assert len(records) == 3 and all(torch.isfinite(torch.tensor(r.loss)) for r in records)
    # MFU against the bf16 peak where the table knows the card, else unknown.
    known = device_entry(torch.cuda.get_device_name()) is not None
    assert all(r.flops > 0 and (r.mfu > 0 if known else r.mfu is None) for r in records)
    saved = load_model(tmp_path / "checkpoint", device="cpu", dtype="float32")
    assert all(p.dtype == torch.float32 for p in saved.model.parameters())


def test_short_eval_on_cuda_in_bf16():
    lm = load_model("tiny", device="cuda", dtype="bfloat16")
    records = evaluate(lm, SyntheticTask(), [0.9], limit=16, progress=False)
    assert records[0].num_samples == 16 and records[0].tpf > 1


def test_a_trial_s_run_records_the_gpu_s_use_and_memory(tmp_path, monkeypatch):
    """MLflow's system metrics on a run while the tracker monitors it (sampled every second
    here, every 10 s by default)."""
    pytest.importorskip("pynvml", reason="MLflow's GPU metrics need nvidia-ml-py")
    mlflow = pytest.importorskip("mlflow")
    from pareto_bench.tracking.mlflow_tracker import MlflowTracker

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = MlflowTracker(uri)
    run = tracker.start_run("gpu", experiment="gpu")
    with tracker.monitor_system(lambda: run):
        time.sleep(3)
    tracker.end_run(run)
    metrics = mlflow.MlflowClient(uri).get_run(run).data.metrics
    assert {"system/gpu_0_utilization_percentage", "system/gpu_0_memory_usage_megabytes"} <= set(
        metrics
    )
