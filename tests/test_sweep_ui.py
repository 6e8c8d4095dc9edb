"""``pareto-bench ui``: it serves a sweep's store on 127.0.0.1, the REST API shows the sweep's
runs and metrics, and stopping the command stops the server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from pareto_bench.sweep import SweepOptions, load_spec, run_sweep
from pareto_bench.sweeping.ui import rest

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).with_name("pareto-bench"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_ui_serves_the_sweeps_runs_and_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec_path = ROOT / "sweeps" / "tiny.yaml"
    overrides = [
        "executor.body=sweep_fakes:quick_body",
        "executor.name=inprocess",
        "trials=1",
        "baselines=[base]",
    ]
    result = run_sweep(
        load_spec(spec_path, overrides),
        SweepOptions(spec_path=spec_path, out_dir=Path("out"), progress=False),
    )

    port = free_port()
    ui = subprocess.Popen(
        [CLI, "ui", "out", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(ui.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not any(line.startswith("MLflow UI: ") for line in lines):
            assert ui.poll() is None, ui.stderr.read() if ui.stderr else ""
            assert time.monotonic() < deadline, "the UI did not come up"
            time.sleep(0.5)
        url = next(line for line in lines if line.startswith("MLflow UI: ")).split()[2]
        assert url == f"http://127.0.0.1:{port}"

        experiment = rest(
            url, f"experiments/get-by-name?experiment_name={urllib.parse.quote('tiny')}"
        )["experiment"]
        runs = rest(
            url,
            "runs/search",
            {"experiment_ids": [experiment["experiment_id"]], "max_results": 100},
        )["runs"]
        by_name = {r["info"]["run_name"]: r for r in runs}
        assert set(by_name) == {"tiny", "base", "trial-1"}
        assert by_name["tiny"]["info"]["run_id"] == result.parent_run_id
        trial = by_name["trial-1"]
        tags = {t["key"]: t["value"] for t in trial["data"]["tags"]}
        assert tags["mlflow.parentRunId"] == result.parent_run_id
        metrics = {m["key"] for m in trial["data"]["metrics"]}
        assert {
            "synthetic/accuracy",
            "synthetic/tpf",
            "synthetic/aup",
            "synthetic/accuracy_at_op",
            "train/loss",
        } <= metrics
        history = rest(
            url,
            f"metrics/get-history?run_id={trial['info']['run_id']}&metric_key={urllib.parse.quote('synthetic/tpf')}",
        )["metrics"]
        assert sorted(m["step"] for m in history) == [0, 1, 2]  # one point per threshold
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=60)
    deadline = time.monotonic() + 30
    while listening(port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not listening(port), "stopping `pareto-bench ui` must stop the server"


def test_ui_without_a_store_says_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run(
        [CLI, "ui", str(tmp_path)], capture_output=True, text=True, timeout=120, env={**os.environ}
    )
    assert result.returncode == 2
    assert "sweep.json not found" in result.stderr and "--tracking-uri" in result.stderr
