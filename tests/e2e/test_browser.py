"""The dashboard in a real browser: Chromium drives `streamlit run` as a person would.

MNIST_PATH=/path/to/mnist.npz pytest tests/e2e
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Locator, Page, expect

from mnist_core.drawings import DrawingSet
from mnist_core.runs import PRETRAINED_DIR
from tests.e2e import ui
from tests.e2e.server import drawings_dir
from tests.needs import mnist_path

pytestmark = pytest.mark.e2e

RUN_ID = re.compile(r"\d{8}-\d{6}-(?:mlp|cnn)-[0-9a-f]{6}")
# ms from Stop to the saved run; a second or two, but a first validation pass can be tracing
STOP_TIMEOUT = 60_000


def digit_photo(index: int) -> tuple[bytes, int]:
    """PNG bytes of MNIST test digit `index` as a photo of paper (dark ink, 200x200), and its
    label."""
    path = mnist_path()
    assert path is not None
    with np.load(path) as data:
        image, label = data["x_test"][index], int(data["y_test"][index])
    paper = Image.fromarray(255 - image).resize((200, 200), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    paper.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue(), label


def confusion_cells(chart: Locator) -> np.ndarray:
    """The (10, 10) counts printed in the confusion-matrix heatmap, rows true digits."""
    labels = chart.locator(".heatmap-label text").evaluate_all(
        "texts => texts.map(t => [+t.getAttribute('y'), +t.getAttribute('x'), +t.textContent])"
    )
    assert len(labels) == 100
    return np.array([count for _, _, count in sorted(labels)]).reshape(10, 10)


def click_cell(page: Page, chart: Locator, true_digit: int, predicted_digit: int) -> None:
    """Click the centre of the heatmap cell (row `true_digit`, column `predicted_digit`)."""
    chart.scroll_into_view_if_needed()
    box = chart.locator(".hm image").bounding_box()
    assert box is not None
    page.mouse.click(
        box["x"] + (predicted_digit + 0.5) * box["width"] / 10,
        box["y"] + (true_digit + 0.5) * box["height"] / 10,
    )


def test_home_links_reach_every_page(page: Page, app_url: str) -> None:
    ui.open_page(page, app_url, "Digit recognition dashboard")
    expect(page.get_by_text("Active model").first).to_be_visible()

    for link, path, heading in [
        ("Train a model", "/train", "Train"),
        ("Results of your runs", "/results", "Results"),
        ("Sketch a digit", "/sketch", "Sketch"),
    ]:
        page.get_by_role("link", name=link).click()
        expect(page).to_have_url(app_url + path)
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Home").click()
        expect(page).to_have_url(app_url + "/")
        expect(page.get_by_role("heading", name="Digit recognition dashboard")).to_be_visible()


def test_first_visit_to_results_from_home_shows_results(page: Page, fresh_app: str) -> None:
    """The first visitor of a new server clicks through to Results at once: the home page's
    script thread is then still importing its modules while Results builds its figures."""
    page.goto(fresh_app)
    page.get_by_role("link", name="Results of your runs").click()
    expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible(timeout=60_000)
    ui.wait_until_idle(page)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.locator(".digit-gallery").first.locator("figure")).to_have_count(40)


def test_first_visit_to_a_page_link_shows_the_app(page: Page, fresh_app: str) -> None:
    ui.open_page(page, fresh_app + "/train", "Train")
    nav = page.get_by_test_id("stSidebarNav").get_by_role("link")
    # Each link's text starts with its icon's name (e.g. "model_training").
    names = ["Home", "Train", "Results", "Sketch"]
    expect(nav).to_have_text([re.compile(f"{name}$") for name in names], timeout=5_000)
    expect(page.get_by_text("Active model")).to_be_visible(timeout=5_000)


def test_train_one_epoch_then_explore_its_results(page: Page, app_url: str) -> None:
    ui.open_page(page, app_url + "/train", "Train")
    ui.set_slider_to_minimum(page, "Epochs")
    # The smallest batches: an epoch of a few seconds, so the page shows progress more than
    # once (at 128 the epoch took 1 s on a fast machine and the page polled once).
    ui.set_slider_to_minimum(page, "Batch size")
    page.get_by_role("button", name="Train", exact=True).click()

    expect(page.get_by_test_id("stProgress")).to_be_visible()
    shown = ui.watch_progress(page, until=page.get_by_text("test accuracy"))
    progress = [p for p in map(ui.parse_progress, shown) if p is not None]
    assert len(set(progress)) >= 2 and progress == sorted(progress), shown
    assert {epoch for epoch, _, _ in progress} == {1}
    summary = ui.success_message(page, "test accuracy")
    assert "completed" in summary and "1 epoch " in summary, summary
    accuracy = float(re.search(r"([\d.]+)% test accuracy", summary)[1])
    assert 90.0 < accuracy < 100.0
    run_id = RUN_ID.search(summary)[0]

    page.get_by_role("link", name="See its results").click()
    expect(page).to_have_url(re.compile(r"/results"))
    expect(ui.selectbox(page, "Run")).to_have_value(re.compile(run_id))
    expect(ui.metric_value(page, "Test accuracy")).to_have_text(f"{accuracy:.2f}%")
    expect(ui.metric_value(page, "Epochs")).to_have_text("1 (best 1)")
    curves = page.get_by_test_id("stPlotlyChart").first
    expect(curves.get_by_text(f"{run_id} · train")).to_be_visible()
    expect(page.locator(".digit-gallery").first.locator("figure")).to_have_count(40)
    # The learning replay: its 30 panel digits after the run's only epoch.
    expect(page.locator(".digit-gallery").nth(1).locator("figure")).to_have_count(30)
    replay = page.get_by_text(re.compile(r"^After epoch 1 of 1: \d+ of 30 panel digits"))
    expect(replay).to_be_visible()
    # The first heatmap is the confusion matrix; the learning replay's comes after it.
    chart = page.get_by_test_id("stPlotlyChart").filter(has=page.locator(".hm")).first
    expect(chart.locator(".heatmap-label text")).to_have_count(100)
    counts = confusion_cells(chart)
    assert counts.sum() == 10_000
    assert abs(np.trace(counts) / 100 - accuracy) < 0.01

    # The most frequent mistake: a person clicks its cell to see those digits.
    mistakes = counts - np.diag(np.diag(counts))
    true_digit, predicted_digit = np.unravel_index(np.argmax(mistakes), mistakes.shape)
    click_cell(page, chart, true_digit, predicted_digit)

    expect(ui.selectbox(page, "True digit")).to_have_value(str(true_digit))
    expect(ui.selectbox(page, "Predicted digit")).to_have_value(str(predicted_digit))
    matches = int(mistakes[true_digit, predicted_digit])
    expect(page.get_by_text(f"{matches} test digits match")).to_be_visible()
    captions = page.locator(".digit-gallery").first.locator("figcaption")
    expect(captions).to_have_count(min(matches, 40))
    for caption in captions.all_inner_texts():
        assert caption.startswith(f"{true_digit} → {predicted_digit} ("), caption


def test_training_survives_navigation_and_stops_on_request(
    page: Page, app_url: str, starter_runs: tuple[Path, str]
) -> None:
    ui.open_page(page, app_url + "/train", "Train")
    expect(ui.slider(page, "Epochs")).to_have_value("20")
    page.get_by_role("button", name="Train", exact=True).click()
    before = ui.read_progress(page)

    nav = page.get_by_test_id("stSidebarNav")
    nav.get_by_role("link", name="Sketch").click()
    expect(page.get_by_role("heading", name="Sketch", exact=True)).to_be_visible()
    nav.get_by_role("link", name="Train").click()
    expect(page.get_by_role("heading", name="Train", exact=True)).to_be_visible()

    shown = ui.watch_progress(page, until=lambda progress: progress[:2] > before[:2])
    # The same job carried on: no "Starting…" again, never behind where it was.
    assert all((ui.parse_progress(text) or (0,)) >= before for text in shown), (before, shown)
    expect(page.get_by_role("button", name="Train", exact=True)).to_be_disabled()
    page.get_by_role("button", name="Stop", exact=True).click()

    summary = ui.success_message(page, "stopped by you", timeout=STOP_TIMEOUT)
    run_id = RUN_ID.search(summary)[0]
    metrics = json.loads((starter_runs[0] / run_id / "metrics.json").read_text())
    assert metrics["status"] == "stopped"
    assert metrics["epochs_run"] < 20
    expect(page.get_by_role("button", name="Train", exact=True)).to_be_enabled()


def test_a_sweep_of_two_learning_rates_is_ranked_by_validation_accuracy(
    page: Page, app_url: str, starter_runs: tuple[Path, str]
) -> None:
    ui.open_page(page, app_url + "/train", "Train")
    ui.set_slider_to_minimum(page, "Epochs")
    ui.wait_until_idle(page)
    page.get_by_text("Try several settings", exact=True).click()
    values = page.get_by_role("textbox", name="Values of learning rate")
    values.fill("0.001, 0.003")
    values.press("Enter")
    expect(page.get_by_text("2 trials", exact=True)).to_be_visible()
    page.get_by_role("button", name="Start sweep").click()

    expect(page.get_by_role("heading", name="Your sweep")).to_be_visible()
    expect(page).to_have_url(re.compile(r"[?&]sweep="))
    use_best = page.get_by_role("button", name="Use the best trial")
    # Two trials one after the other, on the server's one worker.
    expect(use_best.first).to_be_visible(timeout=2 * ui.TRAINING_TIMEOUT)
    ui.wait_until_idle(page)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    table = page.get_by_test_id("stDataFrame").filter(
        has=page.locator("th", has_text="validation accuracy")
    )
    # The grid draws on a canvas; its cells are also in a table for screen readers, filled in
    # once the grid has laid itself out.
    expect(table.locator("tbody tr").last.locator("td")).to_have_count(8)
    rows = [row.locator("td").all_text_contents() for row in table.locator("tbody tr").all()]
    assert [row[0] for row in rows] == ["1", "2"], rows
    assert sorted(row[1] for row in rows) == ["0.001", "0.003"]
    for rate, validation, test, run_id in ((row[1], row[2], row[3], row[6]) for row in rows):
        metrics = json.loads((starter_runs[0] / run_id / "metrics.json").read_text())
        config = json.loads((starter_runs[0] / run_id / "config.json").read_text())
        assert (config["learning_rate"], config["epochs"]) == (float(rate), 1)
        assert float(validation) == pytest.approx(100 * metrics["val_accuracy"], abs=1e-4)
        assert float(test) == pytest.approx(100 * metrics["test_accuracy"], abs=1e-4)
    assert float(rows[0][2]) >= float(rows[1][2])  # ranked by validation accuracy
    best = rows[0][6]
    expect(page.get_by_text(re.compile(r"^Best trial: learning_rate="))).to_contain_text(best)
    chart = page.get_by_test_id("stPlotlyChart")
    expect(chart.get_by_text("learning_rate", exact=True)).to_be_visible()  # the x axis
    expect(chart.get_by_text(f"best: learning_rate={rows[0][1]}", exact=True)).to_be_visible()

    use_best.click()

    expect(page.get_by_text("It is your active model.")).to_be_visible()
    expect(page.get_by_test_id("stSidebar").get_by_text(best)).to_be_visible()


def test_a_settings_link_fills_train_once_and_a_run_link_opens_that_run(
    page: Page, app_url: str
) -> None:
    ui.open_page(page, f"{app_url}/train?preset=cnn&learning_rate=0.0042&epochs=3&seed=x", "Train")

    expect(ui.selectbox(page, "Preset")).to_have_value(re.compile(r"^cnn: "))
    expect(page.get_by_role("radio", name="strided")).to_be_checked()  # the cnn preset's network
    expect(ui.slider(page, "Epochs")).to_have_value("3")
    expect(ui.slider(page, "Learning rate")).to_have_attribute("aria-valuetext", "0.0042")
    expect(page.get_by_test_id("stAlert").filter(has_text="were not used")).to_contain_text(
        "seed: 'x' is not a whole number; kept 42"
    )
    copy = page.get_by_role("button", name="Copy link", exact=True)
    link = page.get_by_test_id("stCode").filter(has_text="/train?")
    copy.click()
    expect(link).to_have_text(f"{app_url}/train?preset=cnn&learning_rate=0.0042&epochs=3")
    page.keyboard.press("Escape")

    ui.set_slider_to_minimum(page, "Epochs")  # the visitor's change outlives the reruns
    ui.wait_until_idle(page)
    expect(ui.slider(page, "Epochs")).to_have_value("1")
    copy.click()
    expect(link).to_have_text(f"{app_url}/train?preset=cnn&learning_rate=0.0042&epochs=1")

    pretrained = next(path for path in PRETRAINED_DIR.iterdir() if path.is_dir())
    accuracy = json.loads((pretrained / "metrics.json").read_text())["test_accuracy"]
    ui.open_page(page, f"{app_url}/results?run={pretrained.name}", "Results")

    # Not the newest run, which Results shows by default: the one in the link.
    expect(ui.selectbox(page, "Run")).to_have_value(re.compile(pretrained.name))
    expect(ui.metric_value(page, "Test accuracy")).to_have_text(f"{accuracy:.2%}")
    page.get_by_role("button", name="Copy link", exact=True).click()
    expect(page.get_by_test_id("stCode").first).to_have_text(
        f"{app_url}/results?run={pretrained.name}"
    )


def test_sketch_reads_drawn_and_uploaded_digits(
    page: Page, app_url: str, starter_runs: tuple[Path, str]
) -> None:
    ui.open_page(page, app_url + "/sketch", "Sketch")
    ui.choose(page, "Model", starter_runs[1])
    expect(page.get_by_text("Draw a digit", exact=True)).to_be_visible(timeout=60_000)
    prediction = ui.metric_value(page, "Prediction")

    # Off-centre and of different sizes: small at the top left, large, bottom right.
    for digit, strokes in [
        ("1", ui.one(x=60, top=20, height=110)),
        ("0", ui.zero(centre_x=165, centre_y=150, width=150, height=230)),
        ("7", ui.seven(left=120, top=120, size=140)),
    ]:
        ui.draw(page, strokes)
        expect(prediction).to_have_text(digit)
        ui.clear_canvas(page)

    page.get_by_role("tab", name="Upload a photo").click()
    upload = page.get_by_test_id("stFileUploader").locator("input[type=file]")
    upload.set_input_files(
        files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image at all"}]
    )
    error = page.get_by_test_id("stAlert").filter(has_text="not a PNG, JPEG")
    expect(error).to_be_visible()

    photo, label = digit_photo(1)
    upload.set_input_files(files=[{"name": "digit.png", "mimeType": "image/png", "buffer": photo}])
    expect(error).to_have_count(0)
    expect(prediction).to_have_text(str(label))


def test_one_visitor_trains_while_another_sketches(
    new_page: Callable[[], Page], app_url: str, starter_runs: tuple[Path, str]
) -> None:
    trainer, sketcher = new_page(), new_page()
    ui.open_page(sketcher, app_url + "/sketch", "Sketch")
    ui.choose(sketcher, "Model", starter_runs[1])
    expect(sketcher.get_by_text("Draw a digit", exact=True)).to_be_visible(timeout=60_000)
    ui.open_page(trainer, app_url + "/train", "Train")
    # No validation: a stop during the first validation pass waits for Keras to trace it.
    ui.set_slider_to_minimum(trainer, "Early-stopping patience")
    ui.set_slider_to_minimum(trainer, "Validation split")
    trainer.get_by_role("button", name="Train", exact=True).click()
    before = ui.read_progress(trainer)

    ui.draw(sketcher, ui.one(x=140, top=50, height=180))
    expect(ui.metric_value(sketcher, "Prediction")).to_have_text("1")

    sketcher.get_by_test_id("stSidebarNav").get_by_role("link", name="Train").click()
    queue = sketcher.get_by_text("Trainings on this server (1), at most 1 at once")
    expect(queue).to_be_visible()  # the other visitor's, listed without a name
    expect(sketcher.get_by_role("button", name="Train", exact=True)).to_be_enabled()  # to queue
    expect(sketcher.get_by_role("button", name="Stop", exact=True)).to_have_count(0)

    ui.read_progress(trainer, beyond=before)  # training carries on meanwhile
    trainer.get_by_role("button", name="Stop", exact=True).click()
    ui.success_message(trainer, "stopped by you", timeout=STOP_TIMEOUT)
    # The other visitor looks at their window again (Chromium slows timers in pages in the
    # background, and the page's refresh runs on a timer).
    sketcher.bring_to_front()
    expect(queue).to_have_count(0)  # nothing runs or waits any more


def test_your_drawings_loop_keep_score_and_train_on_them(
    page: Page, app_url: str, starter_runs: tuple[Path, str]
) -> None:
    runs_dir, starter = starter_runs
    drawings = drawings_dir(runs_dir)
    ui.open_page(page, app_url + "/sketch", "Sketch")
    ui.choose(page, "Model", starter)
    expect(page.get_by_text("Draw a digit", exact=True)).to_be_visible(timeout=60_000)
    prediction = ui.metric_value(page, "Prediction")
    labels = page.get_by_test_id("stButtonGroup")

    # A 0, read right and confirmed; then a 1 that the user says they meant as a 7.
    for strokes, read, meant in [
        (ui.zero(centre_x=140, centre_y=140, width=130, height=200), "0", "0"),
        (ui.one(x=140, top=50, height=180), "1", "7"),
    ]:
        ui.draw(page, strokes)
        expect(prediction).to_have_text(read)
        # The prediction is proposed as the label (one choice of ten is selected).
        selected = labels.locator("[aria-checked=true], [aria-pressed=true]")
        expect(selected).to_have_text(read)
        if meant != read:
            labels.get_by_text(meant, exact=True).click()
            expect(selected).to_have_text(meant)
        page.get_by_role("button", name="Add to my drawings").click()
        expect(page.get_by_text(f"Added as a {meant}")).to_be_visible()
        expect(page.get_by_text("Draw a digit", exact=True)).to_be_visible()  # cleared

    my_drawings = page.get_by_text(re.compile(r"^My drawings \(\d+\)$"))
    expect(my_drawings).to_have_text("My drawings (2)")
    drawing_set = DrawingSet(drawings)
    saved = drawing_set.list()  # newest first, by the time each was added (two added
    assert len(saved) == 2  # within one second have ids of the same second)
    newest = saved[0].canvas()
    assert saved[0].label == 7 and newest is not None and newest.shape == (280, 280, 4)
    kept = drawing_set.arrays()  # oldest first: the 0, then the 1 meant as a 7

    # The set downloads as one .npz in MNIST's layout. Once the page's run has ended: a
    # download button still on screen from the run before holds a file id that run's end
    # revokes, and a click on it downloads nothing.
    ui.wait_until_idle(page)
    my_drawings.click()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download all (.npz)").click()
    assert download.value.suggested_filename == "my-drawings.npz"
    with np.load(download.value.path()) as exported:
        assert exported["x"].shape == (2, 28, 28) and exported["x"].dtype == np.uint8
        assert exported["y"].tolist() == [0, 7]
        np.testing.assert_array_equal(exported["x"], kept[0])
        assert exported["x"].max() == 255 and exported["x"][:, :3].max() == 0  # centred ink

    # Results scores every run on MNIST's test set and on these two drawings.
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Results").click()
    expect(page.get_by_role("heading", name="MNIST test set vs your drawings")).to_be_visible()
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible()

    # Train: mix them in and fine-tune the starter run for one epoch, then before and after.
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Train").click()
    expect(page.get_by_role("heading", name="Train", exact=True)).to_be_visible()
    ui.wait_until_idle(page)
    page.get_by_text("Mix in my drawings (2)").click()
    ui.choose(page, "Start from", starter)
    ui.set_slider_to_minimum(page, "Epochs")
    page.get_by_role("button", name="Train", exact=True).click()
    message = ui.success_message(page, "test accuracy, 1 epoch")
    (run_id,) = RUN_ID.findall(message)
    config = json.loads((runs_dir / run_id / "config.json").read_text())
    assert (config["drawings"], config["start_from"]) == (True, starter)
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible()  # before and after
