"""The LightningRL loss: clipped surrogate + beta * KL + w_nll * NLL, each with its own reduction.

Token tensors are ``[B, T]``: B trajectories (group-major, see ``pareto_bench.rl``) by T response
positions, with ``mask`` true on real response tokens and false on padding. ``logp`` is the
policy's log-probability of each committed token under the block-diffusion likelihood (with
gradient); ``logp_old`` the rollout policy's and ``logp_ref`` the frozen reference's (no gradient).

Reductions: ``seq`` averages each sequence over its tokens, then over sequences (every sequence
weighs the same); ``tok`` averages over all tokens of the batch (long sequences weigh more).
Sequences without tokens are left out of both, and an empty selection gives a zero that keeps the
graph, so ``backward`` always works.

Micro-batches: given the whole batch's ``Normalizers``, each reduction divides a micro-batch's
sum by the whole batch's count, so the micro-batches' losses (and gradients) add up to the
whole batch's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor

from pareto_bench.core.registry import Registry
from pareto_bench.rl.config import KlEstimator, Reduction

LOG_RATIO_CLIP = 10.0  # |log rho| and |logp - logp_ref| are clipped here so exp() stays finite

REDUCTIONS: Registry[Callable[[Tensor, Tensor], Tensor]] = Registry("reduction")
KL_ESTIMATORS: Registry[Callable[[Tensor], Tensor]] = Registry("KL estimator")


@REDUCTIONS.register("tok")
def token_mean(values: Tensor, mask: Tensor, count: float | None = None) -> Tensor:
    """Mean of ``values`` over every masked-in token of the batch (of ``count`` tokens if given)."""
    weights = mask.to(values.dtype)
    return (values * weights).sum() / (weights.sum() if count is None else count).clamp_min(1.0)


@REDUCTIONS.register("seq")
def sequence_mean(values: Tensor, mask: Tensor, count: float | None = None) -> Tensor:
    """Mean over each sequence's masked-in tokens, then over the sequences that have any
    (``count`` of them if given)."""
    weights = mask.to(values.dtype)
    counts = weights.sum(-1)
    per_sequence = (values * weights).sum(-1) / counts.clamp_min(1.0)
    present = (counts > 0).to(values.dtype)
    return (per_sequence * present).sum() / (present.sum() if count is None else count).clamp_min(
        1.0
    )


@dataclass(frozen=True)
class Normalizers:
    """Token and sequence counts of a whole batch, the denominators of its reductions."""

    tokens: Tensor
    sequences: Tensor
    correct_tokens: Tensor
    correct_sequences: Tensor

    @classmethod
    def of(cls, mask: Tensor, correct: Tensor) -> Self:
        mask = mask.to(torch.bool)
        on_correct = mask & correct.to(torch.bool).reshape(-1, 1)
        return cls(
            tokens=mask.sum().float(),
            sequences=mask.any(-1).sum().float(),
            correct_tokens=on_correct.sum().float(),
            correct_sequences=on_correct.any(-1).sum().float(),
        )

    def count(self, mode: Reduction, *, correct_only: bool = False) -> Tensor:
        if mode == "tok":
            return self.correct_tokens if correct_only else self.tokens
        return self.correct_sequences if correct_only else self.sequences


def reduce(values: Tensor, mask: Tensor, mode: Reduction, count: Tensor | None = None) -> Tensor:
    """``[B, T]`` per-token values -> a scalar, with the ``seq`` or ``tok`` reduction; ``count``
    is the denominator (the whole batch's tokens or sequences), by default this batch's own."""
    if values.shape != mask.shape:
        raise ValueError(
            f"values {tuple(values.shape)} and mask {tuple(mask.shape)} must both be [B, T]"
        )
    return REDUCTIONS.get(mode)(values, mask, count)


def log_ratio(logp: Tensor, logp_old: Tensor, clip: float = LOG_RATIO_CLIP) -> Tensor:
    """``logp - logp_old`` clipped to ``[-clip, clip]``."""
    return (logp - logp_old).clamp(-clip, clip)


def ratio(logp: Tensor, logp_old: Tensor) -> Tensor:
    """The importance ratio ``rho = exp(clip(logp - logp_old, +-10))``."""
    return log_ratio(logp, logp_old).exp()


def clipped_surrogate(
    logp: Tensor, logp_old: Tensor, advantages: Tensor, *, eps: float = 0.2, eps_high: float = 0.2
) -> tuple[Tensor, Tensor]:
    """Per-token policy loss ``-min(rho*A, clip(rho, 1-eps, 1+eps_high)*A)`` and a bool tensor
    that is true where the clip binds (the clipped term is the smaller one, so no gradient flows):
    ``rho > 1+eps_high`` with ``A > 0``, or ``rho < 1-eps`` with ``A < 0``."""
    rho = ratio(logp, logp_old)
    unclipped = rho * advantages
    clipped = rho.clamp(1.0 - eps, 1.0 + eps_high) * advantages
    binds = ((rho > 1.0 + eps_high) & (advantages > 0)) | ((rho < 1.0 - eps) & (advantages < 0))
    return -torch.minimum(unclipped, clipped), binds


@KL_ESTIMATORS.register("k1")
def kl_k1(d: Tensor) -> Tensor:
    return d


@KL_ESTIMATORS.register("k2")
def kl_k2(d: Tensor) -> Tensor:
    return 0.5 * d.square()


@KL_ESTIMATORS.register("k3")
def kl_k3(d: Tensor) -> Tensor:
    # Unbiased and never negative: with x = p_ref / p = exp(-d), x - 1 - log x >= 0.
    return torch.expm1(-d) + d


def kl_estimate(logp: Tensor, logp_ref: Tensor, estimator: KlEstimator = "k3") -> Tensor:
    """Per-token KL estimate to the reference with ``d = logp - logp_ref`` (clipped to +-10):
    k1 ``d``, k2 ``d^2 / 2``, k3 ``exp(-d) - 1 + d``."""
    return KL_ESTIMATORS.get(estimator)(log_ratio(logp, logp_ref))


def nll_on_correct(
    logp: Tensor,
    mask: Tensor,
    correct: Tensor,
    reduction: Reduction = "tok",
    count: Tensor | None = None,
) -> Tensor:
    """``-mean(logp)`` over the tokens of the trajectories the verifier marked correct.

    ``correct`` is one bool per sequence (``[B]``), the verdict itself, not "reward >= 0": with
    normalised rewards a wrong but fast trajectory can have a positive reward. Zero (with graph)
    when no trajectory is correct.
    """
    correct = correct.to(torch.bool).reshape(-1)
    if correct.shape[0] != logp.shape[0]:
        raise ValueError(f"{correct.shape[0]} correctness flags for {logp.shape[0]} sequences")
    return reduce(-logp, mask.to(torch.bool) & correct.unsqueeze(-1), reduction, count)


@dataclass(frozen=True)
class LossTerms:
    """Scalar tensors; ``loss`` carries the graph, the rest are for logging."""

    loss: Tensor  # policy_loss + kl_beta * kl + nll_weight * nll
    policy_loss: Tensor
    kl: Tensor  # the unweighted KL estimate
    nll: Tensor  # the unweighted NLL on correct trajectories
    clip_fraction: Tensor  # share of response tokens where the clip binds


def lightningrl_loss(
    logp: Tensor,
    logp_old: Tensor,
    logp_ref: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    correct: Tensor,
    *,
    eps: float = 0.2,
    eps_high: float = 0.2,
    kl_beta: float = 0.01,
    kl_estimator: KlEstimator = "k3",
    nll_weight: float = 0.1,
    policy_reduction: Reduction = "seq",
    kl_reduction: Reduction = "tok",
    nll_reduction: Reduction = "tok",
    normalizers: Normalizers | None = None,
) -> LossTerms:
    """Policy + ``kl_beta`` * KL + ``nll_weight`` * NLL on ``[B, T]`` token log-probs.

    ``advantages`` is ``[B]`` (one per trajectory, broadcast here) or already ``[B, T]``;
    ``correct`` is ``[B]`` bool. ``logp_ref`` may be ``None`` when ``kl_beta`` is 0.
    ``normalizers`` are the whole batch's when these rows are one micro-batch of it.
    """
    if logp.dim() != 2 or logp.shape != mask.shape:
        raise ValueError(
            f"logp {tuple(logp.shape)} and mask {tuple(mask.shape)} must both be [B, T]"
        )
    mask = mask.to(torch.bool)
    if advantages.dim() == 1 and advantages.shape[0] == logp.shape[0]:
        advantages = advantages.unsqueeze(-1).expand_as(logp)
    elif advantages.shape != logp.shape:
        raise ValueError(
            f"advantages {tuple(advantages.shape)} must be [B] or [B, T] like logp {tuple(logp.shape)}; "
            "flatten [num_groups, G] advantages with .reshape(-1)"
        )
    advantages = advantages.to(logp.dtype)
    norm = normalizers or Normalizers.of(mask, correct)

    per_token, binds = clipped_surrogate(
        logp, logp_old.detach(), advantages, eps=eps, eps_high=eps_high
    )
    policy_loss = reduce(per_token, mask, policy_reduction, norm.count(policy_reduction))

    if logp_ref is None:
        if kl_beta != 0:
            raise ValueError("kl_beta > 0 needs the reference log-probs logp_ref")
        kl = logp.new_zeros(())
    else:
        kl = reduce(
            kl_estimate(logp, logp_ref.detach(), kl_estimator),
            mask,
            kl_reduction,
            norm.count(kl_reduction),
        )

    nll = nll_on_correct(
        logp, mask, correct, nll_reduction, norm.count(nll_reduction, correct_only=True)
    )
    loss = policy_loss + kl_beta * kl + nll_weight * nll
    clip_fraction = token_mean(binds.to(logp.dtype), mask, norm.tokens).detach()
    return LossTerms(
        loss=loss, policy_loss=policy_loss, kl=kl, nll=nll, clip_fraction=clip_fraction
    )
