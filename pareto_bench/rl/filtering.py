"""TPF-aware group filtering with dynamic sampling (LightningRL change 3).

A prompt group is dropped when all its G trajectories are wrong, or when its TPF range
``max - min`` is below delta: such a group gives no useful speed contrast. ``fill_batch`` then
keeps asking for new groups until B pass (paper Algorithm 1), up to a cap on refill rounds.
Both pieces are pure: the rollout and the group type belong to the caller.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import torch
from torch import Tensor

DropReason = Literal["all_wrong", "flat_tpf"]

G = TypeVar("G")


def drop_reason(
    correct: Sequence[bool] | Tensor,
    tpf: Sequence[float] | Tensor,
    *,
    drop_all_wrong: bool = True,
    min_tpf_range: float = 0.01,
) -> DropReason | None:
    """Why one group (its G correctness flags and TPFs) is dropped, or ``None`` to keep it.

    ``correct`` is the verifier's verdict (for code: every test passed). ``drop_all_wrong=False``
    disables the first rule and ``min_tpf_range=0`` the second; all-wrong wins when both apply.
    """
    correct = torch.as_tensor(correct, dtype=torch.bool)
    tpf = torch.as_tensor(tpf, dtype=torch.float64)
    if correct.numel() == 0 or correct.shape != tpf.shape:
        raise ValueError(
            f"a group needs as many flags as TPFs, at least one: got {correct.numel()} and {tpf.numel()}"
        )
    if drop_all_wrong and not bool(correct.any()):
        return "all_wrong"
    if float(tpf.max() - tpf.min()) < min_tpf_range:
        return "flat_tpf"
    return None


@dataclass
class FillResult(Generic[G]):
    """What ``fill_batch`` collected and what it cost."""

    groups: list[G]  # the kept groups in sampling order; batch_size of them unless hit_cap
    rounds: int  # rollout rounds used, the first one included
    num_sampled: int  # groups sampled over all rounds
    num_filtered: int  # groups dropped by the filter
    reasons: Counter[str] = field(default_factory=Counter)  # drop reason -> count
    hit_cap: bool = False  # the refill cap ran out before the batch was full

    @property
    def refill_rounds(self) -> int:
        return self.rounds - 1

    @property
    def filtered_fraction(self) -> float:
        return self.num_filtered / self.num_sampled if self.num_sampled else 0.0


def fill_batch(
    sample_round: Callable[[int], Sequence[G]],
    batch_size: int,
    *,
    max_refill_rounds: int,
    reason: Callable[[G], str | None],
) -> FillResult[G]:
    """Collect ``batch_size`` kept groups from successive rollout rounds.

    ``sample_round(n)`` rolls out n new prompt groups (n = the groups still missing) and returns
    them; ``reason(group)`` says why a group is dropped, ``None`` to keep it (for example
    ``lambda g: drop_reason(g.correct, g.tpf)``; ``lambda g: None`` disables filtering). After the
    first round at most ``max_refill_rounds`` more are run. If the batch is still short, the result
    holds fewer groups (possibly none) and ``hit_cap`` is set. Kept groups beyond ``batch_size`` (a
    round that returned more than asked) are left out and not counted as filtered.
    """
    if batch_size < 1 or max_refill_rounds < 0:
        raise ValueError(
            f"need batch_size >= 1 and max_refill_rounds >= 0, got {batch_size} and {max_refill_rounds}"
        )
    result: FillResult[G] = FillResult(groups=[], rounds=0, num_sampled=0, num_filtered=0)
    while len(result.groups) < batch_size and result.rounds <= max_refill_rounds:
        result.rounds += 1
        for group in sample_round(batch_size - len(result.groups)):
            result.num_sampled += 1
            why = reason(group)
            if why is not None:
                result.num_filtered += 1
                result.reasons[why] += 1
            elif len(result.groups) < batch_size:
                result.groups.append(group)
    result.hit_cap = len(result.groups) < batch_size
    return result
