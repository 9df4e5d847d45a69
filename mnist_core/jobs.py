"""Training in a background thread that others can watch and stop: a worker process's job.

`mnist_core.worker` runs one in its process and reports it to the job service. This module does
not import TensorFlow: the thread does, so the worker reports "starting" at once.
"""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnist_core.config import TrainConfig
from mnist_core.progress import HISTORY_KEYS, ProgressEvent

if TYPE_CHECKING:
    from mnist_core.data import MnistData
    from mnist_core.drawings import Drawings
    from mnist_core.ml.train import TrainResult
    from mnist_core.runs import RunStore

# Niceness of a background training's threads: on a small server, the pages that visitors are
# using (sketch predictions, page runs) get the CPU first and training takes what is left.
TRAINING_NICENESS = 10


@dataclass
class TrainingJob:
    """A training run in a background thread, safe to watch from other threads.

    The thread never touches any user interface: it only updates this object, which a UI
    polls (`snapshot()`) and can ask to stop (`stop()`). `on_done(result)` runs in the thread
    after training to save the run; the id it returns is kept as `run_id`.
    `on_checkpoint(result)` is passed to `train` (see there) and `on_failure()` runs when
    training or `on_done` fails: together they let a `runs.RunRecorder` keep the best model
    of a run that never finishes. `reserve_logs(architecture)` gives `train` its `log_dir`,
    where the epochs go as TensorBoard event files (`RunRecorder.reserve_logs`).
    """

    config: TrainConfig
    load_data: Callable[[], MnistData]
    on_done: Callable[[TrainResult], str] | None = None
    on_checkpoint: Callable[[TrainResult], None] | None = None
    on_failure: Callable[[], None] | None = None
    reserve_logs: Callable[[str], Path] | None = None
    store: RunStore | None = None  # the runs to fine-tune (`config.start_from`)
    drawings: Drawings | None = None  # the drawings to mix in (`config.drawings`)
    state: str = "starting"  # starting -> running -> finished | stopped | failed
    progress: ProgressEvent | None = None
    history: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in HISTORY_KEYS})
    result: TrainResult | None = None
    run_id: str | None = None  # the saved run's, once `on_done` has returned it
    error: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> TrainingJob:
        self._thread = threading.Thread(target=self._run, name="mnist-training", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask training to stop; it ends within about a second, keeping the best weights."""
        self._stop.set()

    @property
    def running(self) -> bool:
        return self.state in ("starting", "running")

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of the job's state, for rendering."""
        with self._lock:
            return {
                "state": self.state,
                "progress": self.progress,
                "history": {k: list(v) for k, v in self.history.items()},
                "error": self.error,
                "run_id": self.run_id,
                "stop_requested": self._stop.is_set(),
            }

    def _on_progress(self, event: ProgressEvent) -> None:
        if self.progress is None:  # the first batch: TensorFlow's threads exist by now
            lower_priority_of_tensorflow()
        with self._lock:
            self.state = "running"
            self.progress = event
            if event.epoch_end:
                for key in HISTORY_KEYS:
                    if key in event.metrics:
                        self.history[key].append(event.metrics[key])

    def _run(self) -> None:
        _lower_priority(threading.get_native_id())
        try:
            data = self.load_data()  # first: a missing data set is reported in milliseconds
            from mnist_core.ml.train import prepare, train

            data, initial_weights = prepare(self.config, data, self.store, self.drawings)
            # Here, not by the caller: a run store it cannot write to fails this job, with
            # the reason, like a failed save.
            architecture = self.config.architecture
            log_dir = self.reserve_logs(architecture) if self.reserve_logs is not None else None
            result = train(
                self.config,
                data,
                self._on_progress,
                self._stop.is_set,
                on_checkpoint=self.on_checkpoint,
                initial_weights=initial_weights,
                log_dir=log_dir,
            )
            run_id = self.on_done(result) if self.on_done is not None else None
            with self._lock:
                self.result, self.run_id = result, run_id
                self.state = "stopped" if result.stopped else "finished"
        except Exception as error:  # noqa: BLE001 - reported to the UI instead of lost
            message = str(error) or type(error).__name__
            with self._lock:
                self.error = message
                self.state = "failed"
            traceback.print_exc()
            if self.on_failure is not None:
                self.on_failure()


def lower_priority_of_tensorflow() -> None:
    """Give TensorFlow's worker threads (named `tf_*`) `TRAINING_NICENESS`, on Linux.

    Raising a niceness needs no privilege, lowering it does: they keep it, which only matters
    when the machine is busy, and then pages should come first anyway.
    """
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:  # not Linux: priorities stay as they are
        return
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm", encoding="utf-8") as handle:
                name = handle.read().strip()
        except OSError:  # the thread ended meanwhile
            continue
        if name.startswith("tf_"):
            _lower_priority(int(task))


def _lower_priority(thread_id: int) -> None:
    """Raise one thread's niceness to `TRAINING_NICENESS` (Linux: niceness is per thread)."""
    try:
        if os.getpriority(os.PRIO_PROCESS, thread_id) < TRAINING_NICENESS:
            os.setpriority(os.PRIO_PROCESS, thread_id, TRAINING_NICENESS)
    except (OSError, AttributeError):  # gone, not allowed, or no such call on this system
        pass
