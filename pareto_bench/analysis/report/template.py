"""Report templates: which pages a report shows, in which order, with which baselines and
published points. The templates themselves live in ``reports/`` (``default.yaml``, ``paper.yaml``);
this module only reads and checks them, so every choice about a page's content has one owner,
the template file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from pareto_bench.analysis.report.published import OVERLAY_GROUPS
from pareto_bench.core.schema import ConfigError, StrictModel, load, resolve_named_file

Page = Literal[
    "summary", "ablations", "frontiers", "published", "attainment", "trials", "training",
    "importances", "provenance",
]  # fmt: skip
PublishedGroup = Literal[OVERLAY_GROUPS]  # type: ignore[valid-type]

DEFAULT_TEMPLATE = "default"


class ReportTemplate(StrictModel):
    """One report's definition (``reports/*.yaml``)."""

    title: str = Field(description="The report's title; {sweep} is the sweep's name.")
    pages: list[Page] = Field(min_length=1, description="The pages, in order.")
    compare_to: str = Field(
        description="The baseline that the verdict measures each task's best trial against."
    )
    baselines: list[str] | Literal["all"] = Field(
        description="The baselines that frontier pages and the published table show."
    )
    published: list[PublishedGroup] = Field(
        description="Groups of published points (main, ablation, reduction) that frontier pages "
        "overlay and the published page lists; [] for none."
    )

    def shows_baseline(self, name: str) -> bool:
        return self.baselines == "all" or name in self.baselines


def load_template(name_or_path: str | Path = DEFAULT_TEMPLATE) -> ReportTemplate:
    """A template by path, or by name in ``reports/`` of the cwd or the source checkout."""
    try:
        path = resolve_named_file(name_or_path, "reports", what="report template")
    except FileNotFoundError as e:
        raise ConfigError(f"--template {name_or_path}: {e}") from None
    return load(ReportTemplate, path)
