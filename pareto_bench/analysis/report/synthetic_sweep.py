"""A synthetic recorded sweep, written in the layout of docs/ARCHITECTURE.md.

It exists so that ``pareto-bench bench report`` can time a report on a realistic 50-trial
sweep without training anything. Accuracy falls and TPF rises as the threshold drops, and
the trial parameters move both, so the frontier, the attainment bands and the importances
all have something to show.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from pareto_bench.analysis.frontier import FIXED_Y_MAX, aup, hypervolume, record_points
from pareto_bench.core.defaults import HV_REFERENCE, MODEL, OPERATING_THRESHOLD
from pareto_bench.core.files import (
    CONFIG_FILE,
    EVAL_FILE,
    SPEC_YAML,
    SWEEP_JSON,
    TRAIN_FILE,
    TRIALS_DIR,
    TRIALS_JSONL,
)
from pareto_bench.core.records import (
    BASE_MODEL_BASELINE,
    BASELINE,
    TRIAL,
    EvalRecord,
    SampleResult,
    TrainStepRecord,
    TrialRecord,
    append_jsonl,
)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _eval_records(
    rng: np.random.Generator,
    task: str,
    thresholds: Sequence[float],
    skill: float,
    speed: float,
    problems: int,
) -> list[EvalRecord]:
    records = []
    # Problem difficulty depends on the task alone: every trial meets the same problems.
    difficulty = np.random.default_rng(sum(map(ord, task))).normal(0.0, 1.0, size=problems)
    for tau in thresholds:
        tpf_target = 1.0 + 5.0 * speed * (1.0 - tau) ** 1.3
        samples = []
        for i in range(problems):
            p = _sigmoid(skill - 2.2 * (1.0 - tau) / (0.6 + skill * 0.2) - difficulty[i])
            correct = bool(rng.random() < p)
            tokens = int(rng.integers(30, 90))
            forwards = max(1, round(tokens / max(1.0, tpf_target * rng.uniform(0.85, 1.15))))
            samples.append(SampleResult(f"{task}-{i}", correct, float(correct), tokens, forwards))
        records.append(
            EvalRecord.from_samples(
                task, tau, samples, model="synthetic", task_version="1", block_size=8
            )
        )
    return records


def _train_steps(
    rng: np.random.Generator, steps: int, skill: float, speed: float
) -> list[TrainStepRecord]:
    rows = []
    for step in range(1, steps + 1):
        progress = 1.0 - math.exp(-step / (steps / 3))
        accuracy = 100 * _sigmoid(skill * progress - 0.5) + rng.normal(0, 2)
        tpf = 1.5 + 2.5 * speed * progress + rng.normal(0, 0.1)
        rows.append(
            TrainStepRecord(
                step=step,
                reward=accuracy / 50 - 1 + 0.3 * speed * progress,
                reward_acc=accuracy / 50 - 1,
                reward_tpf=0.3 * speed * progress,
                accuracy=accuracy,
                tpf=tpf,
                filtered_fraction=0.3 * (1 - progress),
                refill_rounds=int(rng.integers(0, 3)),
                policy_loss=float(rng.normal(0, 0.05)),
                kl=0.01 * progress,
                nll=1.5 - progress,
                loss=float(rng.normal(0, 0.1)),
                clip_fraction=0.05,
                grad_norm=float(abs(rng.normal(1, 0.2))),
                step_time=2.0,
                rollout_time=1.2,
                likelihood_time=0.5,
                backward_time=0.3,
                lr=1e-4,
            )  # fmt: skip
        )
    return rows


def _objectives(records: list[EvalRecord]) -> dict[str, float]:
    objectives: dict[str, float] = {}
    for task in sorted({r.task for r in records}):
        curve = [r for r in records if r.task == task]
        op = min(curve, key=lambda r: abs(r.threshold - OPERATING_THRESHOLD))
        points = record_points(curve)
        objectives[f"{task}/accuracy"] = op.accuracy
        objectives[f"{task}/tpf"] = op.tpf
        objectives[f"{task}/aup"] = aup(points, FIXED_Y_MAX)
        objectives[f"{task}/hypervolume"] = hypervolume(points, HV_REFERENCE)
    return objectives


def _write_study(
    out: Path, study_name: str, tasks: Sequence[str], trials: list[TrialRecord]
) -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = {
        "lr": FloatDistribution(1e-5, 1e-3, log=True),
        "tpf_weight": FloatDistribution(0.0, 2.0),
        "nll_weight": FloatDistribution(0.0, 0.3),
        "advantage": CategoricalDistribution(["batch", "group"]),
    }
    names = [f"{task}/{metric}" for task in tasks for metric in ("accuracy", "tpf")]
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "study.journal"))
    )
    study = optuna.create_study(
        study_name=study_name, storage=storage, directions=["maximize"] * len(names)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # set_metric_names is marked experimental
        study.set_metric_names(names)
    for record in trials:
        done = record.state == "COMPLETE"
        study.add_trial(
            optuna.trial.create_trial(
                params=record.params,
                distributions={k: distributions[k] for k in record.params},
                values=[record.objectives[n] for n in names] if done else None,
                state=optuna.trial.TrialState.COMPLETE if done else optuna.trial.TrialState.FAIL,
            )
        )


def write_synthetic_sweep(
    out_dir: str | Path,
    *,
    trials: int = 50,
    tasks: Sequence[str] = ("synthetic", "gsm8k"),
    thresholds: Sequence[float] = (0.3, 0.5, 0.7, 0.9, 1.0),
    seeds: Sequence[int] = (0, 1, 2),
    problems: int = 100,
    train_steps: int = 30,
    failed_every: int = 17,
    seed: int = 0,
) -> Path:
    """Write a recorded sweep: two baselines (``base``, ``grpo``) and ``trials`` trials, of
    which every ``failed_every``-th fails. Returns the directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    name = out.name
    spec = {
        "name": name,
        "model": MODEL,
        "tasks": list(tasks),
        "thresholds": list(thresholds),
        "operating_threshold": OPERATING_THRESHOLD,
        "trials": trials,
        "seeds": list(seeds),
        "sampler": "tpe",
        "search_space": {
            "lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
            "tpf_weight": {"type": "float", "low": 0.0, "high": 2.0},
            "nll_weight": {"type": "float", "low": 0.0, "high": 0.3},
            "advantage": {"type": "categorical", "choices": ["batch", "group"]},
        },
    }
    (out / SPEC_YAML).write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    meta = {
        "name": name,
        "spec_path": f"sweeps/{name}.yaml",
        "study_name": name,
        "storage": "study.journal",
        "tracking_uri": None,
        "parent_run_id": None,
        "operating_threshold": OPERATING_THRESHOLD,
        "tasks": list(tasks),
        "thresholds": list(thresholds),
        "code_version": "synthetic",
        "created": "2026-01-01T00:00:00+00:00",
    }
    (out / SWEEP_JSON).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    plans = [(BASE_MODEL_BASELINE, BASELINE, {}, 0.4, 0.7), ("grpo", BASELINE, {}, 1.0, 0.6)]
    for i in range(trials):
        params = {
            "lr": float(10 ** rng.uniform(-5, -3)),
            "tpf_weight": float(rng.uniform(0, 2)),
            "nll_weight": float(rng.uniform(0, 0.3)),
            "advantage": str(rng.choice(["batch", "group"])),
        }
        skill = 0.5 + 0.8 * params["nll_weight"] / 0.3 + 0.6 * (params["lr"] > 1e-4)
        speed = 0.5 + 0.5 * params["tpf_weight"]
        plans.append((f"trial {i + 2}", TRIAL, params, skill, speed))

    records = []
    for number, (trial_name, kind, params, skill, speed) in enumerate(plans):
        folder = out / TRIALS_DIR / str(number)
        trial_seed = int(seeds[number % len(seeds)])
        running = TrialRecord(number, kind, trial_name, "RUNNING", params, seed=trial_seed)
        append_jsonl(out / TRIALS_JSONL, [running])
        if kind == TRIAL:
            (folder / CONFIG_FILE).parent.mkdir(parents=True, exist_ok=True)
            (folder / CONFIG_FILE).write_text(yaml.safe_dump(params), encoding="utf-8")
        failed = kind == TRIAL and failed_every > 0 and number % failed_every == 0
        steps = _train_steps(rng, train_steps // 2 if failed else train_steps, skill, speed)
        if trial_name != BASE_MODEL_BASELINE:
            append_jsonl(folder / TRAIN_FILE, steps)
        if failed:
            done = TrialRecord(number, kind, trial_name, "FAIL", params, seed=trial_seed,
                               failure_reason=f"TrainingDiverged: NaN loss at step {len(steps) + 1}",
                               wall_time=60.0)  # fmt: skip
        else:
            evals = [
                r
                for task in tasks
                for r in _eval_records(rng, task, thresholds, skill, speed, problems)
            ]
            append_jsonl(folder / EVAL_FILE, evals)
            done = TrialRecord(number, kind, trial_name, "COMPLETE", params, _objectives(evals),
                               seed=trial_seed, wall_time=120.0)  # fmt: skip
        append_jsonl(out / TRIALS_JSONL, [done])
        records.append(done)
    _write_study(out, name, tasks, records)
    return out
