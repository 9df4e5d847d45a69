"""Tests for mnist_core.runs: saving, listing, loading, exporting and deleting runs, every kind
of damaged or hostile input the store must refuse, and processes killed while they train or
save."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import keras
import numpy as np
import pytest

from mnist_core.errors import ModelError
from mnist_core.evaluate import Evaluation
from mnist_core.ml.model_files import load_model_file
from mnist_core.ml.predict import predict_proba
from mnist_core.runs import (
    LOGS_DIR,
    PROBABILITIES_FILE,
    REPLAY_FILE,
    RUN_FILES,
    STALE_TEMP_SECONDS,
    RunRecorder,
    RunStore,
    pack_run,
)
from mnist_core.serving import ONNX_FILE, OnnxModel

pytestmark = pytest.mark.usefixtures("keras_seed")

REPO = Path(__file__).resolve().parents[2]


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
    assert sorted(p.name for p in run.path.iterdir()) == sorted(
        [*RUN_FILES, PROBABILITIES_FILE, REPLAY_FILE, ONNX_FILE]
    )
    onnx = OnnxModel(run.onnx_path)  # the same model, for ONNX Runtime
    np.testing.assert_allclose(
        onnx.predict_proba(digits.x_test), predict_proba(trained.model, digits.x_test), atol=1e-5
    )
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


def test_val_accuracy_is_the_kept_epochs_also_for_runs_saved_without_it(
    store: RunStore, run_id: str, trained
) -> None:
    kept = trained.history["val_accuracy"][trained.best_epoch - 1]
    metrics_file = store.root / run_id / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    assert metrics["val_accuracy"] == kept
    assert store.get(run_id).val_accuracy == kept

    del metrics["val_accuracy"]  # a run saved before metrics.json held it
    metrics_file.write_text(json.dumps(metrics))
    assert store.get(run_id).val_accuracy == kept

    metrics_file.write_text(json.dumps({**metrics, "best_epoch": 0}))  # stopped in epoch 1
    assert store.get(run_id).val_accuracy is None


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
    wrong = json.loads((good / "metrics.json").read_text()) | {"test_accuracy": "99 %"}
    (damaged_copy("20200101-000000-mlp-ffffff") / "metrics.json").write_text(json.dumps(wrong))
    damaged_copy(f".tmp-{run_id[:-6]}eeeeee")  # a save interrupted before its rename
    (store.root / "notes.txt").write_text("not a run")

    assert [run.run_id for run in store.list()] == [run_id]
    with pytest.raises(ModelError, match=r"incomplete \(missing model.keras\)"):
        store.get("20200101-000000-mlp-aaaaaa")
    for name in ("bbbbbb", "cccccc", "dddddd"):
        with pytest.raises(ModelError, match="is damaged"):
            store.get(f"20200101-000000-mlp-{name}")
    with pytest.raises(ModelError, match="metrics.json: test_accuracy must be from 0 to 1"):
        store.get("20200101-000000-mlp-ffffff")


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
    with_bundled = RunStore(store.root, pretrained=bundled)

    assert {run.run_id for run in with_bundled.list()} == {run_id, bundled_id}
    run = with_bundled.get(bundled_id)
    assert run.pretrained and run.label.endswith(" (pretrained)")
    with pytest.raises(ModelError, match="ships with the app"):
        with_bundled.delete(bundled_id)
    assert (bundled / bundled_id / "model.keras").is_file()


def test_save_takes_another_id_when_its_id_is_taken(
    store: RunStore, trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken, free = "20200101-000000-mlp-aaaaaa", "20200101-000000-mlp-bbbbbb"
    ids = iter([taken, taken, free])  # the second save draws the first one's id
    monkeypatch.setattr("mnist_core.runs._new_run_id", lambda architecture: next(ids))

    first, second = store.save(trained), store.save(with_accuracy(trained, 3))

    assert (first, second) == (taken, free)
    assert store.get(taken).test_accuracy == trained.test_accuracy  # not overwritten
    assert store.get(free).test_accuracy == 0.3
    assert sorted(p.name for p in store.root.iterdir()) == [taken, free]


# --- models that hold code are refused, and the code never runs ---


def marker_lambda(marker: Path):
    """A Python lambda that writes `marker` when called: the code a hostile file would carry."""
    return eval(f"lambda t: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), t)[1]")


def model_with_lambda(marker: Path) -> keras.Model:
    inputs = keras.Input(shape=(28, 28))
    x = keras.layers.Lambda(marker_lambda(marker), name="payload")(inputs)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    marker.unlink()  # building the model called the lambda once, here, in the test
    return model


def as_keras2_h5(path: Path, marker: Path) -> Path:
    """Rewrite the Lambda of an .h5 file the way Keras 2 stored it: marshalled bytecode."""
    import h5py
    from keras.src.utils.python_utils import func_dump

    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        (layer,) = [item for item in config["config"]["layers"] if item["class_name"] == "Lambda"]
        layer["config"].update(
            function=list(func_dump(marker_lambda(marker))), function_type="lambda"
        )
        handle.attrs["model_config"] = json.dumps(config)
    return path


def edit_keras_config(path: Path, edit) -> Path:
    """Apply `edit` to the architecture (config.json) inside a .keras file."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


@pytest.mark.parametrize("file_format", ["keras", "h5", "keras2-h5"])
@pytest.mark.parametrize("scan", [True, False], ids=["scanned", "keras-safe-mode-alone"])
def test_lambda_layers_are_refused_and_never_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_format: str, scan: bool
) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / f"hostile.{file_format.split('-')[-1]}"
    model_with_lambda(marker).save(path)
    if file_format == "keras2-h5":
        as_keras2_h5(path, marker)
    if not scan:  # without our own check, Keras' safe mode must refuse the file by itself
        monkeypatch.setattr("mnist_core.ml.model_files._code_in", lambda config: None)

    with pytest.raises(ModelError) as info:
        load_model_file(path)

    message = str(info.value)
    if scan:
        assert message == (
            f"model {path.name!r} contains a Lambda layer (Python code); it was not loaded, "
            "because loading it could run code from the file. Use a model saved by this tool"
        )
    else:
        assert message.startswith(f"cannot load model {path.name!r}: Requested the ")
        assert "Lambda" in message and "\n" not in message and len(message) < 300
    assert not marker.exists()


@pytest.mark.parametrize(
    ("edit", "described"),
    [
        (
            lambda layer: layer.update(module="hostile_module", class_name="Payload"),
            "'Payload' from the module 'hostile_module' (custom code)",
        ),
        (
            lambda layer: layer.update(registered_name="Custom>Payload"),
            "the custom object 'Custom>Payload' (custom code)",
        ),
    ],
    ids=["module", "registered"],
)
def test_custom_classes_are_refused_and_their_module_never_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained, edit, described: str
) -> None:
    marker = tmp_path / "code-ran"
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "hostile_module.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "import keras\nclass Payload(keras.layers.Layer):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(modules))
    path = tmp_path / "custom.keras"
    trained.model.save(path)

    def make_custom(config: dict) -> None:
        dense = next(item for item in config["config"]["layers"] if item["class_name"] == "Dense")
        edit(dense)

    edit_keras_config(path, make_custom)

    with pytest.raises(ModelError, match=re.escape(f"contains {described}; it was not loaded")):
        load_model_file(path)
    assert not marker.exists()
    assert "hostile_module" not in sys.modules


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "it is not a .keras model file, or it is damaged"),
        (b"PK\x03\x04 a truncated zip", "it is not a .keras model file, or it is damaged"),
    ],
)
def test_files_that_are_not_models(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "model.keras"
    path.write_bytes(content)

    with pytest.raises(ModelError, match=re.escape(message)):
        load_model_file(path)


def test_h5_that_is_not_hdf5_or_holds_only_weights(tmp_path: Path, trained) -> None:
    fake = tmp_path / "fake.h5"
    fake.write_bytes(b"not hdf5")
    with pytest.raises(ModelError, match=r"it is not an \.h5 \(HDF5\) model file"):
        load_model_file(fake)

    weights = tmp_path / "only.weights.h5"
    trained.model.save_weights(weights)
    with pytest.raises(ModelError, match="holds weights but no architecture"):
        load_model_file(weights)


# --- leftovers of interrupted saves ---


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_clean_removes_only_stale_leftovers(store: RunStore, run_id: str) -> None:
    stale_save = store.root / f".tmp-{run_id}-0a1b2c3d"
    stale_save.mkdir()
    (stale_save / "model.keras").write_bytes(b"half a model")
    stale_trash = store.root / ".tmp-deleted-20200101-000000-mlp-abcdef-a1b2c3"
    stale_trash.mkdir()
    stale_export = store.root / ".tmp-1a2b3c4d-copy.h5"
    stale_export.write_bytes(b"half an h5")
    fresh = store.root / ".tmp-20990101-000000-mlp-ffffff-0a1b2c3d"
    fresh.mkdir()  # a save in progress in another process
    for path in (stale_save, stale_trash, stale_export):
        age(path, STALE_TEMP_SECONDS + 1)
    age(store.root / run_id, 10 * STALE_TEMP_SECONDS)  # old runs are never touched

    removed = store.clean()

    assert sorted(removed) == sorted(p.name for p in (stale_save, stale_trash, stale_export))
    assert sorted(p.name for p in store.root.iterdir()) == sorted([run_id, fresh.name])
    assert store.clean(max_age=0) == [fresh.name]
    assert [run.run_id for run in store.list()] == [run_id]


def test_a_reserved_folder_no_save_filled_is_removed_an_hour_later(
    store: RunStore, run_id: str
) -> None:
    """What a training killed before its first checkpoint leaves: its event files so far."""
    reserved = store.root / store.reserve("mlp")
    events = reserved / LOGS_DIR / "train" / "events.out.tfevents.1.host.1.0.v2"
    events.parent.mkdir(parents=True)
    events.write_bytes(b"the epochs so far")
    for path in (reserved, reserved / LOGS_DIR, events.parent):
        age(path, STALE_TEMP_SECONDS + 1)

    # Its training may still be writing: an epoch ended within the hour.
    assert store.clean() == [] and events.exists()
    assert [run.run_id for run in store.list()] == [run_id]  # never listed
    age(events, STALE_TEMP_SECONDS + 1)
    age(store.root / run_id, STALE_TEMP_SECONDS + 1)  # a run that was saved stays

    assert store.clean() == [reserved.name]
    assert sorted(p.name for p in store.root.iterdir()) == [run_id]


def test_list_cleans_on_the_way(store: RunStore, run_id: str) -> None:
    leftover = store.root / f".tmp-{run_id}-0a1b2c3d"
    shutil.copytree(store.root / run_id, leftover)
    assert [run.run_id for run in store.list()] == [run_id]
    assert leftover.exists()

    age(leftover, STALE_TEMP_SECONDS + 1)

    assert [run.run_id for run in store.list()] == [run_id]
    assert not leftover.exists()


def test_clean_on_a_store_that_does_not_exist_yet(tmp_path: Path) -> None:
    assert RunStore(tmp_path / "nothing").clean(max_age=0) == []


# --- the learning replay ---


def test_replay_is_saved_with_the_run(runs_dir: Path, trained) -> None:
    run = RunStore(runs_dir).get(RunStore(runs_dir).save(trained))
    indices, answers = run.replay()
    assert indices.tolist() == trained.replay_indices.tolist()
    assert answers.shape == trained.replay.shape and answers.dtype == np.float32
    np.testing.assert_allclose(answers, trained.replay, atol=1e-3)  # stored as float16


@pytest.mark.parametrize("damage", ["missing", "garbage", "wrong shape"])
def test_a_run_without_a_usable_replay_has_none(runs_dir: Path, trained, damage: str) -> None:
    run = RunStore(runs_dir).get(RunStore(runs_dir).save(trained))
    path = run.path / "replay.npz"
    if damage == "missing":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"not an npz")
    else:
        np.savez(path, indices=np.arange(3), probabilities=np.zeros((2, 4, 10)))
    assert run.replay() is None
    assert RunStore(runs_dir).get(run.run_id).test_accuracy == trained.test_accuracy


# --- checkpoints of runs in training (RunRecorder) ---


def test_a_checkpoint_is_hidden_while_its_process_trains(runs_dir: Path, trained) -> None:
    store = RunStore(runs_dir)
    recorder = RunRecorder(store)
    recorder.checkpoint(dataclasses.replace(trained, epochs_run=1, best_epoch=1))
    run = store.get(recorder.run_id)

    assert run.status == "interrupted" and run.training  # this process is alive
    assert run.metrics.writer_pid == os.getpid()
    assert store.list() == []
    assert run.metrics.data_source == trained.data_source == "synthetic digits"


def test_finishing_replaces_the_checkpoint_under_the_same_id(runs_dir: Path, trained) -> None:
    store = RunStore(runs_dir)
    recorder = RunRecorder(store)
    recorder.checkpoint(dataclasses.replace(trained, epochs_run=1, best_epoch=1))
    recorder.checkpoint(dataclasses.replace(trained, epochs_run=2, best_epoch=2))
    checkpoint_id = recorder.run_id

    assert store.get(checkpoint_id).metrics.epochs_run == 2
    run_id = recorder.finish(trained)

    assert run_id == checkpoint_id
    (run,) = store.list()
    assert (run.run_id, run.status, run.training) == (run_id, "completed", False)
    assert run.metrics.writer_pid is None
    assert "writer_pid" not in json.loads((run.path / "metrics.json").read_text())
    assert run.metrics.epochs_run == trained.epochs_run
    assert sorted(p.name for p in runs_dir.iterdir()) == [run_id]  # nothing left aside


def test_an_abandoned_checkpoint_lists_as_interrupted(runs_dir: Path, trained) -> None:
    store = RunStore(runs_dir)
    recorder = RunRecorder(store)
    recorder.abandon()  # nothing saved yet: nothing to do
    assert store.list() == []

    recorder.checkpoint(dataclasses.replace(trained, epochs_run=2, best_epoch=2))
    recorder.abandon()

    (run,) = store.list()
    assert (run.status, run.training) == ("interrupted", False)
    assert run.label.endswith(", interrupted")
    assert run.metrics.writer_pid is None
    assert "writer_pid" not in json.loads((run.path / "metrics.json").read_text())
    assert not list(run.path.glob(".tmp-*"))


def test_a_training_that_fails_before_its_first_save_leaves_nothing(runs_dir: Path) -> None:
    recorder = RunRecorder(RunStore(runs_dir))
    log_dir = recorder.reserve_logs("mlp")
    assert (log_dir.name, log_dir.parent.parent) == (LOGS_DIR, runs_dir.resolve())
    (log_dir / "train").mkdir(parents=True)  # where its first epoch went

    recorder.abandon()

    assert list(runs_dir.iterdir()) == []


def test_a_replacement_killed_between_its_renames_is_put_back(runs_dir: Path, trained) -> None:
    store = RunStore(runs_dir)
    run_id = store.save(trained)
    aside = runs_dir / f".tmp-replaced-{run_id}-abc123"
    os.rename(runs_dir / run_id, aside)  # where a kill between the two renames leaves it

    assert [run.run_id for run in store.list()] == [run_id]
    assert not aside.exists()


def test_a_run_moved_aside_is_not_put_back_over_a_newer_one(runs_dir: Path, trained) -> None:
    store = RunStore(runs_dir)
    run_id = store.save(trained)
    aside = runs_dir / f".tmp-replaced-{run_id}-abc123"
    shutil.copytree(runs_dir / run_id, aside)

    assert [run.run_id for run in store.list()] == [run_id]
    assert aside.exists()  # a stale leftover, removed an hour later like the others


def test_a_bundled_run_cannot_be_replaced(tmp_path: Path, trained) -> None:
    bundled = RunStore(tmp_path / "bundled")
    run_id = bundled.save(trained)
    store = RunStore(tmp_path / "runs", pretrained=tmp_path / "bundled")

    with pytest.raises(ModelError, match="ships with the app"):
        store.save(trained, run_id=run_id)


# --- processes killed with SIGKILL while training and while saving ---

# Run by two processes at once. Each trains a tiny model, waits for the other, and saves it
# twice (the saves race). Then "train" starts a long training that saves a checkpoint at every
# better epoch, and "save" a save whose model.save writes half a file and hangs: the test kills
# both with SIGKILL, "train" once it has saved two checkpoints (possibly while saving a third).
CHILD = """
import sys, time
from pathlib import Path

import keras
import numpy as np

from mnist_core.config import TrainConfig
from mnist_core.data import MnistData
from mnist_core.runs import RunRecorder, RunStore
from mnist_core.ml.train import train

role, root, meeting = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (220, 28, 28), dtype=np.uint8)
labels = (np.arange(220) % 10).astype(np.uint8)
data = MnistData(images[:200], labels[:200], images[200:], labels[200:], source="random")
config = TrainConfig(hidden_units=(16,), batch_size=50, epochs=1, patience=0)
result = train(config, data)
store = RunStore(root)

(meeting / role).touch()
deadline = time.monotonic() + 120
while len(list(meeting.iterdir())) < 2 and time.monotonic() < deadline:
    time.sleep(0.005)
for _ in range(2):
    print("saved", store.save(result), flush=True)

if role == "train":
    recorder = RunRecorder(store)
    checkpoints = []

    def checkpoint(result):
        recorder.checkpoint(result)
        checkpoints.append(result.best_epoch)
        if len(checkpoints) == 2:
            print("training", recorder.run_id, flush=True)

    long = config.replace(epochs=200, batch_size=2)
    train(long, data, on_checkpoint=checkpoint, checkpoint_seconds=0)
else:
    original_save = keras.Model.save

    def hanging_save(model, path, *args, **kwargs):
        original_save(model, path, *args, **kwargs)
        content = Path(path).read_bytes()
        Path(path).write_bytes(content[: len(content) // 2])
        print("saving", flush=True)
        time.sleep(600)

    keras.Model.save = hanging_save
    store.save(result)
print("not killed", flush=True)
"""


@dataclasses.dataclass
class KilledStore:
    root: Path
    saved: dict[str, list[str]]  # run ids each child printed before it was killed
    entries: list[str]  # the store's folder right after the kills, before anyone listed it
    checkpoint: str  # the run id of the killed training's checkpoints


@pytest.fixture(scope="module")
def killed_store(tmp_path_factory: pytest.TempPathFactory) -> KilledStore:
    folder = tmp_path_factory.mktemp("killed")
    root, meeting = folder / "runs", folder / "meeting"
    meeting.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    markers = {"train": "training", "save": "saving"}
    saved: dict[str, list[str]] = {role: [] for role in markers}
    checkpoint: list[str] = []
    reached = {role: threading.Event() for role in markers}
    children = {}
    for role in markers:
        with open(folder / f"{role}.log", "w") as log:
            children[role] = subprocess.Popen(
                [sys.executable, "-c", CHILD, role, str(root), str(meeting)],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )

    def follow(role: str) -> None:
        for line in children[role].stdout:
            word, _, value = line.strip().partition(" ")
            if word == "saved":
                saved[role].append(value)
            elif word == markers[role]:
                checkpoint.extend([value] if value else [])
                reached[role].set()
                return

    readers = [threading.Thread(target=follow, args=(role,)) for role in markers]
    for reader in readers:
        reader.start()
    try:
        for role in markers:
            if not reached[role].wait(timeout=180):
                log = (folder / f"{role}.log").read_text()[-3000:]
                pytest.fail(f"the {role!r} child never reached {markers[role]!r}:\n{log}")
            os.kill(children[role].pid, signal.SIGKILL)
    finally:
        for child in children.values():
            child.kill()
            child.wait(timeout=30)
        for reader in readers:
            reader.join(timeout=30)
    assert [children[role].returncode for role in markers] == [-signal.SIGKILL] * 2
    (checkpoint_id,) = checkpoint
    return KilledStore(root, saved, sorted(p.name for p in root.iterdir()), checkpoint_id)


def half_saved_leftovers(killed_store: KilledStore) -> list[str]:
    """The killed save's hidden folders: not the checkpoint's (which may have been mid-save)."""
    return [
        name
        for name in killed_store.entries
        if name.startswith(".tmp-")
        and killed_store.checkpoint not in name  # `.tmp-<id>-*`, `.tmp-replaced-<id>-*`
    ]


def test_two_processes_saving_at_once_lose_nothing(killed_store: KilledStore, digits) -> None:
    saved = killed_store.saved["train"] + killed_store.saved["save"]
    store = RunStore(killed_store.root)  # a new process's view: a server restart

    assert len(saved) == len(set(saved)) == 4
    listed = [run.run_id for run in store.list()]
    assert sorted(listed) == sorted([*saved, killed_store.checkpoint])
    for run_id in listed:
        assert predict_proba(store.load_model(run_id), digits.x_test[:2]).shape == (2, 10)


def test_sigkill_while_training_keeps_the_best_model_of_the_last_checkpoint(
    killed_store: KilledStore,
) -> None:
    store = RunStore(killed_store.root)
    store.list()  # puts back a checkpoint replacement the kill interrupted
    run = store.get(killed_store.checkpoint)

    assert run.status == "interrupted" and run.label.endswith(", interrupted")
    assert not run.training  # its process is dead, so it is listed
    assert run.metrics.best_epoch >= 2  # two checkpoints were saved before the kill
    assert run.metrics.epochs_run == len(run.history["loss"]) >= run.metrics.best_epoch
    best = run.metrics.best_epoch - 1
    assert run.history["val_loss"][best] == min(run.history["val_loss"])
    # The model on disk is the one that was evaluated: the child's 20 test images.
    x_test = np.random.default_rng(0).integers(0, 256, (220, 28, 28), dtype=np.uint8)[200:]
    probabilities = predict_proba(load_model_file(run.model_path), x_test)
    np.testing.assert_allclose(probabilities, run.test_probabilities(), atol=1e-5)


def test_sigkill_while_training_or_saving_leaves_only_complete_runs(
    killed_store: KilledStore,
) -> None:
    saved = killed_store.saved["train"] + killed_store.saved["save"]
    hidden = [name for name in killed_store.entries if name.startswith(".tmp-")]
    leftovers = half_saved_leftovers(killed_store)

    # Apart from hidden folders: the saved runs and the checkpoint (unless the kill came
    # between the two renames of its replacement; then `list` puts it back, as tested above).
    visible = set(killed_store.entries) - set(hidden)
    assert visible - {killed_store.checkpoint} == set(saved)
    # The killed save left one hidden, unlisted folder.
    assert len(leftovers) == 1
    half_saved = killed_store.root / leftovers[0]
    with pytest.raises(ModelError, match="cannot load model 'model.keras'"):
        load_model_file(half_saved / "model.keras")
    unfinished_id = leftovers[0][len(".tmp-") :].rsplit("-", 1)[0]
    with pytest.raises(ModelError, match="does not exist"):
        RunStore(killed_store.root).get(unfinished_id)


def test_a_killed_save_is_cleaned_up_an_hour_later(killed_store: KilledStore) -> None:
    store = RunStore(killed_store.root)
    store.list()  # puts back a checkpoint replacement the kill interrupted
    (leftover,) = [store.root / name for name in half_saved_leftovers(killed_store)]
    assert store.clean() == [] and leftover.exists()  # it might still be a save in progress

    for path in store.root.glob(".tmp-*"):
        age(path, STALE_TEMP_SECONDS + 1)

    assert len(store.list()) == 5
    assert not leftover.exists()
    assert sorted(p.name for p in store.root.iterdir()) == sorted(
        [*killed_store.saved["train"], *killed_store.saved["save"], killed_store.checkpoint]
    )


def test_a_packed_run_is_added_under_a_new_or_its_own_id(
    store: RunStore, run_id: str, tmp_path: Path
) -> None:
    packed = pack_run(store.root / run_id)
    other = RunStore(tmp_path / "other")

    new_id = other.add_packed(packed)
    same_id = RunStore(tmp_path / "third").add_packed(packed, run_id=run_id)

    assert same_id == run_id and new_id != run_id
    original, copy = store.get(run_id), other.get(new_id)
    assert copy.metrics == original.metrics and copy.history == original.history
    names = sorted(p.name for p in (store.root / run_id).iterdir())
    assert sorted(p.name for p in (other.root / new_id).iterdir()) == names
    assert (other.root / new_id / "model.keras").read_bytes() == original.model_path.read_bytes()


def test_a_packed_run_takes_its_event_files_along(
    store: RunStore, run_id: str, tmp_path: Path
) -> None:
    events = store.root / run_id / LOGS_DIR / "validation" / "events.out.tfevents.1.host.2.0.v2"
    events.parent.mkdir(parents=True)
    events.write_bytes(b"\x00event records")
    other = RunStore(tmp_path / "other")

    new_id = other.add_packed(pack_run(store.root / run_id))

    copied = other.get(new_id).log_dir / "validation" / events.name
    assert copied.read_bytes() == events.read_bytes()


def test_add_packed_refuses_what_is_not_a_run(store: RunStore, run_id: str) -> None:
    def zipped(files: dict[str, bytes]) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content in files.items():
                archive.writestr(name, content)
        return buffer.getvalue()

    folder = store.root / run_id
    complete = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    cases = [
        b"not a zip file",
        zipped({**complete, "../escape.json": b"{}"}),
        zipped({**complete, "logs/train/../../escape.json": b"{}"}),
        zipped({**complete, "logs/train/deeper/events": b""}),
        zipped({**complete, "elsewhere/train/events": b""}),
        zipped({k: v for k, v in complete.items() if k != "model.keras"}),
        zipped({**complete, "metrics.json": b"{broken"}),
    ]
    before = sorted(p.name for p in store.root.iterdir())
    for packed in cases:
        with pytest.raises(ModelError, match="not a packed run|damaged|incomplete"):
            store.add_packed(packed)
    assert sorted(p.name for p in store.root.iterdir()) == before  # nothing saved
    assert store.add_packed(pack_run(folder)) != run_id  # a good one still goes in
