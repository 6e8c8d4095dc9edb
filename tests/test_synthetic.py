"""The synthetic task: multi-modal trajectories, a verifier that checks the whole chain."""

from __future__ import annotations

import random

from pareto_bench.tasks import get_task
from pareto_bench.tasks.synthetic import chain_text, check_chain, random_chain, split_problems


def test_every_order_of_the_operands_is_a_valid_trajectory():
    operands = (6, 7, 1, 5)
    rng = random.Random(0)
    chains = {random_chain(operands, rng) for _ in range(200)}
    assert len(chains) > 10  # many distinct trajectories...
    assert {c.rsplit(";", 1)[1] for c in chains} == {"19"}  # ...one answer
    assert all(check_chain(operands, c).valid for c in chains)
    assert chain_text(operands) == "6+7=13,13+1=14,14+5=19;19"


def test_verifier_rejects_broken_chains_but_reports_a_right_answer():
    ops = (6, 7, 1, 5)
    broken = {
        "6+7=13,13+1=15,15+5=20;19": "wrong arithmetic",
        "6+7=13,13+1=14,14+7=21;21": "operands",
        "6+7=13,12+1=13,13+5=18;19": "continue",
        "6+7=13,13+1=14;19": "steps",
        "6+7=13,13+1=14,14+5=19": "no ';answer'",
        "6+7=13,13+1=14,14+5=19;18": "answer differs",
    }
    for response, reason in broken.items():
        check = check_chain(ops, response)
        assert not check.valid and reason in check.reason, response
    assert check_chain(ops, "6+7=13,13+1=15,15+5=20;19").answer_correct
    assert not check_chain(ops, "6+7=13,13+1=14,14+5=19;18").answer_correct


def test_held_out_problems_are_disjoint_from_training():
    train, test = split_problems()
    assert len(test) == 500 and not set(train) & set(test)
    task, train_task = get_task("synthetic"), get_task("synthetic-train")
    problems = task.load()
    assert len(problems) == 500
    verdicts = task.score(problems[:20], [p.gold for p in problems[:20]])
    assert all(v.correct and v.answer_correct for v in verdicts)
    assert {p.id for p in train_task.load()}.isdisjoint(p.id for p in problems)
