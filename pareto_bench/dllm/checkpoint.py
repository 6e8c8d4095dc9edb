"""A checkpoint directory loaded as a block-wise diffusion LM: a causal-LM network of a
registered family (``families``), its tokenizer, the mask and EOS ids and the block size.
``CheckpointLM`` is the implementation of the ``DiffusionLM`` protocol (``models``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from pareto_bench.core.registry import lazy
from pareto_bench.dllm.families import MODELS


class CheckpointError(ValueError):
    """A checkpoint directory is missing or malformed; the message names the path and the problem."""


MASK_TOKEN_CANDIDATES = ("<|MASK|>", "<|mask|>", "<mask>")
BLOCK_SIZE_KEYS = ("block_size", "bd_size", "block_length")


@dataclass
class CheckpointLM:
    """A loaded checkpoint with everything the sampler needs."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    mask_id: int
    eos_id: int
    block_size: int
    name: str
    stop_ids: tuple[int, ...] = ()  # further EOS ids (generation_config.json may list several)

    @property
    def eos_ids(self) -> tuple[int, ...]:
        """Every id that ends a sequence, ``eos_id`` first."""
        return tuple(dict.fromkeys((self.eos_id, *self.stop_ids)))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode_prompt(self, text: str) -> list[int]:
        """Token ids of a user message, in the model's chat format when it has one."""
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
            )
            return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``. The model's vocabulary may have rows beyond the tokenizer's (Qwen3:
        151,936 rows, about 151,670 tokens); a sampled id there has no text and is left out."""
        known = len(self.tokenizer)
        return self.tokenizer.decode([i for i in ids if 0 <= i < known], skip_special_tokens=True)

    def save(self, path: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """``save_pretrained`` plus the diffusion fields, so that ``load_checkpoint`` round-trips.
        ``state_dict`` replaces the model's own (a sharded model's gathered weights)."""
        self.model.config.mask_token_id = self.mask_id
        self.model.config.block_size = self.block_size
        self.model.save_pretrained(path, state_dict=state_dict)
        self.tokenizer.save_pretrained(path)


def read_checkpoint_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(
            f"checkpoint {path}: no such directory (pass --model tiny or a checkpoint directory)"
        )
    if not path.is_dir():
        raise CheckpointError(
            f"checkpoint {path}: not a directory (a checkpoint is a directory with config.json)"
        )
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"checkpoint {path}: config.json is missing")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"checkpoint {config_file}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise CheckpointError(f"checkpoint {config_file}: no 'model_type' field")
    return config


@dataclass
class CheckpointParts:
    """What a checkpoint directory says before its weights are read."""

    config: PretrainedConfig
    model_class: type[PreTrainedModel]
    tokenizer: PreTrainedTokenizerBase
    mask_id: int
    block_size: int
    eos_ids: tuple[int, ...]


def read_checkpoint(
    path: str | Path,
    *,
    block_size: int | None = None,
    mask_id: int | None = None,
    attn_implementation: str = "sdpa",
) -> CheckpointParts:
    """A checkpoint's config, tokenizer and special ids, without its weights: enough to know
    that it will load (a sweep checks this before its first trial)."""
    from transformers import AutoTokenizer

    path = Path(path)
    raw = read_checkpoint_config(path)
    model_type = raw["model_type"]
    if model_type not in MODELS:
        raise CheckpointError(
            f"checkpoint {path}: model_type {model_type!r} is not supported; supported: {', '.join(MODELS.names())}"
        )
    family = MODELS.get(model_type)
    config_cls: type[PretrainedConfig] = lazy(family.config_class)()
    fields = {
        k: v
        for k, v in raw.items()
        if k not in ("model_type", "architectures", "auto_map", "transformers_version")
    }
    config = config_cls(**fields)
    config._attn_implementation = attn_implementation
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as e:  # tokenizers raise many types for a broken directory
        raise CheckpointError(
            f"checkpoint {path}: cannot load its tokenizer ({type(e).__name__}: {e})"
        ) from None
    mask_id = mask_id if mask_id is not None else _find_mask_id(raw, tokenizer, path)
    block_size = block_size or next((int(raw[k]) for k in BLOCK_SIZE_KEYS if raw.get(k)), 0)
    if not block_size:
        raise CheckpointError(
            f"checkpoint {path}: config.json has no block size ({' / '.join(BLOCK_SIZE_KEYS)}); pass --block-size N"
        )
    eos_ids = _eos_ids(tokenizer, raw, path)
    if not eos_ids:
        raise CheckpointError(
            f"checkpoint {path}: neither the tokenizer nor config.json names an EOS token"
        )
    return CheckpointParts(
        config, lazy(family.model_class)(), tokenizer, int(mask_id), int(block_size), eos_ids
    )


def load_checkpoint(
    path: str | Path,
    *,
    block_size: int | None = None,
    mask_id: int | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    attn_implementation: str = "sdpa",
) -> CheckpointLM:
    """Load a checkpoint directory of a registered family (SDAR layout included) without
    remote code."""
    path = Path(path)
    parts = read_checkpoint(
        path, block_size=block_size, mask_id=mask_id, attn_implementation=attn_implementation
    )
    try:
        model = parts.model_class.from_pretrained(
            path, config=parts.config, dtype=dtype or torch.float32
        )
    except (OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"checkpoint {path}: cannot load its weights ({type(e).__name__}: {str(e).splitlines()[0]})"
        ) from None
    model.to(device).eval()
    return CheckpointLM(
        model,
        parts.tokenizer,
        parts.mask_id,
        parts.eos_ids[0],
        parts.block_size,
        name=str(path),
        stop_ids=parts.eos_ids[1:],
    )


def _eos_ids(
    tokenizer: PreTrainedTokenizerBase, raw: dict[str, Any], path: Path
) -> tuple[int, ...]:
    """The tokenizer's EOS first, then those of config.json and generation_config.json."""
    found: list[Any] = [tokenizer.eos_token_id, raw.get("eos_token_id")]
    generation = path / "generation_config.json"
    if generation.is_file():
        try:
            found.append(json.loads(generation.read_text()).get("eos_token_id"))
        except (json.JSONDecodeError, AttributeError) as e:
            raise CheckpointError(
                f"checkpoint {generation}: not a valid JSON object ({e})"
            ) from None
    ids: list[int] = []
    for entry in found:
        ids.extend(int(i) for i in (entry if isinstance(entry, list) else [entry]) if i is not None)
    return tuple(dict.fromkeys(ids))


def _find_mask_id(raw: dict[str, Any], tokenizer: PreTrainedTokenizerBase, path: Path) -> int:
    if raw.get("mask_token_id") is not None:
        return int(raw["mask_token_id"])
    if tokenizer.mask_token_id is not None:
        return int(tokenizer.mask_token_id)
    vocab = tokenizer.get_vocab()
    for token in MASK_TOKEN_CANDIDATES:
        if token in vocab:
            return vocab[token]
    raise CheckpointError(
        f"checkpoint {path}: no mask token (config.json 'mask_token_id' or a tokenizer token "
        f"{' / '.join(MASK_TOKEN_CANDIDATES)}); add 'mask_token_id' to config.json"
    )
