"""Training and evaluation over 2 processes (torchrun, gloo on CPU) against one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
# One group per sampler call: the same batches on 1 or 2 processes, so float32 rollouts match.
SMALL = [
    "--set", "rollout.prompts_per_step=2",
    "--set", "rollout.group_size=4",
    "--set", "rollout.batch_size=4",
    "--set", "filter.enabled=false",
    "--set", "optim.micro_batch_size=2",
    "--set", "eval_every=0",
]  # fmt: skip
TRAIN = ["train", str(ROOT / "trainers" / "lightningrl.yaml"), *SMALL]


def command(args: list[str], processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "pareto_bench", *args]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launcher, f"--nproc-per-node={processes}", "-m", "pareto_bench", *args]


def run(args: list[str], processes: int = 1, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        command(args, processes), env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def steps(out: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    return [(r["step"], r["reward"], r["accuracy"], r["tpf"], r["filtered_fraction"]) for r in rows]


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "train.jsonl").read_text().splitlines()]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoint" / "model.safetensors"))


def assert_same_run(a: Path, b: Path) -> None:
    assert steps(a) == steps(b)  # identical rollouts, rewards, accuracy and TPF
    assert losses(a) == pytest.approx(losses(b), abs=1e-6)
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=1e-6), name


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "run"
    done = run([*TRAIN, "--steps", "2", "--out", str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_train_the_same_run_as_one(one_process, tmp_path, parallel):
    out = tmp_path / parallel
    done = run([*TRAIN, "--steps", "2", "--out", str(out), "--set", f"parallel={parallel}"], 2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_run(one_process, out)
    assert done.stdout.count("checkpoint:") == 1  # only rank 0 prints


def test_a_killed_two_process_run_resumes_to_the_unbroken_run(one_process, tmp_path):
    """Killed (SIGKILL, all ranks) after its step-1 checkpoint, then resumed on 2 processes."""
    out = tmp_path / "killed"
    args = [*TRAIN, "--steps", "2", "--out", str(out), "--set", "save_every=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen(
        command([*args, "--set", "parallel=ddp"], 2),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    state = out / "checkpoint" / "trainer_state.pt"
    deadline = time.monotonic() + 180
    while not state.is_file() and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert state.is_file()
    resumed = run([*TRAIN, "--steps", "2", "--resume", str(out)], 2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(one_process, out)


def test_a_one_process_checkpoint_resumes_on_two_processes(one_process, tmp_path):
    """The optimizer state is saved whole, so a resume may change the world size."""
    out = tmp_path / "grown"
    first = run([*TRAIN, "--steps", "1", "--out", str(out)])
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run([*TRAIN, "--steps", "2", "--resume", str(out), "--set", "parallel=fsdp"], 2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(one_process, out)


def test_two_process_evaluation_equals_one_record_for_record(tmp_path):
    records = {}
    for processes in (1, 2):
        path = tmp_path / f"eval-{processes}.jsonl"
        args = ["eval", "--task", "synthetic", "--thresholds", "0.5,0.9", "--limit", "24"]
        done = run([*args, "--batch-size", "4", "--out", str(path), "--json"], processes)
        assert done.returncode == 0, done.stderr[-3000:]
        records[processes] = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[1] == records[2]
    assert [len(r["samples"]) for r in records[2]] == [24, 24]


def test_a_rank_that_raises_stops_the_job_with_its_message(tmp_path):
    script = tmp_path / "failing_rank.py"
    script.write_text(
        "import sys\n"
        "from pareto_bench.rl import trainer\n"
        "real = trainer.train_step\n"
        "def step(run, index):\n"
        "    if run.world.rank == 1 and index == 1:\n"
        "        raise RuntimeError('rank 1 fails on purpose')\n"
        "    return real(run, index)\n"
        "trainer.train_step = step\n"
        "from pareto_bench.cli import main\n"
        "sys.argv = ['pareto-bench', *sys.argv[1:]]\n"
        "main()\n"
    )
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    args = [*TRAIN, "--steps", "3", "--out", str(tmp_path / "run")]
    started = time.monotonic()
    done = subprocess.run(
        [*launcher, "--nproc-per-node=2", str(script), *args],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert done.returncode != 0
    assert "rank 1 fails on purpose" in done.stderr
    assert time.monotonic() - started < 120  # not a collective's 30-minute timeout
