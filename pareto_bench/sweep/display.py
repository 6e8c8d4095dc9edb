"""The live sweep display (rich, on stderr): trials done, running and failed across all
workers; the current trial's RL step; the best points so far; an ETA.

On a terminal it redraws in place. Anywhere else (CI logs, pipes) it prints one line per
trial event instead, so that logs stay readable.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pareto_bench.core.records import TrainStepRecord, TrialRecord


@dataclass
class Snapshot:
    """What the study looks like now, across every worker."""

    done: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0
    mean_trial_s: float | None = None
    best: list[TrialRecord] = field(default_factory=list)


@dataclass
class _Current:
    number: int
    name: str
    params: dict[str, Any]
    total_steps: int | None
    started: float = field(default_factory=time.monotonic)
    last: TrainStepRecord | None = None


class SweepDisplay:
    REFRESH_S = 2.0

    def __init__(
        self,
        title: str,
        objectives: Sequence[str],
        snapshot: Callable[[], Snapshot],
        *,
        enabled: bool = True,
        console: Console | None = None,
    ) -> None:
        self.title = title
        self.objectives = list(objectives)
        self._snapshot_fn = snapshot
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.live_mode = enabled and self.console.is_terminal
        self._current: _Current | None = None
        self._snapshot = Snapshot()
        self._snapshot_at = 0.0
        self._lock = threading.Lock()
        self._live: Live | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> SweepDisplay:
        if self.live_mode:
            self._live = Live(self, console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._refresh_snapshot(force=True)
            self._live.__exit__(None, None, None)
            self._live = None

    # -- events -------------------------------------------------------------------------

    def trial_started(
        self, number: int, name: str, params: dict[str, Any], total_steps: int | None
    ) -> None:
        with self._lock:
            self._current = _Current(number, name, params, total_steps)
        self._log(f"{name} (#{number}) started" + (f": {params_text(params)}" if params else ""))

    def step(self, record: TrainStepRecord) -> None:
        with self._lock:
            if self._current is not None:
                self._current.last = record

    def trial_finished(self, record: TrialRecord) -> None:
        with self._lock:
            self._current = None
        self._refresh_snapshot(force=True)
        s = self._snapshot
        if record.state == "COMPLETE":
            outcome = "complete: " + _objectives_text(record.objectives, self.objectives)
        else:
            outcome = f"FAILED: {record.failure_reason}"
        self._log(
            f"{record.name} (#{record.number}) {outcome} in {record.wall_time:.0f} s  "
            f"[done {s.done}, failed {s.failed}, running {s.running}, waiting {s.waiting}{_eta_text(s)}]"
        )

    def note(self, text: str) -> None:
        """Something the user must see (a recovered trial, a warning), even with the display off."""
        self._log(text, always=True)

    # -- rendering ----------------------------------------------------------------------

    def _log(self, text: str, always: bool = False) -> None:
        if not (self.enabled or always):
            return
        if self._live is not None:
            self._live.console.print(Text(text))
        else:
            print(text, file=sys.stderr, flush=True)

    def _refresh_snapshot(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._snapshot_at < self.REFRESH_S:
            return
        self._snapshot_at = now
        with contextlib.suppress(Exception):  # a storage hiccup must not break the display
            self._snapshot = self._snapshot_fn()

    def __rich__(self) -> Group:
        self._refresh_snapshot()
        s = self._snapshot
        header = Text.assemble(
            (f"sweep {self.title}  ", "bold"),
            (f"done {s.done}", "green"),
            "  ",
            (f"running {s.running}", "cyan"),
            "  ",
            (f"failed {s.failed}", "red" if s.failed else "dim"),
            "  ",
            (f"waiting {s.waiting}", "dim"),
            _eta_text(s),
        )
        parts: list[Any] = [header]
        with self._lock:
            current = self._current
        if current is not None:
            parts.append(Text(_current_text(current)))
        if s.best:
            parts.append(self._best_table(s.best))
        return Group(*parts)

    def _best_table(self, best: list[TrialRecord]) -> Table:
        table = Table(
            title="best so far (non-dominated)", title_justify="left", box=None, pad_edge=False
        )
        table.add_column("#", justify="right")
        table.add_column("name")
        for key in self.objectives:
            table.add_column(key, justify="right")
        table.add_column("params")
        for record in best[:8]:
            values = [f"{record.objectives.get(k, float('nan')):.3g}" for k in self.objectives]
            table.add_row(str(record.number), record.name, *values, params_text(record.params))
        return table


def best_records(records: Sequence[TrialRecord], objectives: Sequence[str]) -> list[TrialRecord]:
    """Completed records not dominated on ``objectives`` (all maximised), best first."""
    done = [
        r for r in records if r.state == "COMPLETE" and all(k in r.objectives for k in objectives)
    ]
    vectors = [[r.objectives[k] for k in objectives] for r in done]

    def dominated(i: int) -> bool:
        a = vectors[i]
        return any(
            all(b_k >= a_k for a_k, b_k in zip(a, b, strict=True)) and b != a for b in vectors
        )

    front = [r for i, r in enumerate(done) if not dominated(i)]
    return sorted(front, key=lambda r: [-r.objectives[k] for k in objectives])


def _current_text(current: _Current) -> str:
    elapsed = time.monotonic() - current.started
    text = f"▸ {current.name} (#{current.number})  {elapsed:.0f} s"
    last = current.last
    if last is not None:
        total = f"/{current.total_steps}" if current.total_steps else ""
        text += (
            f"  step {last.step + 1}{total}  reward {last.reward:+.2f}  acc {last.accuracy:.0f}%"
            f"  TPF {last.tpf:.2f}  filtered {last.filtered_fraction:.0%}"
        )
    elif current.total_steps is None:
        text += "  evaluating"
    return text


def _eta_text(s: Snapshot) -> str:
    if s.mean_trial_s is None or not (s.waiting or s.running):
        return ""
    seconds = s.mean_trial_s * (s.waiting + s.running) / max(1, s.running)
    return f"  ETA ~{_duration(seconds)}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def params_text(params: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def _objectives_text(objectives: dict[str, float], keys: Sequence[str]) -> str:
    return " ".join(f"{k}={objectives[k]:.3g}" for k in keys if k in objectives)
