"""``pareto-bench ui``: it serves a sweep's store on 127.0.0.1, the REST API shows the sweep's
runs and metrics, and stopping the command stops the server."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pareto_bench.sweep import SweepOptions, load_spec, run_sweep
from pareto_bench.sweep.ui import rest

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).with_name("pareto-bench"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# A port can be taken between the probe and the server's bind: then the command says so and
# exits, and another port is tried.
PORT_TAKEN = ("already listens", "exited with status")


def _start_ui(cwd: Path) -> tuple[subprocess.Popen[str], int, list[str]]:
    """``pareto-bench ui out`` on a free port, once it has printed the sweep's page."""
    for attempt in range(3):
        port = free_port()
        log = cwd / f"ui-{attempt}.err"
        with log.open("w") as err:  # a file: the server never blocks on a full stderr pipe
            ui = subprocess.Popen(
                [CLI, "ui", "out", "--port", str(port)],
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        lines: list[str] = []
        threading.Thread(target=lines.extend, args=(ui.stdout,), daemon=True).start()
        deadline = time.monotonic() + 240
        while not any(line.startswith("sweep ") for line in lines):
            if ui.poll() is not None:
                error = log.read_text()
                assert any(reason in error for reason in PORT_TAKEN), error
                break
            assert time.monotonic() < deadline, f"the UI did not come up: {lines}"
            time.sleep(0.5)
        else:
            return ui, port, lines
    raise AssertionError("three ports in a row were taken before the server could bind them")


@contextlib.contextmanager
def ui_on_a_recorded_sweep(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """Record a one-trial sweep (fake training) in ``tmp_path``, run ``pareto-bench ui`` on it
    and yield the sweep's parent run id and the lines the command printed, by their first word
    (``MLflow``, ``sweep``). On exit, stop the command and check that its server stopped."""
    spec_path = ROOT / "sweeps" / "tiny.yaml"
    overrides = [
        "executor.body=sweep_fakes:quick_body",
        "executor.name=inprocess",
        "trials=1",
        "baselines=[base]",
    ]
    result = run_sweep(
        load_spec(spec_path, overrides),
        SweepOptions(spec_path=spec_path, out_dir=tmp_path / "out", progress=False),
    )
    ui, port, lines = _start_ui(tmp_path)
    try:
        yield result.parent_run_id, {line.split()[0]: line.strip() for line in lines}
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=60)
    deadline = time.monotonic() + 30
    while listening(port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not listening(port), "stopping `pareto-bench ui` must stop the server"


@pytest.mark.slow
def test_ui_serves_the_sweeps_runs_and_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with ui_on_a_recorded_sweep(tmp_path) as (parent_run_id, printed):
        url = printed["MLflow"].split()[2]
        assert url.startswith("http://127.0.0.1:")

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
        assert by_name["tiny"]["info"]["run_id"] == parent_run_id
        trial = by_name["trial-1"]
        tags = {t["key"]: t["value"] for t in trial["data"]["tags"]}
        assert tags["mlflow.parentRunId"] == parent_run_id
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

        # The printed page is the sweep's saved view, which the experiment holds as a tag.
        page = printed["sweep"].split()[2]
        assert page.startswith(f"{url}/#/experiments/{experiment['experiment_id']}/runs?")
        assert f"viewStateShareKey={parent_run_id}" in page
        experiment_tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
        view = json.loads(experiment_tags[f"mlflow.sharedViewState.{parent_run_id}"])
        state = json.loads(view["state"])
        assert parent_run_id in state["searchFilter"]
        charts = {c["metricKey"]: c for c in state["compareRunCharts"]}
        assert charts["synthetic/accuracy"]["selectedXAxisMetricKey"] == "synthetic/tpf"


def _chromium() -> Any:
    """Headless Chromium through Debian's chromedriver, or a skip that names what is missing."""
    driver = shutil.which("chromedriver")
    if driver is None:
        pytest.skip("no headless Chromium: install Debian's chromium and chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("no headless Chromium: selenium is not installed (the dev extra)")
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1600,1000")
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.mark.slow
def test_the_printed_url_shows_the_trials_and_their_frontiers_in_a_browser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a user sees: the URL that ``ui`` prints, loaded in a real browser, lists the sweep's
    trial and baseline and draws, from the runs' metrics, each run's accuracy against TPF and
    their AUPs. The screenshot goes to the test's temporary directory."""
    from mlflow import MlflowClient
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    monkeypatch.chdir(tmp_path)
    browser = _chromium()
    try:
        with ui_on_a_recorded_sweep(tmp_path) as (parent_run_id, printed):
            browser.get(printed["sweep"].split()[2])

            def page_shows_the_sweep(driver: Any) -> bool:
                text = driver.find_element(By.TAG_NAME, "body").text
                plots = driver.execute_script(PLOT_DATA)
                return "trial-1" in text and len(plots) >= 2 and all(p["data"] for p in plots)

            WebDriverWait(browser, 120, poll_frequency=1).until(page_shows_the_sweep)
            text = browser.find_element(By.TAG_NAME, "body").text
            plots = browser.execute_script(PLOT_DATA)
            browser.save_screenshot(str(tmp_path / "mlflow-sweep-page.png"))
    finally:
        browser.quit()
    assert "Frontiers" in text and "tiny: frontiers" in text
    assert {"base", "trial-1", "synthetic/accuracy", "synthetic/aup"} <= set(text.split())
    assert "tiny" not in text.split("Run Name")[1].split()[:8]  # the parent is not a row

    # What the charts draw, against what the runs logged.
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs(
        [client.get_run(parent_run_id).info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
    )
    assert {r.info.run_name for r in runs} == {"base", "trial-1"}

    def history(run_id: str, key: str) -> list[float]:
        return [
            m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        ]

    (curves,) = [p for p in plots if p["xTitle"] == "synthetic/tpf"]
    for run in runs:
        logged = sorted(
            zip(
                history(run.info.run_id, "synthetic/tpf"),
                history(run.info.run_id, "synthetic/accuracy"),
                strict=True,
            )
        )
        traces = [t for t in curves["data"] if t["name"] == run.info.run_name]
        assert traces, f"no curve for {run.info.run_name}"
        for trace in traces:  # TPF on x, accuracy on y: a point per threshold
            points = sorted(zip(trace["x"], trace["y"], strict=True))
            assert len(points) == len(logged), run.info.run_name
            for point, expected in zip(points, logged, strict=True):
                assert point == pytest.approx(expected), run.info.run_name
    (aup,) = [p for p in plots if p["data"][0]["type"] == "bar"]
    (bars,) = aup["data"]
    drawn = dict(zip(bars["y"], bars["x"], strict=True))  # horizontal bars: run id -> AUP
    assert drawn == pytest.approx({r.info.run_id: r.data.metrics["synthetic/aup"] for r in runs})


# Every Plotly chart on the page: its x-axis title and its traces' names, types and points.
PLOT_DATA = """
return Array.from(document.querySelectorAll('.js-plotly-plot')).map(plot => ({
  xTitle: plot.layout && plot.layout.xaxis && plot.layout.xaxis.title
    ? plot.layout.xaxis.title.text : null,
  data: (plot.data || []).map(t => ({
    name: t.name, type: t.type, x: Array.from(t.x || []), y: Array.from(t.y || [])
  }))
}));
"""


def test_ui_without_a_store_says_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run(
        [CLI, "ui", str(tmp_path)], capture_output=True, text=True, timeout=120, env={**os.environ}
    )
    assert result.returncode == 2
    assert "sweep.json not found" in result.stderr and "--tracking-uri" in result.stderr
