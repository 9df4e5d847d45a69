"""Tests for mnist_core.job_service, mnist_core.worker and mnist_core.ray_jobs: the queue, stop,
cancel, a killed worker and a restarted server, with real worker processes training on small
synthetic digits. The contract tests (`service` fixture) run against both backends: worker
processes here, and a Ray cluster on loopback."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mnist_core import job_service
from mnist_core.config import TrainConfig
from mnist_core.job_service import (
    WORKER_DIED,
    JobError,
    JobRequest,
    JobState,
    JobStatus,
    LocalJobs,
    admission_error,
    max_queue,
    max_workers,
)
from mnist_core.progress import ProgressEvent
from mnist_core.runs import RunStore

# A worker imports TensorFlow (3-6 s on a busy 2-core machine) before it trains.
TIMEOUT = 120.0


@pytest.fixture
def environ(data_file: Path) -> dict[str, str]:
    """The workers' environment: the small synthetic digits as MNIST."""
    return {**os.environ, "MNIST_PATH": str(data_file), "TF_CPP_MIN_LOG_LEVEL": "2"}


def queue_name() -> str:
    """A Ray queue of the test's own, apart from every other test's."""
    return f"test-queue-{uuid.uuid4().hex[:8]}"


def make_service(request: pytest.FixtureRequest, runs_dir: Path, environ, queue_limit: int):
    """A job service of the backend `request.param` names ("local" or "ray"), running one
    training at a time; a Ray one gets a queue of its own, removed after the test."""
    if request.param == "local":
        return LocalJobs(runs_dir, workers=1, queue_limit=queue_limit, environ=environ)
    import ray

    from mnist_core.ray_jobs import RayJobs

    address = request.getfixturevalue("ray_head")  # 2 CPUs, 2 per job: one at a time
    service = RayJobs(runs_dir, address, queue_limit, environ=environ, queue_name=queue_name())
    request.addfinalizer(lambda: _end_queue(service, ray))
    return service


def _end_queue(service, ray) -> None:
    for status in service.jobs():
        if status.active:
            service.stop(status.job_id)
    deadline = time.monotonic() + 60
    while any(s.active for s in service.jobs()) and time.monotonic() < deadline:
        service.tick()
        time.sleep(0.2)
    ray.kill(service.queue)


BACKENDS = pytest.mark.parametrize("service", ["local", "ray"], indirect=True)


@pytest.fixture
def service(request: pytest.FixtureRequest, runs_dir: Path, environ: dict[str, str]):
    if not hasattr(request, "param"):  # the tests of worker processes alone
        request.param = "local"
    return make_service(request, runs_dir, environ, queue_limit=10)


@pytest.fixture
def long_config(small_config):
    """Enough epochs to be stopped or killed while it runs (about 12 batches each)."""
    return small_config.replace(epochs=200)


def wait_until(service: LocalJobs, done: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Move the queue on, as the server's scheduler thread does, until `done()`."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, [(s.job_id, s.current) for s in service.jobs()]
        service.tick()
        time.sleep(0.1)


@BACKENDS
def test_jobs_run_one_at_a_time_first_in_first_out(service, small_config, runs_dir: Path) -> None:
    first = service.submit(small_config, owner="ada")
    second = service.submit(small_config.replace(seed=8), owner="bob")

    wait_until(service, lambda: service.status(first).state in ("starting", "running"))
    queued = service.status(second)
    assert (queued.state, queued.position, queued.current.pid) == ("queued", 1, None)

    wait_until(service, lambda: service.status(first).state == "finished")
    wait_until(service, lambda: service.status(second).state == "finished")
    for job_id, seed in ((first, 7), (second, 8)):
        done = service.status(job_id)
        assert done.current.error is None and done.position is None
        assert [len(done.current.history[k]) for k in ("loss", "val_loss")] == [3, 3]
        run = RunStore(runs_dir).get(done.current.run_id)
        assert run.config.seed == seed and run.status == "completed"
        assert run.history["loss"] == pytest.approx(done.current.history["loss"], rel=1e-6)
        # Written by the worker as it trained; on Ray, packed on the node with the run.
        assert sorted(path.name for path in run.log_dir.iterdir()) == ["train", "validation"]
    # The second started only after the first had ended.
    assert service.status(second).request.submitted > service.status(first).request.submitted
    assert [s.job_id for s in service.jobs()] == [first, second]


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_one_job_per_visitor_and_a_bounded_queue(
    request: pytest.FixtureRequest, backend: str, runs_dir: Path, environ, long_config
) -> None:
    request.param = backend
    service = make_service(request, runs_dir, environ, queue_limit=1)
    running = service.submit(long_config, owner="ada")
    service.submit(long_config, owner="bob")  # waits

    with pytest.raises(JobError, match="You already have a training waiting or running"):
        service.submit(long_config, owner="ada")
    with pytest.raises(JobError, match=r"The queue is full \(1 trainings waiting"):
        service.submit(long_config, owner="cy")

    for status in service.jobs():
        service.stop(status.job_id)
    wait_until(service, lambda: all(not s.active for s in service.jobs()))
    assert service.status(running).state == "stopped"


@BACKENDS
def test_a_queued_job_is_cancelled_without_ever_starting(
    service, long_config, runs_dir: Path
) -> None:
    running = service.submit(long_config, owner="ada")
    waiting = service.submit(long_config, owner="bob")

    service.cancel(waiting)

    cancelled = service.status(waiting)
    assert (cancelled.state, cancelled.current.pid, cancelled.current.run_id) == (
        "stopped",
        None,
        None,
    )
    service.stop(running)
    # Stopped the moment its trainer starts (on Ray: its actor killed while the queue still
    # reads it as queued), it ends stopped, not "lost": the queue's watcher once read the job's
    # state between the kill and the mark.
    wait_until(service, lambda: not service.status(running).active)
    assert service.status(running).state == "stopped", service.status(running).current.error
    assert service.status(waiting).current.history["loss"] == []  # never trained
    if isinstance(service, LocalJobs):
        assert not (runs_dir / ".jobs" / waiting / "worker.log").exists()  # never launched


@BACKENDS
def test_a_stop_reaches_the_worker_within_a_second_and_keeps_the_run(
    service, long_config, runs_dir: Path
) -> None:
    job_id = service.submit(long_config, owner="ada")
    wait_until(service, lambda: len(service.status(job_id).current.history["loss"]) >= 2)

    asked = time.monotonic()
    service.stop(job_id)
    wait_until(service, lambda: service.status(job_id).state != "running", timeout=30)
    reacted = time.monotonic() - asked

    stopped = service.status(job_id)
    assert stopped.state == "stopped" and stopped.stop_requested
    # The worker looks every 0.25 s and training checks between batches (a few ms each here);
    # the final state is written after the run is saved, which takes longer.
    assert reacted < 15, reacted
    run = RunStore(runs_dir).get(stopped.current.run_id)
    assert run.status == "stopped" and run.metrics.epochs_run < 200


def test_a_killed_worker_fails_its_job_and_the_next_one_starts(
    service: LocalJobs, long_config, small_config
) -> None:
    doomed = service.submit(long_config, owner="ada")
    after = service.submit(small_config, owner="bob")
    wait_until(service, lambda: len(service.status(doomed).current.history["loss"]) >= 1)

    os.kill(service.status(doomed).current.pid, signal.SIGKILL)
    wait_until(service, lambda: service.status(doomed).state == "failed", timeout=10)

    failed = service.status(doomed).current
    epochs = len(failed.history["loss"])
    assert failed.error == WORKER_DIED.format(epochs=epochs) and failed.pid is None
    assert "smaller batch size" in failed.error
    wait_until(service, lambda: service.status(after).state == "finished")


def test_a_restarted_server_finds_its_running_worker_again(
    service: LocalJobs, long_config, runs_dir: Path, environ: dict[str, str]
) -> None:
    job_id = service.submit(long_config, owner="ada")
    wait_until(service, lambda: service.status(job_id).state == "running")
    pid = service.status(job_id).current.pid

    restarted = LocalJobs(runs_dir, workers=1, environ=environ)  # knows no child processes
    restarted.tick()

    found = restarted.status(job_id)
    assert (found.state, found.current.pid) == ("running", pid)
    restarted.stop(job_id)
    wait_until(restarted, lambda: restarted.status(job_id).state == "stopped")


def test_a_worker_whose_process_is_gone_after_a_restart_is_failed(
    service: LocalJobs, small_config, runs_dir: Path
) -> None:
    """A state that names a process that no longer exists (the machine rebooted)."""
    job_id = service.submit(small_config, owner="ada")
    wait_until(service, lambda: service.status(job_id).state == "finished")
    folder = runs_dir / ".jobs" / job_id
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    state = JobState(state="running", pid=int(gone.stdout), history={"loss": [0.5]})
    (folder / "state.json").write_text(json.dumps(state.to_json()))

    LocalJobs(runs_dir).tick()

    assert service.status(job_id).current.error == WORKER_DIED.format(epochs=1)


def test_job_state_round_trips_through_json() -> None:
    event = ProgressEvent(2, 5, 3, 12, {"loss": 0.5}, 1.5, 9.0, epoch_end=True)
    state = JobState("running", 123, event, {"loss": [1.0, 0.5]}, None, "r1", 10.0)

    again = JobState.from_json(json.loads(json.dumps(state.to_json())))

    assert again.progress == event and again.history["loss"] == [1.0, 0.5]
    assert again.history["val_loss"] == [] and (again.pid, again.run_id) == (123, "r1")


@pytest.mark.parametrize(
    ("value", "workers", "queue"), [(None, 1, 10), ("3", 3, 3), ("0", 1, 10), ("many", 1, 10)]
)
def test_worker_and_queue_limits_from_the_environment(value, workers: int, queue: int) -> None:
    environ = {} if value is None else {"MNIST_WORKERS": value, "MNIST_MAX_QUEUE": value}
    assert (max_workers(environ), max_queue(environ)) == (workers, queue)


@pytest.fixture
def second_node(ray_head: str, tmp_path: Path):
    """A second node joined to the head on loopback, with 1 CPU and a `spare` resource that
    only it has; the test may end it."""
    import ray

    from mnist_core.ray_jobs import connect
    from tests.ray_cluster import worker_node

    connect(ray_head)
    with worker_node(tmp_path, ray_head, cpus=1, resources={"spare": 1}) as process:
        deadline = time.monotonic() + 60
        while sum(1 for n in ray.nodes() if n["Alive"]) < 2:
            assert time.monotonic() < deadline, ray.nodes()
            time.sleep(0.2)
        yield process


def spare_node_service(runs_dir: Path, address: str, environ) -> Any:
    from mnist_core.ray_jobs import RayJobs

    environ = {**environ, "MNIST_RAY_CPUS_PER_JOB": "1"}
    return RayJobs(
        runs_dir, address, environ=environ, resources={"spare": 1}, queue_name=queue_name()
    )


def test_a_job_runs_on_a_second_node_and_its_run_lands_here(
    second_node, ray_head: str, runs_dir: Path, environ, small_config
) -> None:
    import ray

    service = spare_node_service(runs_dir, ray_head, environ)
    job_id = service.submit(small_config, owner="ada")
    wait_until(service, lambda: service.status(job_id).current.run_id is not None)

    done = service.status(job_id)
    assert done.state == "finished" and len(done.current.history["loss"]) == 3
    run = RunStore(runs_dir).get(done.current.run_id)  # packed on that node, added here
    assert run.status == "completed" and run.onnx_path.is_file()
    assert run.history["loss"] == pytest.approx(done.current.history["loss"], rel=1e-6)
    ray.kill(service.queue)


def test_a_node_lost_mid_job_fails_the_job_and_the_queue_goes_on(
    second_node, ray_head: str, runs_dir: Path, environ, long_config, small_config
) -> None:
    import ray

    from mnist_core.ray_jobs import RayJobs
    from tests.ray_cluster import end

    service = spare_node_service(runs_dir, ray_head, environ)
    doomed = service.submit(long_config, owner="ada")
    wait_until(service, lambda: len(service.status(doomed).current.history["loss"]) >= 1)

    end(second_node, grace=0)  # the machine is gone: SIGKILL to the node and its workers
    wait_until(service, lambda: service.status(doomed).state == "failed", timeout=90)

    failed = service.status(doomed).current
    assert "node running this training was lost" in failed.error
    assert f"after {len(failed.history['loss'])} epoch(s)" in failed.error
    # The queue lives on the head node: the next training (on the head) runs.
    on_head = RayJobs(runs_dir, ray_head, environ=environ, queue_name=service.queue_name)
    after = on_head.submit(small_config, owner="bob")
    wait_until(on_head, lambda: on_head.status(after).current.run_id is not None)
    assert on_head.status(after).state == "finished"
    ray.kill(service.queue)


# --- sweeps: several jobs of one owner, admitted together ---


def status_of(owner: str, state: str, sweep_id: str | None = None) -> JobStatus:
    request = JobRequest(f"job-{owner}-{state}", TrainConfig(), owner, 0.0, sweep_id)
    return JobStatus(request, JobState(state=state), 1 if state == "queued" else None, False)


@pytest.mark.parametrize(
    ("statuses", "count", "message"),
    [
        ([], 6, None),
        ([status_of("ada", "finished", "s0"), status_of("bob", "running")], 2, None),
        (
            [status_of("ada", "running")],
            1,
            "You already have a training waiting or running; stop or cancel it first.",
        ),
        (
            [status_of("ada", "queued", "s1")],
            1,
            "You already have a sweep waiting or running; stop it or let it finish first.",
        ),
        (
            [status_of("ada", "running", "s1")],
            3,
            "You already have a sweep waiting or running; stop it or let it finish first.",
        ),
        ([status_of(f"v{n}", "queued") for n in range(7)], 3, None),  # 7 + 3 = 10 waiting
        (
            [status_of(f"v{n}", "queued") for n in range(8)],
            3,
            "The queue has room for 2 more trainings, not the 3 trials of this sweep; try again "
            "when some have started, or remove some values.",
        ),
        (
            [status_of(f"v{n}", "queued") for n in range(10)],
            1,
            "The queue is full (10 trainings waiting, the most this server takes); try again "
            "when one has started.",
        ),
        (
            [],
            11,
            "This server queues at most 10 trainings, fewer than the 11 trials of this sweep; "
            "remove some values.",
        ),
    ],
)
def test_admission_one_job_or_one_sweep_per_owner_and_waiting_trials_count(
    statuses: list[JobStatus], count: int, message: str | None
) -> None:
    assert admission_error(statuses, "ada", count=count, queue_limit=10) == message


def test_admission_refuses_a_sweep_above_its_cap() -> None:
    assert admission_error([], "ada", count=7, queue_limit=10, sweep_limit=6) == (
        "A sweep of 7 trials is more than this server takes (6, MNIST_MAX_SWEEP); remove some "
        "values."
    )
    assert admission_error([], "ada", count=6, queue_limit=10, sweep_limit=6) is None


@pytest.fixture
def idle_service(runs_dir: Path) -> LocalJobs:
    """A queue with no worker: jobs wait, nothing trains."""
    return LocalJobs(runs_dir, workers=0, queue_limit=5, sweep_limit=4)


def test_a_sweep_queues_every_trial_under_one_id_in_order(
    idle_service: LocalJobs, small_config
) -> None:
    configs = [small_config.replace(learning_rate=rate) for rate in (0.001, 0.003, 0.01)]

    sweep_id = idle_service.submit_sweep(configs, owner="ada")

    trials = idle_service.sweep(sweep_id)
    assert [t.request.config.learning_rate for t in trials] == [0.001, 0.003, 0.01]
    assert [(t.state, t.position, t.request.sweep_id) for t in trials] == [
        ("queued", 1, sweep_id),
        ("queued", 2, sweep_id),
        ("queued", 3, sweep_id),
    ]
    assert [t.job_id for t in idle_service.jobs()] == [t.job_id for t in trials]
    with pytest.raises(JobError, match="You already have a sweep waiting or running"):
        idle_service.submit(small_config, owner="ada")
    with pytest.raises(JobError, match="You already have a sweep waiting or running"):
        idle_service.submit_sweep(configs, owner="ada")
    with pytest.raises(JobError, match=r"The queue has room for 2 more trainings, not the 3"):
        idle_service.submit_sweep(configs, owner="bob")
    with pytest.raises(JobError, match=r"A sweep of 5 trials is more than this server takes \(4"):
        idle_service.submit_sweep([small_config] * 5, owner="cy")
    with pytest.raises(JobError, match="A sweep needs at least one trial"):
        idle_service.submit_sweep([], owner="cy")
    assert len(idle_service.jobs()) == 3  # the refused sweeps left nothing behind
    with pytest.raises(JobError, match="sweep 'nope' does not exist"):
        idle_service.sweep("nope")


def test_a_sweep_is_queued_whole_or_not_at_all(
    idle_service: LocalJobs, small_config, runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write, writes = job_service._write_atomic, []

    def write_then_fail(path: Path, value: object) -> None:
        writes.append(path)
        if len(writes) == 5:  # the third trial's state.json: the disk is full
            raise OSError(28, "No space left on device")
        real_write(path, value)

    monkeypatch.setattr(job_service, "_write_atomic", write_then_fail)
    with pytest.raises(OSError, match="No space left"):
        idle_service.submit_sweep([small_config] * 3, owner="ada")

    assert idle_service.jobs() == []
    assert sorted(path.name for path in (runs_dir / ".jobs").iterdir()) == ["lock"]
    monkeypatch.setattr(job_service, "_write_atomic", real_write)
    assert len(idle_service.sweep(idle_service.submit_sweep([small_config] * 3, "ada"))) == 3


def test_a_job_file_written_before_sweeps_still_loads(
    idle_service: LocalJobs, small_config
) -> None:
    job_id = idle_service.submit(small_config, owner="ada")
    job_file = idle_service.root / job_id / "job.json"
    old = json.loads(job_file.read_text())
    del old["sweep_id"]
    job_file.write_text(json.dumps(old))

    loaded = idle_service.status(job_id)
    assert (loaded.request.sweep_id, loaded.request.config) == (None, small_config)


def test_mnist_goes_to_the_cluster_once_for_every_job_and_replica(
    ray_head: str, runs_dir: Path, environ, small_config
) -> None:
    import ray

    from mnist_core import ray_jobs
    from mnist_core.ray_jobs import RayJobs

    name = queue_name()
    first = RayJobs(runs_dir, ray_head, environ=environ, queue_name=name)
    jobs = [first.submit(small_config, owner="ada")]
    ray_jobs._SENT.clear()  # a second replica: a process that has sent nothing yet
    second = RayJobs(runs_dir, ray_head, environ=environ, queue_name=name)
    jobs.append(second.submit(small_config.replace(seed=8), owner="bob"))
    wait_until(first, lambda: all(first.status(j).current.run_id for j in jobs))

    assert list(ray.get(first.queue.datasets.remote()).values()) == [1]  # sent once
    assert [s.job_id for s in second.jobs()] == jobs  # one queue, seen by both
    ray.kill(first.queue)


@BACKENDS
def test_a_sweeps_trials_all_land_as_runs(service, small_config, runs_dir: Path) -> None:
    rates = (0.01, 0.003)
    sweep_id = service.submit_sweep(
        [small_config.replace(learning_rate=rate) for rate in rates], owner="ada"
    )
    wait_until(service, lambda: all(t.current.run_id for t in service.sweep(sweep_id)))

    trials = service.sweep(sweep_id)
    assert [t.state for t in trials] == ["finished", "finished"]
    runs = [RunStore(runs_dir).get(t.current.run_id) for t in trials]
    assert [run.config.learning_rate for run in runs] == list(rates)
    assert all(len(run.history["val_accuracy"]) == 3 for run in runs)


@BACKENDS
def test_stopping_a_sweep_stops_its_running_trial_and_cancels_the_waiting_ones(
    service, long_config, runs_dir: Path
) -> None:
    other = service.submit(long_config.replace(epochs=1), owner="bob")  # not part of the sweep
    sweep_id = service.submit_sweep([long_config, long_config.replace(seed=8)], owner="ada")
    wait_until(service, lambda: service.status(other).state == "finished")
    first, second = service.sweep(sweep_id)
    wait_until(service, lambda: len(service.status(first.job_id).current.history["loss"]) >= 1)
    assert service.status(second.job_id).state == "queued"  # one worker: it waits

    service.stop_sweep(sweep_id)
    wait_until(service, lambda: not any(t.active for t in service.sweep(sweep_id)))

    first, second = service.sweep(sweep_id)
    assert (first.state, second.state) == ("stopped", "stopped")
    assert RunStore(runs_dir).get(first.current.run_id).status == "stopped"
    assert second.current.run_id is None and second.current.history["loss"] == []
    if isinstance(service, LocalJobs):
        assert not (runs_dir / ".jobs" / second.job_id / "worker.log").exists()  # never started
    assert service.status(other).state == "finished" and not service.status(other).stop_requested


@pytest.mark.parametrize("service", ["ray"], indirect=True)
def test_on_ray_trainings_start_in_the_order_they_were_queued(service, long_config) -> None:
    """Ray does not promise to place waiting actors in the order they were made, so the queue
    makes a trainer only for the job next in line while one trains (one slot here)."""
    import ray

    jobs = [service.submit(long_config.replace(seed=s), owner=f"visitor {s}") for s in range(4)]

    def training(index: int) -> bool:  # its first epoch done, the ones before it over
        before = any(service.status(j).active for j in jobs[:index])
        return len(service.status(jobs[index]).current.history["loss"]) >= 1 and not before

    for index, job_id in enumerate(jobs):
        wait_until(service, functools.partial(training, index))
        states = [service.status(j).state for j in jobs]
        assert states == ["stopped"] * index + ["running"] + ["queued"] * (3 - index)
        assert ray.get(service.queue.trainers.remote()) == jobs[index : index + 2]
        service.stop(job_id)


@pytest.mark.parametrize("service", ["ray"], indirect=True)
def test_on_ray_a_training_no_node_can_hold_holds_up_the_line_until_it_is_stopped(
    service, runs_dir: Path, environ, small_config
) -> None:
    from mnist_core.ray_jobs import RayJobs

    nowhere = RayJobs(
        runs_dir,
        service.address,
        environ=environ,
        resources={"gpu-x": 1},
        queue_name=service.queue_name,
    )
    stuck = nowhere.submit(small_config, owner="ada")  # no node has a "gpu-x"
    after = service.submit(small_config, owner="bob")
    time.sleep(4)  # a trainer with room starts in about a second
    service.tick()
    assert [service.status(j).state for j in (stuck, after)] == ["queued", "queued"]

    service.stop(stuck)
    wait_until(service, lambda: service.status(after).state == "finished")
    assert service.status(stuck).state == "stopped"
    assert RunStore(runs_dir).get(service.status(after).current.run_id).status == "completed"


def test_on_ray_a_missing_run_to_fine_tune_or_missing_data_is_a_job_error(
    ray_head: str, runs_dir: Path, environ, small_config
) -> None:
    import ray

    from mnist_core.ray_jobs import RayJobs

    name = queue_name()
    service = RayJobs(runs_dir, ray_head, environ=environ, queue_name=name)
    gone = small_config.replace(start_from="20260101-000000-mlp-abcdef")
    with pytest.raises(JobError, match="does not exist"):
        service.submit(gone, owner="ada")
    elsewhere = {**environ, "MNIST_PATH": "/nowhere.npz"}
    no_data = RayJobs(runs_dir, ray_head, environ=elsewhere, queue_name=name)
    with pytest.raises(JobError, match="/nowhere.npz"):
        no_data.submit(small_config, owner="bob")
    assert service.jobs() == []
    ray.kill(service.queue)


HEAD_LOST = """
import sys, time
from pathlib import Path
from mnist_core.job_service import JobError
from mnist_core.ray_jobs import RayJobs
from tests.ray_cluster import HEADS, end, head_node

folder = Path(sys.argv[1])
with head_node(folder) as address:
    service = RayJobs(folder / "runs", address).start()
    assert service.jobs() == []
    end(HEADS[address], grace=0)  # the head node's machine is gone
    time.sleep(70)  # Ray ends a driver whose head is silent for 60 s, unless told otherwise
    try:
        service.jobs()
    except JobError as error:
        print("still serving:", error)
"""


@pytest.mark.slow
def test_a_web_server_outlives_its_clusters_head_node(tmp_path: Path) -> None:
    """The dashboard is a Ray driver: when the head node goes, its pages go on and the Train
    page says the cluster does not answer (Ray would end the process after 60 s)."""
    done = subprocess.run(
        [sys.executable, "-c", HEAD_LOST, str(tmp_path)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert "still serving: The Ray cluster at 127.0.0.2:" in done.stdout, done.stderr[-2000:]
    assert "does not answer" in done.stdout and done.returncode == 0
