"""The ``pareto-bench`` command line. Each module of this package owns one group of commands
and exposes ``register(app, bench)``; this file only assembles them and turns library errors
into one clear line and a non-zero exit status."""

from __future__ import annotations

import sys

import typer

from pareto_bench.cli import (
    analysis_commands,
    decode_commands,
    eval_commands,
    score_commands,
    sweep_commands,
    train_commands,
)
from pareto_bench.cli.options import USER_ERRORS, UserError, user_errors

__all__ = ["USER_ERRORS", "UserError", "app", "bench", "main"]

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
for _commands in (
    decode_commands,
    eval_commands,
    score_commands,
    train_commands,
    sweep_commands,
    analysis_commands,
):
    _commands.register(app, bench)


def main() -> None:
    try:
        app()
    except Exception as e:
        if not isinstance(e, user_errors()):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
