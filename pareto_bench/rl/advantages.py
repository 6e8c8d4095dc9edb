"""Rewards -> advantages, and their broadcast to response tokens.

Advantages are one number per trajectory (``[num_groups, G]`` in, the same shape out); every
token of a trajectory shares it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pareto_bench.core.registry import Registry
from pareto_bench.rl.config import AdvantageMode
from pareto_bench.rl.rewards import zscore

ADVANTAGES: Registry[Callable[[Tensor], Tensor]] = Registry("advantage mode")


@ADVANTAGES.register("batch")
def batch_advantages(rewards: Tensor) -> Tensor:
    """Paper Eq. 7: the z-score of r over every kept trajectory of the batch (std floored at 1e-8)."""
    return zscore(rewards, dim=None)


@ADVANTAGES.register("group")
def group_advantages(rewards: Tensor) -> Tensor:
    """The z-score of r within each prompt group (GRPO's usual form)."""
    return zscore(rewards, dim=-1)


@ADVANTAGES.register("group_centered")
def group_centered_advantages(rewards: Tensor) -> Tensor:
    """r minus its group mean, without dividing by the std (keeps the reward's scale)."""
    return rewards - rewards.mean(-1, keepdim=True)


def compute_advantages(rewards: Tensor, mode: AdvantageMode = "batch") -> Tensor:
    """``[num_groups, G]`` total rewards -> ``[num_groups, G]`` advantages."""
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [num_groups, G]; got shape {tuple(rewards.shape)}")
    if not rewards.is_floating_point():
        rewards = rewards.to(torch.get_default_dtype())
    return ADVANTAGES.get(mode)(rewards)
