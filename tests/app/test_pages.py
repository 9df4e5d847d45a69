"""The dashboard's pages run headless with AppTest, on real MNIST and a small trained model."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from mnist_core.serving import ONNX_FILE
from tests.fresh import report_of

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120  # seconds per script run: importing TensorFlow alone takes several


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory: pytest.TempPathFactory, mnist) -> Path:
    """A run store holding one small MLP run trained on real MNIST (2 epochs)."""
    from mnist_core.config import TrainConfig
    from mnist_core.ml.train import train
    from mnist_core.runs import RunStore

    folder = tmp_path_factory.mktemp("runs")
    result = train(TrainConfig.preset("mlp", epochs=2), mnist)
    RunStore(folder).save(result, data_source=mnist.source, data_fingerprint=mnist.fingerprint)
    return folder


@pytest.fixture
def app_env(trained_runs: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MNIST_RUNS_DIR", str(trained_runs))
    monkeypatch.chdir(ROOT)
    return trained_runs


@pytest.fixture
def own_runs(trained_runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the trained store that a test may change, set as the app's store."""
    runs = tmp_path / "runs"
    shutil.copytree(trained_runs, runs)
    monkeypatch.setenv("MNIST_RUNS_DIR", str(runs))
    monkeypatch.chdir(ROOT)
    return runs


def page(name: str) -> AppTest:
    """The app, through its entry point (navigation and sidebar), opened at page `name`."""
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=TIMEOUT)
    return at.switch_page(f"pages/{name}.py")


def run_folders(store: Path) -> list[Path]:
    """The runs' folders in a run store, by name; not its hidden ones (the job queue's)."""
    return sorted(path for path in store.iterdir() if not path.name.startswith("."))


def canvas_with(digit: np.ndarray, size: int = 160, left: int = 20, top: int = 90) -> np.ndarray:
    """A 280x280 RGBA canvas like the Sketch page's, with a 28x28 MNIST digit drawn on it."""
    canvas = np.zeros((280, 280, 4), dtype=np.uint8)
    canvas[..., 3] = 255  # the page's canvas has an opaque black background
    big = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR))
    region = canvas[top : top + size, left : left + size]
    region[..., 0] = region[..., 1] = region[..., 2] = big
    return canvas


def wait_for_success(at: AppTest, timeout: float = 180) -> None:
    """Rerun the page (as its live fragment would) until training reports success."""
    deadline = time.monotonic() + timeout
    while not at.success and time.monotonic() < deadline:
        time.sleep(1)
        at.run()


def wait_for_import(at: AppTest, timeout: float = 180) -> None:
    """Rerun Results until the import started by an upload (a subprocess) has ended."""
    from pages.parts.share_view import IMPORT_JOB

    deadline = time.monotonic() + timeout
    while IMPORT_JOB in at.session_state:
        assert not at.exception
        assert time.monotonic() < deadline, "the import did not end"
        assert any(i.value.startswith("Importing ") for i in at.info)
        time.sleep(0.5)
        at.run()


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
        " 'metrics': [[m.label, m.value] for m in at.sidebar.metric],"
        " 'tensorflow': 'tensorflow' in sys.modules}))\n"
    )
    report = report_of(script, env={"MNIST_RUNS_DIR": str(app_env)})
    assert report["exception"] == []
    assert report["titles"] == ["Digit recognition dashboard"]
    assert report["metrics"] and report["metrics"][0][0] == "Active model: MLP"
    assert report["metrics"][0][1].endswith("%")
    assert report["tensorflow"] is False


def test_results_shows_curves_matrix_and_gallery(app_env: Path) -> None:
    at = page("results").run()
    assert not at.exception
    assert [m.label for m in at.metric][:2] == ["Test accuracy", "Test loss"]
    accuracy = float(at.metric[0].value.rstrip("%"))
    assert 95.0 < accuracy < 100.0
    charts = at.get("plotly_chart")
    assert len(charts) == 4  # curves, confusion matrix, per-digit bars, replay
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


def test_results_replays_how_the_panel_was_learned(app_env: Path) -> None:
    at = page("results").run()
    assert not at.exception
    epoch = at.slider(key="results_replay_epoch")
    assert (epoch.min, epoch.max, epoch.value) == (1, 2, 2)

    def replay_caption() -> str:
        return next(c.value for c in at.caption if c.value.startswith("After epoch"))

    assert replay_caption().startswith("After epoch 2 of 2: ")
    replay = at.get("html")[1].proto.body
    assert replay.count("<figure") == 30 and 'title="test #3"' in replay  # test #3 is a 0

    epoch.set_value(1).run()
    assert not at.exception
    assert replay_caption().startswith("After epoch 1 of 2: ")
    right = int(replay_caption().split(": ")[1].split(" of ")[0])
    assert 20 <= right <= 30


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


def test_results_shows_an_interrupted_run(
    trained_runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(trained_runs, runs)
    (run,) = run_folders(runs)
    metrics = json.loads((run / "metrics.json").read_text())
    # What a checkpoint of a killed training looks like: saved after epoch 1 of 2.
    metrics.update(status="interrupted", epochs_run=1, best_epoch=1)
    (run / "metrics.json").write_text(json.dumps(metrics))
    monkeypatch.setenv("MNIST_RUNS_DIR", str(runs))
    monkeypatch.chdir(ROOT)

    at = page("results").run()

    assert not at.exception
    assert at.selectbox(key="results_run").value == run.name
    assert at.selectbox(key="results_run").options[0].endswith(", interrupted")
    status = {m.label: m.value for m in at.metric}
    assert status["Status"] == "interrupted" and status["Epochs"] == "1 (best 1)"
    assert any("ended abruptly (the server stopped) after epoch 1" in c.value for c in at.caption)


def test_results_empty_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "none"))
    monkeypatch.setattr("mnist_core.runs.PRETRAINED_DIR", tmp_path / "no-pretrained")
    monkeypatch.setattr("pages.parts.app_state.PRETRAINED_DIR", tmp_path / "no-pretrained")
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
    (chart,) = [h.proto.body for h in at.get("html") if 'class="probabilities"' in h.proto.body]
    shown = [float(p) for p in re.findall(r'data-probability="([\d.]+)"', chart)]
    assert len(shown) == 10 and abs(sum(shown) - 1) < 0.01
    assert int(np.argmax(shown)) == mnist.y_test[index]


def as_canvas_png(canvas: np.ndarray) -> str:
    """An RGBA canvas as the Sketch canvas sends it: a PNG data URL."""
    buffer = io.BytesIO()
    Image.fromarray(canvas, "RGBA").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_sketch_reads_what_the_canvas_sends_and_keeps_it_when_a_damaged_one_follows(
    app_env: Path, mnist
) -> None:
    at = page("sketch")
    drawn = canvas_with(mnist.x_test[0])  # a 7
    at.session_state["sketch_canvas_0"] = {"png": as_canvas_png(drawn)}  # what a stroke sends
    at.run()
    assert not at.exception
    np.testing.assert_array_equal(at.session_state["sketch_drawing"], drawn)
    assert [m.value for m in at.metric if m.label == "Prediction"] == ["7"]

    at.session_state["sketch_canvas_0"] = {"png": "data:image/png;base64,!!!"}  # not a PNG
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "The drawing arrived damaged. Clear the canvas and draw the digit again."
    ]
    np.testing.assert_array_equal(at.session_state["sketch_drawing"], drawn)  # the last one
    assert [m.value for m in at.metric if m.label == "Prediction"] == ["7"]


def shown_probabilities(at: AppTest) -> np.ndarray:
    (chart,) = [h.proto.body for h in at.get("html") if 'class="probabilities"' in h.proto.body]
    return np.array([float(p) for p in re.findall(r'data-probability="([\d.]+)"', chart)])


def test_sketch_averages_shifted_copies_when_asked_and_shows_the_cost(app_env: Path, mnist) -> None:
    from mnist_core.preprocess import to_mnist_steps
    from mnist_core.runs import RunStore
    from mnist_core.serving import OnnxModel, probabilities, tta_probabilities

    canvas = canvas_with(mnist.x_test[8], size=120, left=40, top=100)  # a 5, off-centre
    at = page("sketch")
    at.session_state["sketch_drawing"] = canvas
    at.run()
    assert at.toggle(key="sketch_tta").value is False  # off by default
    plain = shown_probabilities(at)
    assert any(re.fullmatch(r"Read the digit in [\d.]+ ms\.", c.value) for c in at.caption)

    at.toggle(key="sketch_tta").set_value(True).run()

    assert not at.exception
    (run,) = RunStore(app_env).list()
    model, centred = OnnxModel(run.onnx_path), to_mnist_steps(canvas).centred
    np.testing.assert_allclose(plain, probabilities(model, centred)[0], atol=6e-4)
    averaged = shown_probabilities(at)
    np.testing.assert_allclose(averaged, tta_probabilities(model, centred)[0], atol=6e-4)
    assert np.abs(averaged - plain).max() > 1e-3
    assert any(re.fullmatch(r"Read 5 shifted copies in [\d.]+ ms\.", c.value) for c in at.caption)


def test_an_ensemble_run_shows_on_home_results_and_sketch(own_runs: Path, mnist) -> None:
    from mnist_core.ml.ensemble import build_ensemble
    from mnist_core.runs import RunStore

    store = RunStore(own_runs)
    (original,) = store.list()
    twin = own_runs / original.run_id.replace(original.run_id[-6:], "abc123")
    shutil.copytree(original.path, twin)
    ensemble = store.save(build_ensemble([original, store.get(twin.name)], mnist, tta=True))

    home = page("home").run()
    assert not home.exception
    assert any("ENSEMBLE OF 2 MLP + SHIFTS" in m.value for m in home.markdown)
    results = page("results")
    results.session_state["active_run"] = ensemble
    results.run()
    assert not results.exception
    assert results.selectbox(key="results_run").value == ensemble
    assert float(results.metric[0].value.rstrip("%")) == pytest.approx(
        100 * store.get(ensemble).test_accuracy, abs=0.01
    )
    sketch = page("sketch")
    sketch.session_state["sketch_drawing"] = canvas_with(mnist.x_test[0])
    sketch.run()
    assert not sketch.exception
    assert [m.value for m in sketch.metric if m.label == "Prediction"] == ["7"]
    assert sketch.get("toggle") == []  # the ensemble averages shifted copies itself
    assert "averages shifted copies of every digit itself" in " ".join(
        c.value for c in sketch.caption
    )


def test_sketch_shows_the_canvas_first_and_keeps_it_when_the_model_is_broken(
    own_runs: Path, mnist
) -> None:
    # The canvas and "Draw a digit" come before the model loads; a model that cannot load is
    # explained beside the canvas.
    (run,) = run_folders(own_runs)
    (run / ONNX_FILE).write_bytes(b"not an onnx file")

    at = page("sketch").run()

    assert not at.exception
    assert "Draw a digit" in [info.value for info in at.info]
    (error,) = at.error
    assert "cannot load 'model.onnx'" in error.value and "damaged" in error.value
    at.session_state["sketch_drawing"] = canvas_with(mnist.x_test[0])
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [error.value]
    assert [m for m in at.metric if m.label == "Prediction"] == []


def wait_for_conversion(run: Path, timeout: float = 120) -> None:
    """Until the background conversion of `run` (started by the page) has ended."""
    from pages.parts import app_state

    deadline = time.monotonic() + timeout
    while app_state._conversions().state(run) == "converting":
        assert time.monotonic() < deadline, "the conversion to ONNX did not end"
        time.sleep(0.2)


def test_a_run_saved_without_onnx_is_converted_in_the_background(own_runs: Path, mnist) -> None:
    (run,) = run_folders(own_runs)
    (run / ONNX_FILE).unlink()  # saved before runs held one

    at = page("sketch").run()
    at.session_state["sketch_drawing"] = canvas_with(mnist.x_test[0])
    at.run()

    assert not at.exception and not at.error
    assert any("Preparing this model for fast predictions" in i.value for i in at.info)
    assert [m for m in at.metric if m.label == "Prediction"] == []
    wait_for_conversion(run)
    at.run()
    assert not any("Preparing" in i.value for i in at.info)
    assert [m.value for m in at.metric if m.label == "Prediction"] == [str(mnist.y_test[0])]
    assert (run / ONNX_FILE).is_file()


def test_a_run_whose_model_cannot_convert_says_why(own_runs: Path) -> None:
    (run,) = run_folders(own_runs)
    (run / ONNX_FILE).unlink()
    (run / "model.keras").write_bytes(b"not a keras file")

    page("sketch").run()
    wait_for_conversion(run)
    at = page("sketch").run()

    assert not at.exception
    (error,) = at.error
    assert "model.keras" in error.value
    assert "Draw a digit" in [info.value for info in at.info]


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


def test_train_one_epoch_completes_and_saves_a_run(own_runs: Path) -> None:
    at = page("train").run()
    assert not at.exception
    assert at.slider(key="train_epochs").label == "Epochs"
    at.slider(key="train_epochs").set_value(1)
    at.button(key="train_start").click().run()
    assert not at.exception
    wait_for_success(at)
    assert not at.exception
    assert at.success, "training did not finish within 3 minutes"
    message = at.success[0].value
    assert "test accuracy, 1 epoch " in message
    run_id = message.split("`")[1]
    saved = json.loads((own_runs / run_id / "metrics.json").read_text())
    assert saved["epochs_run"] == 1 and saved["status"] == "completed"
    assert saved["test_accuracy"] > 0.9
    assert at.session_state["active_run"] == run_id


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ("256, many", "hidden_units: expected whole numbers separated by commas"),
        ("10000000", "hidden_units: must be from 1 to 2048, got 10000000"),
    ],
)
def test_train_rejects_invalid_layer_sizes(app_env: Path, sizes: str, message: str) -> None:
    at = page("train").run()
    at.text_input(key="train_hidden_units").input(sizes).run()
    assert not at.exception
    assert at.error and at.error[0].value.startswith(message)
    assert at.button(key="train_start").disabled


# --- reliability: no data, deleted runs, busy server, hostile uploads, a hosted demo's caps ---


def test_train_and_results_without_mnist_show_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new server on a machine without MNIST: only the bundled pretrained run exists."""
    app_env = tmp_path / "runs"
    monkeypatch.setenv("MNIST_RUNS_DIR", str(app_env))
    monkeypatch.chdir(ROOT)
    missing = tmp_path / "gone" / "mnist.npz"
    monkeypatch.setenv("MNIST_PATH", str(missing))

    results = page("results").run()
    assert not results.exception
    (error,) = results.error
    assert f"{missing} (from MNIST_PATH) does not exist" in error.value
    assert "Set MNIST_PATH" in error.value

    train = page("train").run()
    train.slider(key="train_epochs").set_value(1)
    train.button(key="train_start").click().run()
    deadline = time.monotonic() + 60
    while not train.error and time.monotonic() < deadline:
        time.sleep(0.2)
        train.run()
    assert not train.exception
    assert [e.value for e in train.error] == [f"Training failed: {error.value}"]
    assert not list(app_env.glob(".tmp-*"))  # nothing was trained or half-saved


@pytest.fixture
def two_runs(app_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A store with a trained run and an older copy of it: (newest id, older id)."""
    from mnist_core.runs import RunStore

    folder = tmp_path / "runs"
    newest = RunStore(app_env).list()[-1].run_id
    older = "20200101-000000-mlp-0a0b0c"
    shutil.copytree(app_env / newest, folder / newest)
    shutil.copytree(app_env / newest, folder / older)
    metrics = json.loads((folder / older / "metrics.json").read_text())
    (folder / older / "metrics.json").write_text(json.dumps({**metrics, "created": "2020"}))
    monkeypatch.setenv("MNIST_RUNS_DIR", str(folder))
    return newest, older


@pytest.mark.parametrize(
    ("name", "picker"), [("results", "results_run"), ("sketch", "sketch_model")]
)
def test_a_run_deleted_while_a_session_views_it(
    two_runs: tuple[str, str], name: str, picker: str
) -> None:
    from mnist_core.runs import RunStore

    newest, older = two_runs
    at = page(name).run()
    at.selectbox(key=picker).set_value(older).run()
    assert not at.exception and at.selectbox(key=picker).value == older

    RunStore().delete(older)  # another session (or the command line) deletes it
    at.run()

    assert not at.exception
    assert [w.value for w in at.warning] == [
        f"Run `{older}` no longer exists: it was deleted, perhaps in another window. "
        "Showing another run."
    ]
    assert at.selectbox(key=picker).value == newest
    listed = [label.split(" · ")[0] for label in at.selectbox(key=picker).options]
    assert newest in listed and older not in listed


def test_a_second_visitor_queues_behind_a_running_training_and_can_cancel(
    own_runs: Path,  # a copy: the other visitor's run, stopped, must not reach other tests
) -> None:
    from mnist_core.config import TrainConfig
    from pages.parts import app_state

    service = app_state.job_service()  # the one every session of this server shares
    other = service.submit(TrainConfig.preset("mlp"), owner="another visitor")
    try:
        at = page("train").run()
        assert not at.exception
        (queue,) = [d.value for d in at.dataframe if "time left" in d.value.columns]
        assert list(queue[""]) == [""]  # one training, not theirs, and anonymous
        assert list(queue["state"])[0] in ("starting", "running")
        assert [b for b in at.button if b.key == "train_stop"] == []  # not theirs to stop

        at.slider(key="train_epochs").set_value(1)
        at.button(key="train_start").click().run()
        assert not at.exception
        (waiting,) = [i.value for i in at.info if "in line" in i.value]
        assert re.fullmatch(r"Your training is 1st in line — about .+ until it starts\.", waiting)
        assert at.button(key="train_start").disabled  # one job per visitor
        (queue,) = [d.value for d in at.dataframe if "time left" in d.value.columns]
        assert list(queue[""]) == ["", "yours"] and list(queue["state"])[1] == "waiting (1st)"

        at.button(key="train_cancel").click().run()
        at.run()
        assert not at.exception
        assert "Training cancelled before it started." in [i.value for i in at.info]
        assert not at.button(key="train_start").disabled
    finally:
        service.stop(other)
    deadline = time.monotonic() + 120
    while service.status(other).active and time.monotonic() < deadline:
        time.sleep(0.5)
    assert service.status(other).state == "stopped"


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_sketch_refuses_hostile_uploads_and_keeps_working(
    app_env: Path, mnist, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.test_preprocess import png_header_only

    monkeypatch.setenv("MNIST_MAX_UPLOAD_MB", "0.05")
    at = page("sketch")
    at.session_state["sketch_drawing"] = canvas_with(mnist.x_test[0])
    at.run()
    uploader = at.file_uploader(key="sketch_upload")
    assert uploader.label == "A photo or scan of one digit (PNG or JPEG, up to 0.05 MB)"
    noise = np.random.default_rng(0).integers(0, 256, (300, 300), dtype=np.uint8)  # 90 kB
    uploads = {
        "big.png": (png_bytes(noise), "too large. Upload a PNG or JPEG under 0.05 MB"),
        "bomb.png": (png_header_only(30_000, 30_000), "too many pixels"),
        "cut.png": (png_bytes(noise[:100])[:5_000], "truncated or corrupt"),
        "notes.png": (b"just text", "not a PNG, JPEG, GIF, BMP or WebP image"),
    }
    for file_name, (content, message) in uploads.items():
        at.file_uploader(key="sketch_upload").upload(file_name, content, "image/png").run()
        assert not at.exception, file_name
        assert len(at.error) == 1 and message in at.error[0].value, file_name
        # The drawing tab still predicts: one refused upload does not break the page.
        assert [m.value for m in at.metric if m.label == "Prediction"] == ["7"], file_name


def test_train_page_shows_and_applies_the_servers_caps(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNIST_MAX_EPOCHS", "3")
    monkeypatch.setenv("MNIST_MAX_UNITS", "64")
    monkeypatch.setenv("MNIST_MAX_BATCH_SIZE", "100")
    monkeypatch.setenv("MNIST_MAX_FILTERS", "lots")

    at = page("train").run()

    assert not at.exception
    epochs = at.slider(key="train_epochs")
    assert (epochs.min, epochs.max, epochs.value) == (1, 3, 3)
    assert (
        "This server limits training to 3 epochs, 64 units per dense layer and batches of 100."
        in [caption.value for caption in at.caption]
    )
    batch = at.select_slider(key="train_batch_size")
    assert (batch.options, batch.value) == (["16", "32", "64", "100"], 100)
    assert at.text_input(key="train_hidden_units").value == "64, 64"
    assert [w.value for w in at.warning] == [
        "MNIST_MAX_FILTERS='lots' is ignored: it must be a whole number of at least 1. "
        "Fix it in the server's environment."
    ]
    assert not at.error and not at.button(key="train_start").disabled

    at.text_input(key="train_hidden_units").input("128").run()
    assert [e.value for e in at.error] == [
        "hidden_units: this server allows at most 64 per layer, got 128; choose 64 or less"
    ]
    assert at.button(key="train_start").disabled


def test_train_page_without_caps_has_no_caption(app_env: Path) -> None:
    at = page("train").run()
    assert not at.exception
    assert at.slider(key="train_epochs").max == 200
    assert not [c for c in at.caption if c.value.startswith("This server limits")]


def test_train_page_with_a_one_epoch_cap(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_MAX_EPOCHS", "1")  # too few for a slider, which needs two ends

    at = page("train").run()

    assert not at.exception
    epochs = at.select_slider(key="train_epochs")
    assert (epochs.options, epochs.value) == (["1"], 1)
    assert "This server limits training to 1 epoch." in [c.value for c in at.caption]
    assert not at.button(key="train_start").disabled


def saliency_specs(at: AppTest) -> list[dict]:
    """The saliency figures on the page (input, saliency map, digit outline), as JSON."""
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return [s for s in specs if [t["type"] for t in s["data"]] == ["heatmap"] * 2 + ["contour"]]


def saliency_spec(at: AppTest) -> dict:
    (spec,) = saliency_specs(at)
    return spec


def image_captions(at: AppTest) -> list[str]:
    return [caption for image in at.image for caption in image.captions]


def test_sketch_shows_what_the_mlp_sees(app_env: Path, mnist) -> None:
    from mnist_core.explain import occlusion, saliency
    from mnist_core.ml.model_files import load_model_file
    from mnist_core.preprocess import to_mnist
    from mnist_core.serving import OnnxModel

    canvas = canvas_with(mnist.x_test[0])  # a 7
    at = page("sketch")
    at.session_state["sketch_drawing"] = canvas
    at.run()
    assert not at.exception
    labels = [e.label for e in at.expander]
    assert labels.index("Preprocessing steps") + 1 == labels.index("What the model sees")
    captions = image_captions(at)
    assert "as drawn" not in captions  # closed: the stages are not drawn
    assert saliency_specs(at) == []  # closed: nothing computed
    assert not [c for c in captions if c.startswith("First layer")]

    at.session_state["sketch_steps_canvas"] = True  # what opening the expander does
    at.run()
    captions = image_captions(at)
    assert captions[captions.index("as drawn") + 1] == "ink"  # the canvas, then its stages

    at.session_state["sketch_explain_canvas"] = True  # what opening the expander does
    at.run()

    assert not at.exception
    centred = to_mnist(canvas)
    digit, heat, _ = saliency_spec(at)["data"]
    np.testing.assert_allclose(plotly_array(digit["z"]), centred, atol=1e-6)
    assert heat["colorbar"]["title"]["text"] == "drop in p(7)"  # occlusion: no TensorFlow
    onnx = OnnxModel(run_folders(app_env)[0] / ONNX_FILE)
    np.testing.assert_allclose(plotly_array(heat["z"]), occlusion(onnx, centred, 7), atol=1e-6)
    drops = plotly_array(heat["z"])
    assert np.abs(drops[centred > 0.5]).mean() > 3 * np.abs(drops[centred == 0]).mean()
    assert "First layer, dense1: input weights of 256 units (the first 64 shown)" in (
        image_captions(at)
    )

    at.radio(key="sketch_explain_canvas_method").set_value("gradient × input").run()
    assert not at.exception
    model = load_model_file(run_folders(app_env)[0] / "model.keras")
    heat = saliency_spec(at)["data"][1]
    np.testing.assert_allclose(plotly_array(heat["z"]), saliency(model, centred, 7), atol=1e-5)
    assert heat["colorbar"]["title"]["text"] == "gradient × input, score of 7"

    at.selectbox(key="sketch_explain_canvas_digit").set_value(1).run()
    assert not at.exception
    assert (
        saliency_spec(at)["data"][1]["colorbar"]["title"]["text"] == "gradient × input, score of 1"
    )


def test_sketch_shows_the_cnns_filters_and_feature_maps(app_env: Path, mnist) -> None:
    from mnist_core.explain import saliency
    from mnist_core.ml.model_files import load_model_file
    from mnist_core.preprocess import to_mnist
    from mnist_core.runs import PRETRAINED_DIR

    pretrained = next(p for p in PRETRAINED_DIR.iterdir() if (p / "model.keras").is_file())
    canvas = canvas_with(mnist.x_test[1])  # a 2
    at = page("sketch")
    at.session_state["sketch_drawing"] = canvas
    at.session_state["sketch_explain_canvas"] = True
    at.run()
    at.selectbox(key="sketch_model").set_value(pretrained.name).run()

    assert not at.exception
    assert [m.value for m in at.metric if m.label == "Prediction"] == ["2"]
    captions = image_captions(at)
    # The pretrained cnn preset's network (strided): 24 3x3 filters in its first layer.
    assert "First layer, conv1_1: 24 filters, 3×3" in captions
    assert "What they find in this digit: conv1_1's output" in captions
    at.radio(key="sketch_explain_canvas_method").set_value("gradient × input").run()
    heat = saliency_spec(at)["data"][1]
    centred = to_mnist(canvas)
    expected = saliency(load_model_file(pretrained / "model.keras"), centred, 2)
    np.testing.assert_allclose(plotly_array(heat["z"]), expected, atol=1e-5)
    # Gradient x input: a pixel without ink is 0 x gradient, exactly 0 on every CPU.
    assert np.all(plotly_array(heat["z"])[centred == 0] == 0)


def test_results_explains_a_chosen_test_digit(app_env: Path, mnist) -> None:
    at = page("results").run()
    assert not at.exception
    assert "What the model sees in one of these digits" in [e.label for e in at.expander]
    assert [s for s in at.selectbox if s.key == "results_explain_index"] == []  # closed: lazy

    at.session_state["results_explain"] = True
    at.run()

    assert not at.exception
    chooser = at.selectbox(key="results_explain_index")
    assert chooser.value == 0 and len(chooser.options) == 40  # the gallery's page
    assert chooser.options[0].startswith("#0: 7 → 7 (")
    np.testing.assert_allclose(
        plotly_array(saliency_spec(at)["data"][0]["z"]), mnist.x_test[0] / 255, atol=1e-6
    )

    chooser.set_value(1).run()
    assert not at.exception
    predicted = at.selectbox(key="results_explain_index").options[1].split(" → ")[1][0]
    spec = saliency_spec(at)
    np.testing.assert_allclose(plotly_array(spec["data"][0]["z"]), mnist.x_test[1] / 255, atol=1e-6)
    assert spec["data"][1]["colorbar"]["title"]["text"] == f"drop in p({predicted})"

    at.radio(key="results_show").set_value("misclassified").run()
    assert not at.exception
    first_shown = int(at.get("html")[0].proto.body.split('title="test #')[1].split('"')[0])
    chooser = at.selectbox(key="results_explain_index")
    assert chooser.value == first_shown and mnist.y_test[first_shown] != int(
        chooser.options[0].split(" → ")[1][0]
    )


# --- reproduce and share: run bundles, "Train again with this config" ---


def test_results_offers_the_pretrained_run_as_a_bundle(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zipfile

    from streamlit.runtime.media_file_manager import MediaFileManager

    from mnist_core.runs import PRETRAINED_DIR

    generators = {}  # file name -> the callable a click on the download button runs
    add_deferred = MediaFileManager.add_deferred

    def recording(self, data_callable, *args, **kwargs):
        generators[kwargs["file_name"]] = data_callable
        return add_deferred(self, data_callable, *args, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", recording)
    (pretrained,) = [path.name for path in PRETRAINED_DIR.iterdir()]
    at = page("results").run()
    at.selectbox(key="results_run").set_value(pretrained).run()

    assert not at.exception
    button = at.download_button(key="results_bundle")
    assert button.label == "Download run bundle (.zip)" and not button.disabled
    assert button.proto.deferred_file_id
    with zipfile.ZipFile(io.BytesIO(generators[f"{pretrained}.zip"]())) as archive:
        assert sorted(archive.namelist()) == [
            "bundle.json",
            "config.json",
            "history.json",
            "metrics.json",
            "model.keras",
            "replay.npz",
            "test_probabilities.npy",
        ]
        assert json.loads(archive.read("bundle.json"))["run_id"] == pretrained
        model = archive.read("model.keras")
    assert model == (PRETRAINED_DIR / pretrained / "model.keras").read_bytes()


def test_results_disables_the_bundle_of_a_run_too_large_to_import(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pages.parts.share_view.MAX_BUNDLE_BYTES", 100_000)

    at = page("results").run()

    assert not at.exception
    button = at.download_button(key="results_bundle")
    assert button.disabled
    assert button.help == "Too large to share as a bundle (over 0.1 MB)."
    assert not at.button(key="results_train_again").disabled


def test_results_imports_a_bundle_and_refuses_garbage(trained_runs: Path, own_runs: Path) -> None:
    from mnist_core.bundles import export_bundle
    from mnist_core.runs import RunStore

    (source,) = RunStore(trained_runs).list()
    shutil.rmtree(own_runs / source.run_id)  # the bundle comes from another server
    at = page("results").run()

    uploader = at.file_uploader(key="results_import")
    uploader.upload("shared.zip", export_bundle(RunStore(trained_runs), source.run_id)).run()
    wait_for_import(at)

    assert not at.exception
    (imported,) = RunStore(own_runs).list()
    assert imported.metrics.imported_from == source.run_id
    assert [s.value for s in at.success] == [
        f"Imported the bundle as run `{imported.run_id}`; it is selected below."
    ]
    assert at.selectbox(key="results_run").value == imported.run_id
    shown = {m.label: m.value for m in at.metric}
    assert shown["Test accuracy"] == f"{source.test_accuracy:.2%}"
    at.run()  # the bundle stays in the uploader: it is not imported again
    assert not at.exception and not at.success
    assert len(RunStore(own_runs).list()) == 1

    at.file_uploader(key="results_import").upload("garbage.zip", b"garbage").run()
    wait_for_import(at)

    assert not at.exception
    assert [e.value for e in at.error] == [
        "cannot import this run bundle: the file is not a .zip archive. "
        "Import only bundles exported by this tool"
    ]
    assert at.selectbox(key="results_run").value == imported.run_id  # the page keeps working
    assert {m.label: m.value for m in at.metric}["Test accuracy"] == shown["Test accuracy"]
    assert [run.run_id for run in RunStore(own_runs).list()] == [imported.run_id]
    assert [path.name for path in run_folders(own_runs)] == [imported.run_id]


def test_results_imports_a_keras_model_file_and_refuses_another_kind(
    own_runs: Path, mnist, tmp_path: Path, keras_seed
) -> None:
    import keras

    from mnist_core.runs import RunStore
    from tests.keras_models import original_recipe

    model = original_recipe()  # saved as the original script saved it
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(mnist.x_train[:3000] / 255.0, mnist.y_train[:3000], epochs=1, verbose=0)
    _, accuracy = model.evaluate(mnist.x_test / 255.0, mnist.y_test, verbose=0)
    model.save(tmp_path / "mnist_model.h5")
    at = page("results").run()

    at.text_input(key="results_import_name").input("The original script").run()
    at.file_uploader(key="results_import").upload(
        "mnist_model.h5", (tmp_path / "mnist_model.h5").read_bytes()
    ).run()
    wait_for_import(at)

    assert not at.exception
    imported = next(run for run in RunStore(own_runs).list() if run.imported is not None)
    assert abs(imported.test_accuracy - accuracy) <= 0.001
    assert [s.value for s in at.success] == [
        f"Imported The original script as run `{imported.run_id}`: "
        f"{imported.test_accuracy:.2%} on MNIST's test set. It reads (28, 28) inputs with "
        "pixels in [0, 1] and gives probabilities; it is selected below."
    ]
    picker = at.selectbox(key="results_run")
    assert picker.value == imported.run_id
    assert picker.format_func(picker.value) == (
        f"{imported.run_id} · imported The original script · {imported.test_accuracy:.2%}"
    )
    shown = {m.label: m.value for m in at.metric}
    assert (shown["Input"], shown["Output"], shown["Pixels"]) == ("(28, 28)", "softmax", "[0, 1]")
    assert not any(h.value == "Learning curves" for h in at.header)
    assert any(c.value.startswith("Imported from `mnist_model.h5`, ") for c in at.caption)
    assert at.button(key="results_train_again").disabled
    assert at.download_button(key="results_config").disabled

    cifar = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    cifar.save(tmp_path / "cifar.keras")
    at.file_uploader(key="results_import").upload(
        "cifar.keras", (tmp_path / "cifar.keras").read_bytes()
    ).run()
    wait_for_import(at)

    assert not at.exception
    assert [e.value for e in at.error] == [
        "model 'cifar.keras' reads inputs of shape (32, 32, 3), not MNIST digits (28×28 grey: "
        "(28, 28), (28, 28, 1) or (784,)). Import a Keras model of MNIST digits saved with "
        "model.save('model.keras') (or .h5) that uses Keras' own layers only"
    ]
    assert at.selectbox(key="results_run").value == imported.run_id
    assert len(RunStore(own_runs).list()) == 2


def train_form_values(at: AppTest) -> dict:
    """What the Train form's widgets show: its preset and every TrainConfig field."""
    return {
        "preset": at.selectbox(key="train_preset").value,
        "architecture": at.radio(key="train_architecture").value,
        "hidden_units": at.text_input(key="train_hidden_units").value,
        "conv_filters": at.text_input(key="train_conv_filters").value,
        "dropout_rate": at.slider(key="train_dropout_rate").value,
        "optimizer": at.selectbox(key="train_optimizer").value,
        "learning_rate": at.select_slider(key="train_learning_rate").value,
        "lr_decay": at.toggle(key="train_lr_decay").value,
        "batch_size": at.select_slider(key="train_batch_size").value,
        "epochs": at.slider(key="train_epochs").value,
        "patience": at.slider(key="train_patience").value,
        "restore_best": at.toggle(key="train_restore_best").value,
        "validation_split": at.slider(key="train_validation_split").value,
        "seed": at.number_input(key="train_seed").value,
        "augment": at.toggle(key="train_augment").value,
        "shift": at.slider(key="train_shift").value,
        "elastic": at.toggle(key="train_elastic").value,
        "drawings": at.toggle(key="train_drawings").value,
        "start_from": at.selectbox(key="train_start_from").value,
    }


@pytest.mark.parametrize("epochs_cap", [None, "5"], ids=["no-caps", "epochs-capped"])
def test_train_again_sets_every_train_widget_to_the_runs_config(
    own_runs: Path, epochs_cap: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if epochs_cap is not None:
        monkeypatch.setenv("MNIST_MAX_EPOCHS", epochs_cap)
    (run,) = run_folders(own_runs)
    # Far from both presets, with a learning rate and a batch size that no slider stop has.
    settings = {
        "architecture": "cnn",
        "hidden_units": [96, 48],
        "conv_filters": [16],
        "dropout_rate": 0.25,
        "optimizer": "rmsprop",
        "learning_rate": 0.002,
        "lr_decay": True,
        "batch_size": 100,
        "epochs": 7,
        "patience": 2,
        "validation_split": 0.15,
        "seed": 1234,
        "augment": True,
        "shift": 0.05,
        "elastic": True,
    }
    (run / "config.json").write_text(json.dumps(settings))
    at = page("results").run()
    assert at.selectbox(key="results_run").value == run.name

    at.button(key="results_train_again").click().run()

    assert not at.exception
    assert [title.value for title in at.title] == ["Train"]
    lowered = "" if epochs_cap is None else ", lowered to this server's caps"
    assert [info.value for info in at.info] == [
        f"Loaded the settings of run `{run.name}`{lowered}. Press Train to train it again: "
        "the same settings and seed on the same data and machine give the same model."
    ]
    assert train_form_values(at) == {
        **settings,
        "preset": "quick",  # the first preset of the run's architecture (cnn)
        "hidden_units": "96, 48",
        "conv_filters": "16",
        "epochs": 7 if epochs_cap is None else 5,
        "restore_best": True,  # the settings config.json leaves out: TrainConfig's defaults
        "drawings": False,
        "start_from": "",
    }
    assert not at.error and not at.button(key="train_start").disabled

    at.switch_page("pages/train.py").run()  # the browser shows Train now: its next rerun
    assert not at.exception and not at.info  # the notice was shown once
    assert at.select_slider(key="train_learning_rate").value == 0.002
    assert at.select_slider(key="train_batch_size").value == 100
    assert at.number_input(key="train_seed").value == 1234


# --- links: a training setup or a run as an address to share ---

SERVER = "http://dash.example:8501"  # where the browser says the app is (st.context.url)


def opened_at(name: str, query: str) -> AppTest:
    """The app opened at the address of page `name` with `query`, as a browser would send it."""
    at = page(name)
    at.context["url"] = f"{SERVER}/{name}"
    at.query_params.update(
        {key: values[0] if len(values) == 1 else values for key, values in parse_qs(query).items()}
    )
    return at.run()


def train_form_values_of(preset: str) -> dict:
    """What the Train form shows for `preset`, in the widgets' terms (layer sizes as text)."""
    from mnist_core.config import PRESETS

    config = PRESETS[preset].to_dict()
    sizes = {name: ", ".join(map(str, config[name])) for name in ("hidden_units", "conv_filters")}
    return {**config, **sizes, "preset": preset}


def test_a_settings_link_fills_the_train_form_once_and_names_what_it_could_not_use(
    app_env: Path,
) -> None:
    at = opened_at(
        "train",
        "preset=cnn&learning_rate=0.0042&epochs=3&hidden_units=128,64&augment=true"
        "&dropout_rate=lots&colour=red&grid=dropout_rate=0.2,0.4&job=0123456789abcdef",
    )

    assert not at.exception
    assert train_form_values(at) == {
        **train_form_values_of("cnn"),
        "learning_rate": 0.0042,  # no stop of the slider: added for it
        "epochs": 3,
        "hidden_units": "128, 64",
        "augment": True,
    }
    assert [i.value for i in at.info] == [
        "Loaded this link's settings: the cnn preset with hidden_units=128,64 · "
        "learning_rate=0.0042 · epochs=3 · augment=true, and a sweep of dropout_rate under "
        "Try several settings."
    ]
    assert [w.value for w in at.warning] == [
        "Some of this link's settings were not used:\n\n"
        "- dropout_rate: 'lots' is not a number; kept 0.3\n"
        "- colour: not a setting, ignored; a link takes preset, grid and the settings "
        "architecture, hidden_units, conv_filters, dropout_rate, optimizer, learning_rate, "
        "lr_decay, batch_size, epochs, patience, restore_best, validation_split, seed, augment, "
        "shift, elastic, drawings, start_from"
    ]
    assert (
        at.selectbox(key="train_sweep_setting_1").value,
        at.text_input(key="train_sweep_values_1").value,
    ) == ("dropout_rate", "0.2, 0.4")
    assert at.selectbox(key="train_sweep_setting_2").value == ""
    link = (
        f"{SERVER}/train?preset=cnn&hidden_units=128,64&learning_rate=0.0042&epochs=3&augment=true"
    )
    assert [c.value for c in at.code] == [link, f"{link}&grid=dropout_rate=0.2,0.4"]
    assert at.query_params["job"] == "0123456789abcdef"  # the app's own parameter, untouched
    assert not at.error and not at.button(key="train_start").disabled

    said = [alert.value for alert in (*at.info, *at.warning)]

    at.slider(key="train_epochs").set_value(5).run()
    at.run()

    assert not at.exception
    assert at.slider(key="train_epochs").value == 5  # the link is not applied again
    assert at.select_slider(key="train_learning_rate").value == 0.0042
    assert at.code[0].value == link.replace("epochs=3", "epochs=5")
    # Said while the address holds the link: the page does not jump at the first click.
    assert [alert.value for alert in (*at.info, *at.warning)] == said
    at.query_params.clear()  # the visitor moves to another page and back: the plain address
    at.run()
    assert not at.info and not at.warning
    assert at.slider(key="train_epochs").value == 5


def test_a_link_above_the_servers_caps_is_lowered_saying_so(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNIST_MAX_EPOCHS", "4")

    at = opened_at("train", "preset=deep&epochs=50&seed=7&start_from=20200101-000000-mlp-0a0b0c")

    assert not at.exception
    assert (at.slider(key="train_epochs").value, at.number_input(key="train_seed").value) == (4, 7)
    assert at.selectbox(key="train_start_from").value == ""
    assert [w.value for w in at.warning] == [
        "Some of this link's settings were not used:\n\n"
        "- start_from: run 20200101-000000-mlp-0a0b0c is not on this server (deleted, or the "
        "link comes from another server); kept none\n"
        "- epochs: 50 is above this server's limit; lowered to 4"
    ]
    assert not at.error and not at.button(key="train_start").disabled


def test_the_copied_link_of_a_changed_form_opens_the_same_form(app_env: Path) -> None:
    at = page("train")
    at.context["url"] = f"{SERVER}/train"
    at.run()
    at.selectbox(key="train_preset").set_value("quick").run()
    at.select_slider(key="train_batch_size").set_value(64)
    at.number_input(key="train_seed").set_value(1234)
    at.toggle(key="train_elastic").set_value(True)
    at.text_input(key="train_hidden_units").input("96, 48")
    at.slider(key="train_validation_split").set_value(0.2).run()
    assert not at.exception and not at.error
    shown = train_form_values(at)
    (link, _) = [c.value for c in at.code]
    address, query = link.split("?")
    assert address == f"{SERVER}/train"
    assert query == (
        "preset=quick&hidden_units=96,48&batch_size=64&validation_split=0.2&seed=1234&elastic=true"
    )

    again = opened_at("train", query)  # another visitor opens it

    assert not again.exception and not again.warning
    assert train_form_values(again) == shown


def test_a_run_link_selects_the_run_and_an_unknown_one_says_so(
    two_runs: tuple[str, str],
) -> None:
    from mnist_core.links import link_query
    from mnist_core.runs import RunStore

    newest, older = two_runs
    at = opened_at("results", f"run={older}")

    assert not at.exception and not at.warning
    assert at.selectbox(key="results_run").value == older  # not the newest, the default
    assert [c.value for c in at.code] == [
        f"{SERVER}/results?run={older}",
        f"{SERVER}/train?{link_query(RunStore().get(older).config)}",
    ]
    at.selectbox(key="results_run").set_value(newest).run()
    assert at.selectbox(key="results_run").value == newest  # the link is not applied again

    gone = opened_at("results", "run=20200101-000000-mlp-ffffff")

    assert not gone.exception
    assert [w.value for w in gone.warning] == [
        "This link's run 20200101-000000-mlp-ffffff is not on this server: it was deleted, or "
        "the link comes from another server. Showing another run."
    ]
    assert gone.selectbox(key="results_run").value == newest
    assert {m.label: m.value for m in gone.metric}["Status"] == "completed"

    hostile = opened_at("results", "run=[log in](http://evil.example)")

    assert not hostile.exception
    # Escaped: markdown shows the brackets as text, not a link to that address.
    assert hostile.warning[0].value.startswith(
        "This link's run \\[log in\\](http://evil.example) is not on this server"
    )


# --- your drawings: keep sketches with their right label, score and train on them ---


@pytest.fixture
def drawings_dir(app_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "drawings"
    monkeypatch.setenv("MNIST_DRAWINGS_DIR", str(folder))
    return folder


def test_sketch_keeps_a_drawing_with_the_label_the_user_confirms_or_corrects(
    drawings_dir: Path, mnist
) -> None:
    from mnist_core.drawings import DrawingSet

    at = page("sketch")
    at.session_state["sketch_drawing"] = canvas_with(mnist.x_test[0])  # a 7
    at.run()
    assert not at.exception
    label = at.segmented_control(key="sketch_canvas_label_7")
    assert label.value == 7  # the prediction is proposed
    at.button(key="sketch_canvas_keep").click().run()
    assert not at.exception
    assert [s.value for s in at.success] == ["Added as a 7: you have 1 drawing."]
    assert "sketch_drawing" not in at.session_state  # the canvas is cleared for the next one

    at.session_state["sketch_drawing"] = canvas_with(mnist.x_test[3])  # a 0 ...
    at.run()
    at.segmented_control(key="sketch_canvas_label_0").set_value(6).run()  # ... "meant" as a 6
    at.button(key="sketch_canvas_keep").click().run()
    assert not at.exception

    saved = DrawingSet(drawings_dir).list()
    assert [d.label for d in saved] == [6, 7]
    assert saved[1].canvas().shape == (280, 280, 4)
    assert saved[1].digit.max() == 255 and saved[1].digit[:3].max() == 0  # centred, like MNIST
    assert at.expander[-1].label == "My drawings (2)"
    assert "This model reads" in " ".join(c.value for c in at.caption)


def test_sketch_deletes_a_drawing_and_offers_the_set_as_npz(drawings_dir: Path, mnist) -> None:
    from mnist_core.drawings import DrawingSet

    drawings = DrawingSet(drawings_dir)
    kept = drawings.add(mnist.x_test[0], 7)
    gone = drawings.add(mnist.x_test[1], 2)
    at = page("sketch").run()
    assert at.download_button(key="drawings_download") is not None
    at.selectbox(key="drawings_pick").set_value(gone)
    at.button(key="drawings_delete").click().run()
    assert not at.exception
    assert [d.drawing_id for d in drawings.list()] == [kept]
    assert at.expander[-1].label == "My drawings (1)"


def drawings_accuracy(run, drawings) -> float:
    """`run`'s accuracy on the drawings, percent, evaluated here from its model file."""
    from mnist_core.evaluate import evaluate
    from mnist_core.ml.model_files import load_model_file

    images, labels = drawings.arrays()
    return evaluate(load_model_file(run.model_path), images, labels).accuracy * 100


def test_results_scores_every_run_on_mnist_and_on_your_drawings(drawings_dir: Path, mnist) -> None:
    from mnist_core.drawings import DrawingSet
    from mnist_core.runs import PRETRAINED_DIR, RunStore

    drawings = DrawingSet(drawings_dir)
    for index in range(20):  # MNIST test digits, the first five labelled one digit too high
        drawings.add(mnist.x_test[index], (int(mnist.y_test[index]) + (index < 5)) % 10)
    at = page("results").run()
    assert not at.exception
    (table,) = [d.value for d in at.dataframe if "your drawings (20)" in d.value.columns]
    assert list(table.columns)[:3] == ["run", "MNIST test", "your drawings (20)"]
    runs = {run.label: run for run in RunStore(pretrained=PRETRAINED_DIR).list()}
    assert sorted(table["run"]) == sorted(runs)  # every run, the pretrained one too
    for row in table.itertuples(index=False):
        run = runs[row.run]
        expected = drawings_accuracy(run, drawings)
        # Both are a count of 20 divided by 20, from the same model and the same drawings.
        assert row[2] == pytest.approx(expected, abs=1e-9)
        assert expected <= 75.0  # five labels are wrong: no model reads them "right"
        assert row[1] == pytest.approx(run.test_accuracy * 100, abs=1e-9)
        assert row[3] == pytest.approx(expected - run.test_accuracy * 100, abs=1e-9)  # gap


def test_train_mixes_in_drawings_and_shows_before_and_after(
    drawings_dir: Path, own_runs: Path, mnist
) -> None:
    from mnist_core.drawings import DrawingSet
    from mnist_core.runs import RunStore

    runs = own_runs  # a copy: the run trained here must not change other tests' store

    drawings = DrawingSet(drawings_dir)
    for index in range(10):
        drawings.add(mnist.x_test[index], int(mnist.y_test[index]))
    at = page("train").run()
    (start_from,) = [run for run in at.selectbox(key="train_start_from").options if "mlp" in run]
    at.toggle(key="train_drawings").set_value(True)
    at.selectbox(key="train_start_from").set_value(start_from.split(" · ")[0]).run()
    assert at.text_input(key="train_hidden_units").value == "256, 128"  # the run's architecture
    at.slider(key="train_epochs").set_value(1)
    at.button(key="train_start").click().run()
    assert not at.exception
    wait_for_success(at)
    assert at.success, "training did not finish within 3 minutes"
    run_id = at.success[0].value.split("`")[1]
    config = json.loads((runs / run_id / "config.json").read_text())
    assert config["drawings"] is True and config["start_from"] in start_from
    metrics = json.loads((runs / run_id / "metrics.json").read_text())
    assert "+ 10 of your drawings" in metrics["data_source"]
    (table,) = [d.value for d in at.dataframe if "your drawings (10)" in d.value.columns]
    assert list(table[""]) == ["before", "after"]
    assert table["run"][0].startswith(config["start_from"])
    store = RunStore(runs)
    before_and_after = [config["start_from"], run_id]
    for row, shown_id in zip(table.itertuples(index=False), before_and_after, strict=True):
        run = store.get(shown_id)
        assert row.run == run.label
        assert row[3] == pytest.approx(drawings_accuracy(run, drawings), abs=1e-9)
        assert row[2] == pytest.approx(run.test_accuracy * 100, abs=1e-9)


def test_a_page_run_never_clears_keras_session(
    app_env: Path, mnist, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streamlit clears Keras' session after each run unless told not to: that costs ~200 ms
    per Sketch stroke and empties TensorFlow's kernel cache under a running training."""
    import keras

    cleared: list[bool] = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: cleared.append(True))
    at = page("sketch")
    at.session_state["sketch_drawing"] = canvas_with(mnist.x_test[0])
    at.run()
    at.run()
    assert not at.exception
    assert [m.value for m in at.metric if m.label == "Prediction"] == ["7"]
    assert cleared == []


def test_train_explains_every_setting(app_env: Path) -> None:
    from mnist_core.config import setting_help

    at = page("train").run()

    assert not at.exception
    helps = {
        "architecture": at.radio(key="train_architecture").help,
        "dropout_rate": at.slider(key="train_dropout_rate").help,
        "optimizer": at.selectbox(key="train_optimizer").help,
        "learning_rate": at.select_slider(key="train_learning_rate").help,
        "lr_decay": at.toggle(key="train_lr_decay").help,
        "batch_size": at.select_slider(key="train_batch_size").help,
        "augment": at.toggle(key="train_augment").help,
        "epochs": at.slider(key="train_epochs").help,
        "validation_split": at.slider(key="train_validation_split").help,
        "seed": at.number_input(key="train_seed").help,
    }
    assert helps == {name: setting_help(name) for name in helps}
    assert setting_help("seed") == "Seed of the weights, shuffling, dropout and augmentation."


# --- Train: try several settings (sweeps) ---


def sweep_captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if "trial" in c.value]


def test_train_sweep_form_counts_the_trials_and_explains_bad_values(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNIST_MAX_EPOCHS", "10")
    at = page("train").run()
    assert not at.exception
    assert at.selectbox(key="train_sweep_setting_1").value == "learning_rate"
    assert at.text_input(key="train_sweep_values_1").value == "0.0005, 0.001, 0.003"
    assert at.selectbox(key="train_sweep_setting_2").value == ""
    assert sweep_captions(at)[-1].startswith("**3 trials** (this server takes at most 6 per sweep)")
    assert not at.button(key="train_sweep_start").disabled

    at.selectbox(key="train_sweep_setting_2").set_value("dropout_rate").run()
    assert at.text_input(key="train_sweep_values_2").value == "0.2, 0.4"  # an example to edit
    assert sweep_captions(at)[-1].startswith("**6 trials**")
    assert not at.error

    for values, message in [
        ("0.2, 0.4, 0.6", "grid: 3 × 3 values make 9 trials, more than this server's limit of 6"),
        ("0.2, lots", "dropout_rate: 'lots' is not a number; write values like 0.2,0.4"),
        ("0.2, 0.2", "dropout_rate: 0.2 is given twice; give each value once"),
        ("0.2, 0.95", "dropout_rate: must be from 0 to 0.9, got 0.95"),
    ]:
        at.text_input(key="train_sweep_values_2").input(values).run()
        assert not at.exception
        assert len(at.error) == 1 and at.error[0].value.startswith(message), values
        assert at.button(key="train_sweep_start").disabled, values

    at.text_input(key="train_sweep_values_2").input("0.2, 0.4").run()
    at.text_input(key="train_sweep_values_1").input("0.001, fast").run()
    assert [e.value for e in at.error] == [
        "learning_rate: 'fast' is not a number; write values like 0.0005,0.001,0.003"
    ]
    assert at.text_input(key="train_sweep_values_2").value == "0.2, 0.4"  # still there
    at.text_input(key="train_sweep_values_1").input("0.0005, 0.001, 0.003").run()

    at.selectbox(key="train_sweep_setting_2").set_value("epochs").run()
    at.text_input(key="train_sweep_values_2").input("5, 50").run()
    assert [e.value for e in at.error] == [
        "epochs: this server allows at most 10, got 50; choose 10 or less"
    ]
    at.selectbox(key="train_sweep_setting_2").set_value("learning_rate").run()
    assert at.error[0].value.startswith("learning_rate: is given twice")
    at.selectbox(key="train_sweep_setting_2").set_value("").run()
    monkeypatch.setenv("MNIST_MAX_SWEEP", "2")
    at.run()
    assert at.error[0].value.startswith("grid: 3 values make 3 trials, more than this server's")


def make_finished_sweep(store: Path, trials: list[tuple[float, float | None, float, str]]) -> str:
    """A sweep of learning rates whose trials ended: (learning rate, validation accuracy,
    test accuracy, state) each. A finished trial's run is a copy of the store's run with those
    scores; a failed one has none. Its id."""
    from mnist_core.config import TrainConfig
    from mnist_core.job_service import JobState, LocalJobs, write_state

    (source,) = run_folders(store)
    configs = [TrainConfig.preset("mlp", learning_rate=rate) for rate, *_ in trials]
    queue = LocalJobs(store, workers=0)  # nothing starts: the states are written below
    sweep_id = queue.submit_sweep(configs, owner="a visitor before a reload")
    for number, (trial, (rate, val, test, state)) in enumerate(
        zip(queue.sweep(sweep_id), trials, strict=True)
    ):
        run_id = None
        if state == "finished":
            run_id = f"20260101-00000{number}-mlp-00000{number}"
            shutil.copytree(source, store / run_id)
            config = json.loads((store / run_id / "config.json").read_text())
            (store / run_id / "config.json").write_text(
                json.dumps({**config, "learning_rate": rate})
            )
            metrics = json.loads((store / run_id / "metrics.json").read_text())
            metrics.update(val_accuracy=val, test_accuracy=test, epochs_run=2, train_seconds=9.0)
            (store / run_id / "metrics.json").write_text(json.dumps(metrics))
        error = (
            "The training process died (killed, or out of memory)" if state == "failed" else None
        )
        write_state(
            store / ".jobs" / trial.job_id,
            JobState(state=state, run_id=run_id, error=error),
        )
    return sweep_id


def test_train_sweep_view_ranks_by_validation_and_uses_the_best_trial(own_runs: Path) -> None:
    sweep_id = make_finished_sweep(
        own_runs,
        [
            (0.001, 0.971, 0.990, "finished"),  # the best test accuracy: never the pick
            (0.003, 0.982, 0.975, "finished"),  # the best validation accuracy
            (0.01, None, 0.0, "failed"),
        ],
    )
    at = page("train")
    at.query_params["sweep"] = sweep_id  # a reloaded page: only the address knows the sweep
    at.run()

    assert not at.exception
    assert "Your sweep" in [s.value for s in at.subheader]
    assert "3 of 3 trials ended" in sweep_captions(at)
    assert "2 of the 3 trials ended with a run to compare." in sweep_captions(at)
    assert [e.value for e in at.error] == [
        "Trial 3 (learning_rate=0.01) failed: The training process died (killed, or out of memory)"
    ]
    (table,) = [d.value for d in at.dataframe if "rank" in d.value.columns]
    assert list(table["rank"]) == [1, 2]
    assert list(table["learning_rate"]) == ["0.003", "0.001"]
    assert list(table["validation accuracy"]) == pytest.approx([98.2, 97.1])
    assert list(table["test accuracy"]) == pytest.approx([97.5, 99.0])
    assert list(table["run"]) == ["20260101-000001-mlp-000001", "20260101-000000-mlp-000000"]
    (chart,) = [c for c in at.get("plotly_chart") if "validation accuracy" in c.proto.spec]
    spec = json.loads(chart.proto.spec)
    line, star = spec["data"]
    assert list(plotly_array(line["x"])) == [0.001, 0.003]
    assert list(plotly_array(line["y"])) == [0.971, 0.982]
    assert (star["name"], list(star["x"])) == ("best: learning_rate=0.003", [0.003])
    assert spec["layout"]["xaxis"]["type"] == "log"

    at.button(key="train_sweep_use_best").click().run()

    assert not at.exception
    assert at.session_state["active_run"] == "20260101-000001-mlp-000001"
    (success,) = at.success
    assert success.value.startswith("Best trial: **learning_rate=0.003**, run `20260101-000001")
    assert success.value.endswith(
        "98.20% validation accuracy (97.50% on the test set). It is your active model."
    )
    assert [b for b in at.button if b.key == "train_sweep_use_best"] == []
    home = at.switch_page("pages/home.py").run()  # the session's active model, elsewhere
    assert any(
        "run `20260101-000001-mlp-000001`: 97.50% test accuracy" in text.value
        for text in home.markdown
    )


def test_train_sweep_starts_from_the_form_shows_its_trials_and_stops(own_runs: Path) -> None:
    at = page("train").run()
    at.text_input(key="train_sweep_values_1").input("0.001, 0.003").run()
    at.button(key="train_sweep_start").click().run()

    assert not at.exception
    sweep_id = at.session_state["train_sweep_id"]
    assert at.query_params["sweep"] == sweep_id
    (trials,) = [
        d.value
        for d in at.dataframe
        if "progress" in d.value.columns and "trial" in d.value.columns
    ]
    assert list(trials["learning_rate"]) == ["0.001", "0.003"]
    assert list(trials["state"])[1] == "waiting (1st)"  # one worker: the second waits
    assert at.button(key="train_start").disabled and at.button(key="train_sweep_start").disabled
    queue = [d.value for d in at.dataframe if "time left" in d.value.columns][0]
    assert list(queue[""]) == ["yours", "yours"]

    at.button(key="train_sweep_stop").click().run()
    assert "Stopping every trial: the ones training keep their best weights so far." in [
        i.value for i in at.info
    ]
    deadline = time.monotonic() + 120
    while "2 of 2 trials ended" not in sweep_captions(at) and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    assert not at.exception
    assert "2 of 2 trials ended" in sweep_captions(at)
    assert not at.button(key="train_start").disabled
    assert not at.button(key="train_sweep_start").disabled


def test_train_page_with_an_unreachable_cluster_says_so_and_keeps_the_settings(
    own_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNIST_RAY_ADDRESS", "127.0.0.2:9")  # nothing listens there
    before = run_folders(own_runs), sorted(own_runs.glob(".jobs/*"))
    at = page("train").run()
    assert not at.exception
    said = [e.value for e in at.error]
    assert any("The Ray cluster at 127.0.0.2:9 does not answer" in text for text in said), said
    at.slider(key="train_epochs").set_value(3)
    at.button(key="train_start").click().run()
    assert not at.exception
    assert any("Check MNIST_RAY_ADDRESS" in e.value for e in at.error)
    assert at.slider(key="train_epochs").value == 3  # nothing the visitor set is lost
    assert (run_folders(own_runs), sorted(own_runs.glob(".jobs/*"))) == before  # nothing queued


def test_runs_are_read_from_disk_only_after_a_save_or_a_deletion(
    own_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every page run lists the runs several times (sidebar, page, sections): the store is
    read once, and again only when a run folder changed."""
    from mnist_core.runs import RunStore
    from pages.parts import app_state

    reads: list[str] = []
    read = RunStore._read

    def counting(store: RunStore, path: Path):
        reads.append(path.name)
        return read(store, path)

    monkeypatch.setattr(RunStore, "_read", counting)
    folders = run_folders(own_runs)
    first = app_state.list_runs()
    assert {run.run_id for run in first} >= {folder.name for folder in folders}
    count = len(reads)
    assert count >= len(folders)

    assert app_state.list_runs() == first and app_state.list_runs() == first
    assert len(reads) == count  # nothing read again

    metrics = folders[0] / "metrics.json"
    metrics.write_text(metrics.read_text())  # a save rewrites it
    assert [run.run_id for run in app_state.list_runs()] == [run.run_id for run in first]
    assert len(reads) == 2 * count
    shutil.rmtree(folders[-1])
    assert folders[-1].name not in {run.run_id for run in app_state.list_runs()}
