"""Tests for mnist_core.drawings (the user's labelled drawings) and for training with them:
mixing them into MNIST, and fine-tuning a saved run (`train.prepare`, `initial_weights`)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from mnist_core.config import TrainConfig
from mnist_core.data import MnistData
from mnist_core.drawings import MAX_REPEATS, DrawingSet, mix_into
from mnist_core.errors import ConfigError, DataError, ImageError, ModelError
from mnist_core.ml.train import prepare, train
from mnist_core.runs import RunStore

pytestmark = pytest.mark.usefixtures("keras_seed")


@pytest.fixture
def drawings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DrawingSet:
    monkeypatch.setenv("MNIST_DRAWINGS_DIR", str(tmp_path / "drawings"))
    return DrawingSet()


def test_default_folder_is_the_environment_variable(drawings: DrawingSet, tmp_path: Path) -> None:
    assert drawings.root == (tmp_path / "drawings").resolve()
    assert drawings.list() == [] and len(drawings) == 0  # no folder yet: an empty set


def test_add_list_and_read_back(drawings: DrawingSet, digits) -> None:
    canvas = np.zeros((280, 280, 4), dtype=np.uint8)
    canvas[100:180, 130:150] = 255
    first = drawings.add(digits.x_test[0].astype(np.float32) / 255, 3, canvas)
    second = drawings.add(digits.x_test[1], int(digits.y_test[1]))

    listed = drawings.list()
    assert [d.drawing_id for d in listed] == [second, first]  # newest first
    assert listed[1].label == 3
    np.testing.assert_array_equal(listed[1].digit, digits.x_test[0])  # float -> same uint8
    np.testing.assert_array_equal(listed[1].canvas(), canvas)
    assert listed[0].canvas() is None
    assert listed[0].digit.dtype == np.uint8
    assert sorted(p.name for p in drawings.root.iterdir()) == sorted(
        [f"{first}.npz", f"{second}.npz"]
    )  # nothing temporary left


def test_arrays_and_export_are_oldest_first_in_mnist_layout(drawings: DrawingSet, digits) -> None:
    ids = [drawings.add(digits.x_test[i], int(digits.y_test[i])) for i in range(5)]
    images, labels = drawings.arrays()
    np.testing.assert_array_equal(images, digits.x_test[:5])
    np.testing.assert_array_equal(labels, digits.y_test[:5])

    with np.load(io.BytesIO(drawings.export_npz()), allow_pickle=False) as exported:
        assert exported["x"].shape == (5, 28, 28) and exported["x"].dtype == np.uint8
        np.testing.assert_array_equal(exported["y"], digits.y_test[:5])
        assert exported["ids"].tolist() == ids


def test_delete_and_fingerprint(drawings: DrawingSet, digits) -> None:
    kept = drawings.add(digits.x_test[0], 1)
    gone = drawings.add(digits.x_test[1], 2)
    before = drawings.fingerprint()
    drawings.delete(gone)
    assert [d.drawing_id for d in drawings.list()] == [kept]
    assert drawings.fingerprint() != before
    with pytest.raises(DataError, match="does not exist"):
        drawings.delete(gone)
    with pytest.raises(DataError, match="not a drawing id"):
        drawings.delete("../runs")


@pytest.mark.parametrize(
    ("digit", "label", "error", "message"),
    [
        (np.zeros((28, 28)), 10, DataError, "digit from 0 to 9, got 10"),
        (np.zeros((28, 28)), -1, DataError, "digit from 0 to 9"),
        (np.zeros((28, 28)), True, DataError, "digit from 0 to 9"),
        (np.zeros((28, 28)), "3", DataError, "digit from 0 to 9"),
        (np.zeros((28, 27)), 3, ImageError, "28x28 pixels, got shape"),
        (np.full((28, 28), np.nan), 3, ImageError, "without NaN"),
        (np.zeros((28, 28), dtype=object), 3, ImageError, "uint8, or floats"),
    ],
)
def test_invalid_drawings_are_refused(
    drawings: DrawingSet, digit: np.ndarray, label: object, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        drawings.add(digit, label)
    assert drawings.list() == []


def test_damaged_files_are_skipped(drawings: DrawingSet, digits) -> None:
    kept = drawings.add(digits.x_test[0], 1)
    (drawings.root / "20261124-120000-abcdef.npz").write_bytes(b"not an npz")
    np.savez(drawings.root / "20261124-120001-abcdef.npz", digit=np.zeros((3, 3)), label=1)
    assert [d.drawing_id for d in drawings.list()] == [kept]
    assert len(drawings) == 3  # counted by file name, never read


def test_mix_into_puts_repeated_drawings_before_the_validation_slice(digits) -> None:
    images, labels = digits.x_test[:4], digits.y_test[:4]
    mixed = mix_into(digits, images, labels, share=0.1)  # 400 * 0.1 / 4 = 10 repeats each

    assert len(mixed.x_train) == len(digits.x_train) + 40
    np.testing.assert_array_equal(mixed.x_train[:10], np.repeat(images[:1], 10, axis=0))
    np.testing.assert_array_equal(mixed.x_train[40:], digits.x_train)  # MNIST last: validation
    np.testing.assert_array_equal(mixed.y_train[:40], np.repeat(labels, 10))
    np.testing.assert_array_equal(mixed.x_test, digits.x_test)  # the test set is unchanged
    assert mixed.source == "synthetic digits + 4 of your drawings (x10)"
    assert mixed.fingerprint != digits.fingerprint
    huge = mix_into(digits, images[:1], labels[:1], share=100.0)
    assert len(huge.x_train) == len(digits.x_train) + MAX_REPEATS
    with pytest.raises(DataError, match="no drawings"):
        mix_into(digits, images[:0], labels[:0])


def test_prepare_mixes_drawings_and_loads_the_run_to_fine_tune(
    drawings: DrawingSet, digits, trained, small_config, runs_dir: Path
) -> None:
    store = RunStore(runs_dir)
    run_id = store.save(trained)
    for index in range(3):
        drawings.add(digits.x_test[index], int(digits.y_test[index]))

    data, weights = prepare(small_config, digits, store, drawings)
    assert data is digits and weights is None  # nothing asked for

    config = small_config.replace(drawings=True, start_from=run_id)
    data, weights = prepare(config, digits, store, drawings)
    assert len(data.x_train) == len(digits.x_train) + 3 * round(0.02 * 400 / 3)
    for loaded, original in zip(weights, trained.model.get_weights(), strict=True):
        np.testing.assert_array_equal(loaded, original)

    with pytest.raises(ModelError, match="does not exist"):
        prepare(small_config.replace(start_from="20200101-000000-mlp-abcdef"), digits, store)
    with pytest.raises(DataError, match="no drawings"):
        prepare(small_config.replace(drawings=True), digits, store, DrawingSet(runs_dir / "none"))


def test_fine_tuning_starts_from_the_runs_weights(digits, trained, small_config) -> None:
    fresh = train(small_config.replace(epochs=1), digits)
    tuned = train(
        small_config.replace(epochs=1), digits, initial_weights=trained.model.get_weights()
    )
    # Starting from a trained model, the first epoch already has a trained model's loss.
    assert tuned.history["loss"][0] < fresh.history["loss"][0]
    assert tuned.history["val_loss"][0] <= trained.history["val_loss"][-1] * 1.5


def test_fine_tuning_another_architecture_is_refused(digits, trained, small_config) -> None:
    other = small_config.replace(hidden_units=(32,), start_from="20200101-000000-mlp-abcdef")
    with pytest.raises(ConfigError, match="start_from: run 20200101-000000-mlp-abcdef has another"):
        train(other, digits, initial_weights=trained.model.get_weights())


@pytest.mark.parametrize("value", ["../runs", "latest", 5, None])
def test_start_from_must_be_a_run_id(value: object) -> None:
    with pytest.raises(ConfigError, match="start_from: must be a run id"):
        TrainConfig(start_from=value)


def test_drawings_must_be_a_switch() -> None:
    with pytest.raises(ConfigError, match="drawings: must be true or false"):
        TrainConfig(drawings=1)


def test_configs_saved_before_these_settings_still_load() -> None:
    saved = TrainConfig().to_dict()
    del saved["drawings"], saved["start_from"]
    assert TrainConfig.from_dict(saved) == TrainConfig()


def test_mnist_data_unchanged_by_mixing(digits) -> None:
    before = digits.x_train.copy()
    mix_into(digits, digits.x_test[:2], digits.y_test[:2])
    np.testing.assert_array_equal(digits.x_train, before)
    assert isinstance(digits, MnistData)
