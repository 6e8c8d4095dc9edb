"""Command-line options and errors that several commands share."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from pareto_bench.core.placement import DEVICE_HELP, DTYPE_HELP, PlacementError
from pareto_bench.core.registry import UnknownNameError
from pareto_bench.core.schema import ConfigError

if TYPE_CHECKING:
    import torch

DeviceOption = Annotated[str, typer.Option(help=f"Device: {DEVICE_HELP}")]
DtypeOption = Annotated[str, typer.Option(help=f"Compute dtype of the model: {DTYPE_HELP}")]


class UserError(Exception):
    """An error whose message is the whole story: printed as one line, exit status 2."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
    ConfigError,
    UnknownNameError,
    PlacementError,
    FileNotFoundError,
    NotADirectoryError,
)


def resolve_placement(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    """``--device`` and ``--dtype`` resolved on this machine, or a UserError naming the option
    and the fix (checked before anything slow, such as loading the model)."""
    from pareto_bench.core.placement import resolve_device, resolve_dtype

    try:
        resolved = resolve_device(device)
        return resolved, resolve_dtype(dtype, resolved)
    except PlacementError as e:  # "device 'gpu': expected ..." -> "--device 'gpu': expected ..."
        raise UserError(f"--{e}".replace("use device=", "use --device ")) from None


def user_errors() -> tuple[type[BaseException], ...]:
    """USER_ERRORS plus the checkpoint error, once the model code is loaded (it needs torch,
    which ``--help`` should not pay for; an error of a module not loaded cannot be raised)."""
    base = sys.modules.get("pareto_bench.dllm.checkpoint")
    return USER_ERRORS + ((base.CheckpointError,) if base is not None else ())
