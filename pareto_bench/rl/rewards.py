"""Per-trajectory rewards and LightningRL's per-reward (decoupled) normalisation.

Each reward is normalised separately *within its prompt group* and only then summed,
``r = r_acc + w_tpf * r_tpf``, because raw rewards on different scales (+-1 against a TPF of
2-10) would let one drown the other.

Inputs are ``[num_groups, G]`` tensors, row i holding the G trajectories of prompt i:

- ``score``: the verifier's score in [0, 1]: 1/0 for maths, the pass rate for code. A
  trajectory that hit the length budget must arrive as 0 (wrong).
- ``tpf``: each trajectory's own tokens per forward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from pareto_bench.core.registry import Registry
from pareto_bench.rl.config import AccNorm, TpfNorm

Normaliser = Callable[[Tensor], Tensor]

STD_FLOOR = 1e-8


def zscore(x: Tensor, dim: int | None = -1, std_floor: float = STD_FLOOR) -> Tensor:
    """``(x - mean) / max(std, std_floor)`` along ``dim`` (``None``: over all elements), with the
    population std. A slice whose values are all equal gives exactly 0: testing the range rather
    than the std avoids dividing float rounding noise by a tiny std."""
    x = _as_float(x)
    if dim is None:
        return zscore(x.reshape(1, -1), dim=-1, std_floor=std_floor).reshape(x.shape)
    mean = x.mean(dim, keepdim=True)
    std = x.std(dim, keepdim=True, correction=0).clamp_min(std_floor)
    flat = x.amax(dim, keepdim=True) == x.amin(dim, keepdim=True)
    return torch.where(flat, torch.zeros_like(x), (x - mean) / std)


def minmax(x: Tensor, dim: int = -1) -> Tensor:
    """``(x - min) / (max - min)`` along ``dim``, in [0, 1]; 0.5 where all values are equal."""
    x = _as_float(x)
    low = x.amin(dim, keepdim=True)
    span = x.amax(dim, keepdim=True) - low
    return torch.where(span == 0, torch.full_like(x, 0.5), (x - low) / span.clamp_min(STD_FLOOR))


TPF_NORMS: Registry[Normaliser] = Registry("TPF normalisation")
ACC_NORMS: Registry[Normaliser] = Registry("accuracy normalisation")


@TPF_NORMS.register("zscore")
def _tpf_zscore(tpf: Tensor) -> Tensor:
    return zscore(tpf)


@TPF_NORMS.register("minmax")
def _tpf_minmax(tpf: Tensor) -> Tensor:
    return minmax(tpf)


@TPF_NORMS.register("raw")
def _tpf_raw(tpf: Tensor) -> Tensor:
    # The speed reward is TPF itself; tpf_weight plays the role of the coefficient.
    return _as_float(tpf).clone()


@TPF_NORMS.register("none")
def _tpf_none(tpf: Tensor) -> Tensor:
    # No speed reward at all (the same effect as tpf_weight = 0).
    return torch.zeros_like(_as_float(tpf))


@ACC_NORMS.register("plus_minus_one")
def _acc_plus_minus_one(score: Tensor) -> Tensor:
    return raw_accuracy_reward(score)


@ACC_NORMS.register("zscore")
def _acc_zscore(score: Tensor) -> Tensor:
    # A z-score is invariant to the affine map 2p - 1, so scoring the raw score is the same.
    return zscore(score)


def raw_accuracy_reward(score: Tensor) -> Tensor:
    """The paper's accuracy reward: +1 correct, -1 wrong; a code pass rate p maps to ``2p - 1``,
    so that all tests passing is +1 and none is -1, the same scale as maths."""
    return 2.0 * _as_float(score) - 1.0


def accuracy_reward(score: Tensor, norm: AccNorm = "plus_minus_one") -> Tensor:
    """The accuracy reward of each trajectory, ``[num_groups, G]`` -> ``[num_groups, G]``."""
    return ACC_NORMS.get(norm)(_check_groups(score, "score"))


def speed_reward(tpf: Tensor, norm: TpfNorm = "zscore") -> Tensor:
    """The speed reward of each trajectory, normalised within its group (before weighting)."""
    return TPF_NORMS.get(norm)(_check_groups(tpf, "tpf"))


@dataclass(frozen=True)
class Rewards:
    """Per-trajectory rewards, each ``[num_groups, G]``."""

    total: Tensor  # r = acc + tpf_weight * tpf: what the advantage normalises
    acc: Tensor  # the accuracy term as it entered the sum
    tpf: Tensor  # the speed term as it entered the sum, before tpf_weight


def combine_rewards(
    score: Tensor,
    tpf: Tensor,
    *,
    tpf_weight: float = 1.0,
    tpf_norm: TpfNorm = "zscore",
    acc_norm: AccNorm = "plus_minus_one",
    decoupled: bool = True,
) -> Rewards:
    """``r = r_acc + tpf_weight * r_tpf`` for ``[num_groups, G]`` scores and TPFs.

    ``decoupled=True`` (LightningRL) normalises each reward in its group first. ``decoupled=False``
    is the no_decoupled_norm ablation: the raw sum ``(2*score - 1) + tpf_weight * tpf``, which the
    advantage then normalises jointly; ``tpf_norm`` and ``acc_norm`` are ignored. The keyword names
    match ``RewardConfig``, so ``combine_rewards(score, tpf, **config.reward.model_dump())`` works.
    """
    score = _check_groups(score, "score")
    tpf = _check_groups(tpf, "tpf")
    if score.shape != tpf.shape:
        raise ValueError(
            f"score {tuple(score.shape)} and tpf {tuple(tpf.shape)} must have the same shape"
        )
    if decoupled:
        acc, speed = accuracy_reward(score, acc_norm), speed_reward(tpf, tpf_norm)
    else:
        acc, speed = raw_accuracy_reward(score), _as_float(tpf)
    return Rewards(total=acc + tpf_weight * speed, acc=acc, tpf=speed)


def _as_float(x: Tensor) -> Tensor:
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


def _check_groups(x: Tensor, name: str) -> Tensor:
    if x.dim() != 2:
        raise ValueError(
            f"{name} must be [num_groups, G], one row per prompt group; got shape {tuple(x.shape)}"
        )
    return x
