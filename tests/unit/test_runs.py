"""Tests for mnist_core.runs: saving, listing, loading, exporting and deleting runs, and every
kind of damaged or hostile input the store must refuse."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import keras
import numpy as np
import pytest

from mnist_core.errors import ModelError
from mnist_core.evaluate import Evaluation
from mnist_core.predict import predict_proba
from mnist_core.runs import PROBABILITIES_FILE, RUN_FILES, RunStore, load_model_file

pytestmark = pytest.mark.usefixtures("keras_seed")


@pytest.fixture
def store(runs_dir: Path) -> RunStore:
    return RunStore(runs_dir)


@pytest.fixture
def run_id(store: RunStore, trained, digits) -> str:
    return store.save(trained, data_source="synthetic digits", data_fingerprint=digits.fingerprint)


def with_accuracy(result, correct: int):
    """A copy of `result` whose test evaluation gets exactly `correct` of 10 samples right."""
    labels = np.arange(10, dtype=np.uint8)
    predicted = np.where(np.arange(10) < correct, labels, (labels + 1) % 10)
    probabilities = np.eye(10, dtype=np.float32)[predicted]
    return dataclasses.replace(result, evaluation=Evaluation(labels, probabilities))


def test_default_root_is_the_environment_variable(runs_dir: Path) -> None:
    assert RunStore().root == runs_dir.resolve()


def test_empty_store(store: RunStore) -> None:
    assert store.list() == []
    assert store.latest() is None
    assert store.best() is None


def test_saved_run_lists_and_loads(store: RunStore, run_id: str, trained, digits) -> None:
    assert re.fullmatch(r"[0-9]{8}-[0-9]{6}-mlp-[0-9a-f]{6}", run_id)
    assert [run.run_id for run in store.list()] == [run_id]

    run = store.get(run_id)
    assert run.path == store.root / run_id
    assert sorted(p.name for p in run.path.iterdir()) == sorted([*RUN_FILES, PROBABILITIES_FILE])
    assert run.config == trained.config
    assert run.history == trained.history
    assert run.test_accuracy == trained.test_accuracy
    assert run.status == "completed"
    assert run.label == f"{run_id} · mlp · {trained.test_accuracy:.2%}"
    np.testing.assert_array_equal(run.test_probabilities(), trained.evaluation.probabilities)

    model = store.load_model(run_id)
    np.testing.assert_allclose(
        predict_proba(model, digits.x_test), predict_proba(trained.model, digits.x_test), atol=1e-6
    )


def test_metrics_json(store: RunStore, run_id: str, trained, digits) -> None:
    metrics = json.loads((store.root / run_id / "metrics.json").read_text())

    assert metrics["status"] == "completed"
    assert metrics["test_accuracy"] == trained.test_accuracy
    assert metrics["test_loss"] == pytest.approx(trained.test_loss)
    assert metrics["confusion_matrix"] == trained.evaluation.confusion.tolist()
    assert np.sum(metrics["confusion_matrix"]) == 100
    np.testing.assert_allclose(metrics["recall"], trained.evaluation.recall)
    np.testing.assert_allclose(metrics["precision"], trained.evaluation.precision)
    assert (metrics["epochs_run"], metrics["best_epoch"]) == (3, trained.best_epoch)
    assert (metrics["stopped"], metrics["stopped_early"]) == (False, False)
    assert metrics["seed"] == 7
    assert metrics["data_source"] == "synthetic digits"
    assert metrics["data_fingerprint"] == digits.fingerprint
    assert set(metrics["versions"]) == {"python", "tensorflow", "keras", "numpy"}
    assert metrics["versions"]["keras"] == keras.__version__
    created = datetime.fromisoformat(metrics["created"])
    assert timedelta(0) <= datetime.now(UTC) - created < timedelta(minutes=5)
    config = json.loads((store.root / run_id / "config.json").read_text())
    assert config == trained.config.to_dict()


def test_history_csv(store: RunStore, run_id: str, trained) -> None:
    lines = store.get(run_id).history_csv().splitlines()

    assert lines[0] == "epoch,loss,accuracy,val_loss,val_accuracy"
    assert len(lines) == 4
    assert lines[2].split(",")[0] == "2"
    assert float(lines[2].split(",")[3]) == trained.history["val_loss"][1]


def test_stopped_run_is_marked(store: RunStore, trained) -> None:
    run_id = store.save(dataclasses.replace(trained, stopped=True))

    run = store.get(run_id)
    assert run.status == "stopped"
    assert run.label.endswith(", stopped")


def test_newest_first_and_best(store: RunStore, trained) -> None:
    # Saved within the same second: the order must still be the order of saving.
    ids = [store.save(with_accuracy(trained, correct)) for correct in (5, 9, 7)]

    assert [run.run_id for run in store.list()] == ids[::-1]
    assert store.latest().run_id == ids[2]
    assert store.best().run_id == ids[1]
    assert store.best().test_accuracy == 0.9


def test_delete(store: RunStore, run_id: str) -> None:
    store.delete(run_id)

    assert store.list() == []
    assert list(store.root.iterdir()) == []  # nothing left behind, not even in the trash
    with pytest.raises(ModelError, match="does not exist"):
        store.get(run_id)
    with pytest.raises(ModelError, match="does not exist"):
        store.delete(run_id)


@pytest.mark.parametrize("bad_id", ["../etc", "", "latest", "20260101-000000-mlp-abcdef/..", 42])
def test_invalid_run_ids_are_refused(store: RunStore, run_id: str, bad_id: object) -> None:
    for action in (store.get, store.load_model, store.delete, store.export_h5):
        with pytest.raises(ModelError) as info:
            action(bad_id)
        assert str(info.value) == f"{bad_id!r} is not a run id; list the runs to pick one"
    assert [run.run_id for run in store.list()] == [run_id]


def test_unknown_run_id(store: RunStore) -> None:
    with pytest.raises(ModelError) as info:
        store.get("20200101-000000-mlp-abcdef")

    assert "run '20200101-000000-mlp-abcdef' does not exist" in str(info.value)


def test_damaged_runs_are_skipped_by_list(store: RunStore, run_id: str) -> None:
    good = store.root / run_id

    def damaged_copy(name: str) -> Path:
        path = store.root / name
        shutil.copytree(good, path)
        return path

    (damaged_copy("20200101-000000-mlp-aaaaaa") / "model.keras").unlink()
    (damaged_copy("20200101-000000-mlp-bbbbbb") / "metrics.json").write_text("{not json")
    (damaged_copy("20200101-000000-mlp-cccccc") / "config.json").write_text('{"epochs": 0}')
    (damaged_copy("20200101-000000-mlp-dddddd") / "metrics.json").write_text('{"status": "x"}')
    damaged_copy(f".tmp-{run_id[:-6]}eeeeee")  # a save interrupted before its rename
    (store.root / "notes.txt").write_text("not a run")

    assert [run.run_id for run in store.list()] == [run_id]
    with pytest.raises(ModelError, match=r"incomplete \(missing model.keras\)"):
        store.get("20200101-000000-mlp-aaaaaa")
    for name in ("bbbbbb", "cccccc", "dddddd"):
        with pytest.raises(ModelError, match="is damaged"):
            store.get(f"20200101-000000-mlp-{name}")


def test_corrupt_model_file(store: RunStore, run_id: str) -> None:
    (store.root / run_id / "model.keras").write_bytes(b"not a zip archive")

    assert store.get(run_id).run_id == run_id  # listing never opens the model
    with pytest.raises(ModelError, match="cannot load model 'model.keras'"):
        store.load_model(run_id)


def test_export_h5_loads_back_and_predicts_the_same(
    store: RunStore, run_id: str, trained, digits, tmp_path: Path
) -> None:
    inside = store.export_h5(run_id)
    outside = store.export_h5(run_id, tmp_path / "copy.h5")

    assert inside == store.root / run_id / "model.h5"
    assert outside == tmp_path / "copy.h5"
    expected = predict_proba(trained.model, digits.x_test)
    for path in (inside, outside):
        model = load_model_file(path)
        np.testing.assert_allclose(predict_proba(model, digits.x_test), expected, atol=1e-6)
    assert not [p for p in (store.root / run_id).iterdir() if p.name.startswith(".tmp-")]
    assert [run.run_id for run in store.list()] == [run_id]


@pytest.mark.parametrize(
    ("input_shape", "units"), [((784,), 10), ((28, 28), 5)], ids=["flat-input", "five-classes"]
)
def test_load_model_file_rejects_other_shapes(
    tmp_path: Path, input_shape: tuple[int, ...], units: int
) -> None:
    inputs = keras.Input(shape=input_shape)
    outputs = keras.layers.Dense(units, activation="softmax")(keras.layers.Flatten()(inputs))
    path = tmp_path / "other.keras"
    keras.Model(inputs, outputs).save(path)

    with pytest.raises(ModelError) as info:
        load_model_file(path)

    assert f"model 'other.keras' maps (None, {', '.join(map(str, input_shape))})" in str(info.value)
    assert "expected (None, 28, 28) images to (None, 10) probabilities" in str(info.value)


def test_load_model_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_model_file(tmp_path / "nothing.keras")


def test_failed_save_leaves_nothing(store: RunStore, trained) -> None:
    with pytest.raises(AttributeError):
        store.save(dataclasses.replace(trained, model=None))

    assert list(store.root.iterdir()) == []


def test_concurrent_saves_make_distinct_runs(store: RunStore, trained, digits) -> None:
    start = threading.Barrier(2)
    ids: list[str] = []

    def save() -> None:
        start.wait()
        ids.append(store.save(trained))

    threads = [threading.Thread(target=save) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(set(ids)) == 2
    assert sorted(run.run_id for run in store.list()) == sorted(ids)
    for run_id in ids:
        assert predict_proba(store.load_model(run_id), digits.x_test[:3]).shape == (3, 10)


def test_bundled_runs_are_listed_but_never_deleted(
    store: RunStore, run_id: str, tmp_path: Path
) -> None:
    bundled = tmp_path / "pretrained"
    bundled_id = "20200101-000000-mlp-0a0b0c"
    shutil.copytree(store.root / run_id, bundled / bundled_id)
    with_bundled = RunStore(store.root, bundled=bundled)

    assert {run.run_id for run in with_bundled.list()} == {run_id, bundled_id}
    run = with_bundled.get(bundled_id)
    assert run.bundled and run.label.endswith(" (pretrained)")
    with pytest.raises(ModelError, match="ships with the app"):
        with_bundled.delete(bundled_id)
    assert (bundled / bundled_id / "model.keras").is_file()
