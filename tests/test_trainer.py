"""The LightningRL trainer on the shipped tiny model, a few small steps at a time."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pareto_bench.cli import app
from pareto_bench.core.records import TrainStepRecord, read_jsonl
from pareto_bench.dllm.models import load_model
from pareto_bench.rl import step as step_module
from pareto_bench.rl.config import load_recipe
from pareto_bench.rl.step import PHASES
from pareto_bench.rl.trainer import TrainingDiverged, train

TRAINERS = Path(__file__).resolve().parents[1] / "trainers"  # tests run from any directory
SMALL = [
    "rollout.prompts_per_step=2",
    "rollout.group_size=4",
    "eval_every=0",
    "save_every=0",
    "filter.max_refill_rounds=1",
]


def small_config(*extra: str, steps: int = 2):
    return load_recipe(TRAINERS / "lightningrl.yaml", [*SMALL, f"steps={steps}", *extra])


def test_one_step_changes_every_trainable_parameter(tmp_path):
    before = {k: v.clone() for k, v in load_model("tiny").model.named_parameters()}
    # Filtering off and lr high enough that Adam's first step moves every tensor visibly.
    result = train(
        small_config("filter.enabled=false", "optim.lr=1e-3", "optim.warmup_steps=0", steps=1),
        out_dir=tmp_path,
        progress=False,
    )
    after = dict(load_model(result.checkpoint_dir).model.named_parameters())
    unchanged = [k for k, v in before.items() if torch.equal(v, after[k])]
    assert not unchanged


def test_resume_is_exact(tmp_path):
    overrides = ("save_every=2", "optim.updates_per_step=2")
    full = train(small_config(*overrides, steps=4), out_dir=tmp_path / "full", progress=False)
    half = train(small_config(*overrides, steps=2), out_dir=tmp_path / "split", progress=False)
    assert len(half.steps) == 2
    resumed = train(
        small_config(*overrides, steps=4), out_dir=tmp_path / "split", resume=True, progress=False
    )
    a = load_model(full.checkpoint_dir).model.state_dict()
    b = load_model(resumed.checkpoint_dir).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    def numbers(path):
        return [
            (r.step, r.reward, r.tpf, r.loss, r.accuracy) for r in read_jsonl(path, TrainStepRecord)
        ]

    assert numbers(tmp_path / "full" / "train.jsonl") == numbers(tmp_path / "split" / "train.jsonl")


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    real = step_module.lightningrl_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] >= 2:
            return type(terms)(
                terms.loss * float("nan"),
                terms.policy_loss,
                terms.kl,
                terms.nll,
                terms.clip_fraction,
            )
        return terms

    monkeypatch.setattr(step_module, "lightningrl_loss", poisoned)
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train(small_config("filter.enabled=false", steps=3), out_dir=tmp_path, progress=False)
    state = torch.load(tmp_path / "checkpoint" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 1
    assert load_model(tmp_path / "checkpoint").block_size == 8
    assert len(read_jsonl(tmp_path / "train.jsonl", TrainStepRecord)) == 1


def test_training_records_every_metric(tmp_path):
    result = train(small_config("filter.enabled=false", steps=1), out_dir=tmp_path, progress=False)
    record = result.steps[0]
    assert 0.0 <= record.filtered_fraction <= 1.0
    assert record.step_time >= record.rollout_time > 0
    assert record.rollout_time >= record.reward_wait_time >= 0
    phases = [getattr(record, f"{phase}_time") for phase in PHASES]
    assert all(seconds > 0 for seconds in phases) and sum(phases) <= record.step_time
    assert record.flops > 0 and record.mfu is None  # no bf16 peak for a CPU
    assert record.tpf > 0
    saved = (tmp_path / "config.yaml").read_text()
    assert "tpf_weight" in saved and "nll_weight" in saved


@pytest.mark.parametrize(
    "recipe", ["lightningrl", "grpo", "no_nll", "no_decoupled_norm", "no_tpf_filter"]
)
def test_recipes_run_from_the_cli(tmp_path, recipe):
    args = [
        "train",
        str(TRAINERS / f"{recipe}.yaml"),
        "--model",
        "tiny",
        "--steps",
        "1",
        "--out",
        str(tmp_path),
    ]
    for override in SMALL:
        args += ["--set", override]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "checkpoint:" in result.output
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["step"] == 0


def test_resume_without_a_checkpoint_names_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume"):
        train(small_config(), out_dir=tmp_path / "nothing", resume=True, progress=False)


class _GatedTask:
    """A task whose ``score`` records each call and lets a test know when one began."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []
        self.began = threading.Event()

    def score(self, problems, responses):
        self.calls.append((list(problems), list(responses), threading.current_thread().name))
        self.began.set()
        return self.inner.score(problems, responses)


def test_each_chunk_is_scored_while_the_next_one_decodes():
    from pareto_bench.rl.rollout import score_while_decoding
    from pareto_bench.tasks.synthetic import SyntheticTask

    inner = SyntheticTask()
    problems = inner.load()[:5]
    responses = ["no answer" if i % 2 else p.gold for i, p in enumerate(problems)]
    task = _GatedTask(inner)

    def chunks():
        yield responses[:2]
        # Still "decoding" the second chunk: the first is already being scored.
        assert task.began.wait(timeout=30)
        yield responses[2:]

    verdicts, waited = score_while_decoding(task, problems, chunks())
    assert [v.correct for v in verdicts] == [v.correct for v in inner.score(problems, responses)]
    assert [v.correct for v in verdicts] == [True, False, True, False, True]
    assert [(c[0], c[1]) for c in task.calls] == [
        (problems[:2], responses[:2]),
        (problems[2:], responses[2:]),
    ]
    # The first on the background thread, the last where the caller waits anyway.
    assert [name.split("_")[0] for *_, name in task.calls] == ["rewards", "MainThread"]
    assert waited >= 0


def test_scoring_while_decoding_refuses_a_count_mismatch():
    from pareto_bench.rl.rollout import score_while_decoding
    from pareto_bench.tasks.synthetic import SyntheticTask

    task = SyntheticTask()
    problems = task.load()[:3]
    answers = [p.gold for p in problems]
    for chunks, counted in (([answers[:2]], "2"), ([answers, answers[:1]], "more")):
        with pytest.raises(ValueError, match=f"3 problems but {counted} responses"):
            score_while_decoding(task, problems, chunks)
    assert score_while_decoding(task, [], []) == ([], 0.0)
