"""TensorBoard event files of a run's epochs, so `tensorboard --logdir runs/` shows every run.

Layout and names are those of Keras' `TensorBoard` callback, so that a Keras user finds what
they know and a metric's training and validation curves overlay in one chart: `train/` and
`validation/` under the run's `logs/` folder, tags `epoch_loss` and `epoch_accuracy` (the
validation ones without their `val_`), one point per finished epoch. The step is the epoch
counted from 1, as everywhere else here (history CSV, best epoch); Keras counts from 0.

Written with TensorFlow's own `tf.summary` file writer. `tf.summary.scalar` is TensorBoard's
code in TensorFlow 2.21 and fails without the `tensorboard` package, so the scalars go through
`tf.summary.write` with the metadata that TensorBoard's scalar plugin gives them: training
needs no more than TensorFlow, and TensorBoard is needed only to look at the files.

TensorFlow side: training processes and the command line import this module, the web process
never does.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from mnist_core.runs import RunInfo

TRAIN_LOGS = "train"  # loss, accuracy
VALIDATION_LOGS = "validation"  # val_loss, val_accuracy, under the same tags as training's
# What `tf.summary.scalar` writes with TensorBoard installed: a value of the scalars plugin,
# whose plugin data (version 0) serialises to nothing; TensorBoard infers the data class.
SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
)


class EpochLog:
    """Event files under `log_dir` that grow by one point per metric as each epoch finishes.

    A folder (`train/`, `validation/`) and its file are made when its first metric arrives:
    a training without a validation split has no `validation/`.
    """

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        self.log_dir = Path(log_dir)
        self._writers: dict[str, Any] = {}  # folder name -> tf.summary writer

    def write(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Add the scalars of the 1-based `epoch` (`loss`, `val_accuracy`, ... as in a run's
        history) as float32, and flush them, so that TensorBoard shows the epoch at once."""
        for name, value in metrics.items():
            validation = name.startswith("val_")
            folder = VALIDATION_LOGS if validation else TRAIN_LOGS
            with self._writer(folder).as_default():
                tf.summary.write(
                    f"epoch_{name.removeprefix('val_')}",
                    tf.constant(value, tf.float32),
                    step=epoch,
                    metadata=SCALAR_METADATA,
                )
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        """Flush and close the files; a later `write` opens new ones beside them."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def _writer(self, folder: str) -> Any:
        if folder not in self._writers:
            self._writers[folder] = tf.summary.create_file_writer(str(self.log_dir / folder))
        return self._writers[folder]


def write_history(log_dir: str | os.PathLike[str], history: Mapping[str, Sequence[float]]) -> int:
    """Write every epoch of `history` (a run's history.json: metric -> one value per epoch)
    to event files under `log_dir`; the number of epochs (0: nothing is written)."""
    epochs = max((len(values) for values in history.values()), default=0)
    log = EpochLog(log_dir)
    try:
        for index in range(epochs):
            # A run without a validation split has empty `val_*` lists.
            scores = {
                name: values[index] for name, values in history.items() if index < len(values)
            }
            log.write(index + 1, scores)
    finally:
        log.close()
    return epochs


def write_run_logs(run: RunInfo) -> int:
    """Give a saved run that has no event files (saved before runs had them, or imported from
    a bundle) the ones its history.json describes; the number of epochs written.

    They are written under a hidden name in the run store (removed an hour later if this
    process is killed, like any leftover) and renamed into the run's folder when complete.
    """
    temp = run.path.parent / f".tmp-logs-{run.run_id}-{secrets.token_hex(4)}"
    try:
        epochs = write_history(temp, run.history)
        if epochs:
            os.rename(temp, run.log_dir)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return epochs
