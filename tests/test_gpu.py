"""The one-device path on a GPU in bf16: decode, one RL step and a short eval (skipped without CUDA)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pareto_bench.dllm.models import load_model
from pareto_bench.dllm.sampler import generate
from pareto_bench.evaluate import evaluate
from pareto_bench.rl.config import load_recipe
from pareto_bench.rl.trainer import train
from pareto_bench.tasks.synthetic import SyntheticTask

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_decode_on_cuda_in_bf16():
    lm = load_model("tiny", device="cuda", dtype="bfloat16")
    assert lm.device.type == "cuda" and lm.model.dtype == torch.bfloat16
    prompts = [lm.encode_prompt(SyntheticTask().prompt(p)) for p in SyntheticTask().load()[:4]]
    outs = generate(
        lm.model,
        prompts,
        mask_id=lm.mask_id,
        eos_id=lm.eos_ids,
        block_size=lm.block_size,
        threshold=0.9,
        max_new_tokens=64,
        temperature=1.0,
        seed=0,
    )
    assert all(g.tokens and g.num_forwards for g in outs)


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
    saved = load_model(tmp_path / "checkpoint", device="cpu", dtype="float32")
    assert all(p.dtype == torch.float32 for p in saved.model.parameters())


def test_short_eval_on_cuda_in_bf16():
    lm = load_model("tiny", device="cuda", dtype="bfloat16")
    records = evaluate(lm, SyntheticTask(), [0.9], limit=16, progress=False)
    assert records[0].num_samples == 16 and records[0].tpf > 1
