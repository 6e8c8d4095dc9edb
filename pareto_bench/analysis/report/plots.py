"""Plots for reports and ``pareto-bench compare``, as matplotlib Figures (headless).

Figures are built with ``matplotlib.figure.Figure`` directly, not pyplot, so nothing needs a
display and no global figure state leaks between reports. Every function takes plain data
(points, labels, records), so the CLI and the PDF share them.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.typing import NDArray

from pareto_bench.analysis.frontier import attainment_surfaces, pareto_front
from pareto_bench.analysis.report.published import PublishedPoint
from pareto_bench.core.records import TrainStepRecord

# Above this many trial points, only frontier points get a threshold label; the rest are
# identified by their threshold colour (labelling hundreds of points makes a smudge).
LABEL_ALL_POINTS_UP_TO = 40

FRONTIER_COLOR = "#c0392b"
PUBLISHED_COLOR = "#f39c12"
BASELINE_STYLES = (("s", "#222222"), ("D", "#7f8c8d"), ("^", "#5d4037"), ("v", "#37474f"))
X_LABEL = "TPF (tokens per forward)"
MIN_ACCURACY_SPAN = 5.0  # percentage points
Y_LABEL = "accuracy (%)"


@dataclass
class PlotCurve:
    """The points of one trial or baseline on one task, with the threshold of each."""

    label: str
    points: NDArray[np.float64]  # (n, 2): TPF, accuracy
    thresholds: Sequence[float] = field(default_factory=list)


def figure_png(figure: Figure, dpi: int = 150) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _threshold_colors(thresholds: Sequence[float]) -> dict[float, tuple[float, ...]]:
    levels = sorted(set(thresholds))
    cmap = matplotlib.colormaps["viridis"]
    span = max(len(levels) - 1, 1)
    # Stop short of viridis' pale yellow end, which vanishes on white.
    return {t: cmap(0.85 * i / span) for i, t in enumerate(levels)}


def _tau(t: float) -> str:
    return f"τ={t:g}"


def _finish(ax: Axes, title: str) -> None:
    ax.set_xlabel(X_LABEL)
    ax.set_ylabel(Y_LABEL)
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    # Accuracy that barely varies (all 0%, say) would otherwise be drawn over +-0.04 points.
    low, high = ax.get_ylim()
    if high - low < MIN_ACCURACY_SPAN:
        low = max(-0.5, (low + high - MIN_ACCURACY_SPAN) / 2)
        ax.set_ylim(low, low + MIN_ACCURACY_SPAN)


class _LabelPlacer:
    """Point labels placed, in the order added, at the first nearby offset where they overlap
    no label placed before them (text extents are estimated from the font size)."""

    # (dx, dy) in points from the point; a negative dx right-aligns the text to the left.
    OFFSETS = ((4, 3), (4, -9), (-4, 3), (-4, -9), (4, 10), (4, -16), (-4, 10), (-4, -16))

    def __init__(self) -> None:
        self._labels: list[tuple[int, float, float, str, str, float]] = []

    def add(
        self,
        x: float,
        y: float,
        text: str,
        color: str = "#333333",
        size: float = 6.5,
        priority: int = 1,
    ) -> None:
        """Higher ``priority`` labels are placed first and so get the best spots."""
        self._labels.append((-priority, float(x), float(y), text, color, size))

    def _merge_coincident(self) -> None:
        """Points drawn on top of each other share one label ("τ=0.7, τ=0.9")."""
        merged: dict[tuple, list[str]] = {}
        for priority, x, y, text, color, size in self._labels:
            texts = merged.setdefault((priority, x, y, color, size), [])
            if text not in texts:
                texts.append(text)
        self._labels = [(*key[:3], ", ".join(texts), *key[3:]) for key, texts in merged.items()]

    def place(self, figure: Figure, ax: Axes) -> None:
        self._merge_coincident()
        figure.draw_without_rendering()  # settles the layout, so data->pixel is final
        scale = figure.dpi / 72.0
        frame = ax.get_window_extent()
        taken: list[tuple[float, float, float, float]] = []
        for _, x, y, text, color, size in sorted(self._labels, key=lambda label: label[0]):
            px, py = ax.transData.transform((x, y))
            width, height = 0.58 * size * len(text) * scale, 1.15 * size * scale
            choice, box = self.OFFSETS[0], None
            for dx, dy in self.OFFSETS:
                left = px + dx * scale - (width if dx < 0 else 0.0)
                bottom = py + dy * scale
                candidate = (left, bottom, left + width, bottom + height)
                inside = frame.x0 <= candidate[0] and candidate[2] <= frame.x1
                if inside and not any(_overlap(candidate, other) for other in taken):
                    choice, box = (dx, dy), candidate
                    break
            if box is None:  # nowhere free: keep the default spot rather than drop the label
                dx, dy = choice
                left = px + dx * scale - (width if dx < 0 else 0.0)
                box = (left, py + dy * scale, left + width, py + dy * scale + height)
            taken.append(box)
            # A faint white box keeps labels legible over dense clouds of points.
            ax.annotate(text, (x, y), xytext=choice, textcoords="offset points", fontsize=size,
                        color=color, ha="right" if choice[0] < 0 else "left", zorder=7,
                        bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none",
                              "alpha": 0.7})  # fmt: skip


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def frontier_figure(
    task: str,
    trials: Sequence[PlotCurve],
    baselines: Sequence[PlotCurve] = (),
    published: Sequence[PublishedPoint] = (),
    *,
    title: str | None = None,
) -> Figure:
    """Trials as points coloured by threshold, their non-dominated set as a step line,
    baselines as dashed curves and published paper points as stars."""
    figure = Figure(figsize=(10.5, 6.0), layout="constrained")
    ax = figure.add_subplot()
    points = np.concatenate([c.points for c in trials]) if trials else np.empty((0, 2))
    thresholds = [t for c in trials for t in c.thresholds]
    owners = [c.label for c in trials for _ in c.thresholds]
    colors = _threshold_colors(thresholds)
    label_every_point = len(points) <= LABEL_ALL_POINTS_UP_TO
    labels = _LabelPlacer()
    front = pareto_front(points)
    on_front = set(front.tolist())

    for level, color in colors.items():
        rows = [i for i, t in enumerate(thresholds) if t == level]
        ax.scatter(points[rows, 0], points[rows, 1], s=22, color=color, alpha=0.8,
                   edgecolors="none", label=f"trials, {_tau(level)}", zorder=2)  # fmt: skip
        if label_every_point:
            for i in (i for i in rows if i not in on_front):  # frontier points get a fuller label
                # Lowest priority: plain trial labels yield to frontier and baseline labels.
                labels.add(points[i, 0], points[i, 1], _tau(level), color="#555555", priority=0)

    if len(front):
        ax.step(points[front, 0], points[front, 1], where="pre", color=FRONTIER_COLOR, lw=1.8,
                label="non-dominated trials", zorder=3)  # fmt: skip
        ax.scatter(points[front, 0], points[front, 1], s=60, facecolors="none",
                   edgecolors=FRONTIER_COLOR, linewidths=1.4, zorder=4)  # fmt: skip
        for i in front:
            text = f"{owners[i]}, {_tau(thresholds[i])}"
            labels.add(points[i, 0], points[i, 1], text, color=FRONTIER_COLOR)

    for curve, (marker, color) in zip(baselines, BASELINE_STYLES * 4, strict=False):
        order = np.argsort(curve.points[:, 0], kind="stable")
        ax.plot(curve.points[order, 0], curve.points[order, 1], ls="--", lw=1.2, marker=marker,
                ms=6, color=color, label=f"baseline: {curve.label}", zorder=5)  # fmt: skip
        for (x, y), t in zip(curve.points, curve.thresholds, strict=False):
            labels.add(x, y, _tau(t), color=color)

    if published:
        xs = [p.tpf for p in published]
        ys = [p.accuracy for p in published]
        ax.scatter(xs, ys, marker="*", s=140, color=PUBLISHED_COLOR, edgecolors="black",
                   linewidths=0.5, label=f"published: {published[0].paper}", zorder=6)  # fmt: skip
        for p in published:
            labels.add(p.tpf, p.accuracy, p.label, color="#8a5a00", size=6)  # type: ignore[arg-type]

    _finish(ax, title or f"{task}: accuracy vs parallelism")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    labels.place(figure, ax)
    return figure


def _attained_height(surface: NDArray[np.float64], xs: NDArray[np.float64]) -> NDArray[np.float64]:
    """Height of a maximisation staircase at each x: the best accuracy among corners with
    TPF >= x (NaN where nothing is attained)."""
    if len(surface) == 0:
        return np.full(xs.shape, np.nan)
    order = np.argsort(surface[:, 0])
    sx, sy = surface[order, 0], surface[order, 1]
    best_right = np.maximum.accumulate(sy[::-1])[::-1]  # max over corners at or right of i
    index = np.searchsorted(sx, xs, side="left")
    heights = np.full(xs.shape, np.nan)
    inside = index < len(sx)
    heights[inside] = best_right[index[inside]]
    return heights


def attainment_figure(point_sets_by_task: Mapping[str, Sequence[NDArray[np.float64]]]) -> Figure:
    """Per task, the band between the best and worst attainment surfaces over seeds, with
    the median surface as a line."""
    tasks = list(point_sets_by_task)
    columns = min(len(tasks), 2 if len(tasks) <= 4 else 3) or 1  # 3 across keeps 5-9 legible
    rows = (len(tasks) + columns - 1) // columns or 1
    figure = Figure(figsize=(5.6 * columns + 0.6, 4.2 * rows + 0.4), layout="constrained")
    for i, task in enumerate(tasks):
        ax = figure.add_subplot(rows, columns, i + 1)
        sets = point_sets_by_task[task]
        surfaces = attainment_surfaces(sets)
        corners = np.concatenate([surfaces.best, surfaces.worst]) if surfaces.num_sets else None
        if corners is None or len(corners) == 0:
            ax.text(0.5, 0.5, "no points", ha="center", va="center", transform=ax.transAxes)
            _finish(ax, task)
            continue
        xs = np.unique(
            np.concatenate([surfaces.best[:, 0], surfaces.worst[:, 0], surfaces.median[:, 0]])
        )
        left = xs[0] - 0.05 * max(xs[-1] - xs[0], 1.0)
        xs = np.concatenate([[left], xs])
        floor = float(np.nanmin(corners[:, 1])) - 2.0
        high = _attained_height(surfaces.best, xs)
        low = np.nan_to_num(_attained_height(surfaces.worst, xs), nan=floor)
        ax.fill_between(xs, low, high, step="pre", color="#3498db", alpha=0.25,
                        label="best to worst run")  # fmt: skip
        for surface, style, name in (
            (surfaces.best, ":", "best (attained by any run)"),
            (surfaces.median, "-", "median"),
            (surfaces.worst, "--", "worst (attained by every run)"),
        ):
            if len(surface):
                # Close the staircase: level from the left edge, down to the floor at the end.
                line = np.vstack([[left, surface[0, 1]], surface, [surface[-1, 0], floor]])
                ax.step(line[:, 0], line[:, 1], where="pre", ls=style, color="#1f4e79",
                        lw=1.5 if style == "-" else 1.0, label=name)  # fmt: skip
        _finish(ax, f"{task}: attainment over {surfaces.num_sets} seeds")
        ax.set_ylim(bottom=floor)
        ax.legend(fontsize=7, loc="lower left")
    return figure


TRAIN_PANELS = (("reward", "reward"), ("accuracy", "rollout accuracy (%)"), ("tpf", "rollout TPF"))


def training_figure(
    runs: Sequence[tuple[str, Sequence[TrainStepRecord]]],
    highlight: Mapping[str, str] | None = None,
    baselines: Sequence[str] = (),
) -> Figure:
    """Reward, rollout accuracy and rollout TPF over RL steps. Every run is thin and grey;
    ``highlight`` maps run labels (the best trials) to legend text and draws them in colour;
    ``baselines`` (for example ``grpo``) are drawn dashed."""
    highlight = dict(highlight or {})
    figure = Figure(figsize=(11.5, 4.4), layout="constrained")
    axes = figure.subplots(1, len(TRAIN_PANELS), sharex=True)
    palette = matplotlib.colormaps["tab10"]
    colored = {label: palette(i % 10) for i, label in enumerate(highlight)}

    def rank(run: tuple[str, Sequence[TrainStepRecord]]) -> int:  # draw grey runs underneath
        return 2 if run[0] in colored else 1 if run[0] in baselines else 0

    for ax, (field_name, title) in zip(axes, TRAIN_PANELS, strict=True):
        for label, steps in sorted(runs, key=rank):
            if not steps:
                continue
            xs = [s.step for s in steps]
            ys = [getattr(s, field_name) for s in steps]
            if label in colored:
                ax.plot(xs, ys, color=colored[label], lw=1.8, label=highlight[label], zorder=3)
            elif label in baselines:
                ax.plot(xs, ys, color="#222222", lw=1.3, ls="--", label=f"baseline: {label}",
                        zorder=2)  # fmt: skip
            else:
                ax.plot(xs, ys, color="#b0b0b0", lw=0.7, alpha=0.7, zorder=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(Line2D([], [], color="#b0b0b0", lw=0.7))
    labels.append("other trials")
    figure.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5),
                  fontsize=8, frameon=False)  # fmt: skip
    return figure


def importance_figure(by_objective: Mapping[str, Mapping[str, float]]) -> Figure:
    """One horizontal bar chart of parameter importances per objective."""
    names = list(by_objective)
    columns = min(len(names), 2) or 1
    rows = (len(names) + columns - 1) // columns or 1
    longest = max((len(p) for r in by_objective.values() for p in r), default=8)
    params = max((len(r) for r in by_objective.values()), default=1)
    figure = Figure(
        figsize=(5.4 * columns + 0.05 * longest, (0.32 * params + 1.3) * rows),
        layout="constrained",
    )
    for i, name in enumerate(names):
        ax = figure.add_subplot(rows, columns, i + 1)
        ranking = sorted(by_objective[name].items(), key=lambda kv: kv[1])
        ax.barh([k for k, _ in ranking], [v for _, v in ranking], color="#2e86c1")
        for y, (_, value) in enumerate(ranking):
            ax.text(value, y, f" {value:.2f}", va="center", fontsize=7)
        ax.set_xlim(0, max((v for _, v in ranking), default=1.0) * 1.2 or 1.0)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("importance (fANOVA, sums to 1)")
        ax.tick_params(axis="y", labelsize=8)
    return figure


def compare_figure(
    points_by_task: Mapping[str, tuple[NDArray[np.float64], NDArray[np.float64]]],
    labels: tuple[str, str] = ("A", "B"),
    captions: Mapping[str, str] | None = None,
) -> Figure:
    """A and B overlaid per task: their points and their non-dominated step lines."""
    tasks = list(points_by_task)
    columns = min(len(tasks), 2) or 1
    rows = (len(tasks) + columns - 1) // columns or 1
    figure = Figure(figsize=(6.0 * columns, 4.6 * rows), layout="constrained")
    for i, task in enumerate(tasks):
        ax = figure.add_subplot(rows, columns, i + 1)
        for points, label, color, marker in zip(
            points_by_task[task], labels, ("#1f77b4", "#ff7f0e"), ("o", "s"), strict=True
        ):
            if len(points) == 0:
                continue
            ax.scatter(points[:, 0], points[:, 1], s=16, alpha=0.5, color=color, marker=marker)
            front = points[pareto_front(points)]
            ax.step(front[:, 0], front[:, 1], where="pre", color=color, lw=1.8,
                    marker=marker, ms=5, label=f"{label} frontier")  # fmt: skip
        title = task if not captions or task not in captions else f"{task}\n{captions[task]}"
        _finish(ax, title)
        ax.legend(fontsize=8)
    return figure
