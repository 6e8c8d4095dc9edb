"""The model seam: ``DiffusionLM``, what the sampler, the likelihood, the trainer and the
evaluator use of a model, and ``load_model``, which makes one.

``load_model("tiny")`` loads the shipped tiny model; any other spec is a checkpoint directory
of a registered family (``families``: Qwen3, Qwen2, Llama, SDAR layout) or a Hugging Face Hub name (``JetLM/SDAR-1.7B-Chat``)
found in the local Hugging Face cache (``HF_HOME``, ``HF_HUB_CACHE``), as transformers finds it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from pareto_bench.core.placement import resolve_device, resolve_dtype
from pareto_bench.dllm.checkpoint import (
    CheckpointError,
    CheckpointParts,
    load_checkpoint,
    read_checkpoint,
)
from pareto_bench.dllm.families import MODELS
from pareto_bench.dllm.tiny import SHIPPED_TINY, build_tiny

__all__ = [
    "MODELS",
    "CheckpointError",
    "DiffusionLM",
    "build_tiny",
    "check_model",
    "load_checkpoint",
    "load_model",
    "resolve_checkpoint",
]


@runtime_checkable
class DiffusionLM(Protocol):
    """A causal-LM network decoded block by block. ``checkpoint.CheckpointLM`` implements it
    for every registered family; ``families`` says how a new family plugs in."""

    model: PreTrainedModel  # the network; logits over the full vocabulary rows
    tokenizer: PreTrainedTokenizerBase
    mask_id: int  # the token of an undecided position
    block_size: int  # tokens per diffusion block
    name: str

    @property
    def eos_ids(self) -> tuple[int, ...]:
        """Every id that ends a sequence."""
        ...

    @property
    def device(self) -> torch.device: ...

    def encode_prompt(self, text: str) -> list[int]:
        """Token ids of a user message, in the model's chat format when it has one."""
        ...

    def decode(self, ids: list[int]) -> str:
        """Text of generated ids (ids beyond the tokenizer have no text)."""
        ...

    def save(self, path: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """A checkpoint directory that ``load_model`` reads back."""
        ...


def load_model(
    spec: str | Path,
    *,
    block_size: int | None = None,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device = "auto",
) -> DiffusionLM:
    """``"tiny"`` or a checkpoint directory, on ``device`` in ``dtype`` (``placement`` names)."""
    device = device if isinstance(device, torch.device) else resolve_device(device)
    dtype = dtype if isinstance(dtype, torch.dtype) else resolve_dtype(dtype, device)
    lm = load_checkpoint(_checkpoint_dir(spec), block_size=block_size, dtype=dtype, device=device)
    if str(spec) == "tiny":
        lm.name = "tiny"
    return lm


def check_model(spec: str | Path, *, block_size: int | None = None) -> CheckpointParts:
    """Everything ``load_model(spec)`` reads but the weights: the config, the tokenizer and the
    special ids. Raises ``CheckpointError`` with the same one-line messages."""
    return read_checkpoint(_checkpoint_dir(spec), block_size=block_size)


def _checkpoint_dir(spec: str | Path) -> Path:
    if str(spec) != "tiny":
        return resolve_checkpoint(spec)
    if not (SHIPPED_TINY / "config.json").is_file():
        raise CheckpointError(
            f"the shipped tiny model is missing at {SHIPPED_TINY}; run `pareto-bench pretrain-tiny` to build it"
        )
    return SHIPPED_TINY


HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_checkpoint(spec: str | Path) -> Path:
    """A checkpoint directory, or a Hub name's snapshot in the local Hugging Face cache. Nothing
    is downloaded (weights are fetched elsewhere and the cache copied in); a name that is not
    cached is an error that names the cache and the command that fills it."""
    path = Path(spec)
    if path.exists() or not HUB_NAME.match(str(spec)):
        return path
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(str(spec), local_files_only=True))
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"checkpoint {spec}: not a directory, and not in the Hugging Face cache "
            f"{constants.HF_HUB_CACHE}; on a machine with internet run `hf download {spec}` and "
            f"copy its cache there (or set HF_HOME), or pass a checkpoint directory"
        ) from None
