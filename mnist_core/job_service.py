"""The job service: trainings submitted by the pages, run by worker processes.

Callers use a small interface — `submit`, `status`, `jobs`, `stop`, `cancel`, and for sweeps
(the trials of a grid of settings, `mnist_core.sweeps`) `submit_sweep`, `sweep`, `stop_sweep`
— and never see where a job runs. Who may queue what is one rule, `admission_error`, that every
backend applies. The backend here is `LocalJobs`: at most `MNIST_WORKERS` (default 1)
trainings at once, each in a freshly started Python process (spawned, never forked: TensorFlow
is not fork-safe), the others waiting first in, first out. A worker's memory goes back to the
system when its job ends, and a crash ends that job only.

A job is files under the run store's folder, `<runs>/.jobs/<job id>/`:
- `job.json`, what was asked (`JobRequest`), written once by `submit` or `submit_sweep`;
- `state.json`, where it is (`JobState`), replaced atomically by whoever moves it on: the
  scheduler (queued -> starting, or failed when its worker died) and the worker (running ->
  finished, stopped or failed);
- `stop`, present once a stop or a cancel was asked: the worker looks for it between batches.
So a reloaded page, another browser, another server process and a restarted server all see the
same queue. Workers run in their own session: a restarted web server finds them running again.
Scheduling happens under an exclusive lock on `<runs>/.jobs/lock`. A sweep's trials are
written as hidden folders first and renamed into place together, under that lock: the queue
holds all of them or none.

This module imports neither TensorFlow nor Streamlit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mnist_core.config import TrainConfig
from mnist_core.errors import MnistCoreError
from mnist_core.progress import HISTORY_KEYS, ProgressEvent

ACTIVE = ("starting", "running")  # a worker process holds the job
_HIDDEN = "."  # job folders being written: not jobs yet
DEFAULT_MAX_QUEUE = 10  # waiting jobs, when MNIST_MAX_QUEUE is not set
DEFAULT_MAX_SWEEP = 6  # trials of one sweep, when MNIST_MAX_SWEEP is not set
WORKER_DIED = (
    "The training process died (killed, or out of memory) after {epochs} epoch(s). Try fewer "
    "filters or units, or a smaller batch size; the best model it had saved is kept as an "
    "interrupted run."
)


class JobError(MnistCoreError):
    """A job cannot be submitted, found or changed; the message says what to do."""


@dataclass(frozen=True)
class JobRequest:
    """What was asked: written once, never changed."""

    job_id: str
    config: TrainConfig
    owner: str  # an opaque id of who submitted it (a browser session); shown to nobody
    submitted: float  # Unix time
    sweep_id: str | None = None  # the sweep this job is a trial of, if any

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "config": self.config.to_dict()}

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> JobRequest:
        return cls(
            job_id=str(values["job_id"]),
            config=TrainConfig.from_dict(values["config"]),
            owner=str(values["owner"]),
            submitted=float(values["submitted"]),
            sweep_id=None if values.get("sweep_id") is None else str(values["sweep_id"]),
        )


@dataclass(frozen=True)
class JobState:
    """Where a job is; replaced as a whole at every step."""

    state: str = "queued"  # queued, starting, running, finished, stopped, failed, interrupted
    pid: int | None = None  # the worker process, while it runs
    progress: ProgressEvent | None = None
    history: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in HISTORY_KEYS})
    error: str | None = None  # why it failed, in a sentence for the page
    run_id: str | None = None  # the saved run, once there is one
    updated: float = 0.0  # Unix time of this state

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["progress"] = None if self.progress is None else asdict(self.progress)
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> JobState:
        progress = values.get("progress")
        return cls(
            state=str(values["state"]),
            pid=values.get("pid"),
            progress=None if progress is None else ProgressEvent(**progress),
            history={k: [float(v) for v in values["history"].get(k, [])] for k in HISTORY_KEYS},
            error=values.get("error"),
            run_id=values.get("run_id"),
            updated=float(values.get("updated", 0.0)),
        )


@dataclass(frozen=True)
class JobStatus:
    """A job as a page shows it: the request, its state, its place in the queue."""

    request: JobRequest
    current: JobState
    position: int | None  # 1 for the next to start, while queued; else None
    stop_requested: bool

    @property
    def job_id(self) -> str:
        return self.request.job_id

    @property
    def state(self) -> str:
        return self.current.state

    @property
    def active(self) -> bool:
        return self.state in ("queued", *ACTIVE)


# Seconds per epoch of each architecture at its preset's settings on the machine BENCHMARKS.md
# names: the queue's estimate until this server has a run of that architecture to measure by.
SECONDS_PER_EPOCH = {"mlp": 1.0, "cnn": 11.5, "vgg": 20.0, "strided": 11.0, "deep": 45.0}


def seconds_per_epoch(architecture: str, runs: list[Any]) -> float:
    """This server's pace for `architecture`: the median training seconds per epoch of its
    saved runs (`runs.RunInfo`) of that architecture, else `SECONDS_PER_EPOCH`."""
    paces = sorted(
        run.metrics.train_seconds / run.metrics.epochs_run
        for run in runs
        if run.config.architecture == architecture
        and run.metrics.train_seconds
        and run.metrics.epochs_run
    )
    if not paces:
        return SECONDS_PER_EPOCH.get(architecture, SECONDS_PER_EPOCH["deep"])
    return paces[len(paces) // 2]


def seconds_left(status: JobStatus, runs: list[Any]) -> float:
    """Estimated seconds until `status`'s job ends: its own ETA once it reports one, else its
    planned epochs at this server's pace."""
    progress = status.current.progress
    if progress is not None and progress.eta == progress.eta:  # NaN before the first batch
        return progress.eta
    config = status.request.config
    return config.epochs * seconds_per_epoch(config.architecture, runs)


def wait_seconds(statuses: list[JobStatus], job_id: str, workers: int, runs: list[Any]) -> float:
    """Estimated seconds until the queued job `job_id` starts: the work of every job running or
    queued ahead of it, shared by `workers` processes."""
    ahead = []
    for status in statuses:
        if status.job_id == job_id:
            break
        if status.active:
            ahead.append(seconds_left(status, runs))
    return sum(ahead) / max(1, workers)


def ordinal(number: int | None) -> str:
    """1st, 2nd, 3rd, 4th… (a place in the queue)."""
    number = number or 0
    suffix = (
        "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    )
    return f"{number}{suffix}"


def ray_address(environ: dict[str, str] | None = None) -> str | None:
    """`MNIST_RAY_ADDRESS` (`auto`, `HOST:PORT` of a head node, `ray://HOST:10001`), or None
    when trainings run on this machine."""
    value = (environ if environ is not None else os.environ).get("MNIST_RAY_ADDRESS", "")
    return value.strip() or None


def max_workers(environ: dict[str, str] | None = None) -> int:
    """`MNIST_WORKERS`: how many trainings run at once (default 1; an invalid value is 1)."""
    return _positive_int((environ if environ is not None else os.environ).get("MNIST_WORKERS"), 1)


def max_queue(environ: dict[str, str] | None = None) -> int:
    """`MNIST_MAX_QUEUE`: how many jobs may wait (default 10; an invalid value is 10)."""
    value = (environ if environ is not None else os.environ).get("MNIST_MAX_QUEUE")
    return _positive_int(value, DEFAULT_MAX_QUEUE)


def max_sweep(environ: dict[str, str] | None = None) -> int:
    """`MNIST_MAX_SWEEP`: how many trials one sweep may have (default 6; an invalid value is 6)."""
    value = (environ if environ is not None else os.environ).get("MNIST_MAX_SWEEP")
    return _positive_int(value, DEFAULT_MAX_SWEEP)


def admission_error(
    statuses: list[JobStatus],
    owner: str,
    count: int = 1,
    queue_limit: int = DEFAULT_MAX_QUEUE,
    sweep_limit: int | None = None,
) -> str | None:
    """Why `owner` may not queue `count` trainings now (a sweep of `count` trials, or one job),
    as a sentence for the page; None when they may. Every backend applies this rule.

    An owner has one training or one sweep waiting or running at a time; the queue takes at
    most `queue_limit` waiting jobs, every new trial counted as waiting; a sweep has at most
    `sweep_limit` trials (no cap when None).
    """
    mine = [status for status in statuses if status.active and status.request.owner == owner]
    if any(status.request.sweep_id for status in mine):
        return "You already have a sweep waiting or running; stop it or let it finish first."
    if mine:
        return "You already have a training waiting or running; stop or cancel it first."
    if sweep_limit is not None and count > sweep_limit:
        return (
            f"A sweep of {count} trials is more than this server takes ({sweep_limit}, "
            "MNIST_MAX_SWEEP); remove some values."
        )
    waiting = sum(1 for status in statuses if status.state == "queued")
    if count > queue_limit:
        return (
            f"This server queues at most {queue_limit} trainings, fewer than the {count} trials "
            "of this sweep; remove some values."
        )
    if waiting + count > queue_limit:
        if count == 1:
            return (
                f"The queue is full ({waiting} trainings waiting, the most this server "
                "takes); try again when one has started."
            )
        return (
            f"The queue has room for {queue_limit - waiting} more trainings, not the {count} "
            "trials of this sweep; try again when some have started, or remove some values."
        )
    return None


def _positive_int(value: str | None, default: int) -> int:
    try:
        number = int(value) if value is not None else default
    except ValueError:
        return default
    return number if number >= 1 else default


class JobService:
    """What every backend offers the pages and the command line. A backend implements
    `_queue` (admit and queue trainings, all or none), `jobs`, `stop` and `tick`."""

    workers: int  # trainings that run at once
    place = "on this server"  # where they run, for a page: "Trainings on this server"
    _thread: threading.Thread | None = None

    # --- the interface pages use ---

    def submit(self, config: TrainConfig, owner: str) -> str:
        """Queue a training of `config` for `owner`; its job id.

        Raises:
            JobError: `owner` already has a job or a sweep waiting or running, or the queue is
                full (see `admission_error`).
        """
        (job_id,) = self._queue([config], owner, sweep_id=None)
        return job_id

    def submit_sweep(self, configs: list[TrainConfig], owner: str) -> str:
        """Queue a training of each config for `owner`, as the trials of one new sweep, in
        this order; the sweep's id. The queue gets all of them or none.

        Raises:
            JobError: no configs, more than `sweep_limit`, `owner` already has a job or a
                sweep waiting or running, or the queue has no room for them all.
        """
        if not configs:
            raise JobError("A sweep needs at least one trial; give its settings some values.")
        sweep_id = new_id()
        self._queue(configs, owner, sweep_id=sweep_id)
        return sweep_id

    def status(self, job_id: str) -> JobStatus:
        """The job's status. Raises JobError when there is no such job."""
        for status in self.jobs():
            if status.job_id == job_id:
                return status
        raise JobError(f"training job {job_id!r} does not exist (this server restarted empty?)")

    def sweep(self, sweep_id: str) -> list[JobStatus]:
        """The trials of sweep `sweep_id`, in the order they were given. Raises JobError when
        there is no such sweep."""
        trials = [status for status in self.jobs() if status.request.sweep_id == sweep_id]
        if not trials:
            raise JobError(f"sweep {sweep_id!r} does not exist (this server restarted empty?)")
        return trials

    def stop_sweep(self, sweep_id: str) -> None:
        """Stop every trial of sweep `sweep_id` that is running (keeping its best weights so
        far) and take its waiting ones out of the queue."""
        for trial in self.sweep(sweep_id):
            if trial.active:
                self.stop(trial.job_id)

    def cancel(self, job_id: str) -> None:
        """Take a queued job out of the queue (a stop, for one that runs)."""
        self.stop(job_id)

    def start(self, interval: float = 0.5) -> JobService:
        """Run `tick()` every `interval` seconds in a daemon thread (once per instance)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._tick_forever, args=(interval,), name="mnist-jobs", daemon=True
            )
            self._thread.start()
        return self

    def _tick_forever(self, interval: float) -> None:
        while True:
            try:
                self.tick()
            except (JobError, OSError):  # a cluster or a disk that went away: try again
                pass
            time.sleep(interval)

    def _queue(self, configs: list[TrainConfig], owner: str, sweep_id: str | None) -> list[str]:
        raise NotImplementedError

    def jobs(self) -> list[JobStatus]:
        raise NotImplementedError

    def stop(self, job_id: str) -> None:
        raise NotImplementedError

    def tick(self) -> None:
        raise NotImplementedError


class UnavailableJobs(JobService):
    """Stands in for a backend that cannot be reached (a Ray cluster that does not answer):
    every call raises the JobError that says why, so a page shows it where it would have
    shown the queue, and keeps the visitor's settings."""

    workers = 0

    def __init__(self, error: JobError) -> None:
        self.error = error

    def _queue(self, configs: list[TrainConfig], owner: str, sweep_id: str | None) -> list[str]:
        raise self.error

    def jobs(self) -> list[JobStatus]:
        raise self.error

    def stop(self, job_id: str) -> None:
        raise self.error

    def tick(self) -> None:
        pass


class LocalJobs(JobService):
    """Trainings in worker processes on this machine, with a first-in, first-out queue.

    `tick()` moves the queue on: it notices workers that died and starts queued jobs while
    fewer than `workers` run. `start()` runs it every `interval` seconds in a daemon thread;
    tests call it directly.
    """

    def __init__(
        self,
        runs_dir: str | os.PathLike[str],
        workers: int | None = None,
        queue_limit: int | None = None,
        environ: dict[str, str] | None = None,
        sweep_limit: int | None = None,
    ) -> None:
        self.root = Path(runs_dir).resolve() / ".jobs"
        self.workers = workers if workers is not None else max_workers()
        self.queue_limit = queue_limit if queue_limit is not None else max_queue()
        self.sweep_limit = sweep_limit if sweep_limit is not None else max_sweep()
        self.environ = environ  # the workers' environment; None: this process's, at launch
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # --- the backend's part of the interface ---

    def _queue(self, configs: list[TrainConfig], owner: str, sweep_id: str | None) -> list[str]:
        """Admit and write one job per config, all or none; their ids, in order."""
        with self._lock():
            problem = admission_error(
                self._statuses(),
                owner,
                count=len(configs),
                queue_limit=self.queue_limit,
                sweep_limit=None if sweep_id is None else self.sweep_limit,
            )
            if problem is not None:
                raise JobError(problem)
            now, first = time.time(), time.time_ns()
            requests = [
                JobRequest(new_id(first + index), config, owner, now, sweep_id)
                for index, config in enumerate(configs)
            ]
            written: list[Path] = []
            try:
                for request in requests:  # hidden until every one is complete
                    folder = self.root / f"{_HIDDEN}{request.job_id}"
                    folder.mkdir(parents=True)
                    written.append(folder)
                    _write_atomic(folder / "state.json", JobState(updated=now).to_json())
                    _write_atomic(folder / "job.json", request.to_json())
                for index, request in enumerate(requests):
                    os.rename(written[index], self.root / request.job_id)
                    written[index] = self.root / request.job_id
            except BaseException:
                for folder in written:
                    shutil.rmtree(folder, ignore_errors=True)
                raise
        self.tick()
        return [request.job_id for request in requests]

    def jobs(self) -> list[JobStatus]:
        """Every job this store knows, oldest first."""
        return self._statuses()

    def stop(self, job_id: str) -> None:
        """Ask a running job to stop (within about a second, keeping the best weights so
        far), or take a queued one out of the queue."""
        self.status(job_id)  # raises for an unknown job
        (self.root / job_id / "stop").touch()
        self.tick()

    # --- scheduling ---

    def tick(self) -> None:
        """Notice dead workers, cancel queued jobs asked to stop, start queued jobs."""
        with self._lock():
            statuses = self._statuses()
            running = 0
            for status in statuses:
                if status.state not in ACTIVE:
                    continue
                if self._alive(status.current.pid, status.job_id):
                    running += 1
                else:
                    self._mark_died(status)
            for status in statuses:
                if status.state != "queued":
                    continue
                if status.stop_requested:
                    self._write_state(status.job_id, replace(status.current, state="stopped"))
                elif running < self.workers:
                    self._launch(status.job_id)
                    running += 1

    def _launch(self, job_id: str) -> None:
        folder = self.root / job_id
        log = open(folder / "worker.log", "ab")  # noqa: SIM115 - the child holds it
        with log:
            process = subprocess.Popen(
                [sys.executable, "-m", "mnist_core.worker", str(folder)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # The run store the jobs save to is this one, whatever the environment says.
                env={**(self.environ or os.environ), "MNIST_RUNS_DIR": str(self.root.parent)},
                start_new_session=True,  # survives a restart of the web server
            )
        self._children[process.pid] = process
        self._write_state(job_id, JobState(state="starting", pid=process.pid, updated=time.time()))

    def _alive(self, pid: int | None, job_id: str) -> bool:
        if pid is None:
            return False
        child = self._children.get(pid)
        if child is not None:
            return child.poll() is None
        try:  # a worker started by an earlier server process
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process took the number
            return False
        try:  # the number may have been reused: it must still be this job's worker
            return job_id in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:  # no /proc (not Linux): trust the number
            return True

    def _mark_died(self, status: JobStatus) -> None:
        # Read again: the worker may have written its final state just before it ended.
        current = self._read_state(status.job_id)
        if current.state not in ACTIVE:
            return
        epochs = len(current.history.get("loss", []))
        self._write_state(
            status.job_id,
            replace(current, state="failed", pid=None, error=WORKER_DIED.format(epochs=epochs)),
        )

    # --- files ---

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "a+b") as handle:
            _flock(handle)
            yield

    def _statuses(self) -> list[JobStatus]:
        try:
            folders = sorted(
                p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(_HIDDEN)
            )
        except FileNotFoundError:
            return []
        jobs = []
        for folder in folders:
            try:
                request = JobRequest.from_json(_read(folder / "job.json"))
                current = self._read_state(folder.name)
            except (OSError, ValueError, KeyError, MnistCoreError):
                continue  # being written, or damaged: not a job
            jobs.append((request, current, (folder / "stop").exists()))
        return in_line(jobs)

    def _read_state(self, job_id: str) -> JobState:
        return JobState.from_json(_read(self.root / job_id / "state.json"))

    def _write_state(self, job_id: str, state: JobState) -> None:
        write_state(self.root / job_id, replace(state, updated=time.time()))


def new_id(nanoseconds: int | None = None) -> str:
    """A new job or sweep id. Time first (now, or `nanoseconds` since the epoch): job folders
    sort in the order they were submitted."""
    stamp = time.time_ns() if nanoseconds is None else nanoseconds
    return f"{stamp:020d}-{uuid.uuid4().hex[:8]}"


def in_line(jobs: list[tuple[JobRequest, JobState, bool]]) -> list[JobStatus]:
    """Statuses of (request, state, stop asked), oldest first, each queued job numbered by its
    place in the line (1 for the next to start)."""
    statuses, place = [], 0
    for request, current, stop in jobs:
        position = None
        if current.state == "queued":
            place += 1
            position = place
        statuses.append(JobStatus(request, current, position, stop))
    return statuses


def write_state(folder: Path, state: JobState) -> None:
    """Replace the job's `state.json` in `folder` at once (readers see the old or the new)."""
    _write_atomic(folder / "state.json", state.to_json())


def read_request(folder: Path) -> JobRequest:
    return JobRequest.from_json(_read(folder / "job.json"))


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _write_atomic(path: Path, value: Any) -> None:
    temp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    temp.write_text(json.dumps(value), encoding="utf-8")
    os.replace(temp, path)


def _flock(handle: Any) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: one server process per store, as the README says
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
