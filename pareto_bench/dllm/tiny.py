"""``tiny``: the project's own small block-diffusion model, shipped inside the package.

A 4-layer Qwen3 with a character-level tokenizer, pretrained by ``pareto-bench pretrain-tiny``
on the synthetic task. It makes every command run on a laptop CPU in minutes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from pareto_bench.dllm.checkpoint import CheckpointLM
from pareto_bench.dllm.tokenizer import build_char_tokenizer

SHIPPED_TINY = Path(__file__).resolve().parents[1] / "assets" / "tiny"
TINY_BLOCK_SIZE = 8


def tiny_config(vocab_size: int, *, hidden_size: int = 128, layers: int = 4) -> Qwen3Config:
    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden_size // 4,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        rope_theta=10000.0,
    )
    config._attn_implementation = "sdpa"
    return config


def build_tiny(seed: int = 0, *, hidden_size: int = 128, layers: int = 4) -> CheckpointLM:
    """A freshly initialised tiny model (used by ``pretrain-tiny`` and by tests)."""
    tokenizer = build_char_tokenizer()
    torch.manual_seed(seed)
    config = tiny_config(len(tokenizer), hidden_size=hidden_size, layers=layers)
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    model = Qwen3ForCausalLM(config).eval()
    return CheckpointLM(
        model,
        tokenizer,
        tokenizer.mask_token_id,
        tokenizer.eos_token_id,
        TINY_BLOCK_SIZE,
        name="tiny-init",
    )
