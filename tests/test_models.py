"""Loading checkpoints: SDAR layout into Qwen3 without remote code, other families, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3ForCausalLM,
)

from pareto_bench.dllm.models import CheckpointError, build_tiny, load_model
from pareto_bench.dllm.sampler import generate
from pareto_bench.dllm.tokenizer import build_char_tokenizer


def write_sdar_checkpoint(path: Path, *, with_block_size: bool = True) -> torch.nn.Module:
    """What an SDAR release looks like: config.json with model_type "sdar" and a remote-code
    auto_map, Qwen3 parameter names in safetensors, and a tokenizer with a mask token."""
    lm = build_tiny(seed=3, hidden_size=32, layers=2)
    path.mkdir(parents=True)
    cfg = lm.model.config.to_dict()
    cfg.update(
        model_type="sdar",
        architectures=["SDARForCausalLM"],
        auto_map={"AutoModelForCausalLM": "modeling_sdar.SDARForCausalLM"},
        mask_token_id=lm.mask_id,
    )
    if with_block_size:
        cfg["block_size"] = 4
    (path / "config.json").write_text(json.dumps(cfg))
    state = {k: v.contiguous() for k, v in lm.model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    lm.tokenizer.save_pretrained(path)
    return lm.model


def test_sdar_layout_loads_into_qwen3_with_same_outputs(tmp_path):
    original = write_sdar_checkpoint(tmp_path / "sdar")
    lm = load_model(tmp_path / "sdar")
    assert type(lm.model) is Qwen3ForCausalLM
    assert lm.block_size == 4
    assert lm.mask_id == build_char_tokenizer().mask_token_id
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    with torch.no_grad():
        assert torch.allclose(lm.model(ids).logits, original(ids).logits, atol=1e-5)
    out = generate(
        lm,
        [[3, 4, 5]],
        threshold=0.9,
        max_new_tokens=6,
    )
    assert len(out[0].tokens) >= 1


def test_sdar_without_block_size_needs_the_option(tmp_path):
    write_sdar_checkpoint(tmp_path / "sdar", with_block_size=False)
    with pytest.raises(CheckpointError, match="--block-size"):
        load_model(tmp_path / "sdar")
    assert load_model(tmp_path / "sdar", block_size=16).block_size == 16


@pytest.mark.parametrize(
    ("config_cls", "model_cls", "model_type"),
    [(Qwen2Config, Qwen2ForCausalLM, "qwen2"), (LlamaConfig, LlamaForCausalLM, "llama")],
)
def test_other_causal_lm_families_load(tmp_path, config_cls, model_cls, model_type):
    tokenizer = build_char_tokenizer()
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    config.mask_token_id = tokenizer.mask_token_id
    config.block_size = 8
    model_cls(config).save_pretrained(tmp_path / model_type)
    tokenizer.save_pretrained(tmp_path / model_type)
    lm = load_model(tmp_path / model_type)
    assert type(lm.model) is model_cls
    assert (lm.block_size, lm.mask_id) == (8, tokenizer.mask_token_id)


def test_missing_and_malformed_checkpoints_name_path_and_problem(tmp_path):
    with pytest.raises(CheckpointError, match=r"no_such_dir.*no such directory"):
        load_model(tmp_path / "no_such_dir")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty.*config.json is missing"):
        load_model(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"bad.*not valid JSON"):
        load_model(tmp_path / "bad")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    with pytest.raises(CheckpointError, match=r"'mamba' is not supported"):
        load_model(tmp_path / "odd")
    write_sdar_checkpoint(tmp_path / "noweights")
    (tmp_path / "noweights" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"noweights.*weights"):
        load_model(tmp_path / "noweights")


def test_the_shipped_tiny_model_loads():
    lm = load_model("tiny")
    assert lm.name == "tiny" and lm.block_size == 8
    assert lm.decode(lm.encode_prompt("1,2,3,4:")) == "1,2,3,4:"


def test_char_tokenizer_round_trips_through_transformers(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = build_char_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "6+7=13,13+1=14;14"
    assert loaded.encode(text, add_special_tokens=False) == tokenizer.encode(
        text, add_special_tokens=False
    )
    assert len(loaded.encode(text, add_special_tokens=False)) == len(text)
    assert loaded.decode(loaded.encode(text, add_special_tokens=False)) == text


def test_a_hub_name_loads_from_the_local_hugging_face_cache(tmp_path, monkeypatch):
    """`--model org/name` as transformers users expect: the snapshot that refs/main names in
    $HF_HOME/hub, laid out here as `hf download` leaves it, offline."""
    import importlib

    import huggingface_hub.constants

    commit = "0" * 40
    repo = tmp_path / "hf" / "hub" / "models--JetLM--SDAR-tiny-test"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    original = write_sdar_checkpoint(repo / "snapshots" / commit)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    importlib.reload(huggingface_hub.constants)
    try:
        lm = load_model("JetLM/SDAR-tiny-test")
        ids = torch.tensor([[3, 4, 5, 6]])
        with torch.no_grad():
            assert torch.allclose(lm.model(ids).logits, original(ids).logits, atol=1e-5)
        with pytest.raises(
            CheckpointError,
            match=r"not in the Hugging Face cache .*hf.*hub.*hf download JetLM/absent",
        ):
            load_model("JetLM/absent")
    finally:
        monkeypatch.undo()
        importlib.reload(huggingface_hub.constants)
