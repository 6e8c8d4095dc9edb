"""Typed configs from YAML plus ``key=value`` overrides.

Every config is a pydantic model with ``extra="forbid"``: the model is the single source of
defaults, and every field carries help text (``Field(description=...)``). Errors name the
file, the dotted field and the fix; an unknown key names the closest valid one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config could not be read or validated. The message is one line a user can act on."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def parse_override(text: str) -> tuple[str, Any]:
    """``"loss.nll_weight=0.2"`` -> ``("loss.nll_weight", 0.2)``; values are parsed as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"--set {text!r}: expected key=value, for example --set loss.nll_weight=0.2"
        )
    return key.strip(), yaml.safe_load(value) if value.strip() else ""


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of fields")
    return data


def build(model: type[M], data: dict[str, Any], source: str = "config") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(model, e, source)) from None


def load(
    model: type[M],
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    base: dict[str, Any] | None = None,
) -> M:
    """Read ``path`` (optional) over ``base``, apply ``--set`` overrides, validate."""
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        data = deep_merge(data, read_yaml(path))
    for text in overrides:
        set_dotted(data, *parse_override(text))
    return build(model, data, str(path) if path else "config")


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The valid field names at ``loc`` (the parent of an unknown key)."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = fields[part].annotation
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields else []


def describe_validation_error(model: type[BaseModel], error: ValidationError, source: str) -> str:
    messages = []
    for item in error.errors():
        loc = tuple(item["loc"])
        dotted = ".".join(str(p) for p in loc)
        if item["type"] == "extra_forbidden":
            valid = field_names(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            fix = (
                f"did you mean {'.'.join([*map(str, loc[:-1]), close[0]])!r}?"
                if close
                else f"valid keys: {', '.join(valid)}"
            )
            messages.append(f"unknown field {dotted!r}; {fix}")
        else:
            messages.append(f"field {dotted!r}: {item['msg']} (got {item.get('input')!r})")
    return f"{source}: " + "; ".join(messages)


def dump_yaml(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def _search_roots(anchor: Path | None) -> list[Path]:
    import pareto_bench

    roots = [Path.cwd()]
    if anchor is not None:
        roots += [anchor.parent, anchor.parent.parent]
    roots.append(Path(pareto_bench.__file__).resolve().parent.parent)  # a source checkout
    return list(dict.fromkeys(r.resolve() for r in roots))


def resolve_named_file(
    name_or_path: str | Path, folder: str, *, anchor: Path | None = None, what: str
) -> Path:
    """A YAML path as given, or ``<folder>/<name>.yaml`` in the cwd, beside ``anchor`` or in
    the source checkout. Raises ``FileNotFoundError`` naming every place it looked."""
    given = Path(name_or_path)
    if given.is_file():
        return given
    candidates = []
    for root in _search_roots(anchor):
        for name in (given, Path(folder) / given, Path(folder) / f"{given}.yaml"):
            candidate = name if name.is_absolute() else root / name
            if candidate.is_file():
                return candidate
            candidates.append(candidate)
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise FileNotFoundError(f"{what} {str(name_or_path)!r} not found; looked at {looked}")
