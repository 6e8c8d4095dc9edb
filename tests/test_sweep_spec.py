"""Sweep specs: the shipped ones validate and dry-run; bad ones fail with one actionable line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from pareto_bench.bench.sdar_shaped import write_sdar_shaped_checkpoint
from pareto_bench.core.schema import ConfigError
from pareto_bench.sweep import load_spec, plan_trials
from pareto_bench.sweep.spec import SearchParam, set_override, spec_warnings

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).with_name("pareto-bench"))
SPECS = ["tiny", "math", "code"]


def write_spec(tmp_path: Path, **changes) -> Path:
    """tiny.yaml with top-level fields replaced (``None`` removes one)."""
    data = yaml.safe_load((ROOT / "sweeps" / "tiny.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", SPECS)
def test_shipped_specs_validate(name: str) -> None:
    spec = load_spec(ROOT / "sweeps" / f"{name}.yaml")
    assert spec.name == name
    assert spec.search_space, "a sweep searches something"
    assert spec.eval.operating_threshold in spec.eval.all_thresholds


@pytest.mark.parametrize("name", SPECS)
def test_shipped_specs_comment_their_launch_command(name: str) -> None:
    header = (ROOT / "sweeps" / f"{name}.yaml").read_text().split("\nname:")[0]
    assert f"pareto-bench sweep sweeps/{name}.yaml" in header


@pytest.fixture(scope="module")
def sdar_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SDAR-layout checkpoint with random weights, standing in for math/code's real one."""
    return write_sdar_shaped_checkpoint(tmp_path_factory.mktemp("sdar") / "SDAR-shaped")


@pytest.mark.parametrize("name", SPECS)
def test_dry_run_checks_the_model_and_data_then_prints_the_resolved_trials(
    name: str, sdar_checkpoint: Path, data_dir: Path
) -> None:
    spec = load_spec(ROOT / "sweeps" / f"{name}.yaml")
    inputs = [] if name == "tiny" else ["--set", f"model={sdar_checkpoint}"]
    inputs += ["--set", f"data_dir={data_dir}"]
    result = subprocess.run(
        [CLI, "sweep", f"sweeps/{name}.yaml", "--dry-run", *inputs],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for baseline in spec.baselines:
        assert baseline in out
    assert f"trial-{len(spec.baselines) + spec.trials - 1}" in out  # every trial is listed
    for key in spec.search_space:
        assert key in out


@pytest.mark.parametrize("name", ["math", "code"])
def test_the_paper_specs_dry_run_without_the_model_or_the_data(name: str, tmp_path: Path) -> None:
    """What their headers promise: the whole sweep planned on a machine without the checkpoint
    or the data, and each input it could not check named."""
    from pareto_bench.tasks import TaskDataError, get_task
    from pareto_bench.tasks.base import training_task_name

    path = ROOT / "sweeps" / f"{name}.yaml"
    header = path.read_text().split("\nname:")[0]
    assert f"sweeps/{name}.yaml --dry-run" in header and "no model or data needed" in header
    spec = load_spec(path)
    assert not Path(spec.model).exists()  # the test means a machine without it
    env = {k: v for k, v in os.environ.items() if k != "PARETO_BENCH_DATA"}
    result = subprocess.run(
        [CLI, "sweep", str(path), "--dry-run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"trial-{len(spec.baselines) + spec.trials - 1}" in out  # every trial is planned
    unchecked = [line for line in out.splitlines() if line.startswith("not checked here: ")]
    assert f"model: checkpoint {spec.model}: no such directory" in unchecked[0]
    for task in {training_task_name(spec.task), *spec.eval.tasks}:  # and every data file missing
        try:
            get_task(task).load(None)  # some tasks ship their data
        except TaskDataError:
            assert any(f"task '{task}' needs " in line for line in unchecked), task


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=/nonexistent"], "sweeps/tiny.yaml: model: checkpoint /nonexistent: no such"),
        (["task=gsm8k", "eval.tasks=[gsm8k]"], "task 'gsm8k-train' needs gsm8k/train.jsonl"),
    ],
)
def test_a_missing_model_or_data_is_listed_by_the_dry_run_and_stops_a_sweep(
    overrides: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pareto_bench.sweep import preflight

    command = [CLI, "sweep", str(ROOT / "sweeps" / "tiny.yaml"), "--dry-run"]
    for override in overrides:
        command += ["--set", override]
    monkeypatch.delenv("PARETO_BENCH_DATA", raising=False)
    env = {**os.environ, "COLUMNS": "400"}
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    unchecked = [
        line.replace(str(ROOT) + "/", "")
        for line in result.stdout.splitlines()
        if line.startswith("not checked here")
    ]
    assert unchecked and any(message in line for line in unchecked), result.stdout
    # A real sweep checks the same inputs first and stops at the first one missing.
    path = ROOT / "sweeps" / "tiny.yaml"
    with pytest.raises(ConfigError) as caught:
        preflight(load_spec(path, overrides), path)
    assert message in str(caught.value).replace(str(ROOT) + "/", "")


@pytest.mark.parametrize("name", SPECS)
def test_shipped_specs_never_train_on_their_evaluation_problems(name: str) -> None:
    assert spec_warnings(load_spec(ROOT / "sweeps" / f"{name}.yaml")) == []


def test_training_on_an_evaluated_task_without_a_train_split_is_warned(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, task="humaneval", eval={"tasks": ["humaneval"]}))
    (warning,) = spec_warnings(spec)
    assert "'humaneval-train'" in warning and "evaluated on" in warning


def test_plan_resolves_every_trial_config(sdar_checkpoint: Path, data_dir: Path) -> None:
    path = ROOT / "sweeps" / "math.yaml"
    spec = load_spec(path, [f"model={sdar_checkpoint}", f"data_dir={data_dir}"])
    planned = plan_trials(spec, path, budget=3)
    assert [p.name for p in planned] == ["base", "grpo", "trial-2", "trial-3", "trial-4"]
    base, grpo, first = planned[0], planned[1], planned[2]
    assert base.config is None  # the untrained model
    assert grpo.config["reward"]["tpf_weight"] == 0.0  # the grpo recipe, not the search
    assert grpo.config["steps"] == spec.train["steps"]  # ... with the spec's shared settings
    for key, value in first.params.items():  # sampled values land on the dotted trainer fields
        section, field = key.split(".")
        assert first.config[section][field] == value
    assert first.config["model"] == spec.model and first.config["task"] == spec.task


def test_grid_sampler_enumerates_the_grid(tmp_path: Path) -> None:
    space = {
        "reward.tpf_weight": [0.5, 1.0],
        "loss.nll_weight": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.1},
    }
    path = write_spec(tmp_path, search_space=space, sampler={"name": "grid"}, trials=100)
    spec = load_spec(path)
    planned = [p for p in plan_trials(spec, path) if p.kind == "trial"]
    combos = {(p.params["reward.tpf_weight"], p.params["loss.nll_weight"]) for p in planned}
    assert len(planned) == 6 and len(combos) == 6  # 2 x 3 points, each once, capped at the grid


def test_search_params_map_one_to_one_onto_optuna_distributions() -> None:
    d = optuna.distributions
    assert SearchParam(
        type="float", low=0.1, high=2, log=True
    ).distribution() == d.FloatDistribution(0.1, 2, log=True)
    assert SearchParam(type="int", low=1, high=9, step=2).distribution() == d.IntDistribution(
        1, 9, step=2
    )
    assert SearchParam.model_validate([0.7, 0.9]).distribution() == d.CategoricalDistribution(
        [0.7, 0.9]
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"trails": 3}, ["unknown field 'trails'", "did you mean 'trials'"]),
        (
            {"search_space": {"reward.tpf_weigth": [1.0]}},
            ["reward.tpf_weigth", "did you mean 'reward.tpf_weight'"],
        ),
        (
            {"search_space": {"reward.tpf_weight": {"type": "float", "low": 2, "high": 1}}},
            ["reward.tpf_weight", "swap them"],
        ),
        (
            {"search_space": {"reward.tpf_weight": {"type": "float", "low": 0}}},
            ["reward.tpf_weight", "'high'"],
        ),
        (
            {"search_space": {"reward.tpf_weight": {"type": "float", "low": -1, "high": 1}}},
            ["reward.tpf_weight", "-1", "narrow the range"],
        ),
        ({"search_space": {"seed": [0, 1]}}, ["'seed'", "top-level"]),
        ({"objectives": ["gsm8k/accuracy"]}, ["objectives", "'gsm8k'", "eval.tasks"]),
        ({"objectives": ["synthetic/speed"]}, ["objectives", "accuracy, tpf, aup, hypervolume"]),
        ({"objectives": "fast"}, ["objectives", "accuracy_tpf"]),
        ({"sampler": {"name": "tpee"}}, ["sampler.name", "did you mean 'tpe'"]),
        ({"sampler": {"name": "tpe", "options": {"bogus": 1}}}, ["sampler.options", "bogus"]),
        ({"sampler": {"name": "grid"}}, ["grid sampler needs a 'step'"]),
        ({"executor": {"name": "cluster"}}, ["executor.name", "inprocess"]),
        ({"task": "gsm9k"}, ["field 'task'", "gsm8k"]),
        ({"name": "my sweep"}, ["field 'name'", "letters, digits"]),
        ({"recipe": "no_such_recipe"}, ["no_such_recipe", "not found"]),
        ({"train_base": "no_such_base"}, ["no_such_base", "not found"]),
    ],
)
def test_bad_specs_name_the_file_the_field_and_the_fix(tmp_path: Path, changes, expected) -> None:
    path = write_spec(tmp_path, **changes)
    with pytest.raises((ConfigError, FileNotFoundError)) as caught:
        plan_trials(load_spec(path), path, budget=1)
    message = str(caught.value)
    assert "\n" not in message
    if "not found" not in expected:
        assert str(path) in message
    for fragment in expected:
        assert fragment in message


def test_a_missing_recipe_is_named_as_such_by_the_preflight(tmp_path: Path) -> None:
    """Not as a search-space value the trainer would reject."""
    from pareto_bench.sweep import preflight

    path = write_spec(tmp_path, recipe="no_such_recipe")
    with pytest.raises(ConfigError, match="no_such_recipe: no such file") as caught:
        preflight(load_spec(path), path)
    assert "narrow the range" not in str(caught.value)


def test_set_overrides_reach_any_field(tmp_path: Path) -> None:
    path = write_spec(tmp_path)
    spec = load_spec(
        path,
        [
            "trials=2",
            "train.rollout.group_size=2",
            "eval.limit=3",
            "search_space.reward.tpf_weight.high=1.5",
            "search_space.loss.nll_weight=[0.0, 0.1]",
            "search_space.rollout.threshold=[0.8, 0.9]",
        ],
    )
    assert spec.trials == 2 and spec.eval.limit == 3
    assert spec.train["rollout"]["group_size"] == 2
    assert spec.search_space["reward.tpf_weight"].high == 1.5
    assert spec.search_space["loss.nll_weight"].choices == [0.0, 0.1]
    assert spec.search_space["rollout.threshold"].choices == [0.8, 0.9]


def test_set_override_expands_list_shorthand_for_one_field() -> None:
    data = {"search_space": {"rollout.threshold": [0.8, 0.9]}}
    set_override(data, "search_space.rollout.threshold.choices", [0.7])
    assert data["search_space"]["rollout.threshold"] == {"type": "categorical", "choices": [0.7]}


def test_cli_reports_spec_errors_as_one_line(tmp_path: Path) -> None:
    path = write_spec(tmp_path, trails=3)
    result = subprocess.run(
        [CLI, "sweep", str(path), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "did you mean 'trials'" in result.stderr
    assert result.stderr.count("\n") == 1
