"""The README's numbers on tiny, read from the README itself: the greedy table of "What the
embedded default shows" and the base row of the RL table are what decoding the shipped model
gives, digit for digit. A README edit or a sampler change that moves one digit fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## What the embedded default shows"


def section() -> str:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return text[start:end]


def table_rows(text: str, header_start: str) -> list[list[str]]:
    """The cells of the Markdown table whose header row starts with ``header_start``."""
    lines = text.splitlines()
    (first,) = [i for i, line in enumerate(lines) if line.startswith(header_start)]
    rows = []
    for line in lines[first + 2 :]:  # past the header and its |---| line
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def readme_greedy_table() -> dict[str, tuple[str, str, str]]:
    """tau -> (valid chains, right answers, TPF), as printed."""
    rows = table_rows(section(), "| tau | valid chains |")
    return {
        tau: (chains.rstrip("%"), answers.rstrip("%"), tpf) for tau, chains, answers, tpf in rows
    }


def readme_base_row() -> tuple[str, str, dict[str, tuple[str, str]]]:
    """The RL table's y_max, the base row's AUP, and tau -> (accuracy, TPF), as printed."""
    text = section()
    (y_max,) = re.findall(r"AUP with y_max = (\d+\.\d)", text)
    (head,) = [line for line in text.splitlines() if line.startswith("| method | AUP")]
    taus = re.findall(r"tau ([\d.]+): accuracy / TPF", head)
    (base,) = [row for row in table_rows(text, "| method | AUP") if row[0] == "base"]
    pairs = [tuple(cell.split(" / ")) for cell in base[2:]]
    return y_max, base[1], dict(zip(taus, pairs, strict=True))


def test_the_readme_tables_parse() -> None:
    """Fast: the parsing itself, so that a reshaped table fails with a plain message."""
    greedy = readme_greedy_table()
    assert list(greedy) == ["0.3", "0.5", "0.7", "0.9", "0.95", "1.01"]
    y_max, aup, per_tau = readme_base_row()
    assert float(y_max) > 0 and float(aup) > 0
    assert list(per_tau) == ["0.5", "0.7", "0.9"]


@pytest.mark.slow
def test_greedy_decoding_of_the_shipped_tiny_gives_the_readme_digits() -> None:
    from pareto_bench.analysis.frontier import aup
    from pareto_bench.dllm.models import load_model
    from pareto_bench.evaluate import evaluate
    from pareto_bench.tasks.synthetic import SyntheticTask

    greedy = readme_greedy_table()
    y_max, base_aup, base = readme_base_row()
    lm = load_model("tiny", device="cpu", dtype="float32")
    records = evaluate(lm, SyntheticTask(), [float(t) for t in greedy], progress=False)
    got = {
        f"{r.threshold:g}": (
            f"{r.accuracy:.1f}",
            f"{r.extra['answer_accuracy']:.1f}",
            f"{r.tpf:.2f}",
        )
        for r in records
    }
    assert all(r.num_samples == 500 for r in records)
    assert got == greedy
    # The RL table's base row: the same decoding at its thresholds, and its AUP over them.
    assert {tau: (got[tau][0], got[tau][2]) for tau in base} == base
    points = [(r.tpf, r.accuracy) for r in records if f"{r.threshold:g}" in base]
    assert f"{aup(points, float(y_max)):.1f}" == base_aup
