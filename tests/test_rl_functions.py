"""The pure RL functions against values worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import get_args

import pytest
import torch

from pareto_bench.rl import config as rl_config
from pareto_bench.rl.config import FilterConfig, LossConfig, RewardConfig
from pareto_bench.rl.step import (
    accuracy_reward,
    clipped_surrogate,
    combine_rewards,
    compute_advantages,
    drop_reason,
    fill_batch,
    kl_estimate,
    lightningrl_loss,
    log_ratio,
    minmax,
    nll_on_correct,
    ratio,
    reduce,
    speed_reward,
    zscore,
)

LN2 = math.log(2.0)


def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def close(actual: torch.Tensor, expected: torch.Tensor | list, atol: float = 1e-9) -> None:
    torch.testing.assert_close(
        actual, torch.as_tensor(expected, dtype=actual.dtype), atol=atol, rtol=0
    )


# --------------------------------------------------------------------------- config choices


@pytest.mark.parametrize(
    ("choices", "apply"),
    [
        (rl_config.TpfNorm, lambda c: speed_reward(t([1.0, 2.0]), c)),
        (rl_config.AccNorm, lambda c: accuracy_reward(t([1.0, 0.0]), c)),
        (rl_config.AdvantageMode, lambda c: compute_advantages(t([1.0, 2.0]), c)),
        (rl_config.KlEstimator, lambda c: kl_estimate(t([-0.5]), t([-0.7]), c)),
        (
            rl_config.Reduction,
            lambda c: reduce(t([1.0, 2.0]), torch.ones(1, 2, dtype=torch.bool), c),
        ),
    ],
)
def test_every_config_choice_is_implemented_and_no_other(choices, apply) -> None:
    for choice in get_args(choices):
        assert torch.isfinite(apply(choice)).all(), choice
    with pytest.raises(ValueError, match="expected"):
        apply("unknown")


# --------------------------------------------------------------------------- rewards


def test_zscore_uses_population_std() -> None:
    # [1, 2, 3]: mean 2, population variance (1 + 0 + 1) / 3 = 2/3, so z = +-1 / sqrt(2/3) = +-sqrt(3/2).
    close(zscore(t([1.0, 2.0, 3.0])), [[-math.sqrt(1.5), 0.0, math.sqrt(1.5)]])
    # [2, 2, 2, 6]: mean 3, deviations -1, -1, -1, 3, variance 12 / 4 = 3.
    s3 = math.sqrt(3.0)
    close(zscore(t([2.0, 2.0, 2.0, 6.0])), [[-1 / s3, -1 / s3, -1 / s3, 3 / s3]])


def test_zscore_of_equal_values_is_exactly_zero_despite_rounding() -> None:
    # In float32 the mean of eight copies of 2.7 is off by ~2e-7, and so is the std: a
    # ``(x - mean) / max(std, 1e-8)`` would turn that noise into z-scores of +-1 (even +-24 per
    # row). Testing the range instead gives exact zeros.
    x = torch.full((2, 8), 2.7, dtype=torch.float32)
    assert torch.equal(zscore(x), torch.zeros_like(x))
    assert torch.equal(zscore(x, dim=None), torch.zeros_like(x))


def test_minmax_maps_to_unit_interval_and_half_when_flat() -> None:
    # [2, 3, 6]: min 2, span 4 -> [0, 0.25, 1]; an all-equal row -> 0.5 each.
    close(minmax(t([2.0, 3.0, 6.0], [5.0, 5.0, 5.0])), [[0.0, 0.25, 1.0], [0.5, 0.5, 0.5]])


def test_speed_reward_every_norm() -> None:
    tpf = t([2.0, 4.0], [3.0, 3.0])
    close(speed_reward(tpf, "zscore"), [[-1.0, 1.0], [0.0, 0.0]])  # mean 3, std 1; flat row -> 0
    close(speed_reward(tpf, "minmax"), [[0.0, 1.0], [0.5, 0.5]])
    close(speed_reward(tpf, "raw"), [[2.0, 4.0], [3.0, 3.0]])
    close(speed_reward(tpf, "none"), [[0.0, 0.0], [0.0, 0.0]])


def test_accuracy_reward_plus_minus_one_and_code_pass_rate() -> None:
    close(accuracy_reward(t([1.0, 0.0], [1.0, 1.0]), "plus_minus_one"), [[1.0, -1.0], [1.0, 1.0]])
    # Code: pass rate p -> 2p - 1, so 0.75 -> 0.5, 0.25 -> -0.5.
    close(accuracy_reward(t([0.75, 0.25]), "plus_minus_one"), [[0.5, -0.5]])
    # Booleans from the verifier are accepted as scores.
    close(accuracy_reward(torch.tensor([[True, False]]), "plus_minus_one"), [[1.0, -1.0]])


def test_accuracy_reward_zscore_within_group() -> None:
    # [1, 0]: mean 0.5, std 0.5 -> [1, -1]; an all-correct group has no contrast -> 0.
    close(accuracy_reward(t([1.0, 0.0], [1.0, 1.0]), "zscore"), [[1.0, -1.0], [0.0, 0.0]])


def test_single_trajectory_groups() -> None:
    one = t([3.0], [5.0])
    close(speed_reward(one, "zscore"), [[0.0], [0.0]])
    close(speed_reward(one, "minmax"), [[0.5], [0.5]])
    close(accuracy_reward(t([1.0], [0.0]), "zscore"), [[0.0], [0.0]])


def test_combine_rewards_decoupled() -> None:
    score = t([1.0, 0.0], [0.0, 0.0])
    tpf = t([2.0, 4.0], [3.0, 5.0])
    r = combine_rewards(score, tpf, RewardConfig(tpf_weight=0.5))
    # acc = [[1, -1], [-1, -1]]; tpf z = [[-1, 1], [-1, 1]]; total = acc + 0.5 * tpf z.
    close(r.acc, [[1.0, -1.0], [-1.0, -1.0]])
    close(r.tpf, [[-1.0, 1.0], [-1.0, 1.0]])
    close(r.total, [[0.5, -0.5], [-1.5, -0.5]])


def test_combine_rewards_not_decoupled_is_the_raw_sum() -> None:
    score = t([1.0, 0.0], [0.0, 0.0])
    tpf = t([2.0, 4.0], [3.0, 5.0])
    # (2*score - 1) + 0.5 * tpf = [[1 + 1, -1 + 2], [-1 + 1.5, -1 + 2.5]]; norms are ignored.
    config = RewardConfig(tpf_weight=0.5, tpf_norm="minmax", acc_norm="zscore", decoupled=False)
    r = combine_rewards(score, tpf, config)
    close(r.total, [[2.0, 1.0], [0.5, 1.5]])
    close(r.tpf, [[2.0, 4.0], [3.0, 5.0]])


def test_zero_tpf_weight_is_accuracy_only() -> None:
    score = t([1.0, 0.0])
    r = combine_rewards(score, t([2.0, 9.0]), RewardConfig(tpf_weight=0.0))
    close(r.total, [[1.0, -1.0]])


def test_combine_rewards_defaults_are_the_reward_config_s() -> None:
    r = combine_rewards(t([1.0, 0.0]), t([2.0, 4.0]), RewardConfig())
    close(r.total, [[0.0, 0.0]])  # [1, -1] + 1.0 * [-1, 1]


def test_reward_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match=r"\[num_groups, G\]"):
        combine_rewards(torch.ones(4), torch.ones(4), RewardConfig())
    with pytest.raises(ValueError, match="same shape"):
        combine_rewards(torch.ones(2, 3), torch.ones(3, 2), RewardConfig())


# --------------------------------------------------------------------------- advantages

REWARDS = t([0.5, -0.5], [-1.5, -0.5])


def test_batch_advantages_zscore_over_all_trajectories() -> None:
    # mean -0.5; deviations [1, 0, -1, 0]; population variance 2/4 -> std sqrt(0.5).
    s = math.sqrt(2.0)
    close(compute_advantages(REWARDS, "batch"), [[s, 0.0], [-s, 0.0]])


def test_group_advantages_zscore_within_rows() -> None:
    # Row [0.5, -0.5]: mean 0, std 0.5 -> [1, -1]; row [-1.5, -0.5]: mean -1, std 0.5 -> [-1, 1].
    close(compute_advantages(REWARDS, "group"), [[1.0, -1.0], [-1.0, 1.0]])


def test_group_centered_advantages_keep_the_scale() -> None:
    close(compute_advantages(REWARDS, "group_centered"), [[0.5, -0.5], [-0.5, 0.5]])


def test_batch_advantages_have_zero_mean_unit_std() -> None:
    rewards = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    adv = compute_advantages(rewards, "batch")
    assert abs(float(adv.mean())) < 1e-12
    assert abs(float(adv.std(correction=0)) - 1.0) < 1e-12


def test_advantages_of_equal_rewards_are_zero() -> None:
    flat = torch.full((3, 4), 0.7)
    for mode in ("batch", "group", "group_centered"):
        assert torch.allclose(compute_advantages(flat, mode), torch.zeros(3, 4), atol=1e-7)


def test_batch_std_is_floored() -> None:
    # [0, 1e-10]: std 5e-11 < 1e-8, so the deviations +-5e-11 are divided by 1e-8 -> +-0.005.
    close(compute_advantages(t([0.0, 1e-10]), "batch"), [[-0.005, 0.005]], atol=1e-12)


# --------------------------------------------------------------------------- filtering


def test_drop_reason_rules() -> None:
    assert drop_reason([False, False], [1.0, 2.0], FilterConfig()) == "all_wrong"
    assert (
        drop_reason([True, False], [2.0, 2.005], FilterConfig()) == "flat_tpf"
    )  # range 0.005 < 0.01
    assert drop_reason([True, False], [2.0, 2.0], FilterConfig()) == "flat_tpf"
    assert drop_reason([True, False], [2.0, 2.02], FilterConfig()) is None
    assert (
        drop_reason([True, True], [2.0, 3.0], FilterConfig()) is None
    )  # all correct is kept: TPF still contrasts
    assert (
        drop_reason([False, False], [2.0, 2.0], FilterConfig()) == "all_wrong"
    )  # all-wrong wins when both apply


def test_drop_reason_switches() -> None:
    assert drop_reason([False, False], [1.0, 2.0], FilterConfig(drop_all_wrong=False)) is None
    assert drop_reason([True, False], [2.0, 2.0], FilterConfig(min_tpf_range=0.0)) is None
    assert drop_reason([True, False], [2.0, 2.3], FilterConfig(min_tpf_range=0.5)) == "flat_tpf"
    assert drop_reason([False, False], [2.0, 2.0], FilterConfig(enabled=False)) is None


@dataclass
class Group:
    name: str
    correct: list[bool]
    tpf: list[float]


GOOD = ([True, False], [2.0, 3.0])
ALL_WRONG = ([False, False], [2.0, 3.0])
FLAT = ([True, False], [2.0, 2.0])


class ScriptedRollout:
    """Returns the scripted groups round by round and records how many were asked for."""

    def __init__(self, rounds: list[list[tuple[list[bool], list[float]]]]) -> None:
        self.rounds = rounds
        self.asked: list[int] = []

    def __call__(self, n: int) -> list[Group]:
        index = len(self.asked)
        self.asked.append(n)
        script = self.rounds[min(index, len(self.rounds) - 1)]
        return [Group(f"r{index}g{i}", c, f) for i, (c, f) in enumerate(script)]


def reason(group: Group) -> str | None:
    return drop_reason(group.correct, group.tpf, FilterConfig())


def test_fill_batch_refills_until_full() -> None:
    rollout = ScriptedRollout([[GOOD, ALL_WRONG, GOOD, FLAT], [ALL_WRONG, GOOD], [GOOD]])
    result = fill_batch(rollout, 4, max_refill_rounds=5, reason=reason)
    assert rollout.asked == [4, 2, 1]  # each round asks for the groups still missing
    assert [g.name for g in result.groups] == ["r0g0", "r0g2", "r1g1", "r2g0"]
    assert (result.rounds, result.refill_rounds, result.hit_cap) == (3, 2, False)
    assert (result.num_sampled, result.num_filtered) == (7, 3)
    assert result.filtered_fraction == pytest.approx(3 / 7)
    assert result.reasons == {"all_wrong": 2, "flat_tpf": 1}


def test_fill_batch_reports_the_cap() -> None:
    rollout = ScriptedRollout([[GOOD, ALL_WRONG, FLAT], [ALL_WRONG, FLAT]])
    result = fill_batch(rollout, 3, max_refill_rounds=2, reason=reason)
    assert rollout.asked == [3, 2, 2]  # the first round plus two refills, then it stops
    assert result.hit_cap and result.rounds == 3 and result.refill_rounds == 2
    assert [g.name for g in result.groups] == ["r0g0"]
    assert result.num_filtered == 6 and result.filtered_fraction == pytest.approx(6 / 7)


def test_fill_batch_can_end_empty() -> None:
    result = fill_batch(ScriptedRollout([[ALL_WRONG]]), 2, max_refill_rounds=0, reason=reason)
    assert result.groups == [] and result.hit_cap and result.rounds == 1
    assert result.filtered_fraction == 1.0


def test_fill_batch_without_filter_takes_the_first_round() -> None:
    rollout = ScriptedRollout([[ALL_WRONG, FLAT]])
    result = fill_batch(rollout, 2, max_refill_rounds=3, reason=lambda g: None)
    assert rollout.asked == [2] and len(result.groups) == 2 and result.filtered_fraction == 0.0


def test_fill_batch_leaves_out_surplus_groups() -> None:
    result = fill_batch(
        ScriptedRollout([[GOOD, GOOD, GOOD]]), 2, max_refill_rounds=0, reason=reason
    )
    assert [g.name for g in result.groups] == ["r0g0", "r0g1"] and not result.hit_cap
    assert result.num_filtered == 0


# --------------------------------------------------------------------------- reductions


def test_token_and_sequence_reductions() -> None:
    values = t([1.0, 2.0, 3.0], [4.0, 100.0, 100.0])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    close(reduce(values, mask, "tok"), 2.5)  # (1 + 2 + 3 + 4) / 4
    close(reduce(values, mask, "seq"), 3.0)  # mean(2, 4)


def test_reductions_skip_empty_sequences_and_survive_an_empty_batch() -> None:
    values = t([1.0, 2.0], [9.0, 9.0])
    mask = torch.tensor([[1, 1], [0, 0]], dtype=torch.bool)
    close(reduce(values, mask, "seq"), 1.5)  # the empty second row does not count as a 0
    close(reduce(values, mask, "tok"), 1.5)
    leaf = values.clone().requires_grad_()
    for mode in ("seq", "tok"):
        out = reduce(leaf, torch.zeros_like(mask), mode)
        assert float(out.detach()) == 0.0
        (grad,) = torch.autograd.grad(out, leaf)
        assert torch.equal(grad, torch.zeros_like(leaf))


# --------------------------------------------------------------------------- policy loss


def test_log_ratio_and_ratio_are_clipped() -> None:
    logp, old = t([-1.0, -30.0, -1.0]), t([-31.0, -1.0, -1.5])
    close(log_ratio(logp, old), [[10.0, -10.0, 0.5]])
    close(ratio(logp, old), [[math.exp(10.0), math.exp(-10.0), math.exp(0.5)]])


def test_clipped_surrogate_hand_table() -> None:
    # eps = eps_high = 0.2, so the ratio is clipped to [0.8, 1.2]:
    #   rho 1.5, A +1: min(1.5, 1.2) = 1.2   -> loss -1.2, clip binds
    #   rho 1.5, A -1: min(-1.5, -1.2) = -1.5 -> loss  1.5
    #   rho 0.5, A +1: min(0.5, 0.8) = 0.5   -> loss -0.5
    #   rho 0.5, A -1: min(-0.5, -0.8) = -0.8 -> loss 0.8, clip binds
    #   rho 1.0, A +2: -> loss -2
    rho = torch.tensor([[1.5, 1.5, 0.5, 0.5, 1.0]], dtype=torch.float64)
    adv = t([1.0, -1.0, 1.0, -1.0, 2.0])
    logp = rho.log().requires_grad_()
    loss, binds = clipped_surrogate(logp, torch.zeros_like(logp), adv)
    close(loss, [[-1.2, 1.5, -0.5, 0.8, -2.0]])
    assert binds.tolist() == [[True, False, False, True, False]]
    # d(-rho * A)/dlogp = -rho * A where unclipped; 0 where the clip binds.
    (grad,) = torch.autograd.grad(loss.sum(), logp)
    close(grad, [[0.0, 1.5, -0.5, 0.0, -2.0]])


def test_clipped_surrogate_asymmetric_upper_clip() -> None:
    # rho 1.25 with A +1: inside 1 + eps_high = 1.28 -> unclipped, loss -1.25; with 1.2 -> -1.2.
    logp = t([math.log(1.25)])
    old = torch.zeros_like(logp)
    close(clipped_surrogate(logp, old, t([1.0]), eps=0.2, eps_high=0.28)[0], [[-1.25]])
    close(clipped_surrogate(logp, old, t([1.0]), eps=0.2, eps_high=0.2)[0], [[-1.2]])


# --------------------------------------------------------------------------- KL


def test_kl_estimators_at_d_ln2() -> None:
    # d = logp - logp_ref = ln 2: k1 = ln 2, k2 = (ln 2)^2 / 2, k3 = e^{-ln 2} - 1 + ln 2 = ln 2 - 0.5.
    logp, ref = t([-1.0]), t([-1.0 - LN2])
    close(kl_estimate(logp, ref, "k1"), [[LN2]])
    close(kl_estimate(logp, ref, "k2"), [[LN2**2 / 2]])
    close(kl_estimate(logp, ref, "k3"), [[LN2 - 0.5]])
    # d = -ln 2: k3 = 2 - 1 - ln 2.
    close(kl_estimate(ref, logp, "k3"), [[1.0 - LN2]])


def test_kl_is_zero_at_the_reference_and_k3_never_negative() -> None:
    logp = torch.linspace(-8, 0, 9, dtype=torch.float64).reshape(1, -1)
    for name in ("k1", "k2", "k3"):
        assert torch.equal(kl_estimate(logp, logp, name), torch.zeros_like(logp))
    d = torch.linspace(-12, 12, 49, dtype=torch.float64).reshape(1, -1)
    k3 = kl_estimate(d, torch.zeros_like(d), "k3")
    assert bool((k3 >= 0).all()) and bool(torch.isfinite(k3).all())


# --------------------------------------------------------------------------- NLL


def test_nll_uses_only_verifier_correct_sequences() -> None:
    logp = t([-1.0, -2.0, -3.0], [-4.0, -50.0, -50.0], [-7.0, -7.0, -7.0]).requires_grad_()
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 1]], dtype=torch.bool)
    correct = torch.tensor([True, True, False])
    close(nll_on_correct(logp, mask, correct, "tok"), 2.5)  # (1 + 2 + 3 + 4) / 4
    close(nll_on_correct(logp, mask, correct, "seq"), 3.0)  # mean(2, 4)
    (grad,) = torch.autograd.grad(nll_on_correct(logp, mask, correct, "tok"), logp)
    close(grad, [[-0.25, -0.25, -0.25], [-0.25, 0.0, 0.0], [0.0, 0.0, 0.0]])


def test_nll_is_zero_without_correct_sequences() -> None:
    logp = t([-1.0, -2.0]).requires_grad_()
    out = nll_on_correct(logp, torch.ones(1, 2, dtype=torch.bool), torch.tensor([False]), "tok")
    assert float(out.detach()) == 0.0
    out.backward()  # the graph survives


# --------------------------------------------------------------------------- combined loss


def combined_case() -> dict[str, torch.Tensor]:
    # Two sequences: 3 tokens (correct, A = +1) and 1 token (wrong, A = -1); padding holds junk.
    logp = t([-1.0, -1.0, -1.0], [-2.0, 99.0, 99.0]).requires_grad_()
    return {
        "logp": logp,
        "logp_old": logp.detach().clone(),  # on-policy: rho = 1
        "logp_ref": logp.detach() - LN2,  # d = ln 2 on every token
        "advantages": torch.tensor([1.0, -1.0], dtype=torch.float64),
        "mask": torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool),
        "correct": torch.tensor([True, False]),
    }


def test_lightningrl_loss_hand_values_and_gradient() -> None:
    case = combined_case()
    terms = lightningrl_loss(**case, terms=LossConfig())
    # policy (seq): per token -rho*A -> sequence means -1 and +1 -> 0.
    # kl (tok, k3): ln 2 - 0.5 on every token.  nll (tok, correct only): mean(1, 1, 1) = 1.
    close(terms.policy_loss, 0.0)
    close(terms.kl, LN2 - 0.5)
    close(terms.nll, 1.0)
    close(terms.clip_fraction, 0.0)
    close(terms.loss, 0.01 * (LN2 - 0.5) + 0.1 * 1.0)
    terms.loss.backward()
    # Token (0, j): policy -A/(3 tokens * 2 seqs) = -1/6; KL 0.01 * (1 - e^{-ln 2}) / 4 tokens
    # = 0.00125; NLL 0.1 * -1/3. Token (1, 0): policy +1/2, KL 0.00125, no NLL. Padding: 0.
    first = -1 / 6 + 0.00125 - 0.1 / 3
    close(case["logp"].grad, [[first, first, first], [0.5 + 0.00125, 0.0, 0.0]])


def test_lightningrl_loss_reductions_switch_per_term() -> None:
    terms = lightningrl_loss(
        **combined_case(), terms=LossConfig(policy_reduction="tok", nll_reduction="seq")
    )
    close(terms.policy_loss, -0.5)  # (-1 - 1 - 1 + 1) / 4 tokens
    close(terms.nll, 1.0)  # one correct sequence with mean 1
    case = combined_case()
    case["logp_ref"] = case["logp"].detach() - torch.tensor(
        [[0.0, 0.0, 0.0], [LN2, 0.0, 0.0]], dtype=torch.float64
    )
    close(lightningrl_loss(**case, terms=LossConfig(kl_reduction="tok")).kl, (LN2 - 0.5) / 4)
    close(lightningrl_loss(**case, terms=LossConfig(kl_reduction="seq")).kl, (LN2 - 0.5) / 2)


def test_lightningrl_loss_clip_fraction_and_token_advantages() -> None:
    case = combined_case()
    case["logp_old"] = case["logp"].detach() - torch.tensor(
        [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64
    )
    # rho = e on token (0, 0) with A = +1: the upper clip binds on 1 of the 4 response tokens.
    terms = lightningrl_loss(**case, terms=LossConfig())
    close(terms.clip_fraction, 0.25)
    # [B, T] advantages give the same result as [B].
    case["advantages"] = case["advantages"].unsqueeze(-1).expand(2, 3)
    close(lightningrl_loss(**case, terms=LossConfig()).loss, terms.loss)


def test_lightningrl_loss_switches_off_terms() -> None:
    case = combined_case()
    case["logp_ref"] = None
    terms = lightningrl_loss(**case, terms=LossConfig(kl_beta=0.0, nll_weight=0.0))
    close(terms.kl, 0.0)
    close(terms.loss, terms.policy_loss)
    with pytest.raises(ValueError, match="logp_ref"):
        lightningrl_loss(**case, terms=LossConfig(kl_beta=0.01))


def test_lightningrl_loss_stays_finite_far_off_policy() -> None:
    case = combined_case()
    case["logp_old"] = case["logp"].detach() - 500.0
    case["logp_ref"] = case["logp"].detach() + 500.0
    terms = lightningrl_loss(**case, terms=LossConfig())
    assert torch.isfinite(terms.loss)
    terms.loss.backward()
    assert bool(torch.isfinite(case["logp"].grad).all())


def test_lightningrl_loss_checks_shapes() -> None:
    case = combined_case()
    case["advantages"] = torch.ones(1, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"reshape\(-1\)"):
        lightningrl_loss(**case, terms=LossConfig())
