"""Where a model runs and in which precision: the one owner of the ``device`` and ``dtype`` options.

``device``: ``auto`` (this process's GPU when there is one, else the CPU), ``cpu``, ``cuda`` or
``cuda:N``. Under torchrun (srun), ``auto`` takes the GPU of ``LOCAL_RANK`` (``SLURM_LOCALID``).
``dtype``: ``auto`` (bf16 on a GPU, fp32 on the CPU), ``float32`` or ``bfloat16``.

``World``: the processes that torchrun (or srun) launched, read from the launcher's environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``; SLURM's ``SLURM_PROCID``/``SLURM_NTASKS``). It joins
``torch.distributed`` with NCCL on GPUs and gloo on CPUs. One process is a world of one.

Precision in training: the trained weights and the optimizer state stay in fp32 (master
weights, so that a 1e-6 learning rate is not rounded away) and the forward runs under
``torch.autocast`` in the compute dtype. Frozen models (evaluation, decoding, the KL reference)
are stored in the compute dtype itself. Log-softmaxes are always taken in fp32.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator

if TYPE_CHECKING:  # configs import this module's names; they must not pay for torch
    import torch

T = TypeVar("T")
DtypeName = Literal["auto", "float32", "bfloat16"]

DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"
DEVICE_HELP = "'auto' (the process's GPU if any, else CPU), 'cpu', 'cuda' or 'cuda:N'."
DTYPE_HELP = "'auto' (bfloat16 on GPU, float32 on CPU), 'float32' or 'bfloat16'."


def _device_name(value: Any) -> Any:
    # A bare pattern would answer with the regex; this says the valid names.
    if isinstance(value, str) and not re.match(DEVICE_PATTERN, value):
        raise ValueError(f"expected {DEVICE_HELP}")
    return value


DeviceName = Annotated[str, BeforeValidator(_device_name)]  # a config field holding a device


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @classmethod
    def from_env(cls) -> World:
        env = os.environ
        if "WORLD_SIZE" in env:
            return cls(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
        if "SLURM_NTASKS" in env and "MASTER_ADDR" in env:
            return cls(
                int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
            )
        return cls()

    def start(self, device: torch.device) -> None:
        """Join the process group (once per process); a world of one has none."""
        import torch
        import torch.distributed as dist

        if not self.distributed or dist.is_initialized():
            return
        os.environ.setdefault("RANK", str(self.rank))
        os.environ.setdefault("WORLD_SIZE", str(self.size))
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        # A rank that fails takes the job down through the launcher within seconds; the timeout
        # only bounds a hang (a rank stuck outside any collective).
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
        # Leave the group before the interpreter exits: a gloo group torn down by the exit
        # itself can abort the process (SIGABRT) after its work is done.
        atexit.register(_leave_process_group)

    def finish(self) -> None:
        """Leave the process group once every rank is done with it. The barrier comes first, so
        that no rank tears its connections down while a peer still uses them: a gloo rank left
        to its exit handlers aborted (SIGABRT) after its work, 2 times in about 16 runs."""
        import torch.distributed as dist

        if self.distributed and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order, on every rank."""
        import torch.distributed as dist

        if not self.distributed:
            return [value]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        import torch.distributed as dist

        if self.distributed:
            dist.barrier()

    def share(self, items: Sequence[T]) -> list[int]:
        """Positions of ``items`` this rank handles: contiguous, as even as possible."""
        per, extra = divmod(len(items), self.size)
        start = self.rank * per + min(self.rank, extra)
        return list(range(start, start + per + (self.rank < extra)))


def _leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


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
        return torch.device("cuda", World.from_env().local_rank)
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
