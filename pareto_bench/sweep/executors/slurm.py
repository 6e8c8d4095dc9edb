"""The ``slurm`` executor: one SLURM job per trial, submitted with submitit.

A job has ``nodes`` x ``gpus_per_node`` tasks, one per GPU, started by srun; each task exports
torch.distributed's variables (submitit's ``TorchDistributedEnvironment``) and runs the same
trial body as the subprocess executor, so training is the torchrun code path. The sweep
workers stay on the login node and share the study through its RDB or journal storage.
``cluster: local`` runs the job on this machine instead (submitit's local executor), for
tests and for checking a spec before it queues.

While the job runs, the worker streams its training curve from the trial's ``train.jsonl``
(the trial directory is on the cluster's shared filesystem). A failed job is a failed trial
whose detail is the job's log.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from pareto_bench.core.files import TRAIN_FILE
from pareto_bench.core.records import EvalRecord, TrainStepRecord, from_dict, to_dict
from pareto_bench.core.registry import lazy
from pareto_bench.core.schema import StrictModel
from pareto_bench.sweep.executors import EXECUTORS
from pareto_bench.sweep.trial import (
    DEFAULT_BODY,
    StepCallback,
    TrialFailed,
    TrialSpec,
    TrialTimeout,
    execute,
)


class SlurmOptions(StrictModel):
    nodes: int = Field(1, ge=1, description="Nodes per trial.")
    gpus_per_node: int = Field(1, ge=0, description="GPUs per node, one task (process) each.")
    cpus_per_task: int | None = Field(
        None, ge=1, description="CPUs per task (SLURM's default if None)."
    )
    partition: str | None = Field(None, description="SLURM partition.")
    account: str | None = Field(None, description="SLURM account to charge.")
    time_min: int = Field(24 * 60, ge=1, description="SLURM time limit of a trial's job, minutes.")
    folder: str | None = Field(
        None, description="Where submitit keeps job scripts and logs; None: <trial dir>/slurm."
    )
    cluster: Literal["slurm", "local"] = Field(
        "slurm", description="'slurm', or 'local' to run the job on this machine (tests, checks)."
    )
    poll_s: float = Field(5.0, gt=0, description="How often the worker checks the job.")


@EXECUTORS.register("slurm")
class SlurmExecutor:
    Options = SlurmOptions

    def __init__(self, body: str = DEFAULT_BODY, options: SlurmOptions | None = None) -> None:
        self.body = body
        self.options = options or SlurmOptions()

    def slots(self, threads: int | None) -> int:
        return 1  # each trial is a job of its own; the worker only waits for it

    def run(self, spec: TrialSpec, on_step: StepCallback) -> list[EvalRecord]:
        import submitit

        opts = self.options
        folder = opts.folder or str(Path(spec.trial_dir) / "slurm")
        executor = submitit.AutoExecutor(folder=folder, cluster=opts.cluster)
        tasks = max(1, opts.gpus_per_node)
        params: dict[str, Any] = {
            "name": f"pareto-bench-{spec.name}",
            "timeout_min": opts.time_min,
            "nodes": opts.nodes,
            "tasks_per_node": tasks,
        }
        if opts.gpus_per_node:
            params["gpus_per_node"] = opts.gpus_per_node
        if opts.cpus_per_task:
            params["cpus_per_task"] = opts.cpus_per_task
        if opts.partition:
            params["slurm_partition"] = opts.partition
        if opts.account:
            params["slurm_account"] = opts.account
        executor.update_parameters(**params)
        job = executor.submit(run_job, self.body, spec.to_dict())
        curve = _CurveReader(Path(spec.trial_dir) / TRAIN_FILE, on_step)
        deadline = time.monotonic() + spec.timeout_s if spec.timeout_s else None
        try:
            while not job.done():
                curve.poll()
                if deadline is not None and time.monotonic() > deadline:
                    job.cancel()
                    raise TrialTimeout(f"timed out after {spec.timeout_s:g} s (executor.timeout_s)")
                time.sleep(opts.poll_s)
        except BaseException:
            with contextlib.suppress(Exception):
                job.cancel()
            raise
        curve.poll()
        try:
            rows = job.result()
        except Exception as e:
            raise TrialFailed(_job_reason(e, job.job_id), _job_log(job, e)) from None
        return [from_dict(EvalRecord, row) for row in rows]


def run_job(body_ref: str, spec_data: dict[str, Any]) -> list[dict[str, Any]]:
    """One task of a trial's job: join the job's torch.distributed world, run the body."""
    import submitit

    if submitit.JobEnvironment().num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    records = execute(lazy(body_ref)(), TrialSpec.from_dict(spec_data), lambda record: None)
    return [to_dict(record) for record in records]


class _CurveReader:
    """New rows of a growing ``train.jsonl``, handed to ``on_step`` once each."""

    def __init__(self, path: Path, on_step: StepCallback) -> None:
        self.path, self.on_step, self.seen = path, on_step, 0

    def poll(self) -> None:
        if not self.path.is_file():
            return
        text = self.path.read_text()
        lines = text.splitlines()
        complete = lines if text.endswith("\n") else lines[:-1]  # a row still being written
        for line in complete[self.seen :]:
            self.on_step(from_dict(TrainStepRecord, json.loads(line)))
        self.seen = max(self.seen, len(complete))


def _job_reason(error: Exception, job_id: str) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    cause = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "")
    return f"SLURM job {job_id} failed: {cause.strip()[:300]}"


def _job_log(job: Any, error: Exception) -> str:
    parts = [str(error)]
    for name in ("stderr", "stdout"):
        with contextlib.suppress(Exception):
            text = getattr(job, name)()
            if text:
                parts.append(f"--- job {name} ---\n{text[-20000:]}")
    return "\n".join(parts)
