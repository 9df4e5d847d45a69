"""Imports in a subprocess, polled (`mnist_core.import_jobs`): what the Results page starts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mnist_core.errors import ModelError
from mnist_core.import_jobs import ImportJob, safe_file_name
from mnist_core.runs import RunStore


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mnist_model.h5", "mnist_model.h5"),
        ("my model (2).keras", "my_model_2_.keras"),
        ("../../etc/passwd.h5", "passwd.h5"),
        ("C:\\Users\\me\\net.keras", "C_Users_me_net.keras"),
        ("..", "upload"),
        ("x" * 300 + ".h5", "x" * 97 + ".h5"),
    ],
)
def test_safe_file_name(name: str, expected: str) -> None:
    assert safe_file_name(name) == expected


def wait(job: ImportJob, timeout: float = 180) -> dict | None:
    deadline = time.monotonic() + timeout
    while (summary := job.result()) is None:
        assert time.monotonic() < deadline, "the import did not end"
        time.sleep(0.2)
    return summary


def test_an_import_runs_in_a_subprocess_and_reports_its_run(
    digits, data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keras_seed
) -> None:
    import keras

    monkeypatch.setenv("MNIST_PATH", str(data_file))
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, activation="softmax")])
    model.save(tmp_path / "flat.keras")
    runs = tmp_path / "runs"

    job = ImportJob(
        (tmp_path / "flat.keras").read_bytes(), "my flat.keras", runs, name="Flat", scale="1"
    )

    assert job.result() is None and job.file_name == "my_flat.keras"
    summary = wait(job)
    run = RunStore(runs).get(summary["run_id"])
    assert summary["name"] == "Flat" and summary["input"] == "(784,)"
    assert summary["scale"] == "[0, 1]" and run.imported.scale_note == "chosen at import"
    assert summary["test_accuracy"] == pytest.approx(run.test_accuracy, abs=1e-4)
    assert run.imported.file == "my_flat.keras"
    assert not job._folder.exists()  # the upload's copy is removed


def test_a_failed_import_raises_its_one_line_reason_every_time(
    data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNIST_PATH", str(data_file))
    job = ImportJob(b"not a model", "model.h5", tmp_path / "runs")

    for _ in range(2):
        with pytest.raises(ModelError) as error:
            wait(job)
        assert str(error.value).startswith(
            "cannot load model 'model.h5': it is not an .h5 (HDF5) model file, or it is damaged"
        )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_cancelled_or_too_slow_import_saves_nothing(
    data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNIST_PATH", str(data_file))
    runs = tmp_path / "runs"
    cancelled = ImportJob(b"garbage", "model.keras", runs)
    slow = ImportJob(b"garbage", "model.keras", runs, timeout=0.0)

    cancelled.cancel()
    time.sleep(0.1)

    with pytest.raises(ModelError, match="^the import was cancelled$"):
        cancelled.result()
    with pytest.raises(ModelError, match=r"^importing model.keras took over 0 s and was stopped"):
        slow.result()
    assert cancelled._process.returncode is not None and slow._process.returncode is not None
    assert not runs.exists() or not any(runs.iterdir())
