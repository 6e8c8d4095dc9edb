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
from pathlib import Path
from typing import Any

from pareto_bench.config import ConfigError
from pareto_bench.sweeping.outdir import SweepDir
from pareto_bench.tracking import default_tracking_uri

HOST = "127.0.0.1"
START_TIMEOUT_S = 180.0


def resolve_ui_target(sweep_dir: Path | None, tracking_uri: str | None) -> tuple[str, str | None]:
    """The tracking URI to serve and the experiment to open."""
    experiment = None
    if sweep_dir is not None:
        info = SweepDir(Path(sweep_dir)).read_info()
        if not info:
            raise FileNotFoundError(
                f"{Path(sweep_dir) / 'sweep.json'} not found; pass a sweep's output directory "
                "(runs/<name>) or --tracking-uri URI"
            )
        uri = tracking_uri or info["tracking_uri"]
        experiment = info.get("experiment")
    else:
        uri = tracking_uri or default_tracking_uri()
    if "://" not in uri:
        raise ConfigError(
            f"--tracking-uri {uri!r}: there is no MLflow store to serve; pass an MLflow URI"
        )
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise FileNotFoundError(
            f"no MLflow store at {uri[len('sqlite:///') :]}; run a sweep first, or pass --tracking-uri URI"
        )
    return uri, experiment


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


def serve(uri: str, *, port: int, experiment: str | None = None) -> None:
    """Serve ``uri`` until Ctrl-C, printing the URL once the server answers."""
    if uri.startswith(("http://", "https://")):
        print(f"MLflow UI: {uri}  (the store is already a server)", flush=True)
        return
    base_url = f"http://{HOST}:{port}"
    # A polite kill of this command must also stop the server it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    proc = start_server(uri, port)
    try:
        print(f"starting mlflow server for {uri} ...", file=sys.stderr, flush=True)
        wait_until_up(proc, base_url)
        print(f"MLflow UI: {base_url}", flush=True)
        if experiment:
            with contextlib.suppress(OSError, urllib.error.URLError, KeyError, ValueError):
                found = rest(
                    base_url,
                    f"experiments/get-by-name?experiment_name={urllib.parse.quote(experiment)}",
                )
                print(
                    f"experiment {experiment}: {base_url}/#/experiments/{found['experiment']['experiment_id']}",
                    flush=True,
                )
        print("press Ctrl-C to stop", file=sys.stderr, flush=True)
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_server(proc)
