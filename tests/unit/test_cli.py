"""Tests for mnist_core.cli: `python -m mnist_core
train|evaluate|predict|runs|export|import|logs`, in process and once as a real subprocess, with
their exit codes, messages and JSON summaries."""

from __future__ import annotations

import filecmp
import io
import json
import os
import re
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_core.cli import main
from mnist_core.ml.model_files import load_model_file
from mnist_core.ml.predict import predict_proba
from mnist_core.preprocess import load_image, to_mnist
from mnist_core.runs import RunStore
from mnist_core.serving import predict_digit

pytestmark = pytest.mark.usefixtures("keras_seed")

REPO = Path(__file__).resolve().parents[2]
SUMMARY_KEYS = {
    "run_id",
    "model_path",
    "test_accuracy",
    "test_loss",
    "epochs_run",
    "best_epoch",
    "stopped_early",
    "train_seconds",
}
# Quick settings for the 400 synthetic training digits.
QUICK = ["--hidden-units", "32", "--learning-rate", "0.01", "--batch-size", "32"]


@pytest.fixture
def saved_run(runs_dir: Path, trained) -> str:
    return RunStore(runs_dir).save(trained)


def last_json(text: str) -> object:
    return json.loads(text.strip().splitlines()[-1])


def write_png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels, mode="L").save(path)
    return path


def test_train_prints_a_json_summary_and_writes_a_report_and_h5(
    data_file: Path, runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report, h5 = tmp_path / "report", tmp_path / "model.h5"

    code = main(
        ["train", "--data", str(data_file), "--runs-dir", str(runs_dir), *QUICK]
        + ["--epochs", "2", "--patience", "0", "--json", "--report", str(report), "--save", str(h5)]
    )

    assert code == 0
    out, err = capsys.readouterr()
    summary = last_json(out)
    assert set(summary) == SUMMARY_KEYS
    run = RunStore(runs_dir).get(summary["run_id"])
    assert summary["model_path"] == str(run.model_path)
    assert Path(summary["model_path"]).is_absolute() and Path(summary["model_path"]).is_file()
    assert summary["model_path"].endswith(".keras")
    assert summary["test_accuracy"] == run.test_accuracy
    assert 0.5 < summary["test_accuracy"] <= 1.0
    assert summary["test_loss"] == pytest.approx(run.metrics.test_loss)
    assert (summary["epochs_run"], summary["stopped_early"]) == (2, False)
    assert summary["best_epoch"] in (1, 2)
    assert summary["train_seconds"] >= 0
    assert run.config.hidden_units == (32,) and run.config.learning_rate == 0.01
    assert run.config.epochs == 2 and run.config.batch_size == 32
    assert sorted(path.name for path in run.log_dir.iterdir()) == ["train", "validation"]
    # A readable table comes first, the JSON line last.
    assert out.splitlines()[0].split() == ["run_id", summary["run_id"]]
    assert f"Training mlp on {data_file}" in err
    assert [line[:9] for line in err.splitlines() if line.startswith("Epoch")] == [
        "Epoch 1/2",
        "Epoch 2/2",
    ]

    assert (report / "plotly.min.js").is_file()  # the report opens without a network
    curves = (report / "curves.html").read_text()
    assert '"run \\u00b7 validation"' in curves and '"run \\u00b7 best epoch"' in curves
    samples = (report / "samples.html").read_text()
    with np.load(data_file) as arrays:
        x_test, y_test = arrays["x_test"], arrays["y_test"]
    predicted = run.test_probabilities()[:30].argmax(axis=1)
    for index in (0, 29):  # the gallery shows the first 30 test digits, captioned in JSON
        assert f'"{y_test[index]} \\u2192 {predicted[index]} (' in samples

    model = load_model_file(h5)
    np.testing.assert_allclose(
        predict_proba(model, x_test),
        predict_proba(RunStore(runs_dir).load_model(summary["run_id"]), x_test),
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--epochs", "0"], "epochs: must be from 1 to 200, got 0"),
        (["--epochs", "100000"], "epochs: must be from 1 to 200, got 100000"),
        (["--learning-rate", "nan"], "learning_rate: must be from 1e-06 to 1, got nan"),
        (["--patience", "-1"], "patience: must be from 0 to 50, got -1"),
        (
            ["--architecture", "rnn"],
            "architecture: must be one of ['mlp', 'cnn', 'vgg', 'strided', 'deep'], got 'rnn'",
        ),
        (["--dropout-rate", "2"], "dropout_rate: must be from 0 to 0.9, got 2.0"),
        (["--batch-size", "1000000"], "batch_size: must be from 1 to 4096, got 1000000"),
        (["--hidden-units", "10000000"], "hidden_units: must be from 1 to 2048, got 10000000"),
        (["--validation-split", "0", "--patience", "3"], "patience: early stopping watches"),
    ],
)
def test_invalid_settings_exit_2_naming_the_field(
    arguments: list[str],
    message: str,
    data_file: Path,
    runs_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", "--data", str(data_file), "--runs-dir", str(runs_dir), *arguments])

    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"python -m mnist_core: error: {message}")
    assert len(err.strip().splitlines()) == 1
    assert out == ""
    assert not runs_dir.exists()  # refused before any data was read or anything trained


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--epochs", "three"], "argument --epochs: invalid int value: 'three'"),
        (["train", "--hidden-units", "a,b"], "argument --hidden-units: "),
        (["train", "--preset", "rnn"], "argument --preset: invalid choice: 'rnn'"),
        (["fly"], "argument command: invalid choice: 'fly'"),
        (["sweep"], "the following arguments are required: --grid"),
        (["sweep", "--grid", "epochs=1", "--workers", "0"], "argument --workers: must be a whole"),
        ([], "the following arguments are required: command"),
    ],
)
def test_argument_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)

    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m mnist_core")
    assert message in err


def test_missing_data_file_exits_1_with_one_line(
    runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "mnist.npz"

    code = main(["train", "--data", str(missing), "--runs-dir", str(runs_dir), "--epochs", "1"])

    assert code == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert str(missing) in lines[0] and "MNIST_PATH" in lines[0]  # names the file and the fix
    assert "Traceback" not in err
    assert not runs_dir.exists()


def test_runs_table_and_json(
    runs_dir: Path, saved_run: str, trained, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "--runs-dir", str(runs_dir)]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["run", "model", "accuracy", "epochs", "status"]
    assert row.split() == [saved_run, "mlp", f"{trained.test_accuracy:.2%}", "3", "completed"]

    assert main(["runs", "--runs-dir", str(runs_dir), "--json"]) == 0
    (listed,) = last_json(capsys.readouterr().out)
    assert listed["run_id"] == saved_run
    assert listed["architecture"] == "mlp"
    assert listed["test_accuracy"] == trained.test_accuracy
    assert (listed["epochs_run"], listed["status"]) == (3, "completed")


def test_runs_on_an_empty_store(runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--runs-dir", str(runs_dir)]) == 0
    assert capsys.readouterr().out == "No runs yet: train one with `python -m mnist_core train`.\n"
    assert main(["runs", "--runs-dir", str(runs_dir), "--json"]) == 0
    assert last_json(capsys.readouterr().out) == []


@pytest.mark.parametrize("which", ["latest", "best", "by-id"])
def test_evaluate_json(
    which: str,
    data_file: Path,
    runs_dir: Path,
    saved_run: str,
    trained,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = saved_run if which == "by-id" else which

    code = main(["evaluate", name, "--data", str(data_file), "--runs-dir", str(runs_dir), "--json"])

    assert code == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["run_id"] == saved_run
    assert summary["test_accuracy"] == pytest.approx(trained.test_accuracy)
    assert summary["test_loss"] == pytest.approx(trained.test_loss, rel=1e-5)
    assert summary["misclassified"] == len(trained.evaluation.misclassified())
    np.testing.assert_allclose(summary["recall"], trained.evaluation.recall, atol=5e-5)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("latest", "error: no runs in "),
        ("../etc", "error: '../etc' is not a run id; list the runs to pick one"),
        ("20200101-000000-mlp-abcdef", "error: run '20200101-000000-mlp-abcdef' does not exist"),
    ],
)
def test_evaluate_without_that_run_exits_1(
    name: str, message: str, data_file: Path, runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["evaluate", name, "--data", str(data_file), "--runs-dir", str(runs_dir)])

    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert len(err.strip().splitlines()) == 1


def test_predict_json_and_text(
    runs_dir: Path,
    saved_run: str,
    trained,
    digits,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    digit_png = write_png(tmp_path / "digit.png", np.array(digits.x_test[0]))
    blank_png = write_png(tmp_path / "blank.png", np.zeros((28, 28), dtype=np.uint8))
    expected, confidence, _ = predict_digit(
        trained.model, to_mnist(load_image(digit_png.read_bytes()))
    )
    arguments = ["predict", str(digit_png), str(blank_png), "--run", saved_run]

    assert main([*arguments, "--runs-dir", str(runs_dir), "--json"]) == 0
    answer = last_json(capsys.readouterr().out)
    assert answer == {
        "run_id": saved_run,
        "predictions": [
            {"image": str(digit_png), "digit": expected, "confidence": round(confidence, 4)},
            {"image": str(blank_png), "digit": None, "confidence": None},
        ],
    }

    assert main([*arguments, "--runs-dir", str(runs_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{digit_png}: {expected} ({round(confidence, 4):.1%})",
        f"{blank_png}: no digit found",
    ]


def test_predict_missing_image_exits_1(
    runs_dir: Path, saved_run: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.png"

    assert main(["predict", str(missing), "--runs-dir", str(runs_dir)]) == 1
    assert capsys.readouterr().err == (
        f"error: cannot read {str(missing)!r}: No such file or directory\n"
    )


def test_subprocess_train_json_and_keras_copy(
    data_file: Path, runs_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.keras"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MNIST_PATH", None)

    finished = subprocess.run(
        [sys.executable, "-m", "mnist_core", "train", "--data", str(data_file)]
        + ["--runs-dir", str(runs_dir), "--epochs", "1", *QUICK, "--json", "--save", str(copy)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert finished.returncode == 0, finished.stderr
    summary = last_json(finished.stdout)
    assert set(summary) == SUMMARY_KEYS
    model_path = Path(summary["model_path"])
    assert model_path.is_absolute() and model_path.is_file() and model_path.suffix == ".keras"
    assert model_path.parent == runs_dir.resolve() / summary["run_id"]
    assert isinstance(summary["test_accuracy"], float) and 0 <= summary["test_accuracy"] <= 1
    assert isinstance(summary["test_loss"], float) and summary["test_loss"] > 0
    assert (summary["epochs_run"], summary["stopped_early"]) == (1, False)
    assert summary["train_seconds"] >= 0
    assert filecmp.cmp(copy, model_path, shallow=False)
    assert "Traceback" not in finished.stderr


# --- run bundles: export and import ---


def test_export_and_import_a_bundle(
    runs_dir: Path, saved_run: str, trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, elsewhere = tmp_path / "shared.zip", tmp_path / "elsewhere"

    assert main(["export", saved_run, str(bundle), "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    size = bundle.stat().st_size
    assert out == f"Exported run {saved_run} to {bundle} ({size / 1e6:.1f} MB)\n"
    assert sorted(zipfile.ZipFile(bundle).namelist()) == sorted(
        ["bundle.json", "config.json", "history.json", "metrics.json", "model.keras"]
        + ["replay.npz", "test_probabilities.npy"]
    )

    assert main(["import", str(bundle), "--runs-dir", str(elsewhere), "--json"]) == 0
    summary = last_json(capsys.readouterr().out)
    run = RunStore(elsewhere).get(summary["run_id"])
    assert summary == {
        "run_id": run.run_id,
        "imported_from": saved_run,
        "architecture": "mlp",
        "test_accuracy": trained.test_accuracy,
        "model_path": str(run.model_path),
    }
    assert run.config == trained.config and run.history == trained.history
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "runs", "shared.zip"]


def test_export_the_pretrained_run(
    runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mnist_core.runs import PRETRAINED_DIR

    (pretrained,) = [run.run_id for run in RunStore(tmp_path / "none", PRETRAINED_DIR).list()]
    bundle = tmp_path / "pretrained.zip"

    assert main(["export", pretrained, str(bundle), "--runs-dir", str(runs_dir)]) == 0

    with zipfile.ZipFile(bundle) as archive:
        assert json.loads(archive.read("bundle.json"))["run_id"] == pretrained
        assert (
            archive.read("config.json")
            == (PRETRAINED_DIR / pretrained / "config.json").read_bytes()
        )
    assert not runs_dir.exists()  # exporting writes nothing into the store


@pytest.mark.parametrize("without_onnx", [False, True])
def test_export_the_model_as_onnx_keras_and_h5(
    saved_run: str, runs_dir: Path, tmp_path: Path, trained, digits, without_onnx: bool
) -> None:
    from mnist_core.serving import ONNX_FILE, OnnxModel

    if without_onnx:  # a run saved before runs had an ONNX file: converted for the export
        (runs_dir / saved_run / ONNX_FILE).unlink()
    expected = predict_proba(trained.model, digits.x_test)

    for suffix in (".onnx", ".keras", ".h5"):
        target = tmp_path / f"model{suffix}"
        assert main(["export", saved_run, str(target), "--runs-dir", str(runs_dir)]) == 0
        if suffix == ".onnx":
            probabilities = OnnxModel(target).predict_proba(digits.x_test)
        else:
            probabilities = predict_proba(load_model_file(target), digits.x_test)
        np.testing.assert_allclose(probabilities, expected, atol=1e-5)  # ONNX: other kernels
    assert (runs_dir / saved_run / ONNX_FILE).exists() != without_onnx  # the run is untouched
    assert filecmp.cmp(tmp_path / "model.keras", runs_dir / saved_run / "model.keras")


def test_import_refuses_bad_bundles_with_exit_1(
    runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk, missing = tmp_path / "junk.zip", tmp_path / "missing.zip"
    junk.write_bytes(b"not a zip archive")

    assert main(["import", str(junk), "--runs-dir", str(runs_dir)]) == 1
    assert capsys.readouterr().err == (
        "error: cannot import this run bundle: the file is not a .zip archive. "
        "Import only bundles exported by this tool\n"
    )
    assert main(["import", str(missing), "--runs-dir", str(runs_dir), "--json"]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"error: cannot read {str(missing)!r}: No such file or directory\n")
    assert not runs_dir.exists()


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            ["export", "latest", "run.tar"],
            2,
            "error: FILE: needs a .zip, .onnx, .keras or .h5 file name, got 'run.tar'",
        ),
        (["export", "latest"], 2, "the following arguments are required: file"),
        (["import"], 2, "the following arguments are required: file"),
        (["export", "20200101-000000-mlp-abcdef", "x.zip"], 1, "error: run '20200101-000000-mlp-"),
    ],
)
def test_export_and_import_argument_errors(
    argv: list[str],
    code: int,
    message: str,
    runs_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        returned = main([*argv, "--runs-dir", str(runs_dir)])
    except SystemExit as exit_:  # argparse exits by itself
        returned = exit_.code
    assert returned == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.zip").exists() and not (tmp_path / "run.tar").exists()


def test_logs_writes_event_files_for_the_runs_without_them(
    saved_run: str, runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_dir = RunStore(runs_dir).get(saved_run).log_dir

    assert main(["logs", "--runs-dir", str(runs_dir)]) == 0

    out, err = capsys.readouterr()
    assert out == f"{saved_run}: wrote 3 epochs\n"
    assert f"See them with: tensorboard --logdir {runs_dir.resolve()}" in err.splitlines()
    assert sorted(path.name for path in log_dir.iterdir()) == ["train", "validation"]
    files = sorted(log_dir.rglob("*"))
    assert main(["logs", saved_run, "--runs-dir", str(runs_dir)]) == 0
    assert capsys.readouterr().out == f"{saved_run}: has its event files\n"
    assert sorted(log_dir.rglob("*")) == files  # nothing written twice
    assert main(["logs", "20990101-000000-mlp-abcdef", "--runs-dir", str(runs_dir)]) == 1
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_train_help_describes_every_setting(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses

    from mnist_core.config import TrainConfig

    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps long lines
    for config_field in dataclasses.fields(TrainConfig):
        description = config_field.metadata.get("help")
        assert description, f"{config_field.name} has no description"
        option = "--" + config_field.name.replace("_", "-")
        assert f"{option} " in shown and description in shown, config_field.name
    assert "elastic distortion of training images" in shown


# --- sweep: trials as jobs, ranked by validation accuracy ---

SWEEP_TRIAL_KEYS = {
    "job_id",
    "settings",
    "state",
    "error",
    "run_id",
    "val_accuracy",
    "test_accuracy",
    "epochs_run",
    "train_seconds",
}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "ray"])
def test_sweep_on_mnist_picks_the_trial_with_the_best_validation_accuracy(
    backend: str,
    mnist_path: Path,
    runs_dir: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    """On worker processes here (MNIST from --data), and on a Ray cluster on loopback (which
    gets MNIST from $MNIST_PATH)."""
    where = (
        ["--data", str(mnist_path)]
        if backend == "local"
        else ["--ray", request.getfixturevalue("ray_head")]
    )
    code = main(
        ["sweep", "--preset", "mlp", "--grid", "learning_rate=0.001,0.003", "--epochs", "1"]
        + where
        + ["--runs-dir", str(runs_dir), "--json"]
    )

    out, err = capsys.readouterr()
    assert code == 0, err
    summary = last_json(out)
    assert set(summary) == {"sweep_id", "settings", "trials", "best_run_id"}
    assert summary["settings"] == ["learning_rate"]
    trials = summary["trials"]
    assert [set(trial) for trial in trials] == [SWEEP_TRIAL_KEYS] * 2
    assert sorted(trial["settings"]["learning_rate"] for trial in trials) == [0.001, 0.003]
    store = RunStore(runs_dir)
    runs = {trial["run_id"]: store.get(trial["run_id"]) for trial in trials}
    assert len(runs) == 2
    for trial in trials:
        run = runs[trial["run_id"]]
        assert trial["state"] == "finished" and trial["error"] is None
        assert run.config.learning_rate == trial["settings"]["learning_rate"]
        assert run.config.epochs == 1 and run.status == "completed"
        assert trial["val_accuracy"] == run.val_accuracy == run.history["val_accuracy"][0]
        assert trial["test_accuracy"] == run.test_accuracy
        assert 0.9 < trial["val_accuracy"] < 1.0 and trial["epochs_run"] == 1
    # Ranked: the first has the higher validation accuracy, and it is the best.
    assert trials[0]["val_accuracy"] > trials[1]["val_accuracy"]
    assert summary["best_run_id"] == trials[0]["run_id"]
    assert f"best run (highest validation accuracy): {trials[0]['run_id']}" in out
    table = out.splitlines()
    assert table[0].split() == ["rank", "learning_rate", "val_acc", "test_acc", "epochs"] + [
        "seconds",
        "run",
    ]
    assert table[1].split()[:3] == [
        "1",
        f"{trials[0]['settings']['learning_rate']:g}",
        f"{trials[0]['val_accuracy']:.2%}",
    ]
    # Progress: the second trial waits for the only worker (on the cluster the first also
    # reads as waiting until its trainer starts); both end with their run.
    place = "1" if backend == "local" else "[12]"
    assert re.search(rf"trial 2/2 learning_rate=0.003: waiting \(number {place} in line\)", err)
    for number, rate in ((1, "0.001"), (2, "0.003")):
        run_id = next(t["run_id"] for t in trials if t["settings"]["learning_rate"] == float(rate))
        assert f"trial {number}/2 learning_rate={rate}: finished, run {run_id}\n" in err


class ScriptedQueue:
    """A job service whose sweep goes through the given lists of trials, one per tick."""

    def __init__(self, steps: list[list]) -> None:
        self.steps, self.ticks = steps, 0

    def tick(self) -> None:
        self.ticks += 1

    def sweep(self, sweep_id: str) -> list:
        return self.steps[min(self.ticks, len(self.steps)) - 1]


def test_a_sweeps_progress_is_a_line_per_change_of_state_or_epoch() -> None:
    from mnist_core.cli import _follow_sweep
    from mnist_core.config import TrainConfig
    from mnist_core.job_service import JobRequest, JobState, JobStatus

    def trial(rate: float, state: str, losses: int = 0, position: int | None = None) -> JobStatus:
        history = {"loss": [0.5] * losses, "val_accuracy": [0.9 + n / 100 for n in range(losses)]}
        request = JobRequest(f"j{rate}", TrainConfig(learning_rate=rate), "ada", 0.0, "s")
        current = JobState(
            state,
            history=history,
            run_id="r" if state == "finished" else None,
            error="out of memory" if state == "failed" else None,
        )
        return JobStatus(request, current, position, False)

    queue = ScriptedQueue(
        [
            [trial(0.001, "starting"), trial(0.003, "queued", position=1)],
            [trial(0.001, "running"), trial(0.003, "queued", position=1)],
            [trial(0.001, "running", 1), trial(0.003, "queued", position=1)],
            [trial(0.001, "running", 1), trial(0.003, "queued", position=1)],  # no change
            [trial(0.001, "running", 2), trial(0.003, "queued", position=1)],
            [trial(0.001, "finished", 2), trial(0.003, "failed")],
        ]
    )
    stream = io.StringIO()

    ended = _follow_sweep(queue, "s", ["learning_rate"], stream, interval=0)

    assert [t.state for t in ended] == ["finished", "failed"]
    assert stream.getvalue().splitlines() == [
        "trial 1/2 learning_rate=0.001: starting",
        "trial 2/2 learning_rate=0.003: waiting (number 1 in line)",
        "trial 1/2 learning_rate=0.001: running",
        "trial 1/2 learning_rate=0.001: epoch 1/20, val_accuracy 0.9000",
        "trial 1/2 learning_rate=0.001: epoch 2/20, val_accuracy 0.9100",
        "trial 1/2 learning_rate=0.001: finished, run r",
        "trial 2/2 learning_rate=0.003: failed: out of memory",
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--grid", "learning_rate=5"], "learning_rate: must be from 1e-06 to 1, got 5.0"),
        (["--grid", "speed=1,2"], "speed: is not a setting a sweep can vary; choose one of"),
        (
            ["--grid", "learning_rate=0.001,0.003,0.01", "--grid", "batch_size=32,64,128"],
            "grid: 3 × 3 values make 9 trials, more than this server's limit of 6 "
            "(MNIST_MAX_SWEEP); remove some values",
        ),
        (
            ["--grid", "learning_rate=0.001", "--grid", "dropout_rate=0.2", "--grid", "seed=1"],
            "grid: a sweep varies at most 2 settings, got 3",
        ),
        (["--grid", "epochs=1,2", "--epochs", "0"], "epochs: must be from 1 to 200, got 0"),
        (
            ["--grid", "epochs=1,2", "--ray", "ray://head:10001", "--workers", "2"],
            "--workers: is not available with --ray (the cluster decides)",
        ),
    ],
)
def test_sweep_refuses_bad_grids_and_settings_with_exit_2(
    arguments: list[str], message: str, runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["sweep", "--runs-dir", str(runs_dir), *arguments])

    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"python -m mnist_core: error: {message}")
    assert len(err.strip().splitlines()) == 1 and out == ""
    assert not runs_dir.exists()  # nothing queued


@pytest.mark.parametrize("command", [["train", "--epochs", "1"], ["sweep", "--grid", "seed=1,2"]])
def test_an_unreachable_cluster_is_one_line_and_exit_1(
    command: list[str], runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([*command, "--ray", "127.0.0.2:9", "--runs-dir", str(runs_dir)])  # no one there

    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: The Ray cluster at 127.0.0.2:9 does not answer (")
    assert "Check MNIST_RAY_ADDRESS" in err[-1] and not runs_dir.exists()


def test_a_sweep_the_queue_cannot_take_exits_1(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MNIST_MAX_QUEUE", "1")

    code = main(["sweep", "--grid", "seed=1,2", "--runs-dir", str(runs_dir)])

    assert code == 1
    assert capsys.readouterr().err == (
        "error: This server queues at most 1 trainings, fewer than the 2 trials of this sweep; "
        "remove some values.\n"
    )


def test_a_sweep_whose_trials_fail_reports_each_and_exits_1(
    runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.npz"

    code = main(
        ["sweep", "--grid", "seed=1,2", "--data", str(missing), "--runs-dir", str(runs_dir)]
        + ["--json"]
    )

    assert code == 1
    out, err = capsys.readouterr()
    failures = [line for line in err.splitlines() if line.startswith("error: ")]
    assert [line.split(" failed: ")[0] for line in failures] == [
        "error: trial 1/2 seed=1",
        "error: trial 2/2 seed=2",
    ]
    assert all(str(missing) in line and "Traceback" not in line for line in failures)
    summary = last_json(out)
    assert summary["best_run_id"] is None
    assert [(t["state"], t["run_id"]) for t in summary["trials"]] == [("failed", None)] * 2
    assert out.startswith("No trial finished with a run.\n")


def test_ctrl_c_stops_every_trial_of_a_sweep(mnist_path: Path, runs_dir: Path) -> None:
    """Real MNIST: the synthetic digits train 200 epochs in the time a stop takes."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mnist_core", "sweep", "--grid", "seed=1,2", "--epochs", "200"]
        + ["--data", str(mnist_path), "--runs-dir", str(runs_dir)],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = []
    for line in process.stderr:  # wait until the first trial has trained an epoch
        lines.append(line)
        if "trial 1/2 seed=1: epoch " in line:
            break
    process.send_signal(signal.SIGINT)
    out, rest = process.communicate(timeout=120)

    assert process.returncode == 130, "".join(lines) + rest
    assert "Stopping every trial" in rest and rest.endswith("interrupted\n")
    states = [json.loads(path.read_text()) for path in sorted(runs_dir.glob(".jobs/*/state.json"))]
    assert [state["state"] for state in states] == ["stopped", "stopped"]
    first = RunStore(runs_dir).get(states[0]["run_id"])
    assert first.status == "stopped" and first.metrics.epochs_run < 200
    assert states[1]["run_id"] is None  # cancelled while it waited


@pytest.mark.slow
def test_train_on_a_ray_cluster_saves_a_run_that_scores_like_a_local_one(
    ray_head: str, mnist_path: Path, runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "--preset", "mlp", "--epochs", "1", "--ray", ray_head] + RUNS(runs_dir))
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = last_json(out)
    assert "on the Ray cluster at" in err and "Epoch 1/1  loss " in err

    # The run landed here: it loads and scores on MNIST's test set as a local run does.
    assert main(["evaluate", summary["run_id"], "--data", str(mnist_path)] + RUNS(runs_dir)) == 0
    evaluated = last_json(capsys.readouterr().out)
    assert evaluated["test_accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-4)
    run = RunStore(runs_dir).get(summary["run_id"])
    assert run.onnx_path.is_file() and run.config.epochs == 1 and 0.9 < run.test_accuracy < 1


def RUNS(runs_dir: Path) -> list[str]:  # noqa: N802 - reads as the flags it stands for
    return ["--runs-dir", str(runs_dir), "--json"]
