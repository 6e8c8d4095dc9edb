"""``SweepSpec``: what a sweep searches over, read from ``sweeps/*.yaml`` plus ``--set`` overrides.

A spec names the model, the trainer recipe, the training task, the evaluation tasks and
thresholds, the objectives, the sampler, the number of trials, the seed and the search space.
Search-space keys are dotted ``TrainConfig`` paths (``reward.tpf_weight``), each mapped
one-to-one onto an Optuna distribution. Every error names the file, the field and the fix.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pareto_bench.analysis.frontier import FIXED_Y_MAX
from pareto_bench.core.defaults import (
    BASELINES,
    EVAL_BATCH_SIZE,
    HV_REFERENCE,
    MODEL,
    OPERATING_THRESHOLD,
    THRESHOLDS,
)
from pareto_bench.core.placement import DEVICE_HELP, DTYPE_HELP, DeviceName, DtypeName
from pareto_bench.core.schema import (
    ConfigError,
    StrictModel,
    build,
    parse_override,
    read_yaml,
    resolve_named_file,
)
from pareto_bench.sweep.trial import DEFAULT_BODY, MEAN_TASK

# Objective keys are ``{task}/{metric}``, the task or ``MEAN_TASK`` (the mean over eval tasks).
OBJECTIVE_METRICS = ("accuracy", "tpf", "aup", "hypervolume")
OBJECTIVE_PRESETS = {
    "accuracy_tpf": ("accuracy", "tpf"),
    "aup": ("aup",),
}


class SearchParam(StrictModel):
    """One trainer field searched by Optuna. A bare list in YAML is shorthand for choices."""

    type: Literal["float", "int", "categorical"] = Field(
        description="Optuna distribution: 'float', 'int' or 'categorical'."
    )
    low: float | None = Field(None, description="Lower bound (float/int).")
    high: float | None = Field(None, description="Upper bound, inclusive (float/int).")
    step: float | None = Field(
        None, gt=0, description="Grid step (float/int); the grid sampler needs it for floats."
    )
    log: bool = Field(False, description="Sample on a log scale (float/int; low must be > 0).")
    choices: list[Any] | None = Field(None, description="The values of a categorical parameter.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, list):
            return {"type": "categorical", "choices": data}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                raise ValueError(
                    "a categorical parameter takes only 'choices'; drop low/high/step/log"
                )
            return self
        if self.choices is not None:
            raise ValueError(
                f"'choices' is for type categorical; a {self.type} parameter takes low/high"
            )
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs both 'low' and 'high'")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high}); swap them")
        if self.log and self.step is not None:
            raise ValueError("Optuna cannot combine 'log' and 'step'; drop one")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale parameter needs low > 0 (got {self.low})")
        if self.type == "int" and not all(
            float(v).is_integer() for v in (self.low, self.high, self.step or 1)
        ):
            raise ValueError("an int parameter needs whole-number low, high and step")
        return self

    def distribution(self) -> Any:
        """The Optuna distribution this parameter maps onto."""
        import optuna.distributions as d

        if self.type == "categorical":
            return d.CategoricalDistribution(self.choices)  # type: ignore[arg-type]
        if self.type == "int":
            return d.IntDistribution(
                int(self.low), int(self.high), log=self.log, step=int(self.step or 1)
            )  # type: ignore[arg-type]
        return d.FloatDistribution(self.low, self.high, log=self.log, step=self.step)  # type: ignore[arg-type]

    def suggest(self, trial: Any, name: str) -> Any:
        """Ask an Optuna trial for this parameter (a fixed value when the trial was enqueued)."""
        return _SUGGEST[self.type](trial, name, self)

    def grid(self) -> list[Any] | None:
        """Every value, for the grid sampler; ``None`` when the space is continuous."""
        if self.type == "categorical":
            return list(self.choices or [])
        if self.step is None and self.type == "float":
            return None
        low, high, step = float(self.low), float(self.high), float(self.step or 1)  # type: ignore[arg-type]
        count = int(round((high - low) / step)) + 1
        values = [low + i * step for i in range(count) if low + i * step <= high + 1e-9]
        cast = int if self.type == "int" else lambda v: round(v, 12)
        return [cast(v) for v in values]


_SUGGEST = {
    "float": lambda trial, name, p: trial.suggest_float(
        name, p.low, p.high, step=p.step, log=p.log
    ),
    "int": lambda trial, name, p: trial.suggest_int(
        name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log
    ),
    "categorical": lambda trial, name, p: trial.suggest_categorical(name, p.choices),
}


class EvalSpec(StrictModel):
    tasks: list[str] = Field(
        min_length=1, description="Registered tasks every checkpoint is evaluated on."
    )
    thresholds: list[float] = Field(
        list(THRESHOLDS),
        min_length=1,
        description="Decoding thresholds tau of the evaluation (one frontier point each).",
    )
    operating_threshold: float = Field(
        OPERATING_THRESHOLD,
        ge=0.0,
        description="The threshold whose accuracy and TPF are the default objectives (added to thresholds).",
    )
    limit: int | None = Field(
        None, ge=1, description="Evaluate at most this many problems per task."
    )
    batch_size: int = Field(EVAL_BATCH_SIZE, ge=1, description="Prompts decoded together.")
    max_new_tokens: int | None = Field(
        None, ge=1, description="Generation budget; None uses each task's default."
    )
    seed: int = Field(0, description="Evaluation seed (greedy decoding ignores it).")
    aup_y_max: float | dict[str, float] = Field(
        FIXED_Y_MAX,
        description=(
            "AUP's y_max (percent), one number or one per task. A fixed value keeps trials comparable; "
            "the report may recompute AUP with the best accuracy of any method."
        ),
    )
    hv_reference: tuple[float, float] = Field(
        HV_REFERENCE,
        description="Hypervolume reference point (TPF, accuracy); TPF 1 is autoregressive decoding.",
    )

    @field_validator("thresholds")
    @classmethod
    def _sorted_unique(cls, value: list[float]) -> list[float]:
        if any(t < 0 for t in value):
            raise ValueError("thresholds must be >= 0")
        return sorted(set(value))

    @property
    def all_thresholds(self) -> list[float]:
        """The thresholds to evaluate: ``thresholds`` plus the operating threshold, ascending."""
        return sorted({*self.thresholds, self.operating_threshold})

    def y_max(self, task: str) -> float:
        return (
            self.aup_y_max.get(task, FIXED_Y_MAX)
            if isinstance(self.aup_y_max, dict)
            else self.aup_y_max
        )


class SamplerSpec(StrictModel):
    name: str = Field("tpe", description="Optuna sampler: tpe, nsga2, gp, grid or random.")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments for the Optuna sampler, e.g. {n_startup_trials: 4}.",
    )


class ExecutorSpec(StrictModel):
    """The fields every executor shares. An executor's own options (``processes_per_trial``,
    SLURM's ``partition``...) sit beside them and are validated by the options model it
    declares (``Executor.Options``), so a new executor needs no edit here."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    name: str = Field(
        "subprocess",
        description=(
            "Where a trial runs: 'subprocess' (isolated, hard timeout; torchrun for several "
            "processes), 'inprocess', or 'slurm' (one SLURM job per trial, through submitit)."
        ),
    )
    body: str = Field(
        DEFAULT_BODY,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description=(
            "The trial function, 'module:attr': body(TrialSpec, on_step) -> [EvalRecord]. The default "
            "trains with the recipe and evaluates; tests and benchmarks plug in cheaper ones."
        ),
    )
    timeout_s: float | None = Field(
        None, gt=0, description="Fail a trial that runs longer than this; None means no limit."
    )
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads per trial; None lets torch choose."
    )
    workers: int | Literal["auto"] = Field(
        1,
        description=(
            "Trials at once on this machine: the sweep starts workers-1 more worker processes on "
            "its study. 'auto': floor(GPUs / gpus_per_trial) with GPUs, else floor(cores / "
            "(processes_per_trial x threads)); each worker's trials get their own GPUs."
        ),
    )
    heartbeat_s: float = Field(
        30.0, gt=0, description="How often a worker marks its running trial as alive."
    )
    stale_after_s: float = Field(
        600.0,
        gt=0,
        description="A running trial of another machine with no heartbeat for this long is marked failed.",
    )


class ReplicateSpec(StrictModel):
    """Seeds per configuration. ``replicates: 3`` is short for ``{count: 3}``: seeds ``seed``,
    ``seed + 1``, ``seed + 2``; ``replicates: {seeds: [0, 7, 9]}`` names them."""

    count: int = Field(1, ge=1, description="Seeds per configuration: seed, seed + 1, ...")
    seeds: list[int] | None = Field(
        None, min_length=1, description="The seeds themselves, in place of count."
    )
    aggregate: Literal["median", "mean"] = Field(
        "median", description="How the replicates' objectives become the one value Optuna sees."
    )
    min_complete: int | None = Field(
        None,
        ge=1,
        description="Replicates that must complete, or the configuration fails; None: a majority.",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"count": data} if isinstance(data, int) and not isinstance(data, bool) else data

    @model_validator(mode="after")
    def _consistent(self) -> ReplicateSpec:
        if self.seeds is not None:
            if len(set(self.seeds)) != len(self.seeds):
                raise ValueError("seeds: list each seed once")
            if "count" in self.model_fields_set and self.count != len(self.seeds):
                raise ValueError("give count or seeds, not both")
        if self.min_complete is not None and self.min_complete > self.size:
            raise ValueError(f"min_complete {self.min_complete} exceeds the {self.size} replicates")
        return self

    @property
    def size(self) -> int:
        return len(self.seeds) if self.seeds is not None else self.count

    def seeds_from(self, base: int) -> list[int]:
        return list(self.seeds) if self.seeds is not None else [base + k for k in range(self.count)]

    @property
    def required(self) -> int:
        return self.min_complete if self.min_complete is not None else self.size // 2 + 1


class SweepSpec(StrictModel):
    name: str = Field(
        description="Names the study, the MLflow experiment and the default output runs/<name>."
    )
    model: str = Field(MODEL, min_length=1, description="'tiny' or a checkpoint directory.")
    recipe: str = Field(
        "lightningrl",
        description="Trainer recipe of the trials: a name in trainers/ or a YAML path.",
    )
    train_base: str | None = Field(
        None,
        description=(
            "A trainer recipe under every trial's and baseline's recipe: the scale they all train "
            "at, e.g. lightningrl-tiny (tiny's settings). None: the TrainConfig defaults."
        ),
    )
    task: str = Field("synthetic", min_length=1, description="Training task (its prompts).")
    data_dir: Path | None = Field(
        None, description="Data directory for training and eval tasks; None uses PARETO_BENCH_DATA."
    )
    device: DeviceName = Field(
        "auto",
        description=f"Where every trial trains and evaluates: {DEVICE_HELP}",
    )
    dtype: DtypeName = Field(
        "auto",
        description=(
            f"Compute dtype of every trial's training and evaluation: {DTYPE_HELP} "
            "Trained weights and optimizer state stay float32."
        ),
    )
    train: dict[str, Any] = Field(
        default_factory=dict,
        description="TrainConfig fields shared by every trial and baseline (nested or dotted keys).",
    )
    eval: EvalSpec = Field(description="Evaluation of every checkpoint.")
    objectives: str | list[str] = Field(
        "accuracy_tpf",
        description=(
            "Maximised objectives: a preset ('accuracy_tpf', 'aup') or keys '{task}/{metric}' with "
            "metric in accuracy, tpf, aup, hypervolume and task an eval task or 'mean'."
        ),
    )
    sampler: SamplerSpec = Field(default_factory=SamplerSpec, description="The Optuna sampler.")
    trials: int = Field(8, ge=0, description="Search trials (baselines come on top).")
    seed: int = Field(0, description="Sampler seed and every trial's training seed.")
    replicates: ReplicateSpec = Field(
        default_factory=ReplicateSpec,
        description=(
            "Train and evaluate every configuration (search trial and baseline) once per seed: "
            "3, or {seeds: [...], aggregate: median|mean, min_complete: N}."
        ),
    )
    search_space: dict[str, SearchParam] = Field(
        default_factory=dict, description="Dotted TrainConfig field -> Optuna distribution."
    )
    baselines: list[str] = Field(
        default_factory=lambda: list(BASELINES),
        description="'base' (the untrained model at every threshold) and trainer recipes, e.g. grpo.",
    )
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec, description="How trials run.")
    experiment: str | None = Field(None, description="MLflow experiment; None uses the name.")
    retry_killed: bool = Field(
        True,
        description="Re-enqueue, once, a trial whose worker was killed (it is marked failed either way).",
    )

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError("use letters, digits, '.', '_' and '-' only, e.g. 'tiny-lr'")
        return value

    @property
    def objective_keys(self) -> list[str]:
        if isinstance(self.objectives, list):
            return list(self.objectives)
        task = self.eval.tasks[0] if len(self.eval.tasks) == 1 else MEAN_TASK
        return [f"{task}/{metric}" for metric in OBJECTIVE_PRESETS[self.objectives]]

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name

    @property
    def seeds(self) -> list[int]:
        """Every configuration's training seeds, one per replicate."""
        return self.replicates.seeds_from(self.seed)


# --------------------------------------------------------------------------- loading


def load_spec(path: str | Path, overrides: Iterable[str] = ()) -> SweepSpec:
    """Read a sweep spec, apply ``--set key=value`` overrides, validate everything."""
    path = Path(path)
    data = read_yaml(path)
    for text in overrides:
        set_override(data, *parse_override(text))
    spec = build(SweepSpec, data, str(path))
    check_spec(spec, str(path))
    return spec


def set_override(data: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key, where a segment may itself be a dotted key (``search_space`` entries
    are named by trainer paths): at each level the longest existing key wins, and under
    ``search_space`` the trainer path is everything up to a SearchParam field name."""
    parts = key.split(".")
    node = data
    while True:
        name, parts = _next_key(node, parts)
        if not parts:
            node[name] = value
            return
        child = node.get(name)
        if child is None:
            child = node[name] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {name!r} is a value, not a section")
        if name == "search_space":
            _set_search_param(child, parts, value)
            return
        node = child


def _set_search_param(space: dict[str, Any], parts: list[str], value: Any) -> None:
    param, field = _split_param_path(space, parts)
    if field is None:
        space[param] = value
        return
    entry = space.setdefault(param, {})
    if isinstance(entry, list):  # the list shorthand, expanded so that one field can change
        entry = space[param] = {"type": "categorical", "choices": entry}
    entry[field] = value


def _next_key(node: dict[str, Any], parts: list[str]) -> tuple[str, list[str]]:
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        if name in node:
            return name, parts[cut:]
    return parts[0], parts[1:]


def _split_param_path(space: dict[str, Any], parts: list[str]) -> tuple[str, str | None]:
    joined = ".".join(parts)
    if joined in space:
        return joined, None
    if len(parts) > 1 and parts[-1] in SearchParam.model_fields:
        return ".".join(parts[:-1]), parts[-1]
    return joined, None


def _check_executor_options(executor: Any, spec: ExecutorSpec, source: str) -> None:
    """The executor's own options, checked by the model it declares."""
    options = executor.Options
    try:
        options.model_validate(spec.model_extra or {})
    except ValidationError as e:
        error = e.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        known = ", ".join(options.model_fields) or "none"
        raise ConfigError(
            f"{source}: field 'executor.{field}': {error['msg']} (executor {spec.name!r} takes: {known})"
        ) from None


def check_spec(spec: SweepSpec, source: str) -> None:
    """Cross-field checks that pydantic cannot express, each naming the field and the fix."""
    from pareto_bench.sweep.executors import EXECUTORS
    from pareto_bench.sweep.samplers import SAMPLERS

    fields = trainer_fields()
    for key in spec.search_space:
        _check_trainer_path(key, fields, f"{source}: search_space key {key!r}")
    for key in flatten(spec.train):
        _check_trainer_path(key, fields, f"{source}: train key {key!r}")
    reserved = {"model", "task", "seed", "data_dir", "device", "dtype", "out_dir", "name"}
    for key in (*spec.search_space, *flatten(spec.train)):
        if key in reserved:
            raise ConfigError(
                f"{source}: {key!r} is set by the sweep itself; use the spec's top-level "
                f"'{key}' field instead of train/search_space"
            )
    from pareto_bench.tasks import TASKS

    _check_registered(TASKS, spec.task, f"{source}: field 'task'")
    for index, task in enumerate(spec.eval.tasks):
        _check_registered(TASKS, task, f"{source}: field 'eval.tasks.{index}'")
    _check_registered(SAMPLERS, spec.sampler.name, f"{source}: field 'sampler.name'")
    _check_registered(EXECUTORS, spec.executor.name, f"{source}: field 'executor.name'")
    _check_executor_options(EXECUTORS.get(spec.executor.name), spec.executor, source)
    if isinstance(spec.objectives, str) and spec.objectives not in OBJECTIVE_PRESETS:
        raise ConfigError(
            f"{source}: field 'objectives': unknown preset {spec.objectives!r}; use one of "
            f"{', '.join(OBJECTIVE_PRESETS)} or a list of '{{task}}/{{metric}}' keys"
        )
    for key in spec.objective_keys:
        _check_objective(key, spec.eval.tasks, source)
    if len(set(spec.objective_keys)) != len(spec.objective_keys):
        raise ConfigError(f"{source}: field 'objectives' lists a key twice; list each once")
    if len(set(spec.baselines)) != len(spec.baselines):
        raise ConfigError(f"{source}: field 'baselines' lists a name twice; list each once")
    if spec.sampler.name == "grid":
        for key, param in spec.search_space.items():
            if param.grid() is None:
                raise ConfigError(
                    f"{source}: search_space key {key!r}: the grid sampler needs a 'step' "
                    "(or 'choices') for a float parameter"
                )


def spec_warnings(spec: SweepSpec) -> list[str]:
    """Things that are allowed but probably not meant, for the dry run and the sweep's start."""
    from pareto_bench.tasks.base import training_task_name

    warnings = []
    if training_task_name(spec.task) == spec.task and spec.task in spec.eval.tasks:
        warnings.append(
            f"training task {spec.task!r} has no '{spec.task}-train' split: trials train on the "
            "problems they are evaluated on"
        )
    return warnings


def _check_trainer_path(key: str, fields: list[str], where: str) -> None:
    if key in fields:
        return
    close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
    fix = (
        f"did you mean {close[0]!r}?"
        if close
        else "use a dotted TrainConfig field such as reward.tpf_weight"
    )
    raise ConfigError(f"{where} is not a trainer field; {fix}")


def _check_registered(registry: Any, name: str, where: str) -> None:
    if name not in registry:
        close = difflib.get_close_matches(name, registry.names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"{where}: unknown {registry.kind} {name!r}; {hint}valid: {', '.join(registry.names())}"
        )


def _check_objective(key: str, tasks: list[str], source: str) -> None:
    task, sep, metric = key.rpartition("/")
    valid_tasks = [*tasks, MEAN_TASK]
    if not sep or metric not in OBJECTIVE_METRICS:
        raise ConfigError(
            f"{source}: field 'objectives': {key!r} is not '{{task}}/{{metric}}' with metric in "
            f"{', '.join(OBJECTIVE_METRICS)}; for example '{tasks[0]}/accuracy'"
        )
    if task not in valid_tasks:
        raise ConfigError(
            f"{source}: field 'objectives': {key!r} names task {task!r}, which is not evaluated; "
            f"use one of {', '.join(valid_tasks)} or add it to eval.tasks"
        )


def trainer_fields() -> list[str]:
    """Every dotted leaf field of ``TrainConfig`` (the valid search-space keys)."""
    from pareto_bench.rl.config import TrainConfig

    return _leaf_fields(TrainConfig)


def _leaf_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    out: list[str] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.extend(_leaf_fields(annotation, f"{prefix}{name}."))
        else:
            out.append(f"{prefix}{name}")
    return out


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c.d": 2}`` -> ``{"a.b": 1, "c.d": 2}``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flatten`: dotted keys -> nested mappings."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


# --------------------------------------------------------------------------- file lookup


def resolve_spec_path(name_or_path: str | Path) -> Path:
    return resolve_named_file(name_or_path, "sweeps", what="sweep spec")
