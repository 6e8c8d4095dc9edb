"""Crashes and concurrency, through the real CLI in separate processes (with the fake trial
body of tests/sweep_fakes.py): SIGKILL mid-trial then resume; two workers on one study, on a
journal file and on a PostgreSQL server the test starts itself."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from pareto_bench.core.records import TrialRecord, read_jsonl
from pareto_bench.sweep.study import process_alive
from pareto_bench.tracking import PARENT_TAG

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "sweeps" / "tiny.yaml"
CLI = str(Path(sys.executable).with_name("pareto-bench"))
# One worker per sweep process: these tests start the extra workers themselves.
FAKE = [
    "--set", "executor.body=sweep_fakes:quick_body",
    "--set", "executor.name=subprocess",
    "--set", "executor.workers=1",
]  # fmt: skip


def sweep_command(out: Path, *extra: str) -> list[str]:
    return [
        CLI,
        "sweep",
        str(ROOT / "sweeps" / "tiny.yaml"),
        "--out",
        str(out),
        "--no-progress",
        *FAKE,
        *extra,
    ]


def env(tmp_path: Path, step_s: float) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT / "tests"),
        "PB_FAKE_STEP_S": str(step_s),
        "PB_FAKE_STARTED": str(tmp_path / "started"),
    }


def start(command: list[str], cwd: Path, env: dict[str, str], name: str) -> subprocess.Popen[str]:
    """A sweep in the background, its stdout and stderr going to ``cwd/name.out`` and
    ``cwd/name.err``: files, not pipes, so that it never blocks on output nobody reads."""
    with (cwd / f"{name}.out").open("w") as out, (cwd / f"{name}.err").open("w") as err:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err, text=True)


def finished(proc: subprocess.Popen[str], cwd: Path, name: str, timeout: float):
    """Wait for a process from ``start`` and return what it printed."""
    proc.wait(timeout=timeout)
    out, err = ((cwd / f"{name}.{kind}").read_text() for kind in ("out", "err"))
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def starts(tmp_path: Path) -> Counter[int | str]:
    """How many times each trial number (or replicate, ``<number>-seed<seed>``) began running."""
    folder = tmp_path / "started"
    if not folder.is_dir():
        return Counter()
    return Counter(
        {
            int(p.stem) if p.stem.isdigit() else p.stem: len(p.read_text().split())
            for p in folder.glob("*.started")
        }
    )


def steps_logged(out: Path, number: int) -> int:
    """Training steps trial ``number`` has written: it is mid-training once there is one."""
    path = out / "trials" / str(number) / "train.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def journal_study(out: Path) -> optuna.Study:
    backend = optuna.storages.journal.JournalFileBackend(str(out / "study.journal"))
    return optuna.load_study(study_name="tiny", storage=optuna.storages.JournalStorage(backend))


def last_rows(out: Path) -> dict[int, TrialRecord]:
    return {r.number: r for r in read_jsonl(out / "trials.jsonl", TrialRecord)}


@pytest.mark.slow
def test_sigkill_mid_trial_then_rerun_resumes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = sweep_command(out, "--trials", "3", "--set", "baselines=[base]")
    # Slow steps, so that the kill lands in the middle of trial 2's training.
    first = start(command, tmp_path, env(tmp_path, step_s=1.0), "first")
    wait_for(lambda: steps_logged(out, 2) >= 1, 240, "trial 2 to log a training step")
    first.send_signal(signal.SIGKILL)
    first.wait()
    trial_pid = int((tmp_path / "started" / "2.started").read_text().split()[0])
    wait_for(
        lambda: not process_alive(trial_pid),
        10,
        "the orphaned trial process to die with its worker",
    )

    before = last_rows(out)
    assert before[0].state == before[1].state == "COMPLETE" and before[2].state == "RUNNING"
    killed_run = before[2].mlflow_run_id
    assert (
        MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db").get_run(killed_run).info.status
        == "RUNNING"
    )

    rerun = subprocess.run(
        command,
        cwd=tmp_path,
        env=env(tmp_path, step_s=0.0),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr

    rows = last_rows(out)
    # No finished trial is lost or re-run; the killed one is FAIL; its retry and the rest complete.
    assert {n: rows[n].state for n in rows} == {
        0: "COMPLETE",
        1: "COMPLETE",
        2: "FAIL",
        3: "COMPLETE",
        4: "COMPLETE",
    }
    assert (
        rows[0].mlflow_run_id == before[0].mlflow_run_id
        and rows[1].mlflow_run_id == before[1].mlflow_run_id
    )
    assert starts(tmp_path)[0] == starts(tmp_path)[1] == 1
    assert rows[2].failure_reason.startswith("killed: its worker process")
    retry = rows[4]
    assert retry.params == rows[2].params and retry.kind == "trial"
    # The new process draws no point that the first one trained or queued for its retry.
    assert_distinct_configurations(rows)
    study = journal_study(out)
    assert [t.state.name for t in study.trials] == [
        "COMPLETE",
        "COMPLETE",
        "FAIL",
        "COMPLETE",
        "COMPLETE",
    ]
    assert study.trials[4].user_attrs["retry_of"] == 2
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    killed = client.get_run(killed_run)
    assert (
        killed.info.status == "FAILED"
        and killed.data.tags["failure_reason"] == rows[2].failure_reason
    )
    assert "marked FAILED" in rerun.stderr


@pytest.mark.slow
def test_sigterm_marks_the_running_trial_failed_and_rerun_retries_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = sweep_command(out, "--trials", "2", "--set", "baselines=[]")
    first = start(command, tmp_path, env(tmp_path, step_s=1.0), "first")
    wait_for(lambda: steps_logged(out, 0) >= 1, 240, "trial 0 to log a training step")
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=60)
    trial_pid = int((tmp_path / "started" / "0.started").read_text().split()[0])
    wait_for(lambda: not process_alive(trial_pid), 10, "the trial process to be stopped")
    row = last_rows(out)[0]
    assert row.state == "FAIL" and row.failure_reason.startswith("interrupted")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    assert client.get_run(row.mlflow_run_id).info.status == "KILLED"

    rerun = subprocess.run(
        command,
        cwd=tmp_path,
        env=env(tmp_path, step_s=0.0),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr
    rows = last_rows(out)
    assert {n: r.state for n, r in rows.items()} == {0: "FAIL", 1: "COMPLETE", 2: "COMPLETE"}
    assert rows[2].params == row.params  # the interrupted trial, run again


def _check_shared_study(
    tmp_path: Path, rows: dict[int, TrialRecord], study: optuna.Study, expected: int, uri: str
) -> None:
    # Every trial ran exactly once, in exactly one process; none is lost, none duplicated.
    assert sorted(rows) == list(range(expected))
    assert all(r.state == "COMPLETE" for r in rows.values())
    assert starts(tmp_path) == Counter({n: 1 for n in range(expected)})
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * expected
    history = Counter(
        (r.number, r.state) for r in read_jsonl(tmp_path / "out" / "trials.jsonl", TrialRecord)
    )
    assert all(history[(n, "COMPLETE")] == 1 for n in range(expected))
    assert_distinct_configurations(rows)
    client = MlflowClient(uri)
    parents = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.kind = 'sweep'"
    )
    assert len(parents) == 1
    children = client.search_runs(
        [parents[0].info.experiment_id], f"tags.`{PARENT_TAG}` = '{parents[0].info.run_id}'"
    )
    assert len(children) == expected and all(c.info.status == "FINISHED" for c in children)


def assert_distinct_configurations(rows: dict[int, TrialRecord]) -> None:
    """No configuration was trained twice: the completed searched trials' parameters differ."""
    points = [
        tuple(sorted(r.params.items()))
        for r in rows.values()
        if r.kind == "trial" and r.state == "COMPLETE"
    ]
    assert len(set(points)) == len(points), points


def _run_workers(
    tmp_path: Path, extra: list[str], count: int = 2, trials: int = 6
) -> list[subprocess.CompletedProcess[str]]:
    command = sweep_command(
        tmp_path / "out", "--trials", str(trials), "--set", "baselines=[base]", "--worker", *extra
    )
    names = [f"worker-{i}" for i in range(count)]
    workers = [start(command, tmp_path, env(tmp_path, step_s=0.3), name) for name in names]
    results = [
        finished(worker, tmp_path, name, 400) for worker, name in zip(workers, names, strict=True)
    ]
    for result in results:
        assert result.returncode == 0, result.stderr
    return results


def _ran(result: subprocess.CompletedProcess[str]) -> int:
    return int(result.stdout.split("this process ran ")[1].split(")")[0])


@pytest.mark.slow
def test_two_workers_share_one_journal_study(tmp_path: Path) -> None:
    results = _run_workers(tmp_path, [])
    assert sum(_ran(r) for r in results) == 7 and all(_ran(r) >= 1 for r in results)
    _check_shared_study(
        tmp_path,
        last_rows(tmp_path / "out"),
        journal_study(tmp_path / "out"),
        7,
        f"sqlite:///{tmp_path}/mlruns/mlflow.db",
    )


@pytest.mark.slow
def test_four_workers_train_distinct_configurations(tmp_path: Path) -> None:
    """Four processes on one study, each with the spec's seed: every trial's point is drawn
    from its own number's seed, so no two workers repeat one another's start-up points."""
    results = _run_workers(tmp_path, [], count=4, trials=8)
    assert sum(_ran(r) for r in results) == 9
    rows = last_rows(tmp_path / "out")
    states = {n: (r.kind, r.state, r.failure_reason) for n, r in rows.items()}
    assert sum(r.kind == "trial" and r.state == "COMPLETE" for r in rows.values()) == 8, states
    assert_distinct_configurations(rows)


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on loopback (Debian's `postgresql` package)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl; Debian package `postgresql`)")
    pytest.importorskip(
        "psycopg2", reason="psycopg2 is not installed (the dev extra has psycopg2-binary)"
    )
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="pareto-bench-pg-"))
    data = base / "data"
    if as_user:
        shutil.chown(base, "postgres")
    try:
        subprocess.run(
            [*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        for _ in range(3):  # a port taken between the probe and the server's bind: another one
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            options = f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off"
            started = subprocess.run(
                [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "log"),
                 "-w", "start"],
                capture_output=True,
                timeout=120,
            )  # fmt: skip
            if started.returncode == 0:
                break
            log = (base / "log").read_text() if (base / "log").is_file() else ""
            assert "Address already in use" in log, started.stderr.decode() + log
        else:
            raise AssertionError("three ports in a row were taken before PostgreSQL bound them")
        try:
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_one_postgres_study(tmp_path: Path, postgres_url: str) -> None:
    results = _run_workers(tmp_path, ["--storage", postgres_url])
    assert sum(_ran(r) for r in results) == 7 and all(_ran(r) >= 1 for r in results)
    assert not (tmp_path / "out" / "study.journal").exists()  # the study lives in PostgreSQL
    study = optuna.load_study(study_name="tiny", storage=postgres_url)
    _check_shared_study(
        tmp_path, last_rows(tmp_path / "out"), study, 7, f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    )


def test_a_trial_whose_remote_worker_went_silent_is_failed_and_retried(tmp_path: Path) -> None:
    """A RUNNING trial owned by a worker on another machine, whose heartbeat is older than
    executor.stale_after_s, is failed with the reason and re-enqueued when a worker looks."""
    from pareto_bench.sweep import SweepOptions, load_spec, run_sweep
    from pareto_bench.sweep.study import HEARTBEAT, WORKER

    overrides = [
        "executor.body=sweep_fakes:quick_body",
        "executor.name=inprocess",
        "baselines=[]",
        "executor.stale_after_s=5",
    ]
    out = tmp_path / "out"

    def sweep(trials: int) -> None:
        spec = load_spec(TINY, [*overrides, f"trials={trials}"])
        options = SweepOptions(spec_path=TINY, out_dir=out, progress=False, tracking_uri="none")
        run_sweep(spec, options)

    sweep(1)
    study = journal_study(out)
    silent = study.ask()  # what a worker elsewhere left behind: a running trial
    silent.set_user_attr(WORKER, {"host": "elsewhere", "pid": 4242, "start": "0"})
    silent.set_user_attr(HEARTBEAT, time.time() - 60)
    sweep(2)
    rows = [r for r in read_jsonl(out / "trials.jsonl", TrialRecord) if r.number == silent.number]
    assert rows[-1].state == "FAIL"
    assert rows[-1].failure_reason.startswith("killed: no heartbeat from elsewhere:4242 for 6")
    states = [t.state.name for t in journal_study(out).trials]
    assert states.count("COMPLETE") == 2 and states[silent.number] == "FAIL"
