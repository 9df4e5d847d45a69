"""The dashboard's pages run headless with AppTest, on real MNIST and a small trained model."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120  # seconds per script run: importing TensorFlow alone takes several


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory: pytest.TempPathFactory, mnist) -> Path:
    """A run store holding one small MLP run trained on real MNIST (2 epochs)."""
    from mnist_core.config import TrainConfig
    from mnist_core.runs import RunStore
    from mnist_core.train import train

    folder = tmp_path_factory.mktemp("runs")
    result = train(TrainConfig.preset("mlp", epochs=2), mnist)
    RunStore(folder).save(result, data_source=mnist.source, data_fingerprint=mnist.fingerprint)
    return folder


@pytest.fixture
def app_env(trained_runs: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MNIST_RUNS_DIR", str(trained_runs))
    monkeypatch.chdir(ROOT)
    return trained_runs


def page(name: str) -> AppTest:
    """The app, through its entry point (navigation and sidebar), opened at page `name`."""
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=TIMEOUT)
    return at.switch_page(f"pages/{name}.py")


def canvas_with(digit: np.ndarray, size: int = 160, left: int = 20, top: int = 90) -> np.ndarray:
    """A 280x280 RGBA canvas like the Sketch page's, with a 28x28 MNIST digit drawn on it."""
    canvas = np.zeros((280, 280, 4), dtype=np.uint8)
    canvas[..., 3] = 255  # the page's canvas has an opaque black background
    big = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR))
    region = canvas[top : top + size, left : left + size]
    region[..., 0] = region[..., 1] = region[..., 2] = big
    return canvas


def plotly_array(value: object) -> np.ndarray:
    """An array from a plotly figure's JSON, which may hold it base64-encoded."""
    if isinstance(value, dict) and "bdata" in value:
        shape = [int(n) for n in str(value.get("shape", "-1")).split(",")]
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).reshape(shape)
    return np.asarray(value)


def test_home_runs_without_tensorflow(app_env: Path) -> None:
    script = (
        "import sys, json\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({str(ROOT / 'dashboard.py')!r}, default_timeout=60).run()\n"
        "print(json.dumps({'exception': [e.value for e in at.exception],"
        " 'titles': [t.value for t in at.title],"
        " 'metrics': [m.value for m in at.sidebar.metric],"
        " 'tensorflow': 'tensorflow' in sys.modules}))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MNIST_RUNS_DIR": str(app_env)},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["exception"] == []
    assert report["titles"] == ["Digit recognition dashboard"]
    assert report["metrics"] and report["metrics"][0].startswith("MLP · ")
    assert report["tensorflow"] is False


def test_results_shows_curves_matrix_and_gallery(app_env: Path) -> None:
    at = page("results").run()
    assert not at.exception
    assert [m.label for m in at.metric][:2] == ["Test accuracy", "Test loss"]
    accuracy = float(at.metric[0].value.rstrip("%"))
    assert 95.0 < accuracy < 100.0
    charts = at.get("plotly_chart")
    assert len(charts) == 3  # curves, confusion matrix, per-digit bars
    curves = json.loads(charts[0].proto.spec)
    assert [trace["name"] for trace in curves["data"]][:2] == [
        f"{at.selectbox(key='results_run').value} · train",
        f"{at.selectbox(key='results_run').value} · validation",
    ]
    matrix = json.loads(charts[1].proto.spec)["data"][0]["text"]
    assert plotly_array(matrix).shape == (10, 10)
    assert plotly_array(matrix).sum() == 10_000
    gallery = at.get("html")[0].proto.body
    assert gallery.count("<figure") == 40
    assert "test #0" in gallery and "7 → 7" in gallery


def test_results_filters_the_gallery(app_env: Path) -> None:
    at = page("results").run()
    at.radio(key="results_show").set_value("misclassified").run()
    at.selectbox(key="results_true").set_value(9).run()
    assert not at.exception
    gallery = at.get("html")[0].proto.body
    captions = [part.split("</figcaption>")[0] for part in gallery.split('">')[1:]]
    shown = [c for c in captions if " → " in c]
    assert shown, "no misclassified 9s shown"
    assert all(c.startswith("9 → ") and not c.startswith("9 → 9 ") for c in shown)


def test_results_empty_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "none"))
    monkeypatch.setattr("mnist_core.runs.PRETRAINED_DIR", tmp_path / "no-pretrained")
    monkeypatch.setattr("pages.app_state.PRETRAINED_DIR", tmp_path / "no-pretrained")
    at = page("results").run()
    assert not at.exception
    assert at.info[0].value == "No runs yet: train a model first."


def test_sketch_empty_canvas_says_draw_a_digit(app_env: Path) -> None:
    at = page("sketch").run()
    assert not at.exception
    assert "Draw a digit" in [info.value for info in at.info]
    assert [m for m in at.metric if m.label == "Prediction"] == []


@pytest.mark.parametrize("index", [0, 1, 2, 3])  # test digits 7, 2, 1, 0
def test_sketch_predicts_a_drawn_digit(app_env: Path, mnist, index: int) -> None:
    at = page("sketch")
    at.session_state["sketch_drawing"] = canvas_with(mnist.x_test[index])
    at.run()
    assert not at.exception
    prediction = [m for m in at.metric if m.label == "Prediction"]
    assert [m.value for m in prediction] == [str(mnist.y_test[index])]


def test_sketch_upload_predicts_and_rejects_non_images(app_env: Path, mnist) -> None:
    at = page("sketch").run()
    black_on_white = 255 - np.asarray(Image.fromarray(mnist.x_test[1]).resize((120, 120)))
    buffer = io.BytesIO()
    Image.fromarray(black_on_white).save(buffer, format="PNG")
    at.file_uploader(key="sketch_upload").upload("two.png", buffer.getvalue(), "image/png").run()
    assert not at.exception
    assert [m.value for m in at.metric if m.label == "Prediction"] == ["2"]

    at.file_uploader(key="sketch_upload").upload("notes.png", b"not an image", "image/png").run()
    assert not at.exception
    assert at.error and "image" in at.error[0].value.lower()


def test_train_one_epoch_completes_and_saves_a_run(app_env: Path) -> None:
    at = page("train").run()
    assert not at.exception
    assert at.slider(key="train_epochs").label == "Epochs"
    at.slider(key="train_epochs").set_value(1)
    at.button(key="train_start").click().run()
    assert not at.exception
    deadline = time.monotonic() + 180
    while not at.success and time.monotonic() < deadline:
        time.sleep(1)
        at.run()
    assert not at.exception
    assert at.success, "training did not finish within 3 minutes"
    message = at.success[0].value
    assert "test accuracy, 1 epoch " in message
    run_id = message.split("`")[1]
    saved = json.loads((app_env / run_id / "metrics.json").read_text())
    assert saved["epochs_run"] == 1 and saved["status"] == "completed"
    assert saved["test_accuracy"] > 0.9
    assert at.session_state["active_run"] == run_id


def test_train_rejects_invalid_layer_sizes(app_env: Path) -> None:
    at = page("train").run()
    at.text_input(key="train_hidden_units").input("256, many").run()
    assert not at.exception
    assert at.error and at.error[0].value.startswith("hidden_units:")
    assert at.button(key="train_start").disabled
