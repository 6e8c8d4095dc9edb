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
ARTIFACTS = ROOT / "test-artifacts"


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
    for _ in range(3):
        port = free_port()
        ui = subprocess.Popen(
            [CLI, "ui", "out", "--port", str(port)],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []
        threading.Thread(target=lines.extend, args=(ui.stdout,), daemon=True).start()
        deadline = time.monotonic() + 240
        while not any(line.startswith("sweep ") for line in lines):
            if ui.poll() is not None:
                error = ui.stderr.read() if ui.stderr else ""
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
    trial and baseline and draws their accuracy-vs-TPF chart. The screenshot is kept under
    ``test-artifacts/``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    monkeypatch.chdir(tmp_path)
    browser = _chromium()
    try:
        with ui_on_a_recorded_sweep(tmp_path) as (_, printed):
            browser.get(printed["sweep"].split()[2])

            def page_shows_the_sweep(driver: Any) -> bool:
                text = driver.find_element(By.TAG_NAME, "body").text
                plots = driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
                return "trial-1" in text and "synthetic/tpf" in text and len(plots) >= 2

            WebDriverWait(browser, 120, poll_frequency=1).until(page_shows_the_sweep)
            text = browser.find_element(By.TAG_NAME, "body").text
            ARTIFACTS.mkdir(exist_ok=True)
            browser.save_screenshot(str(ARTIFACTS / "mlflow-sweep-page.png"))
    finally:
        browser.quit()
    assert "Frontiers" in text and "tiny: frontiers" in text
    assert {"base", "trial-1", "synthetic/accuracy", "synthetic/aup"} <= set(text.split())
    assert "tiny" not in text.split("Run Name")[1].split()[:8]  # the parent is not a row


def test_ui_without_a_store_says_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run(
        [CLI, "ui", str(tmp_path)], capture_output=True, text=True, timeout=120, env={**os.environ}
    )
    assert result.returncode == 2
    assert "sweep.json not found" in result.stderr and "--tracking-uri" in result.stderr
