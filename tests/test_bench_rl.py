"""``pareto-bench bench rl``: base vs GRPO vs LightningRL through the sweep's trial path."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from pareto_bench.bench.rl import _targets, bench_rl
from pareto_bench.cli import app
from pareto_bench.core.records import EvalRecord, TrainStepRecord, read_jsonl

SMALL = [
    "steps=1",
    "rollout.prompts_per_step=2",
    "rollout.group_size=2",
    "filter.max_refill_rounds=1",
]


def test_bench_rl_trains_every_method_per_seed_and_reports_medians(tmp_path):
    summary = bench_rl(
        seeds=(0, 1),
        thresholds=(0.7, 0.9),
        overrides=SMALL,
        limit=3,
        out_dir=tmp_path,
        executor="inprocess",
        progress=False,
    )
    assert set(summary["methods"]) == {"base", "grpo", "lightningrl"}
    assert (summary["train_base"], summary["settings"]) == ("lightningrl-tiny", SMALL)

    for method in ("grpo", "lightningrl"):
        tpfs = []
        for seed in (0, 1):
            run = tmp_path / f"{method}-seed{seed}"
            config = yaml.safe_load((run / "config.yaml").read_text())
            assert config["seed"] == seed and config["steps"] == 1  # --set beat steps=200
            assert config["rollout"]["threshold"] == 0.7  # from trainers/lightningrl-tiny.yaml
            assert config["reward"]["tpf_weight"] == (0.0 if method == "grpo" else 1.0)
            assert len(read_jsonl(run / "train.jsonl", TrainStepRecord)) == 1
            records = read_jsonl(run / "eval.jsonl", EvalRecord)
            assert [r.threshold for r in records] == [0.7, 0.9]
            tpfs.append(records[1].tpf)
        reported = summary["methods"][method]
        assert reported["thresholds"]["0.9"]["tpf"] == pytest.approx(sum(tpfs) / 2)
        assert reported["train_seconds"] > 0
        # Each seed's own numbers beside the median, and the range of their AUPs.
        per_seed = reported["per_seed"]
        assert [s["seed"] for s in per_seed] == [0, 1]
        assert [s["thresholds"]["0.9"]["tpf"] for s in per_seed] == tpfs
        assert reported["aup_range"] == [
            min(s["aup"] for s in per_seed),
            max(s["aup"] for s in per_seed),
        ]

    base = read_jsonl(tmp_path / "base" / "eval.jsonl", EvalRecord)
    assert summary["methods"]["base"]["thresholds"]["0.9"]["tpf"] == base[1].tpf
    assert "train_seconds" not in summary["methods"]["base"]
    assert set(summary["targets"]) == {
        "aup_gain",
        "tpf_gain_at_op",
        "accuracy_change_at_op",
        "grpo_tpf_below_lightningrl_at_op",
        "met",
    }


def test_cli_bench_rl_runs_only_the_methods_asked_for(tmp_path):
    args = ["bench", "rl", "--seeds", "0", "--methods", "lightningrl", "--limit", "2"]
    args += ["--out", str(tmp_path), "--workers", "2"]
    for override in SMALL:
        args += ["--set", override]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert set(summary["methods"]) == {"base", "lightningrl"}
    assert "targets" not in summary  # the targets compare against grpo
    assert not (tmp_path / "grpo-seed0").exists()


def _point(accuracy: float, tpf: float) -> dict[str, float]:
    return {"accuracy": accuracy, "tpf": tpf}


@pytest.mark.parametrize(
    ("light", "grpo_tpf", "light_aup", "met"),
    [
        (_point(89.0, 4.0), 3.0, 130.0, True),  # +33% TPF, -2 points, +30% AUP
        (_point(88.9, 4.0), 3.0, 130.0, False),  # more than 2 points lost
        (_point(91.0, 3.8), 3.0, 130.0, False),  # TPF only +26.7%
        (_point(91.0, 4.0), 3.0, 124.0, False),  # AUP only +24%
        (_point(91.0, 4.0), 4.0, 130.0, False),  # GRPO as fast as LightningRL
    ],
)
def test_targets_are_the_issue_thresholds(light, grpo_tpf, light_aup, met):
    methods = {
        "base": {"aup": 100.0, "thresholds": {"0.9": _point(91.0, 3.0)}},
        "grpo": {"aup": 110.0, "thresholds": {"0.9": _point(91.0, grpo_tpf)}},
        "lightningrl": {"aup": light_aup, "thresholds": {"0.9": light}},
    }
    assert _targets(methods, "0.9")["met"] is met
