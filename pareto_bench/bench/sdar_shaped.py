"""Random checkpoints with SDAR's shapes where memory is decided, for benches and tests.

No SDAR weights can be downloaded here, so the scale benches write their own: an SDAR-layout
directory (``model_type: sdar``, Qwen3 parameter names, a remote-code ``auto_map`` that we
ignore) with the real 151,936-row vocabulary, block 32, and a tokenizer much smaller than the
vocabulary, as in SDAR (151,936 rows, about 151,670 tokens). ``generation_config.json`` lists
two EOS ids, as SDAR's does. The network itself is small unless a shape is asked for.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from pareto_bench.dllm.tokenizer import build_char_tokenizer

SDAR_VOCAB = 151_936
SDAR_BLOCK = 32
QWEN_ENDOFTEXT = 151_643
# SDAR-1.7B: 28 layers, hidden 2048, Qwen3-1.7B's heads and MLP.
SDAR_1_7B = {
    "hidden_size": 2048,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 6144,
}
SMALL = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "intermediate_size": 256,
}


def sdar_shaped_config(
    shape: dict[str, int] | None = None, vocab_size: int = SDAR_VOCAB
) -> Qwen3Config:
    tokenizer = build_char_tokenizer()
    config = Qwen3Config(
        vocab_size=vocab_size,
        max_position_embeddings=32_768,
        tie_word_embeddings=False,
        rope_theta=1_000_000.0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **(shape or SMALL),
    )
    config._attn_implementation = "sdpa"
    return config


def write_sdar_shaped_checkpoint(
    path: str | Path,
    *,
    shape: dict[str, int] | None = None,
    vocab_size: int = SDAR_VOCAB,
    block_size: int = SDAR_BLOCK,
    seed: int = 0,
) -> Path:
    """Write a random SDAR-layout checkpoint to ``path`` and return it."""
    path = Path(path)
    tokenizer = build_char_tokenizer()
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(sdar_shaped_config(shape, vocab_size))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    config.update(
        model_type="sdar",
        architectures=["SDARForCausalLM"],
        auto_map={"AutoModelForCausalLM": "modeling_sdar.SDARForCausalLM"},
        mask_token_id=tokenizer.mask_token_id,
        block_size=block_size,
    )
    (path / "config.json").write_text(json.dumps(config, indent=2))
    # A second stop id, as SDAR lists <|im_end|> and <|endoftext|>; here it has no token text.
    eos = [tokenizer.eos_token_id] + ([QWEN_ENDOFTEXT] if vocab_size > QWEN_ENDOFTEXT else [])
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": eos}))
    return path


def rl_step_config(
    checkpoint: str | Path,
    *,
    tokens: int,
    tokens_per_forward: int,
    block_size: int,
    groups: int,
    group_size: int,
    overrides: tuple[str, ...] = (),
):
    """A one-step run of ``groups x group_size`` trajectories of exactly ``tokens`` tokens on a
    random checkpoint: the static strategy at ``tokens_per_forward`` (a random model is never
    confident and never stops early), no filtering."""
    from pareto_bench.rl.config import load_recipe

    return load_recipe(
        None,
        [
            f"model={checkpoint}",
            "task=synthetic",
            "steps=1",
            "eval_every=0",
            "save_every=0",
            "filter.enabled=false",
            f"rollout.prompts_per_step={groups}",
            f"rollout.group_size={group_size}",
            f"rollout.max_new_tokens={tokens}",
            "rollout.strategy=static",
            f"rollout.steps_per_block={max(1, block_size // tokens_per_forward)}",
            *overrides,
        ],
    )


def one_rl_step(checkpoint: str | Path, out: str | Path, **shape):
    """Train ``rl_step_config(checkpoint, **shape)`` and return its one ``TrainStepRecord``."""
    from pareto_bench.rl.trainer import train

    (record,) = train(rl_step_config(checkpoint, **shape), out_dir=out, progress=False).steps
    return record
