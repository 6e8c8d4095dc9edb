"""Model families: how a checkpoint's ``model_type`` is run. A family is one module of this
package that registers itself in ``MODELS``; ``load_model`` looks the type up there."""

from __future__ import annotations

from dataclasses import dataclass

from pareto_bench.core.registry import Registry


@dataclass(frozen=True)
class ModelFamily:
    """The ``transformers`` classes that run a checkpoint, as lazy ``"module:Attr"`` strings
    (so that listing the families imports no model code)."""

    config_class: str
    model_class: str


MODELS: Registry[ModelFamily] = Registry("model family", discover="pareto_bench.dllm.families")
