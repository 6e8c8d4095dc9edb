"""TrainConfig: the single source of training defaults, the recipes, and errors a user can act on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from pareto_bench.core.schema import ConfigError, dump_yaml
from pareto_bench.rl.config import TrainConfig, load_recipe

TRAINERS = Path(__file__).resolve().parents[1] / "trainers"
RECIPES = sorted(TRAINERS.glob("*.yaml"))


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(a: TrainConfig, b: TrainConfig) -> set[str]:
    fa, fb = flatten(a.model_dump()), flatten(b.model_dump())
    return {key for key in fa if fa[key] != fb[key]}


def test_defaults_are_the_papers_lightningrl() -> None:
    c = TrainConfig()
    assert (c.rollout.group_size, c.rollout.threshold, c.rollout.temperature) == (8, 0.9, 1.0)
    assert (c.reward.tpf_weight, c.reward.tpf_norm, c.reward.acc_norm, c.reward.decoupled) == (
        1.0,
        "zscore",
        "plus_minus_one",
        True,
    )
    assert (c.filter.enabled, c.filter.drop_all_wrong, c.filter.min_tpf_range) == (True, True, 0.01)
    assert (c.advantage.mode, c.likelihood.mode) == ("batch", "trajectory")
    loss = c.loss
    assert (loss.eps, loss.eps_high, loss.kl_beta, loss.kl_estimator, loss.nll_weight) == (
        0.2,
        0.2,
        0.01,
        "k3",
        0.1,
    )
    assert (loss.policy_reduction, loss.kl_reduction, loss.nll_reduction) == ("seq", "tok", "tok")
    assert c.optim.grad_clip == 1.0 and c.eval_thresholds == [0.5, 0.7, 0.9]


def all_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any]]:
    fields = []
    for name, info in model.model_fields.items():
        fields.append((prefix + name, info))
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields += all_fields(annotation, f"{prefix}{name}.")
    return fields


def test_every_field_has_help_text() -> None:
    missing = [
        name for name, info in all_fields(TrainConfig) if not (info.description or "").strip()
    ]
    assert missing == []


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads_and_shows_its_launch_command(recipe: Path) -> None:
    config = load_recipe(recipe)
    assert config.name == recipe.stem
    launch = rf"^#\s+pareto-bench train trainers/{re.escape(recipe.name)}\b"
    assert re.search(launch, recipe.read_text(), flags=re.MULTILINE)


def test_the_expected_recipes_exist() -> None:
    names = {p.stem for p in RECIPES}
    assert {"lightningrl", "grpo", "no_nll", "no_decoupled_norm", "no_tpf_filter"} <= names


@pytest.mark.parametrize(
    ("recipe", "changed"),
    [
        ("lightningrl", set()),
        ("grpo", {"reward.tpf_weight"}),
        ("no_nll", {"loss.nll_weight"}),
        ("no_decoupled_norm", {"reward.decoupled"}),
        ("no_tpf_filter", {"filter.min_tpf_range"}),
    ],
)
def test_each_baseline_differs_from_lightningrl_only_where_it_says(
    recipe: str, changed: set[str]
) -> None:
    base = load_recipe(TRAINERS / "lightningrl.yaml")
    assert differences(load_recipe(TRAINERS / f"{recipe}.yaml"), base) - {"name"} == changed


def test_recipe_values_of_the_ablations() -> None:
    assert load_recipe(TRAINERS / "grpo.yaml").reward.tpf_weight == 0.0
    assert load_recipe(TRAINERS / "no_nll.yaml").loss.nll_weight == 0.0
    assert load_recipe(TRAINERS / "no_decoupled_norm.yaml").reward.decoupled is False
    assert load_recipe(TRAINERS / "no_tpf_filter.yaml").filter.min_tpf_range == 0.0


def test_overrides_apply_and_parse_types() -> None:
    config = load_recipe(
        TRAINERS / "lightningrl.yaml",
        [
            "optim.lr=3e-5",
            "rollout.group_size=4",
            "reward.decoupled=false",
            "model=/ckpt/x",
            "out_dir=runs/a",
        ],
    )
    assert config.optim.lr == pytest.approx(3e-5)
    assert config.rollout.group_size == 4 and config.reward.decoupled is False
    assert config.model == "/ckpt/x" and config.out_dir == Path("runs/a")


def test_resolved_config_round_trips_through_yaml(tmp_path: Path) -> None:
    config = load_recipe(TRAINERS / "grpo.yaml", ["data_dir=/data", "rollout.top_k=5"])
    path = tmp_path / "config.yaml"
    path.write_text(dump_yaml(config))
    assert load_recipe(path) == config


def test_eval_thresholds_are_sorted_and_unique() -> None:
    assert load_recipe(None, ["eval_thresholds=[0.9, 0.5, 0.9]"]).eval_thresholds == [0.5, 0.9]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss.nll_wieght=0.2", "unknown field 'loss.nll_wieght'; did you mean 'loss.nll_weight'?"),
        ("rewrd.tpf_weight=1", "unknown field 'rewrd'; did you mean 'reward'?"),
        ("filter.min_tpf_rnage=0", "did you mean 'filter.min_tpf_range'?"),
        ("stpes=3", "did you mean 'steps'?"),
    ],
)
def test_unknown_key_names_the_closest_valid_one(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_recipe(TRAINERS / "lightningrl.yaml", [override])
    assert message in str(error.value)


def test_unknown_key_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("reward:\n  tpf_wieght: 0.5\n")
    with pytest.raises(ConfigError) as error:
        load_recipe(path)
    assert str(path) in str(error.value) and "did you mean 'reward.tpf_weight'?" in str(error.value)


@pytest.mark.parametrize(
    ("override", "valid"),
    [
        ("reward.tpf_norm=zscor", "'zscore', 'minmax', 'raw' or 'none'"),
        ("reward.acc_norm=binary", "'plus_minus_one' or 'zscore'"),
        ("advantage.mode=global", "'batch', 'group' or 'group_centered'"),
        ("loss.kl_estimator=k4", "'k1', 'k2' or 'k3'"),
        ("loss.policy_reduction=sequence", "'seq' or 'tok'"),
        ("likelihood.mode=exact", "'trajectory' or 'block_surrogate'"),
        ("rollout.strategy=greedy", "'dynamic' or 'static'"),
    ],
)
def test_bad_choice_names_the_valid_ones(override: str, valid: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_recipe(None, [override])
    field = override.partition("=")[0]
    assert f"field '{field}'" in str(error.value) and valid in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "fix"),
    [
        (["rollout.group_size=1"], "set rollout.group_size >= 2"),
        (["rollout.strategy=static"], "set rollout.steps_per_block"),
        (["optim.betas=[0.9, 1.0]"], "optim.betas=[0.9, 0.999]"),
        (["loss.eps=1.5"], "field 'loss.eps'"),
        (["rollout.temperature=0"], "field 'rollout.temperature'"),
        (["eval_thresholds=[]"], "field 'eval_thresholds'"),
    ],
)
def test_invalid_values_say_how_to_fix_them(overrides: list[str], fix: str) -> None:
    with pytest.raises(ConfigError, match="config: ") as error:
        load_recipe(None, overrides)
    assert fix in str(error.value)


def test_static_strategy_with_steps_is_valid() -> None:
    config = load_recipe(None, ["rollout.strategy=static", "rollout.steps_per_block=4"])
    assert config.rollout.steps_per_block == 4


def test_missing_recipe_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_recipe(tmp_path / "nope.yaml")


SCALED_SWEEPS = [
    path
    for path in sorted((TRAINERS.parent / "sweeps").glob("*.yaml"))
    if "train_base" in yaml.safe_load(path.read_text(encoding="utf-8"))
]


@pytest.mark.parametrize("sweep", SCALED_SWEEPS, ids=lambda p: p.stem)
def test_a_sweep_at_a_recipes_scale_states_only_what_it_changes(sweep: Path):
    """Each field of the ``train`` of a sweep with a ``train_base`` (tiny's scale) differs from
    what its recipe over that base already gives: a restated value would drift unnoticed."""
    from pareto_bench.sweep.spec import flatten, load_spec

    spec = load_spec(sweep)
    recipe = flatten(load_recipe(spec.recipe, base=spec.train_base).model_dump(mode="json"))
    restated = {k: v for k, v in flatten(spec.train).items() if recipe.get(k) == v}
    assert restated == {}
