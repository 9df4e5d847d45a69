"""Tests for mnist_core.ml.tensorboard_logs: the event files that training writes as each epoch
ends, also through a run's checkpoints and final save, and those a saved run's history.json is
turned into, read back the way TensorBoard's scalar dashboard reads them (`tensorboard
--logdir runs/`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins.scalar import metadata as scalar_metadata

from mnist_core.data import MnistData
from mnist_core.ml.tensorboard_logs import SCALAR_METADATA, write_history, write_run_logs
from mnist_core.ml.train import TrainResult, train
from mnist_core.progress import ProgressEvent
from mnist_core.runs import RunRecorder, RunStore

pytestmark = pytest.mark.usefixtures("keras_seed")

# Event files hold float32, which keeps 24 significant bits: rounding a history value (a float)
# to it moves it by at most 2**-24 of itself.
FLOAT32_ROUNDING = 2.0**-24

Scalars = dict[str, dict[str, list[tuple[int, float]]]]  # run -> tag -> (step, value) pairs


def read_scalars(log_root: Path) -> Scalars:
    """Every scalar under `log_root`, as `tensorboard --logdir log_root` shows it: TensorBoard's
    own loader and the data provider its scalar dashboard asks, by run (a folder's path
    relative to `log_root`) and tag."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(log_root))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(log_root))
    found = provider.read_scalars(
        context.RequestContext(), experiment_id="", plugin_name="scalars", downsample=1000
    )
    return {
        run: {tag: [(datum.step, datum.value) for datum in data] for tag, data in tags.items()}
        for run, tags in found.items()
    }


def expected_scalars(history: dict[str, list[float]], prefix: str = "") -> Scalars:
    """What `history` must read as in TensorBoard: Keras' layout and tags, epochs from 1,
    values within float32's rounding."""
    runs: Scalars = {}
    for name, values in history.items():
        if not values:
            continue
        run = f"{prefix}validation" if name.startswith("val_") else f"{prefix}train"
        points = [
            (epoch, pytest.approx(value, rel=FLOAT32_ROUNDING))
            for epoch, value in enumerate(values, start=1)
        ]
        runs.setdefault(run, {})[f"epoch_{name.removeprefix('val_')}"] = points
    return runs


@dataclasses.dataclass
class Recorded:
    run_id: str
    result: TrainResult
    checkpoints: int  # saves of the run while it trained, each replacing its folder


def train_recorded(config, data: MnistData, store: RunStore, **hooks) -> Recorded:
    """Train `config` as the worker and the command line do: event files in the run's reserved
    folder, a checkpoint at every better epoch, then the final save."""
    recorder = RunRecorder(store)
    checkpoints: list[int] = []

    def checkpoint(result: TrainResult) -> None:
        recorder.checkpoint(result)
        checkpoints.append(result.best_epoch)

    result = train(
        config,
        data,
        on_checkpoint=checkpoint,
        checkpoint_seconds=0,
        log_dir=recorder.reserve_logs(config.architecture),
        **hooks,
    )
    return Recorded(recorder.finish(result), result, len(checkpoints))


def test_metadata_is_what_tensorboards_scalar_summary_writes() -> None:
    theirs = scalar_metadata.create_summary_metadata(display_name="", description="")
    assert SCALAR_METADATA.SerializeToString() == theirs.SerializeToString()


def test_each_epoch_is_in_the_event_files_as_soon_as_it_ends(
    digits: MnistData, small_config, tmp_path: Path
) -> None:
    log_dir = tmp_path / "logs"
    seen_at_epoch_end: list[Scalars] = []

    def on_progress(event: ProgressEvent) -> None:
        if event.epoch_end:  # what TensorBoard shows while the training goes on
            seen_at_epoch_end.append(read_scalars(log_dir))

    result = train(small_config, digits, on_progress=on_progress, log_dir=log_dir)

    assert len(result.history["loss"]) == 3
    assert read_scalars(log_dir) == expected_scalars(result.history)
    for epoch, seen in enumerate(seen_at_epoch_end, start=1):
        so_far = {name: values[:epoch] for name, values in result.history.items()}
        assert seen == expected_scalars(so_far)
    assert len(seen_at_epoch_end) == 3


def test_a_recorded_run_keeps_its_event_files_through_its_checkpoints(
    digits: MnistData, small_config, runs_dir: Path
) -> None:
    store = RunStore(runs_dir)

    recorded = train_recorded(small_config, digits, store)

    assert recorded.checkpoints >= 2  # its folder was replaced twice or more while it trained
    run = store.get(recorded.run_id)
    assert sorted(path.name for path in runs_dir.iterdir()) == [run.run_id]  # nothing aside
    # `tensorboard --logdir runs/` lists the run by its folder name, training and validation.
    prefix = f"{run.run_id}/logs/"
    assert read_scalars(runs_dir) == expected_scalars(run.history, prefix=prefix)
    # One file per folder: the writer went on in the same file across the replacements.
    for folder in ("train", "validation"):
        assert len(list((run.log_dir / folder).iterdir())) == 1


def test_a_stopped_run_has_the_epochs_it_finished(
    digits: MnistData, small_config, runs_dir: Path
) -> None:
    store = RunStore(runs_dir)
    events: list[ProgressEvent] = []
    recorded = train_recorded(
        small_config.replace(batch_size=4, epochs=50),
        digits,
        store,
        on_progress=events.append,
        should_stop=lambda: any(event.epoch == 3 for event in events),  # in epoch 3
    )

    run = store.get(recorded.run_id)
    assert (recorded.result.stopped, len(run.history["loss"])) == (True, 2)
    assert read_scalars(run.log_dir) == expected_scalars(run.history)


def test_an_early_stopped_run_has_every_epoch_it_ran_not_only_the_kept_one(
    digits: MnistData, small_config, runs_dir: Path
) -> None:
    # The validation slice (last 40 samples) repeats the first training images with other
    # labels: the better the model fits the training set, the worse the validation loss.
    x_train, y_train = np.array(digits.x_train), np.array(digits.y_train)
    x_train[-40:], y_train[-40:] = x_train[:40], (y_train[:40] + 1) % 10
    data = MnistData(x_train, y_train, digits.x_test, digits.y_test, source="mislabelled")
    store = RunStore(runs_dir)

    recorded = train_recorded(small_config.replace(epochs=20, patience=1), data, store)

    run, result = store.get(recorded.run_id), recorded.result
    assert result.stopped_early and result.best_epoch < result.epochs_run
    assert len(run.history["val_loss"]) == result.epochs_run
    assert read_scalars(run.log_dir) == expected_scalars(run.history)


def test_a_history_without_validation_has_no_validation_folder(tmp_path: Path) -> None:
    history = {"loss": [0.5, 0.25], "accuracy": [0.75, 0.875], "val_loss": [], "val_accuracy": []}

    assert write_history(tmp_path, history) == 2

    assert sorted(path.name for path in tmp_path.iterdir()) == ["train"]
    # These values are exact in float32.
    assert read_scalars(tmp_path) == {
        "train": {"epoch_loss": [(1, 0.5), (2, 0.25)], "epoch_accuracy": [(1, 0.75), (2, 0.875)]}
    }


def test_a_saved_run_without_event_files_gets_them_from_its_history(
    runs_dir: Path, trained: TrainResult
) -> None:
    store = RunStore(runs_dir)
    run = store.get(store.save(trained))  # saved without a training: no event files
    assert not run.log_dir.exists()

    assert write_run_logs(run) == trained.epochs_run == 3

    assert read_scalars(runs_dir) == expected_scalars(trained.history, prefix=f"{run.run_id}/logs/")
    assert sorted(path.name for path in runs_dir.iterdir()) == [run.run_id]  # no leftovers
