"""Command-line options that several commands share."""

from __future__ import annotations

from typing import Annotated

import typer

from pareto_bench.placement import DEVICE_HELP, DTYPE_HELP

DeviceOption = Annotated[str, typer.Option(help=f"Device: {DEVICE_HELP}")]
DtypeOption = Annotated[str, typer.Option(help=f"Compute dtype of the model: {DTYPE_HELP}")]
