"""Training: `train()` with progress and stop hooks, and a background job for user interfaces.

`train()` runs the model's own Keras `train_step` and `test_step` (the same loss, optimizer
and metrics as `model.fit`) in a loop of its own: the training set stays in memory as uint8
tensors, and each compiled call cuts, shuffles, scales (and optionally distorts) its batches
itself and runs a group of steps. That skips `fit`'s `tf.data` pipeline, whose per-batch hand-offs
cost the small MLP about a third of its epoch on 2 cores (see `bench/bench_training.py`).

Between groups of steps one monitor reports progress, polls for a stop request, keeps the best
weights (lowest validation loss) and does early stopping. A stop in the middle of an epoch
drops that partial epoch and restores the best weights of the finished ones, skipping the
validation of the partial epoch, which would delay the stop and measure nothing useful.

`on_checkpoint(result)` receives the best model so far, evaluated, when a new best epoch arrives
(at most once per `CHECKPOINT_SECONDS`), so a process killed mid-training can still leave it
saved (see `runs.RunRecorder`).

Every epoch also records the model's answers on a fixed panel of test digits (`replay_panel`),
so a user can replay how its predictions changed while it learned, and, given a `log_dir`,
adds its scores to TensorBoard event files there as it ends (`tensorboard_logs`), as Keras'
`TensorBoard` callback would.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from mnist_core.config import TrainConfig
from mnist_core.data import PIXEL_MAX, MnistData
from mnist_core.errors import ConfigError
from mnist_core.evaluate import Evaluation, evaluate
from mnist_core.ml.augment import elastic_distort
from mnist_core.ml.models import build_model
from mnist_core.ml.tensorboard_logs import EpochLog
from mnist_core.progress import HISTORY_KEYS, ProgressEvent

if TYPE_CHECKING:
    from mnist_core.drawings import Drawings
    from mnist_core.runs import RunStore


@dataclass
class TrainResult:
    """A trained model and how it got there."""

    model: keras.Model
    config: TrainConfig
    history: dict[str, list[float]]  # per finished epoch: loss, accuracy, val_loss, val_accuracy
    evaluation: Evaluation  # on the MNIST test set, with the restored best weights
    epochs_run: int  # finished epochs
    best_epoch: int  # 1-based epoch whose weights the model holds
    stopped: bool  # stopped by the user
    stopped_early: bool  # stopped by early stopping
    train_seconds: float  # wall time of the training loop (`_fit`)
    data_source: str = ""  # where the data came from (`MnistData.source`)
    data_fingerprint: str = ""  # what the data was (`MnistData.fingerprint`)
    replay_indices: np.ndarray | None = None  # (P,) test indices of the replay panel
    replay: np.ndarray | None = None  # (epochs_run, P, 10) float32: the panel after each epoch
    kind: str = ""  # what the run id names: the architecture, or "ensemble"
    extra_metrics: dict[str, Any] | None = None  # saved in metrics.json beside the usual ones

    @property
    def test_loss(self) -> float:
        return self.evaluation.loss

    @property
    def test_accuracy(self) -> float:
        return self.evaluation.accuracy


ProgressHook = Callable[[ProgressEvent], None]
StopHook = Callable[[], bool]
CheckpointHook = Callable[[TrainResult], None]
# Least training time between two checkpoints: each evaluates the test set and writes the
# model (0.2-2 s), which must stay a small share of training.
CHECKPOINT_SECONDS = 60.0
REPLAY_PER_DIGIT = 3  # test digits of each class in the replay panel


def replay_panel(labels: np.ndarray, per_digit: int = REPLAY_PER_DIGIT) -> np.ndarray:
    """Test indices of the replay panel: the first `per_digit` samples of each digit, 0 to 9."""
    return np.concatenate(
        [np.flatnonzero(labels == digit)[:per_digit] for digit in range(10)]
    ).astype(np.int64)


def train(
    config: TrainConfig,
    data: MnistData,
    on_progress: ProgressHook | None = None,
    should_stop: StopHook | None = None,
    on_checkpoint: CheckpointHook | None = None,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
    initial_weights: list[np.ndarray] | None = None,
    log_dir: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Train a model for `config` on `data` and evaluate it on the test set.

    `on_progress(event)` is called with a `ProgressEvent` several times per epoch and at every
    epoch's end; `should_stop()` is polled between groups of batches (well under half a second
    apart) and a True answer ends training within a second, keeping the best weights so far.
    `on_checkpoint(result)` gets the model at each new best epoch, at least
    `checkpoint_seconds` of training after the previous checkpoint (or the start), as a result
    evaluated on the test set; the model is the live one, so save it before returning.
    `initial_weights` (a model's `get_weights()`, same architecture) fine-tunes that model
    instead of starting from random weights; see `prepare` for where they come from.
    `log_dir` gets each finished epoch's history values as TensorBoard event files
    (`train/`, `validation/`), written as the epoch ends, before its checkpoint.
    The same config and seed on the same machine give the same history.
    """
    keras.utils.set_random_seed(config.seed)
    n_val = int(round(len(data.x_train) * config.validation_split))
    n_train = len(data.x_train) - n_val
    if n_train < 1:
        raise ConfigError("validation_split", "leaves no training samples; lower it")
    # Like Keras' validation_split: the last samples, before any shuffling.
    train_set = Batches(
        data.x_train[:n_train], data.y_train[:n_train], config, shuffle=True, distort=config.elastic
    )
    validation = (
        Batches(data.x_train[n_train:], data.y_train[n_train:], config, shuffle=False)
        if n_val
        else None
    )
    batches = train_set.count

    model = build_model(config, steps_per_epoch=batches)
    if initial_weights is not None:
        _set_initial_weights(model, initial_weights, config)
    monitor = _TrainingMonitor(model, config, batches, on_progress, should_stop)
    monitor.log = EpochLog(log_dir) if log_dir is not None else None
    statistics = NormalisationStatistics(model)  # after the initial weights: its start
    panel = replay_panel(data.y_test)
    monitor.replay_images = data.x_test[panel].astype(np.float32) / PIXEL_MAX
    start = time.perf_counter()

    def result(seconds: float) -> TrainResult:
        return TrainResult(
            model=model,
            config=config,
            history={key: list(values) for key, values in monitor.history.items()},
            evaluation=evaluate(model, data.x_test, data.y_test),
            epochs_run=len(monitor.history["loss"]),
            best_epoch=monitor.best_epoch,
            stopped=monitor.stopped,
            stopped_early=monitor.stopped_early,
            train_seconds=seconds,
            data_source=data.source,
            data_fingerprint=data.fingerprint,
            replay_indices=panel,
            replay=np.array(monitor.replay, dtype=np.float32).reshape(-1, len(panel), 10),
        )

    if on_checkpoint is not None:
        monitor.checkpoint = lambda: on_checkpoint(result(time.perf_counter() - start))
        monitor.checkpoint_seconds = checkpoint_seconds
    try:
        _fit(model, train_set, validation, monitor, statistics)
    except _StopRequested:
        pass
    finally:
        if monitor.log is not None:
            monitor.log.close()
    statistics.unbias()  # for a stop within the first epoch; else the snapshot below has it
    monitor.restore_best_weights()
    return result(time.perf_counter() - start)


def prepare(
    config: TrainConfig,
    data: MnistData,
    store: RunStore | None = None,
    drawings: Drawings | None = None,
) -> tuple[MnistData, list[np.ndarray] | None]:
    """The training data and initial weights that `config` asks for: MNIST with the user's
    drawings mixed in (`config.drawings`, from `drawings`, a `DrawingSet`) and the weights
    of the run to fine-tune (`config.start_from`, from `store`, a `RunStore`).

    Raises DataError when there are no drawings, ModelError when the run cannot be loaded.
    """
    if config.drawings:
        from mnist_core.drawings import DrawingSet, mix_into

        data = mix_into(data, *(drawings if drawings is not None else DrawingSet()).arrays())
    weights = None
    if config.start_from:
        from mnist_core.runs import RunStore

        store = store if store is not None else RunStore()
        weights = store.load_model(config.start_from).get_weights()
    return data, weights


def _set_initial_weights(
    model: keras.Model, weights: list[np.ndarray], config: TrainConfig
) -> None:
    expected = [tuple(w.shape) for w in model.get_weights()]
    if [tuple(np.shape(w)) for w in weights] != expected:
        raise ConfigError(
            "start_from",
            f"run {config.start_from or '?'} has another architecture than these settings; "
            "to fine-tune it keep its architecture, layer sizes and filters",
        )
    model.set_weights(weights)


class Batches:
    """A labelled set kept as uint8 tensors (a quarter of float32's memory) and cut into batches
    of float32 (B, 28, 28) pixels in [0, 1] and uint8 (B,) labels inside compiled code.

    With `shuffle` every epoch takes its own order, and with `distort` every batch its own
    elastic distortion; both are drawn from the config's seed, the epoch and the step alone, so
    the same config gives the same batches.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        config: TrainConfig,
        shuffle: bool,
        distort: bool = False,
    ) -> None:
        self.images = tf.constant(images)
        self.labels = tf.constant(labels)
        self.size = len(images)
        self.batch_size = config.batch_size
        self.count = math.ceil(self.size / self.batch_size)  # batches per epoch
        self.seed = config.seed
        self.shuffle = shuffle
        self.distort = distort

    def order(self, epoch: int) -> tf.Tensor:
        """(N,) int32 sample indices in the order `epoch` (0-based) visits them."""
        indices = tf.range(self.size)
        if not self.shuffle:
            return indices
        return tf.random.experimental.stateless_shuffle(indices, seed=[self.seed, epoch])

    def batch(
        self, order: tf.Tensor, epoch: tf.Tensor, step: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Batch `step` (0-based) of `epoch`, whose sample order is `order`."""
        index = order[step * self.batch_size : (step + 1) * self.batch_size]
        images = tf.cast(tf.gather(self.images, index), tf.float32) / PIXEL_MAX
        if self.distort:
            seed = tf.stack(
                [tf.constant(self.seed, tf.int64), tf.cast(epoch * self.count + step, tf.int64)]
            )
            images = elastic_distort(images, seed)
        return images, tf.gather(self.labels, index)


def _steps_function(batches: Batches, step: Callable[[Any], Any]) -> Callable[..., Any]:
    """A compiled function running `step` (a model's `train_step` or `test_step`) on batches
    `first` to `first + count - 1` of an epoch, in one call."""

    @tf.function
    def run(order: tf.Tensor, epoch: tf.Tensor, first: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
        def body(index: tf.Tensor) -> tuple[tf.Tensor]:
            step(batches.batch(order, epoch, index))
            return (index + 1,)

        return tf.while_loop(lambda index: index < first + count, body, (first,))[0]

    return run


def _fit(
    model: keras.Model,
    train_set: Batches,
    validation: Batches | None,
    monitor: _TrainingMonitor,
    statistics: NormalisationStatistics,
) -> None:
    """What `model.fit(epochs=config.epochs, validation_data=...)` does with one callback,
    `steps_per_execution` batches per compiled call. Validation, the epoch's snapshot and
    checkpoints see batch normalisation's statistics unbiased (`NormalisationStatistics`)."""
    group = model.steps_per_execution
    train_steps = _steps_function(train_set, model.train_step)
    test_steps = _steps_function(validation, model.test_step) if validation else None

    def run(
        steps: Callable[..., Any], batches: Batches, epoch: int, after_group: Callable[[int], None]
    ) -> dict[str, float]:
        model.reset_metrics()
        order = batches.order(epoch)
        for first in range(0, batches.count, group):
            count = min(group, batches.count - first)
            steps(order, tf.constant(epoch), tf.constant(first), tf.constant(count))
            after_group(first + count)
        return {name: float(value) for name, value in model.get_metrics_result().items()}

    monitor.on_train_begin()
    for epoch in range(monitor.config.epochs):
        monitor.on_epoch_begin(epoch)
        logs = run(train_steps, train_set, epoch, monitor.on_train_batches_end)
        statistics.steps += train_set.count
        with statistics.unbiased():
            if test_steps is not None and validation is not None:
                scores = run(test_steps, validation, 0, monitor.on_test_batches_end)
                logs.update({f"val_{name}": value for name, value in scores.items()})
            monitor.on_epoch_end(epoch, logs)
        if monitor.stop_training:
            break


class NormalisationStatistics:
    """Batch normalisation's moving statistics without the weight of their starting values.

    Keras keeps each moving mean and variance as an exponential average that starts at 0 and
    1 (or at a fine-tuned model's values): after t steps with momentum m it is
    m^t x start + (1 - m^t) x (the average of the batches' statistics). With m = 0.99 the start
    still weighs 0.99^422 = 1.4 % after a full MNIST epoch, and activations whose variance is
    far below 1 (the first layers' here, about 0.001) were then normalised with a variance ten
    times too large in inference mode: a 1-epoch `deep` read a third of the validation digits.
    `unbiased()` puts (average - m^t x start) / (1 - m^t) in place, the way Adam corrects its
    moments; training goes on from the raw averages. No batch normalisation: nothing to do.
    """

    def __init__(self, model: keras.Model) -> None:
        self.layers = [
            layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
        ]
        self.start = [
            (layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in self.layers
        ]
        self.steps = 0  # training steps so far: each updated every moving statistic once

    def _unbiased_values(self) -> list[tuple[np.ndarray, np.ndarray]]:
        values = []
        for layer, (mean0, variance0) in zip(self.layers, self.start, strict=True):
            kept = float(layer.momentum) ** self.steps  # the start's weight now
            mean = (layer.moving_mean.numpy() - kept * mean0) / (1.0 - kept)
            variance = (layer.moving_variance.numpy() - kept * variance0) / (1.0 - kept)
            values.append((mean, np.maximum(variance, 0.0)))
        return values

    def unbias(self) -> None:
        """Replace the moving statistics by their unbiased values, for good."""
        if not self.layers or self.steps == 0:
            return
        for layer, (mean, variance) in zip(self.layers, self._unbiased_values(), strict=True):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)

    @contextmanager
    def unbiased(self) -> Iterator[None]:
        """The unbiased statistics inside the block, the raw averages again after it."""
        raw = [(n.moving_mean.numpy(), n.moving_variance.numpy()) for n in self.layers]
        self.unbias()
        try:
            yield
        finally:
            for layer, (mean, variance) in zip(self.layers, raw, strict=True):
                layer.moving_mean.assign(mean)
                layer.moving_variance.assign(variance)


class _StopRequested(Exception):
    """Raised between groups of steps to leave training at once when the user asks to stop."""


class _TrainingMonitor:
    """Progress, stop requests, best weights and early stopping, between groups of steps."""

    def __init__(
        self,
        model: keras.Model,
        config: TrainConfig,
        batches: int,
        on_progress: ProgressHook | None,
        should_stop: StopHook | None,
    ) -> None:
        self.model = model
        self.config = config
        self.batches = batches
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
        self.replay_images: np.ndarray | None = None  # (P, 28, 28) float32 panel
        self.replay: list[np.ndarray] = []  # (P, 10) answers after each finished epoch
        self.log: EpochLog | None = None  # TensorBoard event files of the finished epochs
        self.stopped = False
        self.stopped_early = False
        self.stop_training = False  # early stopping ends training after this epoch
        self.best_epoch = 0
        self._best_loss = math.inf
        self._best_weights: list[np.ndarray] | None = None
        self._last_weights: list[np.ndarray] | None = None  # when `config.restore_best` is off
        self._wait = 0
        self._epoch = 0
        self._start = 0.0
        self._epoch_seconds: list[float] = []
        self._epoch_start = 0.0
        self.checkpoint: Callable[[], None] | None = None  # saves the model as it is now
        self.checkpoint_seconds = CHECKPOINT_SECONDS
        self._last_checkpoint = 0.0

    def on_train_begin(self) -> None:
        self._start = self._last_checkpoint = time.perf_counter()

    def on_epoch_begin(self, epoch: int) -> None:
        self._epoch = epoch + 1
        self._epoch_start = time.perf_counter()

    def on_train_batches_end(self, batches_done: int) -> None:
        """After a group of training steps: `batches_done` of this epoch so far."""
        self._poll_stop()
        if self.on_progress is not None:
            logs = self.model.get_metrics_result()  # loss and accuracy so far this epoch
            self.on_progress(self._event(batches_done, logs, epoch_end=False))

    def on_test_batches_end(self, batches_done: int) -> None:
        """After a group of validation steps. A stop now drops the epoch: its scores would be
        partial."""
        self._poll_stop()

    def _poll_stop(self) -> None:
        if self.should_stop is not None and self.should_stop():
            self.stopped = True
            raise _StopRequested

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        scores = {key: float(logs[key]) for key in HISTORY_KEYS if key in logs}
        for key, value in scores.items():
            self.history[key].append(value)
        if self.log is not None:  # before the checkpoint below, whose save keeps the files
            self.log.write(self._epoch, scores)
        self._epoch_seconds.append(time.perf_counter() - self._epoch_start)
        if self.replay_images is not None and len(self.replay_images):
            # A few milliseconds: one forward pass of 30 digits.
            self.replay.append(np.asarray(self.model(self.replay_images, training=False)))
        if not self.config.restore_best:
            self._last_weights = self.model.get_weights()
        watched = logs.get("val_loss", logs.get("loss", math.inf))
        if watched < self._best_loss:
            self._best_loss = watched
            self._best_weights = self.model.get_weights()
            self.best_epoch = self._epoch
            self._wait = 0
            since = time.perf_counter() - self._last_checkpoint
            if self.checkpoint is not None and since >= self.checkpoint_seconds:
                self.checkpoint()
                self._last_checkpoint = time.perf_counter()
        else:
            self._wait += 1
            if self.config.patience and self._wait >= self.config.patience:
                self.stopped_early = True
                self.stop_training = True
        if self.on_progress is not None:
            self.on_progress(self._event(self.batches, logs, epoch_end=True))

    def restore_best_weights(self) -> None:
        """Give the model the weights it ends with (if any epoch finished): those of the best
        epoch, or with `config.restore_best` off those of the last finished one."""
        if not self.config.restore_best and self._last_weights is not None:
            self.model.set_weights(self._last_weights)  # not those of a stopped, partial epoch
            self.best_epoch = len(self.history["loss"])
        elif self._best_weights is not None:
            self.model.set_weights(self._best_weights)

    def _event(self, batch: int, logs: dict[str, Any], epoch_end: bool) -> ProgressEvent:
        now = time.perf_counter()
        done = (self._epoch - 1) * self.batches + batch
        left = self.config.epochs * self.batches - done
        elapsed = now - self._start
        return ProgressEvent(
            epoch=self._epoch,
            epochs=self.config.epochs,
            batch=batch,
            batches=self.batches,
            metrics={k: float(v) for k, v in logs.items() if k in HISTORY_KEYS},
            elapsed=elapsed,
            eta=elapsed / done * left if done else math.nan,
            epoch_end=epoch_end,
        )
