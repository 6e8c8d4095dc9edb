"""One progress-bar style for all long work (rich, on stderr, silent when disabled)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

_console = Console(stderr=True)


class _Bar:
    def __init__(self, progress: Progress | None, task_id: int | None) -> None:
        self._progress, self._task = progress, task_id

    def advance(self, n: int = 1, **fields: object) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=n, **fields)  # type: ignore[arg-type]

    def describe(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)  # type: ignore[arg-type]


@contextmanager
def progress_bar(
    description: str, total: int, enabled: bool = True, status: str = ""
) -> Iterator[_Bar]:
    """A bar with a free-text ``status`` field (update it with ``bar.advance(status=...)``)."""
    if not enabled:
        yield _Bar(None, None)
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    ]
    with Progress(*columns, console=_console, transient=False) as progress:
        yield _Bar(progress, progress.add_task(description, total=total, status=status))
