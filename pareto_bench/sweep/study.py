"""The sweep's Optuna study: its storage, a one-time setup, claiming trials, heartbeats and
the recovery of trials whose worker died.

Every trial of a sweep exists before any runs: setup enqueues the baselines and one "slot"
per search trial. A worker *claims* a waiting slot through the storage, which is atomic in
both the journal file and an RDB, and then samples its parameters (ask/tell). So N workers on
N machines never run a trial twice, never lose one, and never overshoot the budget, and a
re-run after a crash simply claims what is left. Slots are keyed ``(kind, slot, attempt)``,
which makes setup idempotent: re-running it (after a crash mid-setup, or with a larger
``--trials``) only adds what is missing.

A running trial carries its worker's identity and a heartbeat. A trial whose worker process
is gone (same host) or silent for ``stale_after_s`` (another host) is marked failed, its
tracker run too, and it is re-enqueued once with the same parameters.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pareto_bench.core.records import BASELINE, TRIAL, TrialRecord
from pareto_bench.core.schema import ConfigError
from pareto_bench.sweep.samplers import KIND_ATTR, SamplerPlan
from pareto_bench.sweep.spec import SweepSpec

JOURNAL_FILE = "study.journal"

# Study user attributes.
IDENTITY = "identity"  # the fields that define the sweep; a re-run must match them
READY = "ready"  # set last by setup; workers wait for it
PARENT_RUNS = "parent_runs"  # tracking URI -> parent run id

# Trial user attributes.
NAME, SLOT, ATTEMPT = "name", "slot", "attempt"
WORKER, HEARTBEAT = "worker", "heartbeat"
RUN_ID, FAIL_REASON, OBJECTIVES, SEED, WALL_TIME = (
    "mlflow_run_id",
    "failure_reason",
    "objectives",
    "seed",
    "wall_time",
)
REPLICATE_SEEDS = "replicate_seeds"  # a configuration whose seed replicates are queued as jobs

# Fields of the spec that may change between runs of one sweep without changing what it means.
_MUTABLE_FIELDS = {
    "trials",
    "executor",
    "sampler",
    "baselines",
    "data_dir",
    "experiment",
    "retry_killed",
}


def quiet_optuna() -> None:
    """The sweep reports trials itself; Optuna's per-trial INFO lines would only repeat it."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def open_storage(url: str | None, out_dir: Path) -> tuple[Any, str]:
    """``None`` -> a journal file in ``out_dir``; a URL with ``://`` -> an RDB (SQLite,
    PostgreSQL, MySQL); anything else -> a journal file at that path (shared storage works)."""
    import optuna

    quiet_optuna()

    if url and "://" in url:
        return _open_rdb(url), url
    path = (Path(url) if url else out_dir / JOURNAL_FILE).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    backend = optuna.storages.journal.JournalFileBackend(str(path))
    return optuna.storages.JournalStorage(backend), str(path)


def _open_rdb(url: str, attempts: int = 5) -> Any:
    import random

    import optuna

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except Exception as e:
            # Workers starting together on a fresh database race to create its tables; the
            # loser's retry finds them made. Anything else fails the same way every time.
            if attempt == attempts - 1:
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ConfigError(f"--storage {url}: cannot open it ({reason})") from None
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def spec_identity(spec: SweepSpec) -> dict[str, Any]:
    data = spec.model_dump(mode="json", exclude=_MUTABLE_FIELDS)
    data["objectives"] = spec.objective_keys
    # In float32, batched decoding equals unbatched (tested on tiny's 500 held-out problems), so
    # the batch size is left out; in bf16 it can change a result (1 problem in 500 at tau 0.5 on
    # tiny), so a study that asks for bf16 keeps it, and the dtype, in its identity. 'auto' and
    # the device stay out: studies made before these fields existed must stay resumable.
    if spec.dtype != "bfloat16":
        data["eval"].pop("batch_size", None)
        data.pop("dtype", None)
    data.pop("device", None)
    if spec.replicates.size == 1:  # studies made before replicates existed stay resumable
        data.pop("replicates", None)
    if spec.train_base is None:  # ... and those made before train_base existed
        data.pop("train_base", None)
    data["sampler"] = spec.sampler.name
    return data


@dataclass(frozen=True)
class WorkerId:
    host: str
    pid: int
    start: str  # the process start time, so that a recycled pid is not mistaken for us

    @staticmethod
    def current() -> WorkerId:
        return WorkerId(socket.gethostname(), os.getpid(), _process_start(os.getpid()))

    def label(self) -> str:
        return f"{self.host}:{self.pid}"


def _proc_stat(pid: int) -> list[str]:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text.rsplit(")", 1)[-1].split()  # fields 3.. of proc(5); the name may hold spaces


def _process_start(pid: int) -> str:
    fields = _proc_stat(pid)
    return fields[19] if len(fields) > 19 else ""


def process_alive(pid: int, start: str = "") -> bool:
    """Whether ``pid`` runs on this host and is the process that started at ``start``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _proc_stat(pid)
    if fields and fields[0] == "Z":  # a zombie is dead; its parent just has not reaped it
        return False
    return not (start and len(fields) > 19 and fields[19] != start)


class TrialQueue:
    """The trials of one Optuna study as a work queue: atomic claims, heartbeats, attributes and
    the trials whose worker died. The sweep's study and its replicate jobs are both one."""

    def __init__(self, storage: Any, worker: WorkerId) -> None:
        self.storage = storage
        self.worker = worker
        self._study_id: int | None = None

    @property
    def study_id(self) -> int:
        assert self._study_id is not None
        return self._study_id

    def claim_next(self, eligible: Callable[[Any], bool]) -> Any | None:
        """Atomically take the lowest-numbered waiting trial that is ``eligible``, mark it with
        this worker and a first heartbeat, and return it (frozen); ``None`` if there is none."""
        from optuna.trial import TrialState

        trials = self.trials()
        first_of_key: dict[tuple[Any, ...], int] = {}
        for t in trials:
            first_of_key.setdefault(_slot_key(t), t.number)
        for t in trials:
            if t.state != TrialState.WAITING or first_of_key[_slot_key(t)] != t.number:
                continue  # not waiting, or a duplicate left by a setup race
            if not eligible(t):
                continue
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, t.number)
            try:
                claimed = self.storage.set_trial_state_values(trial_id, TrialState.RUNNING)
            except Exception:  # finished by another worker in the meantime
                continue
            if claimed:
                self.set_attrs(t.number, **{WORKER: self.worker.__dict__, HEARTBEAT: time.time()})
                return self.frozen(t.number)
        return None

    @contextmanager
    def heartbeat(self, trial_number: int, interval_s: float) -> Iterator[None]:
        """Mark ``trial_number`` alive every ``interval_s`` while the block runs."""
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial_number)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval_s):
                # A storage hiccup is not fatal: the next beat tries again.
                with contextlib.suppress(Exception):
                    self.storage.set_trial_user_attr(trial_id, HEARTBEAT, time.time())

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)

    def set_attrs(self, trial_number: int, **attrs: Any) -> None:
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial_number)
        for key, value in attrs.items():
            self.storage.set_trial_user_attr(trial_id, key, value)

    def fail(self, trial_number: int, reason: str) -> bool:
        """Mark a running trial failed with ``reason``; ``False`` if it already finished."""
        from optuna.trial import TrialState

        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial_number)
        try:
            self.set_attrs(trial_number, **{FAIL_REASON: reason})
            return bool(self.storage.set_trial_state_values(trial_id, TrialState.FAIL))
        except Exception:  # already finished by another worker: nothing left to do
            return False

    # -- dead workers -------------------------------------------------------------------

    def dead_trials(self, stale_after_s: float) -> list[tuple[Any, str]]:
        """Running trials whose worker is gone, each with the reason."""
        from optuna.trial import TrialState

        running = self.storage.get_all_trials(
            self.study_id, deepcopy=False, states=(TrialState.RUNNING,)
        )
        now = time.time()
        found = []
        for trial in running:
            reason = self._death_reason(trial, now, stale_after_s)
            if reason:
                found.append((trial, reason))
        return found

    def _death_reason(self, trial: Any, now: float, stale_after_s: float) -> str:
        owner = trial.user_attrs.get(WORKER) or {}
        beat = float(trial.user_attrs.get(HEARTBEAT) or _timestamp(trial.datetime_start) or now)
        if owner.get("host") == self.worker.host and owner.get("pid") is not None:
            pid = int(owner["pid"])
            if pid == self.worker.pid or process_alive(pid, owner.get("start", "")):
                return ""
            return f"killed: its worker process (pid {pid} on {owner['host']}) died mid-trial"
        silent = now - beat
        if silent > stale_after_s:
            who = f"{owner.get('host')}:{owner.get('pid')}" if owner else "an unknown worker"
            return f"killed: no heartbeat from {who} for {silent:.0f} s (executor.stale_after_s)"
        return ""

    def trials(self) -> list[Any]:
        return sorted(
            self.storage.get_all_trials(self.study_id, deepcopy=False), key=lambda t: t.number
        )

    def frozen(self, trial_number: int) -> Any:
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial_number)
        return self.storage.get_trial(trial_id)

    def state_counts(self) -> Counter[str]:
        return Counter(
            t.state.name for t in self.storage.get_all_trials(self.study_id, deepcopy=False)
        )


class SweepStudy(TrialQueue):
    """One sweep's study, opened through :meth:`open`."""

    def __init__(
        self, spec: SweepSpec, storage: Any, storage_label: str, plan: SamplerPlan
    ) -> None:
        super().__init__(storage, WorkerId.current())
        self.spec = spec
        self.storage_label = storage_label
        self.plan = plan
        self.name = spec.name
        self.created = False
        self.marked_pending = False  # this process owes the study its parent run

    # -- opening and setup --------------------------------------------------------------

    @classmethod
    def open(
        cls,
        spec: SweepSpec,
        storage: Any,
        storage_label: str,
        plan: SamplerPlan,
        *,
        n_trials: int,
        coordinator: bool,
        on_setup: Callable[[SweepStudy], None] | None = None,
        ready_timeout_s: float = 60.0,
    ) -> SweepStudy:
        """Create the study (the one process that wins creation sets it up) or join it.
        ``on_setup`` runs as the last step of setup, before workers are let in."""
        import optuna

        self = cls(spec, storage, storage_label, plan)
        directions = ["maximize"] * len(spec.objective_keys)
        try:
            optuna.create_study(
                storage=storage, study_name=self.name, directions=directions, sampler=plan.sampler
            )
            self.created = True
        except optuna.exceptions.DuplicatedStudyError:
            pass
        self._study_id = storage.get_study_id_from_name(self.name)
        study = self.study()
        if self.created:
            study.set_user_attr(IDENTITY, spec_identity(spec))
            self.ensure_slots(n_trials)
            if on_setup is not None:
                on_setup(self)
            study.set_user_attr(READY, True)
            return self
        self._check_matches(study)
        if not self._wait_ready(ready_timeout_s if not coordinator else min(ready_timeout_s, 10.0)):
            if not coordinator:
                raise ConfigError(
                    f"{storage_label}: study {self.name!r} was never set up (its creator stopped during "
                    "setup); run the sweep once without --worker to finish it"
                )
            self.study().set_user_attr(IDENTITY, spec_identity(spec))
        if coordinator:
            self.ensure_slots(n_trials)
            if on_setup is not None:
                on_setup(self)
            self.study().set_user_attr(READY, True)
        return self

    def study(self) -> Any:
        """A fresh ``Study`` view: each claim gets one, so sampler caches never go stale."""
        import optuna

        return optuna.load_study(
            study_name=self.name, storage=self.storage, sampler=self.plan.sampler
        )

    def _wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.storage.get_study_user_attrs(self.study_id).get(READY):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)

    def _check_matches(self, study: Any) -> None:
        n_stored = len(study.directions)
        n_spec = len(self.spec.objective_keys)
        if n_stored != n_spec:
            raise ConfigError(
                f"{self.storage_label}: study {self.name!r} has {n_stored} objective(s) but the spec has "
                f"{n_spec}; use another --out/--storage (or a new name) for a different sweep"
            )
        stored = study.user_attrs.get(IDENTITY)
        if stored is None:
            return
        current = spec_identity(self.spec)
        changed = sorted(k for k in {*stored, *current} if stored.get(k) != current.get(k))
        if changed:
            raise ConfigError(
                f"{self.storage_label}: study {self.name!r} was created by a different spec "
                f"(fields differ: {', '.join(changed)}); undo the change to resume it, or use another "
                "--out/--storage (or a new name) for a new sweep"
            )

    def ensure_slots(self, n_trials: int) -> None:
        """Enqueue every baseline and search slot that is missing; idempotent."""
        study = self.study()
        existing = {
            _slot_key(t) for t in self.storage.get_all_trials(self.study_id, deepcopy=False)
        }
        for name in self.spec.baselines:
            if (BASELINE, name, 0) not in existing:
                study.enqueue_trial(
                    {}, user_attrs={KIND_ATTR: BASELINE, NAME: name, SLOT: name, ATTEMPT: 0}
                )
        fixed, capacity = self.plan.fixed_points, self.plan.capacity
        # A finite space holds only so many distinct configurations: the budget stops there.
        count = n_trials if capacity is None else min(n_trials, capacity)
        for index in range(count):
            if (TRIAL, index, 0) not in existing:
                params = fixed[index] if fixed is not None else {}
                study.enqueue_trial(params, user_attrs={KIND_ATTR: TRIAL, SLOT: index, ATTEMPT: 0})

    # -- claiming -----------------------------------------------------------------------

    def _death_reason(self, trial: Any, now: float, stale_after_s: float) -> str:
        # A configuration with queued replicates lives as long as its jobs, whoever runs them.
        if trial.user_attrs.get(REPLICATE_SEEDS):
            return ""
        return super()._death_reason(trial, now, stale_after_s)

    def claim(self, budget: int) -> tuple[Any, Any] | None:
        """Atomically take the next waiting trial (lowest number first) within ``budget`` search
        slots; returns ``(optuna.Trial, study)`` or ``None`` when nothing is left to run."""
        from optuna.trial import Trial

        taken = self.claim_next(lambda t: self.in_budget(t, budget))
        if taken is None:
            return None
        study = self.study()
        return Trial(study, taken._trial_id), study

    def in_budget(self, trial: Any, budget: int) -> bool:
        kind, slot = trial.user_attrs.get(KIND_ATTR), trial.user_attrs.get(SLOT)
        if kind == BASELINE:
            return slot in self.spec.baselines
        return isinstance(slot, int) and slot < budget

    # -- results --------------------------------------------------------------------------

    def complete(self, study: Any, trial: Any, values: list[float]) -> None:
        study.tell(trial, values)

    def fail(self, trial_number: int, reason: str) -> bool:
        """Mark a running trial failed with ``reason``; ``False`` if it already finished."""
        from optuna.trial import TrialState

        try:
            self.set_attrs(trial_number, **{FAIL_REASON: reason})
            self.study().tell(trial_number, state=TrialState.FAIL)
        except Exception:  # already told by another worker: nothing left to do
            return False
        return True

    def retry(self, dead: Any) -> bool:
        """Re-enqueue a killed trial once, with the same parameters."""
        attempt = int(dead.user_attrs.get(ATTEMPT, 0)) + 1
        if not self.spec.retry_killed or attempt > 1:
            return False
        attrs = {k: dead.user_attrs[k] for k in (KIND_ATTR, SLOT, NAME) if k in dead.user_attrs}
        if dead.user_attrs.get(KIND_ATTR) == TRIAL:
            attrs.pop(NAME, None)  # the retry is a new trial number, hence a new name
        self.study().enqueue_trial(
            dead.params, user_attrs={**attrs, ATTEMPT: attempt, "retry_of": dead.number}
        )
        return True

    # -- reading ------------------------------------------------------------------------

    def parent_run(self, tracking_uri: str) -> str:
        runs = self.storage.get_study_user_attrs(self.study_id).get(PARENT_RUNS, {})
        return str(runs.get(tracking_uri, ""))

    def set_parent_run(self, tracking_uri: str, run_id: str) -> None:
        runs = dict(self.storage.get_study_user_attrs(self.study_id).get(PARENT_RUNS, {}))
        runs[tracking_uri] = run_id
        self.storage.set_study_user_attr(self.study_id, PARENT_RUNS, runs)


def _slot_key(trial: Any) -> tuple[Any, ...]:
    attrs = trial.user_attrs
    return (attrs.get(KIND_ATTR), attrs.get(SLOT), attrs.get(ATTEMPT, 0))


def _timestamp(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def trial_name(trial: Any) -> str:
    return str(trial.user_attrs.get(NAME) or f"trial-{trial.number}")


def record_of(trial: Any) -> TrialRecord:
    """The ``TrialRecord`` of an Optuna trial: the study is the source of truth for state."""
    attrs = trial.user_attrs
    wall = attrs.get(WALL_TIME)
    if wall is None and trial.datetime_start and trial.datetime_complete:
        wall = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return TrialRecord(
        number=trial.number,
        kind=str(attrs.get(KIND_ATTR, TRIAL)),
        name=trial_name(trial),
        state=trial.state.name,
        params=dict(trial.params),
        objectives=dict(attrs.get(OBJECTIVES) or {}),
        failure_reason=str(attrs.get(FAIL_REASON, "")),
        mlflow_run_id=str(attrs.get(RUN_ID, "")),
        seed=int(attrs.get(SEED, 0)),
        wall_time=float(wall or 0.0),
    )
