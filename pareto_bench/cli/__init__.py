"""The ``pareto-bench`` command line. Each module of this package owns one group of commands
and exposes ``register(app, bench)``; this file only assembles them and turns library errors
into one clear line and a non-zero exit status."""

from __future__ import annotations

import importlib
import sys

import typer

from pareto_bench.config import ConfigError
from pareto_bench.registry import UnknownNameError

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
    FileNotFoundError,
    NotADirectoryError,
)


def main() -> None:
    try:
        app()
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
