"""``pareto-bench ui``: an ``mlflow server`` on 127.0.0.1 for a sweep's tracking store."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pareto_bench.core.files import SWEEP_JSON
from pareto_bench.core.schema import ConfigError
from pareto_bench.sweep.outdir import SweepDir
from pareto_bench.sweep.tracker_layout import sweep_view_route, sweep_view_tags
from pareto_bench.tracking import default_tracking_uri

HOST = "127.0.0.1"
START_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class UiTarget:
    """What ``ui`` serves and opens: a tracking store and, for a sweep, its page."""

    uri: str
    sweep: str | None = None
    experiment: str | None = None
    parent_run_id: str = ""
    tasks: tuple[str, ...] = ()


def resolve_ui_target(sweep_dir: Path | None, tracking_uri: str | None) -> UiTarget:
    """The tracking URI to serve and the sweep to open."""
    info: dict[str, Any] = {}
    if sweep_dir is not None:
        info = SweepDir(Path(sweep_dir)).read_info()
        if not info:
            raise FileNotFoundError(
                f"{Path(sweep_dir) / SWEEP_JSON} not found; pass a sweep's output directory "
                "(runs/<name>) or --tracking-uri URI"
            )
    uri = tracking_uri or info.get("tracking_uri") or default_tracking_uri()
    if "://" not in uri:
        raise ConfigError(
            f"--tracking-uri {uri!r}: there is no MLflow store to serve; pass an MLflow URI"
        )
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise FileNotFoundError(
            f"no MLflow store at {uri[len('sqlite:///') :]}; run a sweep first, or pass --tracking-uri URI"
        )
    return UiTarget(
        uri,
        sweep=info.get("name"),
        experiment=info.get("experiment"),
        parent_run_id=info.get("parent_run_id") or "",
        tasks=tuple(info.get("tasks") or ()),
    )


def server_command(uri: str, port: int) -> list[str]:
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri]
    command += ["--host", HOST, "--port", str(port), "--workers", "1"]
    if uri.startswith("sqlite:///"):
        # New experiments keep their artifacts beside the database, as the sweep does.
        artifacts = Path(uri[len("sqlite:///") :]).resolve().parent / "artifacts"
        command += ["--default-artifact-root", artifacts.as_uri()]
    return command


def start_server(uri: str, port: int, *, quiet: bool = True) -> subprocess.Popen[bytes]:
    """Start ``mlflow server`` in its own process group (it forks uvicorn workers)."""
    with socket.socket() as probe:
        if probe.connect_ex((HOST, port)) == 0:
            raise ConfigError(
                f"--port {port}: something already listens on {HOST}:{port}; pick another port"
            )
    output = subprocess.DEVNULL if quiet else None
    return subprocess.Popen(
        server_command(uri, port), stdout=output, stderr=output, start_new_session=True
    )


def wait_until_up(
    proc: subprocess.Popen[bytes], base_url: str, timeout_s: float = START_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"mlflow server exited with status {proc.returncode} before it came up"
            )
        if _healthy(base_url):
            return
        time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"mlflow server did not answer on {base_url} within {timeout_s:.0f} s")


def _healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def rest(base_url: str, endpoint: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One MLflow REST call (GET with query params, or POST with a JSON body)."""
    url = f"{base_url}/api/2.0/mlflow/{endpoint}"
    if body is None:
        request = urllib.request.Request(url)
    else:
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read().decode())


def serve(target: UiTarget, *, port: int) -> None:
    """Serve the store until Ctrl-C, printing the URL of the sweep's page once it answers."""
    if target.uri.startswith(("http://", "https://")):
        print(f"MLflow UI: {target.uri}  (the store is already a server)", flush=True)
        _print_sweep_page(target.uri.rstrip("/"), target)
        return
    base_url = f"http://{HOST}:{port}"
    # A polite kill of this command must also stop the server it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    proc = start_server(target.uri, port)
    try:
        print(f"starting mlflow server for {target.uri} ...", file=sys.stderr, flush=True)
        wait_until_up(proc, base_url)
        print(f"MLflow UI: {base_url}", flush=True)
        _print_sweep_page(base_url, target)
        print("press Ctrl-C to stop", file=sys.stderr, flush=True)
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_server(proc)


def _print_sweep_page(base_url: str, target: UiTarget) -> None:
    page = _sweep_page(base_url, target)
    if page:
        print(f"sweep {target.sweep}: {base_url}/{page}", flush=True)


def _sweep_page(base_url: str, target: UiTarget) -> str | None:
    """The route of the sweep's page, its saved view written (again) first, so that a sweep
    recorded before views existed gets one too; ``None`` when the store lacks the sweep."""
    if not (target.experiment and target.parent_run_id):
        return None
    try:
        name = urllib.parse.quote(target.experiment)
        found = rest(base_url, f"experiments/get-by-name?experiment_name={name}")
        experiment_id = found["experiment"]["experiment_id"]
        tags = sweep_view_tags(
            target.sweep or target.experiment, target.parent_run_id, target.tasks
        )
        for key, value in tags.items():
            rest(
                base_url,
                "experiments/set-experiment-tag",
                {"experiment_id": experiment_id, "key": key, "value": value},
            )
    except (OSError, KeyError, ValueError):
        return None
    return sweep_view_route(experiment_id, target.parent_run_id)
