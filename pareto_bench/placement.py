"""Where a model runs and in which precision: the one owner of the ``device`` and ``dtype`` options.

``device``: ``auto`` (this process's GPU when there is one, else the CPU), ``cpu``, ``cuda`` or
``cuda:N``. Under torchrun, ``auto`` takes the GPU of ``LOCAL_RANK``.
``dtype``: ``auto`` (bf16 on a GPU, fp32 on the CPU), ``float32`` or ``bfloat16``.

Precision in training: the trained weights and the optimizer state stay in fp32 (master
weights, so that a 1e-6 learning rate is not rounded away) and the forward runs under
``torch.autocast`` in the compute dtype. Frozen models (evaluation, decoding, the KL reference)
are stored in the compute dtype itself. Log-softmaxes are always taken in fp32.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # configs import this module's names; they must not pay for torch
    import torch

DtypeName = Literal["auto", "float32", "bfloat16"]

DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"
DEVICE_HELP = "'auto' (the process's GPU if any, else CPU), 'cpu', 'cuda' or 'cuda:N'."
DTYPE_HELP = "'auto' (bfloat16 on GPU, float32 on CPU), 'float32' or 'bfloat16'."


class PlacementError(ValueError):
    """A device or dtype option names something this machine cannot do; one line, with the fix."""


def check_device_name(name: str) -> str:
    """Validate the spelling of a device option (without touching the hardware)."""
    if not re.match(DEVICE_PATTERN, name):
        raise PlacementError(f"device {name!r}: expected {DEVICE_HELP}")
    return name


def resolve_device(name: str = "auto") -> torch.device:
    import torch

    check_device_name(name)
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PlacementError(
                f"device {name!r}: this machine has no CUDA GPU visible to torch; use device=cpu or auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PlacementError(
                f"device {name!r}: only {torch.cuda.device_count()} GPU(s) are visible; "
                f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}"
            )
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    import torch

    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in dtypes:
        raise PlacementError(f"dtype {name!r}: expected {DTYPE_HELP}")
    return dtypes[name]


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Mixed precision for fp32 master weights computing in ``dtype``; a no-op for fp32 and fp64."""
    import torch

    if dtype not in (torch.bfloat16, torch.float16):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
