"""A small recorded sweep written by hand in the layout of docs/ARCHITECTURE.md.

The report must read what the sweep writes, not what this package's own code writes, so the
files are written here directly from the records module. The numbers are chosen so that
the findings are known in advance: trial 3 is the best trial on both tasks and clearly ahead
of the ``base`` baseline; trial 4 failed. Every sample has 40 tokens and problems are
correct in index order, so each accuracy and TPF below is exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import yaml

from pareto_bench.core.records import (
    EvalRecord,
    SampleResult,
    TrainStepRecord,
    TrialRecord,
    append_jsonl,
)

TASKS = ("synthetic", "gsm8k")
THRESHOLDS = (0.5, 0.7, 0.9)
PROBLEMS = 40
TOKENS = 40
BEST_TRIAL = 3
FAILED_TRIAL = 4
FAILURE = "TrainingDiverged: NaN loss at step 3"

# threshold -> (accuracy as a fraction, TPF); TPF divides TOKENS so forwards are whole.
CURVES = {
    "base": {0.9: (0.50, 1), 0.7: (0.40, 2), 0.5: (0.20, 4)},
    "grpo": {0.9: (0.60, 1), 0.7: (0.50, 2), 0.5: (0.30, 4)},
    2: {0.9: (0.55, 2), 0.7: (0.45, 4), 0.5: (0.30, 5)},
    3: {0.9: (0.70, 2), 0.7: (0.675, 4), 0.5: (0.50, 8)},
    5: {0.9: (0.60, 1), 0.7: (0.55, 2), 0.5: (0.45, 4)},
    6: {0.9: (0.65, 2), 0.7: (0.60, 4), 0.5: (0.40, 5)},
}


# A second seed of a replicated configuration: 5 points lower at every threshold.
def second_seed(curve: dict[float, tuple[float, int]]) -> dict[float, tuple[float, int]]:
    return {t: (fraction - 0.05, tpf) for t, (fraction, tpf) in curve.items()}


PARAMS = {
    2: {"lr": 1e-5, "tpf_weight": 0.5, "nll_weight": 0.05},
    3: {"lr": 3e-4, "tpf_weight": 1.5, "nll_weight": 0.2},
    4: {"lr": 1e-3, "tpf_weight": 2.0, "nll_weight": 0.0},
    5: {"lr": 2e-5, "tpf_weight": 0.2, "nll_weight": 0.1},
    6: {"lr": 1e-4, "tpf_weight": 1.0, "nll_weight": 0.15},
}
DISTRIBUTIONS = {
    "lr": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True),
    "tpf_weight": optuna.distributions.FloatDistribution(0.0, 2.0),
    "nll_weight": optuna.distributions.FloatDistribution(0.0, 0.3),
}
SPEC = {
    "name": "fixture-sweep",
    "model": "tiny",
    "tasks": list(TASKS),
    "thresholds": list(THRESHOLDS),
    "operating_threshold": 0.9,
    "search_space": {"lr": {"low": 1e-5, "high": 1e-3, "log": True}},
}


def curve_records(curve: dict[float, tuple[float, int]]) -> list[EvalRecord]:
    records = []
    for task in TASKS:
        for threshold in THRESHOLDS:
            fraction, tpf = curve[threshold]
            correct = round(fraction * PROBLEMS)
            samples = [
                SampleResult(f"{task}/{i}", i < correct, float(i < correct), TOKENS, TOKENS // tpf)
                for i in range(PROBLEMS)
            ]
            records.append(EvalRecord.from_samples(task, threshold, samples, model="fixture"))
    return records


def train_steps(number: int, steps: int = 6) -> list[TrainStepRecord]:
    return [
        TrainStepRecord(
            step=s,
            reward=0.1 * s + 0.01 * number,
            reward_acc=0.1 * s,
            reward_tpf=0.01 * number,
            accuracy=40.0 + 3 * s + number,
            tpf=1.5 + 0.2 * s,
            filtered_fraction=0.2,
            refill_rounds=0,
            policy_loss=0.0,
            kl=0.01,
            nll=1.0,
            loss=0.5,
            clip_fraction=0.0,
            grad_norm=1.0,
            step_time=1.0,
            rollout_time=0.5,
            likelihood_time=0.3,
            backward_time=0.2,
            lr=1e-4,
        )  # fmt: skip
        for s in range(1, steps + 1)
    ]


def objectives(records: list[EvalRecord]) -> dict[str, float]:
    values = {}
    for record in records:
        if record.threshold == 0.9:
            values[f"{record.task}/accuracy"] = record.accuracy
            values[f"{record.task}/tpf"] = record.tpf
    return values


def write_fixture_sweep(
    out: Path,
    *,
    trials: tuple[int, ...] = (2, 3, 4, 5, 6),
    tracking_uri: str | None = None,
    parent_run_id: str | None = None,
    replicated: tuple[int, ...] = (1,),
) -> Path:
    """Write the sweep under ``out``; ``trials`` picks which searched trials exist, and
    ``replicated`` which configurations were trained with seeds 0 and 1 (grpo's, by default)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False), encoding="utf-8")
    meta = {
        "name": "fixture-sweep",
        "spec_path": "sweeps/fixture.yaml",
        "study_name": "fixture-sweep",
        "storage": "study.journal",
        "tracking_uri": tracking_uri,
        "parent_run_id": parent_run_id,
        "operating_threshold": 0.9,
        "tasks": list(TASKS),
        "thresholds": list(THRESHOLDS),
        "code_version": "v0-fixture",
        "created": "2026-01-02T03:04:05+00:00",
    }
    (out / "sweep.json").write_text(json.dumps(meta), encoding="utf-8")
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "study.journal"))
    )
    names = [f"{t}/{m}" for t in TASKS for m in ("accuracy", "tpf")]
    study = optuna.create_study(
        study_name="fixture-sweep", storage=storage, directions=["maximize"] * len(names)
    )

    plan = [(0, "baseline", "base"), (1, "baseline", "grpo")]
    plan += [(n, "trial", f"trial {n}") for n in trials]
    for number, kind, name in plan:
        key = name if kind == "baseline" else number
        params = PARAMS.get(number, {}) if kind == "trial" else {}
        seed = number % 2
        folder = out / "trials" / str(number)
        # The sweep appends a RUNNING row first; the report must keep only the last row.
        append_jsonl(
            out / "trials.jsonl", [TrialRecord(number, kind, name, "RUNNING", params, seed=seed)]
        )
        if name != "base":
            append_jsonl(
                folder / "train.jsonl", train_steps(number, 3 if number == FAILED_TRIAL else 6)
            )
        if kind == "trial":
            (folder / "config.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
        if number == FAILED_TRIAL:
            final = TrialRecord(
                number, kind, name, "FAIL", params, failure_reason=FAILURE, seed=seed
            )
            values = None
        else:
            records = curve_records(CURVES[key])
            append_jsonl(folder / "eval.jsonl", records)
            if number in replicated:
                for replicate_seed, curve in enumerate((CURVES[key], second_seed(CURVES[key]))):
                    append_jsonl(
                        folder / f"seed-{replicate_seed}" / "eval.jsonl", curve_records(curve)
                    )
                    row = TrialRecord(number, "replicate", f"{name}/seed-{replicate_seed}",
                                      "COMPLETE", params, seed=replicate_seed)  # fmt: skip
                    append_jsonl(folder / "replicates.jsonl", [row])
            final = TrialRecord(number, kind, name, "COMPLETE", params, objectives(records), seed=seed,
                                wall_time=12.0)  # fmt: skip
            values = [final.objectives[n] for n in names]
        append_jsonl(out / "trials.jsonl", [final])
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={k: DISTRIBUTIONS[k] for k in params},
                values=values,
                state=optuna.trial.TrialState.COMPLETE if values else optuna.trial.TrialState.FAIL,
            )
        )
    return out
