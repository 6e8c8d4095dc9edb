"""Where a report's numbers came from: the code version and the software environment."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pareto_bench

PACKAGES = ("pareto-bench", "torch", "transformers", "optuna", "mlflow", "numpy", "moocore")


def code_version(path: str | Path | None = None) -> str:
    """``git describe`` of the checkout holding ``path`` (the package by default), else the
    package version."""
    where = Path(path) if path else Path(pareto_bench.__file__).resolve().parent
    try:
        described = subprocess.run(
            ["git", "describe", "--tags", "--always", "--dirty"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        described = ""
    return described or f"pareto-bench {pareto_bench.__version__} (no git checkout)"


def environment() -> dict[str, str]:
    """Python and package versions, read from installed metadata (nothing heavy is imported)."""
    versions = {"python": platform.python_version(), "platform": platform.platform(terse=True)}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
