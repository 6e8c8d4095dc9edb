"""A trial's trainer config: the recipe, the spec's shared ``train`` fields and the sampled
parameters, resolved into one validated ``TrainConfig``; and the checks that run before a
sweep starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pareto_bench.core.records import BASE_MODEL_BASELINE, BASELINE, TRIAL
from pareto_bench.core.schema import ConfigError, build, deep_merge, read_yaml, set_dotted
from pareto_bench.sweep.spec import (
    SweepSpec,
    flatten,
    nest,
)

# What a sweep changes in every trainer config, before the recipe and the spec's own `train`:
# the sweep evaluates each checkpoint itself, and only the final checkpoint is kept.
SWEEP_TRAIN_DEFAULTS: dict[str, Any] = {"eval_every": 0, "save_every": 0}


def resolve_trial_config(
    spec: SweepSpec, spec_path: Path | None, kind: str, name: str, params: dict[str, Any]
) -> dict[str, Any] | None:
    """The trial's full ``TrainConfig`` as JSON: sweep defaults < ``spec.train_base`` < recipe <
    ``spec.train`` < sampled params < the spec's model, task, seed, data dir, device and dtype.
    ``None`` for the base model."""
    from pareto_bench.rl.config import TrainConfig, recipe_path

    if kind == BASELINE and name == BASE_MODEL_BASELINE:
        return None
    recipe = recipe_path(spec.recipe if kind == TRIAL else name, spec_path)
    data = dict(SWEEP_TRAIN_DEFAULTS)
    if spec.train_base is not None:
        data = deep_merge(data, read_yaml(recipe_path(spec.train_base, spec_path)))
    data = deep_merge(data, read_yaml(recipe))
    data = deep_merge(data, nest(flatten(spec.train)))
    for key, value in params.items():
        set_dotted(data, key, value)
    data.update(
        name=f"{spec.name}-{name}",
        model=spec.model,
        task=spec.task,
        seed=spec.seed,
        data_dir=str(spec.data_dir) if spec.data_dir else None,
        device=spec.device,
        dtype=spec.dtype,
        out_dir=None,
    )
    source = f"{spec_path or 'spec'} (recipe {recipe}, {name})"
    return build(TrainConfig, data, source).model_dump(mode="json")


def preflight(spec: SweepSpec, spec_path: Path | None, unchecked: list[str] | None = None) -> None:
    """Check the model and the data (``check_inputs``), then resolve every baseline's trainer
    config, and the trials' at both ends of every searched range (and at every choice), so that
    a missing recipe or a range the trainer would reject fails now, naming the key, not in the
    middle of the sweep. With ``unchecked`` (the dry run), a model or data this machine lacks is
    listed there instead of failing."""
    from pareto_bench.rl.config import recipe_path

    check_inputs(spec, spec_path, unchecked)
    for recipe in (spec.recipe, spec.train_base):  # a missing recipe is named as such
        if recipe is not None:
            recipe_path(recipe, spec_path)
    for name in spec.baselines:
        resolve_trial_config(spec, spec_path, BASELINE, name, {})
    for key, param in spec.search_space.items():
        values = param.choices if param.type == "categorical" else [param.low, param.high]
        for value in values or []:
            if param.type == "int":
                value = int(value)
            try:
                resolve_trial_config(spec, spec_path, TRIAL, "search-space-check", {key: value})
            except ConfigError as e:
                raise ConfigError(
                    f"{spec_path or 'spec'}: search_space key {key!r}: the value {value!r} is not a valid "
                    f"trainer setting ({e}); narrow the range"
                ) from None


def check_inputs(
    spec: SweepSpec, spec_path: Path | None, unchecked: list[str] | None = None
) -> None:
    """Read what every trial will read first: the model's config and tokenizer (not its
    weights) and the problems of the training task and of every evaluation task. The first
    missing one raises, or, with ``unchecked``, each is appended to it as one line."""
    from pareto_bench.dllm.models import CheckpointError, check_model
    from pareto_bench.tasks import TaskDataError, get_task
    from pareto_bench.tasks.base import resolve_data_dir, training_task_name

    def missing(message: str) -> None:
        if unchecked is None:
            raise ConfigError(message)
        unchecked.append(message)

    where = spec_path or "spec"
    try:
        check_model(spec.model)
    except CheckpointError as e:
        missing(f"{where}: model: {e}")
    data_dir = resolve_data_dir(spec.data_dir)
    for task in dict.fromkeys([training_task_name(spec.task), *spec.eval.tasks]):
        try:
            get_task(task).load(data_dir)
        except TaskDataError as e:
            missing(f"{where}: {e} (in the spec: data_dir: DIR)")
