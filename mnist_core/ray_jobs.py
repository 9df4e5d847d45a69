"""The job service on a Ray cluster: `RayJobs`, used when `MNIST_RAY_ADDRESS` is set.

Same interface as `job_service.LocalJobs` (`submit`, `status`, `jobs`, `stop`, `cancel`,
`start`, `tick`, `workers`), so pages and the command line do not care where trainings run.

- **The queue** is one named, detached actor (`JobQueue`, in namespace `mnist-dashboard`) on
  the head node: every dashboard replica and every command line connected to the cluster sees
  the same jobs. It holds each job's request and state, starts the trainings in the order they
  were queued, and watches them. Ray does not promise to place waiting actors in the order
  they were made, so once the cluster's slots are taken the queue makes a job's trainer only
  when the one before it has a node: at most one trainer waits for room at a time.
- **A training** is an actor (`Trainer`) holding `MNIST_RAY_CPUS_PER_JOB` CPUs (default 2)
  and `MNIST_RAY_GPUS_PER_JOB` GPUs (default 0), a fresh process ended after the job
  (TensorFlow's memory goes back). It runs `worker.follow`, as a local worker does, reporting
  its state to the queue four times a second; the queue tells it to stop.
- **Data**: MNIST's arrays go into Ray's object store once per cluster (keyed by their
  fingerprint), owned by the queue actor; worker nodes need neither MNIST nor a shared disk.
  A job that fine-tunes a run or mixes in the visitor's drawings carries those with it.
- **Results**: the task saves the run in a temporary folder on its node and returns it packed
  (`runs.pack_run`); a dashboard's `tick()` (any replica, once) adds it to the run store and
  only then does the job read as finished, with the run's id.
- **A node lost mid-job**: the job is `failed` with a message saying so; it is not retried
  (a retry would start the training again from nothing; the visitor decides). The queue, on
  the head node, lives on.

This module imports Ray; `backends.job_service` imports it only when the variable is set.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from mnist_core.config import TrainConfig
from mnist_core.errors import MnistCoreError, first_line
from mnist_core.job_service import (
    ACTIVE,
    JobError,
    JobRequest,
    JobService,
    JobState,
    JobStatus,
    admission_error,
    in_line,
    max_queue,
    max_sweep,
    new_id,
)

NAMESPACE = "mnist-dashboard"
QUEUE_NAME = "job-queue"
PACKAGE_DIR = Path(__file__).resolve().parent
FINAL = ("finished", "stopped", "failed", "interrupted")
CLAIM_SECONDS = 120.0  # a result claimed by a replica that died is offered again after this
ASK_SECONDS = 30.0  # the queue answers in milliseconds; MNIST's arrays take a second or two
NODE_LOST = (
    "The cluster node running this training was lost ({kind}) after {epochs} epoch(s); "
    "start the training again."
)
UNREACHABLE = (
    "The Ray cluster at {address} does not answer ({why}). Check MNIST_RAY_ADDRESS (auto, "
    "HOST:PORT of the head node, or ray://HOST:10001) and that the head node runs."
)


def resources_per_job(environ: Mapping[str, str] | None = None) -> tuple[float, float]:
    """(CPUs, GPUs) each training asks of the cluster: `MNIST_RAY_CPUS_PER_JOB` (default 2)
    and `MNIST_RAY_GPUS_PER_JOB` (default 0). Raises JobError naming a bad value."""
    environ = environ if environ is not None else os.environ
    values = []
    for name, default, low in (("CPUS", 2.0, 0.01), ("GPUS", 0.0, 0.0)):
        variable = f"MNIST_RAY_{name}_PER_JOB"
        text = environ.get(variable, "").strip()
        try:
            value = float(text) if text else default
        except ValueError:
            value = -1.0
        if not low <= value <= 1024:
            raise JobError(f"{variable}={text!r} is not a number of {name.lower()} (e.g. 2).")
        values.append(value)
    return values[0], values[1]


def connect(address: str) -> None:
    """Join the Ray cluster at `address` as a client of it (once per process).

    Raises JobError, saying what to check, when it cannot be reached.
    """
    _probe(address)  # also when connected already: the address may be another one
    if ray.is_initialized():
        return
    # Ray ends a driver whose head node has not answered for 60 s: here the driver is the web
    # server, which must outlive the cluster (its pages need none of it). Calls fail instead.
    os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", str(10 * 365 * 86400))
    try:
        ray.init(
            address=address,
            namespace=NAMESPACE,
            # Worker nodes import this package from the cluster, not from a shared disk.
            runtime_env={
                "py_modules": [str(PACKAGE_DIR)],
                "excludes": ["__pycache__", "*.pyc"],
                "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"},
            },
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except Exception as error:  # noqa: BLE001 - ConnectionError, RuntimeError, gRPC errors...
        raise JobError(UNREACHABLE.format(address=address, why=first_line(error))) from error


def _probe(address: str, timeout: float = 3.0) -> None:
    """Raise JobError at once when nothing listens at `address` (Ray itself would wait for
    the head node without end); `auto` is left to Ray, which finds local clusters quickly."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return
    except ValueError:
        why = "not HOST:PORT"
    except OSError as error:
        why = error.strerror or type(error).__name__
    raise JobError(UNREACHABLE.format(address=address, why=why))


def _head_node_strategy() -> Any:
    """Place the queue on the head node: it lives as long as the cluster does."""
    for node in ray.nodes():
        if node.get("Alive") and "node:__internal_head__" in node.get("Resources", {}):
            return NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
    return "DEFAULT"


@ray.remote(num_cpus=0, max_concurrency=64)
class JobQueue:
    """The cluster's training queue (one per cluster, named `QUEUE_NAME`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, dict[str, Any]] = {}  # job id -> JobRequest.to_json()
        self._states: dict[str, dict[str, Any]] = {}  # job id -> JobState.to_json()
        self._stops: set[str] = set()
        self._tasks: dict[str, tuple[Any, Any, Any]] = {}  # job id -> (state, packed run, Trainer)
        # Jobs without a trainer yet: job id -> (request, MNIST ref, extras, Ray options).
        self._waiting: dict[str, tuple[dict[str, Any], Any, dict[str, Any], dict[str, Any]]] = {}
        self._placing: dict[str, Any] = {}  # job id -> its trainer's readiness, until placed
        self._slots = 1  # trainings the cluster runs at once, as the latest submitter counted
        self._results: dict[str, tuple[Any, dict[str, Any]]] = {}  # waiting to be imported
        self._claims: dict[str, float] = {}
        self._sequence: dict[str, int] = {}  # the latest report of each job
        self._puts: dict[str, int] = {}
        self._data: dict[str, Any] = {}  # MNIST fingerprint -> object ref, newest last
        threading.Thread(target=self._watch, name="mnist-queue-watch", daemon=True).start()

    # --- data ---

    def has_data(self, fingerprint: str) -> bool:
        return fingerprint in self._data

    def datasets(self) -> dict[str, int]:
        """The data sets held (by fingerprint) and how often each was sent."""
        return {fingerprint: self._puts[fingerprint] for fingerprint in self._data}

    def put_data(self, fingerprint: str, data: Any) -> None:
        with self._lock:
            self._data[fingerprint] = ray.put(data)  # owned by this actor, shared by every job
            self._puts[fingerprint] = self._puts.get(fingerprint, 0) + 1
            while len(self._data) > 2:  # another MNIST file: keep the last two
                self._data.pop(next(iter(self._data)))

    # --- jobs ---

    def submit(
        self,
        requests: list[dict[str, Any]],
        fingerprint: str,
        extras: dict[str, Any],
        options: dict[str, Any],
        limits: dict[str, Any],
    ) -> str | None:
        """Queue `requests` (all or none) and start their tasks; None, or why not
        (`job_service.admission_error` with `limits`: `queue_limit`, `sweep_limit`, and
        `workers`, the trainings the cluster runs at once)."""
        with self._lock:
            problem = admission_error(
                self._statuses(limits["workers"]),
                requests[0]["owner"],
                count=len(requests),
                queue_limit=limits["queue_limit"],
                sweep_limit=limits["sweep_limit"] if requests[0].get("sweep_id") else None,
            )
            if problem is not None:
                return problem
            if fingerprint not in self._data:
                return "The cluster lost MNIST's arrays; submit the training again."
            for request in requests:
                job_id = request["job_id"]
                self._requests[job_id] = request
                self._states[job_id] = JobState(updated=time.time()).to_json()
                self._waiting[job_id] = (request, self._data[fingerprint], extras, options)
            self._slots = limits["workers"]
            self._start_next()
        return None

    def _start_next(self) -> None:
        """Make the trainers of the oldest waiting jobs: while the cluster has free slots,
        and then one at a time, each once the one before it has a node. Under the lock."""
        if self._placing:
            refs = list(self._placing.values())
            placed = set(ray.wait(refs, num_returns=len(refs), timeout=0)[0])
            self._placing = {j: ref for j, ref in self._placing.items() if ref not in placed}
        while self._waiting:
            made = sum(1 for job_id in self._tasks if job_id not in self._results)
            if self._placing and made >= self._slots:
                return  # no free slot: the next in line waits for room, the others for it
            job_id = min(self._waiting)  # ids sort in the order they were submitted
            request, data, extras, options = self._waiting.pop(job_id)
            trainer = Trainer.options(**options, max_restarts=0).remote()
            me = ray.get_runtime_context().current_actor
            refs = trainer.train.options(num_returns=2).remote(job_id, request, data, extras, me)
            self._tasks[job_id] = (*refs, trainer)
            self._placing[job_id] = trainer.__ray_ready__.remote()

    def trainers(self) -> list[str]:
        """The jobs that have a trainer (training, or waiting for room on a node), oldest
        first."""
        with self._lock:
            return sorted(self._tasks)

    def _statuses(self, workers: int) -> list[JobStatus]:
        """The jobs as the admission rule sees them: a queued job that a free worker slot is
        about to take (its task not started yet) counts as starting, not waiting."""
        statuses, free = [], workers
        free -= sum(1 for state in self._states.values() if state["state"] in ACTIVE)
        for job_id in sorted(self._requests):
            state = JobState.from_json(self._states[job_id])
            if state.state == "queued" and free > 0:
                state, free = replace(state, state="starting"), free - 1
            request = JobRequest.from_json(self._requests[job_id])
            statuses.append(JobStatus(request, state, None, job_id in self._stops))
        return statuses

    def snapshot(self) -> list[tuple[dict[str, Any], dict[str, Any], bool]]:
        """Every job, oldest first: (request, state, stop asked)."""
        with self._lock:
            return [
                (self._requests[j], self._states[j], j in self._stops)
                for j in sorted(self._requests)
            ]

    def stop(self, job_id: str) -> bool:
        """Ask a job to stop, or take a queued one out; False for an unknown job."""
        with self._lock:
            if job_id not in self._requests:
                return False
            self._stops.add(job_id)
            if self._waiting.pop(job_id, None) is not None:  # no trainer yet
                self._set(job_id, state="stopped")
                return True
            if job_id not in self._tasks or self._states[job_id]["state"] in FINAL:
                return True
            trainer = self._tasks[job_id][2]
            if self._states[job_id]["state"] == "queued":  # no training yet: end its actor
                ray.kill(trainer)
                self._set(job_id, state="stopped")
            else:
                trainer.stop.remote()
        return True

    def report(self, job_id: str, state: dict[str, Any], sequence: int) -> None:
        """A training's state, from its trainer; calls may arrive out of order."""
        with self._lock:
            if self._states.get(job_id, {}).get("state") in FINAL:
                return
            if sequence > self._sequence.get(job_id, -1):
                self._sequence[job_id] = sequence
                if state["state"] in FINAL:  # the trainer's last word: the queue says when
                    state = {**state, "state": "running"}  # (its run is in a store first)
                self._states[job_id] = {**state, "updated": time.time()}

    # --- results ---

    def claim_results(self) -> list[tuple[str, list[Any]]]:
        """Finished runs for a dashboard to add to its run store: (job id, [packed-run ref])."""
        now = time.time()
        with self._lock:
            claimed = [j for j in self._results if now - self._claims.get(j, 0.0) > CLAIM_SECONDS]
            for job_id in claimed:
                self._claims[job_id] = now
            return [(j, [self._results[j][0]]) for j in claimed]

    def imported(self, job_id: str, run_id: str | None, error: str | None = None) -> None:
        """The run of `job_id` is in the run store as `run_id` (or could not be added)."""
        with self._lock:
            if job_id not in self._results:
                return
            _, final = self._results.pop(job_id)
            self._claims.pop(job_id, None)
            if error is not None:
                final = {**final, "state": "failed", "error": error}
            self._states[job_id] = {**final, "run_id": run_id, "pid": None, "updated": time.time()}
            self._tasks.pop(job_id, None)

    # --- watching the tasks ---

    def _set(self, job_id: str, **changes: Any) -> None:
        self._states[job_id] = {**self._states[job_id], **changes, "updated": time.time()}

    def _watch(self) -> None:
        while True:
            with self._lock:
                self._start_next()
                running = {refs[0]: j for j, refs in self._tasks.items() if j not in self._results}
            if not running:
                time.sleep(0.25)
                continue
            done, _ = ray.wait(list(running), num_returns=len(running), timeout=0.5)
            for ref in done:
                self._finished(running[ref], ref)

    def _finished(self, job_id: str, ref: Any) -> None:
        # Under the lock throughout: `stop` kills a queued job's trainer, whose task then ends
        # at once, and marks the job stopped; read before that mark, the job would be failed.
        with self._lock:
            try:
                final = ray.get(ref)
            except ray.exceptions.RayError as error:
                if self._states[job_id]["state"] == "stopped":  # taken out of the queue
                    self._tasks.pop(job_id, None)
                    return
                epochs = len(self._states[job_id].get("history", {}).get("loss", []))
                if isinstance(error, ray.exceptions.RayTaskError):  # raised by the training
                    cause = getattr(error, "cause", None) or error
                    why = f"The training failed on the cluster: {first_line(cause)}"
                else:  # its actor, process or node went away
                    why = NODE_LOST.format(kind=type(error).__name__, epochs=epochs)
                final = {**self._states[job_id], "state": "failed", "error": why}
            ray.kill(self._tasks[job_id][2])  # its process ends: TensorFlow's memory goes back
            if final.get("packed"):  # a run to add to the store first
                final.pop("packed")
                self._results[job_id] = (self._tasks[job_id][1], {**final, "run_id": None})
                # Until then it reads as running at its last progress.
                self._set(job_id, state="running")
            else:
                self._states[job_id] = {**final, "pid": None, "updated": time.time()}
                self._tasks.pop(job_id, None)


@ray.remote(max_concurrency=2)  # train, and stop (or answer `__ray_ready__`) while it trains
class Trainer:
    """One training, in an actor of its own (a fresh process, ended by the queue afterwards)
    holding the job's CPUs and GPUs for its whole life. It reports to the queue without
    waiting for answers and is told to stop: a task that waited on the queue (`ray.get`)
    would lend its CPUs to the next job meanwhile."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def train(
        self, job_id: str, request: dict[str, Any], data: Any, extras: dict[str, Any], queue: Any
    ) -> tuple[dict[str, Any], bytes | None]:
        """Train one job on this node; (its final state, the packed run or None)."""
        from mnist_core.runs import PRETRAINED_DIR, RunStore, pack_run
        from mnist_core.worker import follow

        config = JobRequest.from_json(request).config
        sequence = iter(range(1 << 62))
        # TensorFlow would take every core of the node; this job was given `cpus` of them.
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0)
        for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            os.environ[variable] = str(max(1, round(cpus)))
        with tempfile.TemporaryDirectory(prefix="mnist-job-") as folder:
            store = RunStore(folder, pretrained=PRETRAINED_DIR)
            if extras.get("start_run"):  # under its own id, as the config names it
                store.add_packed(extras["start_run"], run_id=config.start_from)
            drawings = _Drawings(*extras["drawings"]) if extras.get("drawings") else None

            def report(state: JobState) -> None:  # its run id is this node's, not the store's
                queue.report.remote(job_id, replace(state, run_id=None).to_json(), next(sequence))

            final = follow(config, lambda: data, store, drawings, report, self._stop.is_set)
            packed = pack_run(store.root / final.run_id) if final.run_id else None
            return {**final.to_json(), "packed": packed is not None}, packed


class _Drawings:
    """The visitor's drawings, shipped with the job (what `train.prepare` asks of a set)."""

    def __init__(self, images: Any, labels: Any) -> None:
        self._arrays = (images, labels)

    def arrays(self) -> tuple[Any, Any]:
        return self._arrays


class RayJobs(JobService):
    """Trainings on the Ray cluster at `address`, whose runs land in `runs_dir`.

    `environ` (default this process's) gives `MNIST_PATH`, the queue limit and the resources
    per job; `resources` adds custom Ray resources each job asks for (e.g. to send jobs to
    nodes started with `--resources '{"trainer": 1}'`); `queue_name` names the queue actor
    (one queue per cluster unless told otherwise).
    """

    place = "on the training cluster"

    def __init__(
        self,
        runs_dir: str | os.PathLike[str],
        address: str,
        queue_limit: int | None = None,
        environ: dict[str, str] | None = None,
        resources: dict[str, float] | None = None,
        queue_name: str = QUEUE_NAME,
    ) -> None:
        from mnist_core.runs import PRETRAINED_DIR, RunStore

        self.address = address
        self.store = RunStore(runs_dir, pretrained=PRETRAINED_DIR)
        self.environ = environ if environ is not None else os.environ
        self.queue_limit = queue_limit if queue_limit is not None else max_queue(environ)
        self.sweep_limit = max_sweep(environ)
        self.cpus, self.gpus = resources_per_job(environ)
        self.resources = dict(resources or {})
        self.queue_name = queue_name
        self.workers = 1  # trainings the cluster runs at once: its CPUs or GPUs per job
        connect(address)
        self.queue = self._call(
            lambda: JobQueue.options(
                name=queue_name,
                namespace=NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
                scheduling_strategy=_head_node_strategy(),
            ).remote()
        )
        self._count_workers()

    # --- the backend's part of the interface ---

    def _queue(self, configs: list[TrainConfig], owner: str, sweep_id: str | None) -> list[str]:
        """Queue a training of each config on the cluster, all or none; their job ids.

        Raises JobError: `admission_error`'s reasons, missing data, or the cluster does not
        answer.
        """
        now, first = time.time(), time.time_ns()
        requests = [
            JobRequest(new_id(first + index), config, owner, now, sweep_id).to_json()
            for index, config in enumerate(configs)
        ]
        try:
            fingerprint = self._send_data()
            extras = self._extras(configs[0])  # a sweep's trials share start_from and drawings
        except MnistCoreError as error:  # no MNIST, a run to fine-tune that is gone or damaged
            raise JobError(str(error)) from error
        limits = {
            "queue_limit": self.queue_limit,
            "sweep_limit": self.sweep_limit,
            "workers": self.workers,
        }
        problem = self._ask(
            self.queue.submit, requests, fingerprint, extras, self._task_options(), limits
        )
        if problem:
            raise JobError(problem)
        return [request["job_id"] for request in requests]

    def jobs(self) -> list[JobStatus]:
        """Every job the cluster's queue knows, oldest first."""
        return in_line(
            [
                (JobRequest.from_json(request), JobState.from_json(state), stop)
                for request, state, stop in self._ask(self.queue.snapshot)
            ]
        )

    def stop(self, job_id: str) -> None:
        if not self._ask(self.queue.stop, job_id):
            raise JobError(f"training job {job_id!r} does not exist (the cluster restarted?)")

    # --- moving results into the run store ---

    def tick(self) -> None:
        """Add finished runs to the run store (whichever replica asks first does it), and
        count the cluster's slots again (nodes come and go)."""
        for job_id, (ref,) in self._ask(self.queue.claim_results):
            try:
                packed = ray.get(ref, timeout=ASK_SECONDS)
                run_id, error = self.store.add_packed(packed), None
            except Exception as failure:  # noqa: BLE001 - a lost object, a full disk...
                run_id, error = None, f"The run could not be saved here: {first_line(failure)}"
            self.queue.imported.remote(job_id, run_id, error)
        self._count_workers()

    # --- helpers ---

    def _task_options(self) -> dict[str, Any]:
        return {"num_cpus": self.cpus, "num_gpus": self.gpus, "resources": self.resources}

    def _count_workers(self) -> None:
        total = self._call(ray.cluster_resources)
        shares = [total.get("CPU", 0.0) / self.cpus]
        if self.gpus:
            shares.append(total.get("GPU", 0.0) / self.gpus)
        self.workers = max(1, int(min(shares)))

    def _send_data(self) -> str:
        """MNIST into the cluster's object store, unless it is there; its fingerprint."""
        from mnist_core.data import clear_cache, describe_source, load_mnist

        path = self.environ.get("MNIST_PATH") or None
        source = describe_source(path)
        fingerprint = _SENT.get(source)
        if fingerprint and self._ask(self.queue.has_data, fingerprint):
            return fingerprint
        data = load_mnist(path)  # raises DataError with what to do
        fingerprint = data.fingerprint
        if not self._ask(self.queue.has_data, fingerprint):
            self._ask(self.queue.put_data, fingerprint, data)
        _SENT[source] = fingerprint
        clear_cache()  # a web process keeps only the test digits
        return fingerprint

    def _extras(self, config: TrainConfig) -> dict[str, Any]:
        """What a job needs besides MNIST: the run it fine-tunes, the visitor's drawings."""
        from mnist_core.runs import pack_run

        extras: dict[str, Any] = {}
        if config.start_from:
            extras["start_run"] = pack_run(self.store.get(config.start_from).path)
        if config.drawings:
            from mnist_core.drawings import DrawingSet

            extras["drawings"] = DrawingSet().arrays()
        return extras

    def _ask(self, method: Any, *args: Any) -> Any:
        """Call a method of the queue actor and wait for its answer, at most `ASK_SECONDS`."""
        return self._call(lambda: ray.get(method.remote(*args), timeout=ASK_SECONDS))

    def _call(self, call: Any) -> Any:
        try:
            return call()
        except (ray.exceptions.RayError, ConnectionError) as error:
            raise JobError(
                UNREACHABLE.format(address=self.address, why=first_line(error))
            ) from error


_SENT: dict[str, str] = {}  # MNIST source -> fingerprint this process put into the cluster
