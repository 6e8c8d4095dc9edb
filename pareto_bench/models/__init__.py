"""Models: loading checkpoints as block-wise diffusion LMs.

``load_model("tiny")`` loads the shipped tiny model; any other spec is a checkpoint directory
(Qwen3/Qwen2/Llama, or SDAR layout).
"""

from __future__ import annotations

from pathlib import Path

import torch

from pareto_bench.models.base import ARCHITECTURES, CheckpointError, DiffusionLM, load_checkpoint
from pareto_bench.models.tiny import SHIPPED_TINY, build_tiny
from pareto_bench.placement import resolve_device, resolve_dtype

__all__ = [
    "ARCHITECTURES",
    "CheckpointError",
    "DiffusionLM",
    "build_tiny",
    "load_checkpoint",
    "load_model",
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
    if str(spec) == "tiny":
        if not (SHIPPED_TINY / "config.json").is_file():
            raise CheckpointError(
                f"the shipped tiny model is missing at {SHIPPED_TINY}; run `pareto-bench pretrain-tiny` to build it"
            )
        lm = load_checkpoint(SHIPPED_TINY, block_size=block_size, dtype=dtype, device=device)
        lm.name = "tiny"
        return lm
    return load_checkpoint(spec, block_size=block_size, dtype=dtype, device=device)
