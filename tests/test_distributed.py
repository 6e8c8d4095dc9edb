"""Training and evaluation over 2 processes (torchrun, gloo on CPU) against one process."""

from __future__ import annotations

import contextlib
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
PROMPTS, GROUP, MICRO = 2, 4, 3
# One group per sampler call: the same batches on 1 or 2 processes, so float32 rollouts match.
# 8 trajectories in micro-batches of 3 make 3 micro-batches: on 2 processes rank 1 has one real
# micro-batch and the padded copy of weight 0 (an uneven split).
SMALL = [
    "--set", f"rollout.prompts_per_step={PROMPTS}",
    "--set", f"rollout.group_size={GROUP}",
    "--set", f"rollout.batch_size={GROUP}",
    "--set", "filter.enabled=false",
    "--set", f"optim.micro_batch_size={MICRO}",
    "--set", "eval_every=0",
]  # fmt: skip
TRAIN = ["train", str(ROOT / "trainers" / "lightningrl.yaml"), *SMALL]
# How far two runs' updates (weights minus the initial weights) may differ, relative to the
# update's size: float32 sums in another order move it by about 1e-5 of itself; a micro-batch
# lost or counted twice moves it by far more than this.
UPDATE_RTOL = 1e-3


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


def excerpt(text: str, lines: int = 40) -> str:
    """A failure's stderr: its head (a rank's traceback comes first) and its tail (torchrun's
    summary), never only one of them."""
    rows = text.splitlines()
    if len(rows) <= 2 * lines:
        return text
    return "\n".join([*rows[:lines], f"[... {len(rows) - 2 * lines} lines ...]", *rows[-lines:]])


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (Linux's /proc), children first."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found + [d for child in found for d in descendants(child)]


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its new parent to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def steps(out: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    return [(r["step"], r["reward"], r["accuracy"], r["tpf"], r["filtered_fraction"]) for r in rows]


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "train.jsonl").read_text().splitlines()]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoint" / "model.safetensors"))


def initial_weights() -> dict[str, torch.Tensor]:
    from pareto_bench.dllm.tiny import SHIPPED_TINY

    return load_file(str(SHIPPED_TINY / "model.safetensors"))


def update_gaps(a: Path, b: Path) -> dict[str, float]:
    """Per tensor, |update_a - update_b| / |update_a| (Frobenius norms), the updates being the
    weights minus the shipped tiny's."""
    start, wa, wb = initial_weights(), weights(a), weights(b)
    assert wa.keys() == wb.keys() == start.keys()
    gaps = {}
    for name, w0 in start.items():
        ua, ub = wa[name].double() - w0.double(), wb[name].double() - w0.double()
        assert ua.norm() > 0, f"{name} did not move"
        gaps[name] = float((ua - ub).norm() / ua.norm())
    return gaps


def assert_same_run(a: Path, b: Path) -> None:
    assert steps(a) == steps(b)  # identical rollouts, rewards, accuracy and TPF
    assert losses(a) == pytest.approx(losses(b), rel=1e-4, abs=1e-7)
    gaps = update_gaps(a, b)
    worst = max(gaps, key=gaps.__getitem__)
    assert gaps[worst] < UPDATE_RTOL, (
        f"{worst}: the updates differ by {gaps[worst]:.2e} of their size"
    )


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "run"
    done = run([*TRAIN, "--steps", "2", "--out", str(out)])
    assert done.returncode == 0, excerpt(done.stderr)
    return out


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_train_the_same_run_as_one(one_process, tmp_path, parallel):
    out = tmp_path / parallel
    done = run([*TRAIN, "--steps", "2", "--out", str(out), "--set", f"parallel={parallel}"], 2)
    assert done.returncode == 0, excerpt(done.stderr)
    assert_same_run(one_process, out)
    assert done.stdout.count("checkpoint:") == 1  # only rank 0 prints


def test_a_killed_two_process_run_resumes_to_the_unbroken_run(one_process, tmp_path):
    """Killed (SIGKILL, all ranks) after its step-1 checkpoint, then resumed on 2 processes."""
    out = tmp_path / "killed"
    args = [*TRAIN, "--steps", "2", "--out", str(out), "--set", "save_every=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tmp_path / "killed.log"
    with log.open("w") as sink:  # a file, not a pipe: the job never blocks on its output
        job = subprocess.Popen(
            command([*args, "--set", "parallel=ddp"], 2),
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state = out / "checkpoint" / "trainer_state.pt"
    deadline = time.monotonic() + 180
    while not state.is_file() and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.2)
    ended = job.poll()
    # torchrun starts each rank in a session of its own, so killing the launcher's group would
    # leave the ranks running to the end: kill every process under it.
    ranks = descendants(job.pid)
    for pid in [job.pid, *ranks]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    job.wait()
    assert ended is None, (
        f"the job ended (status {ended}) before the kill:\n{excerpt(log.read_text())}"
    )
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(ranks) >= 2 and not any(alive(pid) for pid in ranks)
    # The kill interrupted the run: one step done and checkpointed, the second not recorded.
    assert torch.load(state, weights_only=True)["step"] == 1
    assert len(steps(out)) == 1
    resumed = run([*TRAIN, "--steps", "2", "--resume", str(out)], 2)
    assert resumed.returncode == 0, excerpt(resumed.stderr)
    assert_same_run(one_process, out)


@pytest.mark.parametrize(("first", "then"), [(1, 2), (2, 1)], ids=["1-to-2", "2-to-1"])
def test_a_checkpoint_resumes_on_another_number_of_processes(one_process, tmp_path, first, then):
    """The optimizer state is saved whole, so a resume may change the world size."""
    out = tmp_path / "resized"
    ran = run([*TRAIN, "--steps", "1", "--out", str(out)], first)
    assert ran.returncode == 0, excerpt(ran.stderr)
    parallel = ["--set", "parallel=fsdp"] if then > 1 else []
    resumed = run([*TRAIN, "--steps", "2", "--resume", str(out), *parallel], then)
    assert resumed.returncode == 0, excerpt(resumed.stderr)
    assert_same_run(one_process, out)


def test_two_process_evaluation_equals_one_record_for_record(tmp_path):
    records = {}
    for processes in (1, 2):
        path = tmp_path / f"eval-{processes}.jsonl"
        args = ["eval", "--task", "synthetic", "--thresholds", "0.5,0.9", "--limit", "24"]
        done = run([*args, "--batch-size", "4", "--out", str(path), "--json"], processes)
        assert done.returncode == 0, excerpt(done.stderr)
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
