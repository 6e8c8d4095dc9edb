"""The ``pareto-bench`` command line. Each module of this package owns one group of commands
and exposes ``register(app, bench)``; this file only assembles them and turns library errors
into one clear line and a non-zero exit status."""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

import typer

from pareto_bench.config import ConfigError
from pareto_bench.placement import PlacementError
from pareto_bench.registry import UnknownNameError

if TYPE_CHECKING:
    import torch

app = typer.Typer(
    name="pareto-bench",
    help="Accuracy-vs-parallelism benchmarks, LightningRL sweeps and Pareto analysis for block-wise dLLMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
bench = typer.Typer(
    help="Performance benchmarks; each prints one JSON object.", no_args_is_help=True
)
app.add_typer(bench, name="bench")

# One module per command group, each owned by one part of the library.
COMMAND_MODULES = ("decode", "evaluate", "score", "train", "sweep", "analysis")

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"pareto_bench.cli.{_name}")
    except ModuleNotFoundError as _e:  # a group still being written must not break the others
        if _e.name != f"pareto_bench.cli.{_name}":
            raise
        continue
    _module.register(app, bench)


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
    from pareto_bench.placement import resolve_device, resolve_dtype

    try:
        resolved = resolve_device(device)
        return resolved, resolve_dtype(dtype, resolved)
    except PlacementError as e:  # "device 'gpu': expected ..." -> "--device 'gpu': expected ..."
        raise UserError(f"--{e}".replace("use device=", "use --device ")) from None


def user_errors() -> tuple[type[BaseException], ...]:
    """USER_ERRORS plus the checkpoint error, once the model code is loaded (it needs torch,
    which ``--help`` should not pay for; an error of a module not loaded cannot be raised)."""
    base = sys.modules.get("pareto_bench.models.base")
    return USER_ERRORS + ((base.CheckpointError,) if base is not None else ())


def main() -> None:
    try:
        app()
    except Exception as e:
        if not isinstance(e, user_errors()):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
