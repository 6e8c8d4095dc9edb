"""The ablation report (pareto_bench.analysis.report.ablations): each recipe of a replicated sweep beside
the published row it reproduces, the rank order in both, and whether they agree. The sweep is
written by hand in the layout a sweep writes (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from fixtures_sweep import THRESHOLDS, curve_records, train_steps
from pypdf import PdfReader

from pareto_bench.analysis.report.ablations import ablation_table, table_rows
from pareto_bench.analysis.report.build import build_report
from pareto_bench.analysis.report.sweep_data import load_sweep_dir
from pareto_bench.analysis.report.template import load_template
from pareto_bench.core.records import TrialRecord, append_jsonl

# recipe -> per seed, threshold -> (accuracy fraction, TPF). The paper's order by AUP is
# lightningrl (492.4) > no_tpf_filter (454.5) > no_nll (385.7).
AGREEING = {
    "base": [{0.9: (0.40, 1), 0.7: (0.38, 2), 0.5: (0.36, 4)}],
    "lightningrl": [
        {0.9: (0.80, 2), 0.7: (0.78, 4), 0.5: (0.75, 5)},
        {0.9: (0.70, 2), 0.7: (0.68, 4), 0.5: (0.65, 5)},
    ],
    "no_tpf_filter": [
        {0.9: (0.70, 2), 0.7: (0.68, 4), 0.5: (0.65, 5)},
        {0.9: (0.65, 2), 0.7: (0.63, 4), 0.5: (0.60, 5)},
    ],
    "no_nll": [
        {0.9: (0.55, 2), 0.7: (0.53, 4), 0.5: (0.50, 5)},
        {0.9: (0.50, 2), 0.7: (0.48, 4), 0.5: (0.45, 5)},
    ],
}
FILTERED = {"lightningrl": 0.25, "no_tpf_filter": 0.0, "no_nll": 0.25}


def write_sweep(root: Path, curves: dict[str, list[dict]]) -> Path:
    """A replicated sweep whose configurations are all baseline recipes."""
    spec = {"name": "ablations", "trials": 0, "baselines": list(curves), "replicates": 2}
    root.mkdir(parents=True)
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    meta = {"name": "ablations", "operating_threshold": 0.9, "tasks": ["synthetic"],
            "thresholds": list(THRESHOLDS)}  # fmt: skip
    (root / "sweep.json").write_text(json.dumps(meta))
    for number, (name, seeds) in enumerate(curves.items()):
        folder = root / "trials" / str(number)
        pooled = []
        for seed, curve in enumerate(seeds):
            records = [r for r in curve_records(curve) if r.task == "synthetic"]
            pooled += records
            append_jsonl(folder / f"seed-{seed}" / "eval.jsonl", records)
            steps = [dataclasses.replace(s, filtered_fraction=FILTERED.get(name, 0.0) + 0.1 * seed)
                     for s in train_steps(number)]  # fmt: skip
            append_jsonl(folder / f"seed-{seed}" / "train.jsonl", steps)
            row = TrialRecord(number, "replicate", f"{name}/seed-{seed}", "COMPLETE", seed=seed)
            append_jsonl(folder / "replicates.jsonl", [row])
        append_jsonl(folder / "eval.jsonl", pooled)
        append_jsonl(root / "trials.jsonl", [TrialRecord(number, "baseline", name, "COMPLETE")])
    return root


def test_a_table_in_the_papers_order_says_it_agrees(tmp_path: Path) -> None:
    sweep = load_sweep_dir(write_sweep(tmp_path / "sweep", AGREEING))
    table = ablation_table(sweep, "synthetic", y_max=80.0)
    assert table.ours == table.paper == ["lightningrl", "no_tpf_filter", "no_nll"]
    assert table.agrees and (table.concordant, table.pairs) == (3, 3)
    # Two seeds each: the top two overlap once seeds are resampled, no_nll is clearly last.
    assert not table.steps["lightningrl"].excludes_zero and table.steps["no_tpf_filter"].low > 0
    assert table.verdict() == (
        "synthetic: the order by AUP agrees with the paper's: lightningrl > no_tpf_filter > no_nll."
        " Within noise (95% CI of the AUP step holds 0): lightningrl > no_tpf_filter."
    )
    rows = {r[0]: r for r in table_rows(table)[1:]}
    # Median and range over the two seeds, at the operating threshold.
    assert rows["lightningrl"][1:4] == ["2", "75.0 (70.0-80.0)", "2.00 (2.00-2.00)"]
    assert rows["lightningrl"][5] == str(table.steps["lightningrl"]) and rows["no_nll"][5] == "-"
    assert rows["lightningrl"][6] == "30.0 (25.0-35.0)"  # the filter's logged share, per seed
    assert rows["no_tpf_filter"][6] == "5.0 (0.0-10.0)"
    assert rows["lightningrl"][7] == "90.3 / 5.58 / 492.4 (full)"
    assert rows["base"][1] == "1" and rows["base"][7:] == ["-", "-", "-"]
    assert [rows[r][8:] for r in table.paper] == [["1", "1"], ["2", "2"], ["3", "3"]]


def test_a_different_order_is_named_with_the_pairs_that_agree(tmp_path: Path) -> None:
    swapped = {**AGREEING, "no_nll": AGREEING["lightningrl"], "lightningrl": AGREEING["no_nll"]}
    sweep = load_sweep_dir(write_sweep(tmp_path / "sweep", swapped))
    table = ablation_table(sweep, "synthetic", y_max=80.0)
    assert table.ours == ["no_nll", "no_tpf_filter", "lightningrl"] and not table.agrees
    assert table.verdict() == (
        "synthetic: the order by AUP differs from the paper's. Here: no_nll > no_tpf_filter > "
        "lightningrl; paper: lightningrl > no_tpf_filter > no_nll (0 of 3 pairs in the same order)."
        " Within noise (95% CI of the AUP step holds 0): no_nll > no_tpf_filter."
    )


def test_the_ablations_template_leads_with_the_order(tmp_path: Path) -> None:
    sweep = load_sweep_dir(write_sweep(tmp_path / "sweep", AGREEING))
    pdf = build_report(sweep, tmp_path / "a.pdf", load_template("ablations"), n_boot=50).path
    first = PdfReader(pdf).pages[0].extract_text()
    assert "agrees with the paper's: lightningrl > no_tpf_filter > no_nll" in first
    assert "Ablations: synthetic" in first and "90.3 / 5.58 / 492.4 (full)" in first
    pages = [p.extract_text() for p in PdfReader(pdf).pages]
    assert "Attainment across seeds" in pages[1] and "seed's curve is one run" in pages[1]


@pytest.mark.parametrize("name", ["lightningrl", "no_tpf_filter", "no_decoupled_norm", "no_nll",
                                  "seq_seq_seq", "tok_tok_tok"])  # fmt: skip
def test_every_published_ablation_row_names_a_shipped_recipe(name: str) -> None:
    from pareto_bench.analysis.report.published import load_published

    recipes = {p.recipe for p in load_published() if p.recipe}
    assert (
        name in recipes and (Path(__file__).parent.parent / "trainers" / f"{name}.yaml").is_file()
    )
