"""Model FLOPs and MFU (core/flops.py) and their count per phase of a step (rl/step.py)."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen3ForCausalLM

from pareto_bench.bench.sdar_shaped import SMALL, sdar_shaped_config
from pareto_bench.core.flops import device_entry, mfu, non_embedding_parameters, peak_flops
from pareto_bench.rl.step import Stopwatch


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return Qwen3ForCausalLM(sdar_shaped_config(SMALL, vocab_size=300))


def test_non_embedding_parameters_are_the_layers_and_final_norm(small_model):
    """By hand from SMALL's shape: attention (q, k, v, o and the q/k norms), the gated MLP and
    two norms per layer, and the final norm; neither the embedding nor the untied head."""
    hidden, head_dim, inner = SMALL["hidden_size"], SMALL["head_dim"], SMALL["intermediate_size"]
    q = SMALL["num_attention_heads"] * head_dim
    kv = SMALL["num_key_value_heads"] * head_dim
    attention = 2 * hidden * q + 2 * hidden * kv + 2 * head_dim
    layer = attention + 3 * hidden * inner + 2 * hidden
    assert non_embedding_parameters(small_model) == SMALL["num_hidden_layers"] * layer + hidden


def test_a_forward_costs_2n_per_token_its_backward_4n_and_a_recompute_2n(small_model):
    n = non_embedding_parameters(small_model)
    ids = torch.randint(0, 300, (3, 5))
    clock = Stopwatch()
    with clock.counting([small_model, small_model]):  # listed twice, counted once
        with clock("likelihood"):
            small_model.base_model(input_ids=ids)  # with grad: it will be backpropagated
        with clock("reference"), torch.no_grad():
            small_model.base_model(input_ids=ids[:1])
        with clock("backward"):
            small_model.base_model(input_ids=ids)  # a checkpoint's recompute
    small_model.base_model(input_ids=ids)  # outside ``counting``: not counted
    assert dict(clock.flops) == {
        "likelihood": 2 * n * 15,
        "reference": 2 * n * 5,
        "backward": 4 * n * 15 + 2 * n * 15,
    }
    assert clock.record_fields()["flops"] == 2 * n * 20 + 6 * n * 15
    assert clock.record_fields()["mfu"] is None and clock.peak_memory == {}


@pytest.mark.parametrize(
    "name, entry",
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 SXM5 80GB", "H100 SXM"),
        ("NVIDIA H100 PCIe", None),
        ("NVIDIA H100 NVL", None),
        ("NVIDIA H200", "H200"),
        ("NVIDIA H200 NVL", None),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A100-PCIE-40GB", "A100"),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_the_peak_table_is_found_by_device_name(name, entry):
    assert device_entry(name) == entry


def test_mfu_is_unknown_without_a_peak():
    assert peak_flops("cpu") is None and peak_flops("cpu", torch.bfloat16) is None
    assert mfu(1e12, 1.0, None) is None
    assert mfu(1e12, 2.0, 1e15) == pytest.approx(5e-4)
