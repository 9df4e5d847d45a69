"""A training worker: `python -m mnist_core.worker JOB_FOLDER`, started by `job_service`.

It trains the job's config in this process, writes the job's state (progress, per-epoch
history) a few times a second, stops within about a second once a `stop` file appears in the
folder, saves the run under `$MNIST_RUNS_DIR` (with checkpoints at each better epoch, so a
worker that is killed leaves an interrupted run, and its epochs as TensorBoard event files as
they end) and writes the final state.

`follow` is the part both backends share: the Ray backend (`ray_jobs`) reports the same states
to its queue instead of a folder.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from mnist_core.job_service import JobState, read_request, write_state
from mnist_core.jobs import TRAINING_NICENESS

if TYPE_CHECKING:
    from mnist_core.config import TrainConfig
    from mnist_core.data import MnistData
    from mnist_core.drawings import Drawings
    from mnist_core.runs import RunStore

WRITE_INTERVAL_S = 0.25  # how often the state is reported and a stop looked for


def run(folder: Path) -> int:
    """Run the job in `folder` to its end; 0 when it finished or stopped, 1 when it failed."""
    from mnist_core.data import load_mnist
    from mnist_core.drawings import DrawingSet
    from mnist_core.runs import PRETRAINED_DIR, RunStore

    request = read_request(folder)
    # Fine-tuning may start from the pretrained run.
    store = RunStore(pretrained=PRETRAINED_DIR)

    def report(state: JobState) -> None:
        write_state(folder, replace(state, updated=time.time()))

    final = follow(
        request.config, load_mnist, store, DrawingSet(), report, (folder / "stop").exists
    )
    return 1 if final.state == "failed" else 0


def follow(
    config: TrainConfig,
    load_data: Callable[[], MnistData],
    store: RunStore,
    drawings: Drawings | None,
    report: Callable[[JobState], None],
    stop_asked: Callable[[], bool],
) -> JobState:
    """Train `config` in this process and `report` its state whenever it changes (at most
    every `WRITE_INTERVAL_S`), stopping once `stop_asked()`; the final state.

    The run is saved in `store` (`runs.RunStore`), with checkpoints at each better epoch and
    its epochs as TensorBoard event files written as they end; `drawings` is the `DrawingSet`
    a config with `drawings` mixes in.
    """
    from mnist_core.jobs import TrainingJob
    from mnist_core.runs import RunRecorder

    if hasattr(os, "nice"):  # every thread of this process, TensorFlow's too: pages first
        os.nice(TRAINING_NICENESS)
    recorder = RunRecorder(store)  # checkpoints survive this process being killed
    job = TrainingJob(
        config,
        load_data,
        on_done=recorder.finish,
        on_checkpoint=recorder.checkpoint,
        on_failure=recorder.abandon,
        reserve_logs=recorder.reserve_logs,
        store=store,
        drawings=drawings,
    ).start()
    reported = None
    while True:
        if stop_asked():
            job.stop()
        ended = not job.running
        snapshot = job.snapshot()
        state = JobState(
            state=snapshot["state"],
            pid=None if ended else os.getpid(),
            progress=snapshot["progress"],
            history=snapshot["history"],
            error=snapshot["error"],
            run_id=snapshot["run_id"] or recorder.run_id,
        )
        if state != reported:
            report(state)
            reported = state
        if ended:
            return state
        job.join(WRITE_INTERVAL_S)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m mnist_core.worker JOB_FOLDER")
    sys.exit(run(Path(sys.argv[1])))
