"""Models: loading checkpoints as block-wise diffusion LMs.

``load_model("tiny")`` loads the shipped tiny model; any other spec is a checkpoint directory
(Qwen3/Qwen2/Llama, or SDAR layout) or a Hugging Face Hub name (``JetLM/SDAR-1.7B-Chat``)
found in the local Hugging Face cache (``HF_HOME``, ``HF_HUB_CACHE``), as transformers finds it.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from pareto_bench.core.placement import resolve_device, resolve_dtype
from pareto_bench.dllm.checkpoint import (
    ARCHITECTURES,
    CheckpointError,
    CheckpointParts,
    DiffusionLM,
    load_checkpoint,
    read_checkpoint,
)
from pareto_bench.dllm.tiny import SHIPPED_TINY, build_tiny

__all__ = [
    "ARCHITECTURES",
    "CheckpointError",
    "DiffusionLM",
    "build_tiny",
    "check_model",
    "load_checkpoint",
    "load_model",
    "resolve_checkpoint",
]


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
