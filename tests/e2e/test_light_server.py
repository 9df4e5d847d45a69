"""The web process stays free of TensorFlow: predictions run in ONNX Runtime, and TensorFlow
loads only when a visitor asks for a gradient map (`/proc/PID/maps` of the server read after
each step)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e import ui
from tests.e2e.server import server_maps, tensorflow_loaded
from tests.e2e.test_browser import digit_photo

pytestmark = pytest.mark.e2e


def test_predictions_and_explanations_without_tensorflow_until_a_gradient_is_asked_for(
    page: Page, fresh_app: str, starter_runs: tuple[Path, str]
) -> None:
    ui.open_page(page, fresh_app + "/sketch", "Sketch")
    ui.choose(page, "Model", "pretrained")  # the shipped cnn
    expect(page.get_by_text("Draw a digit", exact=True)).to_be_visible(timeout=60_000)
    prediction = ui.metric_value(page, "Prediction")
    ui.draw(page, ui.one(x=140, top=50, height=180))
    expect(prediction).to_have_text("1")
    # Nor pandas (0.2 s of the first visitor's wait): the canvas asks no data-frame question.
    libraries = server_maps(fresh_app)
    assert "pandas/_libs" not in libraries and "pyarrow" not in libraries

    # What the model sees: occlusion, the first layer's filters and their feature maps.
    page.get_by_text("What the model sees", exact=True).click()
    expect(page.get_by_text(re.compile(r"^First layer, conv1_1: 24 filters, 3×3"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"^What they find in this digit"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Blanking a 4×4 patch"))).to_be_visible()

    page.get_by_role("tab", name="Upload a photo").click()
    photo, label = digit_photo(1)
    upload = page.get_by_test_id("stFileUploader").locator("input[type=file]")
    upload.set_input_files(files=[{"name": "digit.png", "mimeType": "image/png", "buffer": photo}])
    expect(prediction.last).to_have_text(str(label))

    nav = page.get_by_test_id("stSidebarNav")
    nav.get_by_role("link", name="Results").click()
    expect(page.locator(".digit-gallery").first.locator("figure")).to_have_count(40)
    ui.wait_until_idle(page)
    page.get_by_text("What the model sees in one of these digits", exact=True).click()
    expect(page.get_by_text(re.compile(r"^Blanking a 4×4 patch"))).to_be_visible()
    ui.wait_until_idle(page)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    assert not tensorflow_loaded(fresh_app)

    # A gradient map needs TensorFlow: it loads now, and the page says so meanwhile.
    page.get_by_role("radiogroup", name="Saliency method").get_by_text("gradient × input").click()
    expect(page.get_by_text(re.compile(r"^Red ink pushes the model towards"))).to_be_visible(
        timeout=60_000
    )
    assert tensorflow_loaded(fresh_app)


def test_the_original_scripts_h5_imports_on_results_and_reads_a_sketch_without_tensorflow(
    page: Page, mnist, tmp_path: Path
) -> None:
    from tests.e2e.server import running_app
    from tests.keras_models import original_recipe

    model = original_recipe()  # the script this project started from, saved as it saved it
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(mnist.x_train[:10_000] / 255.0, mnist.y_train[:10_000], epochs=2, verbose=0)
    _, accuracy = model.evaluate(mnist.x_test / 255.0, mnist.y_test, verbose=0)
    model.save(tmp_path / "mnist_model.h5")

    with running_app(tmp_path / "runs", tmp_path / "streamlit.log") as url:
        ui.open_page(page, url + "/results", "Results")
        page.get_by_text("Import a model or run bundle", exact=True).click()
        upload = page.get_by_test_id("stFileUploader").locator("input[type=file]")
        upload.set_input_files(str(tmp_path / "mnist_model.h5"))
        done = page.get_by_test_id("stAlertContentSuccess")
        expect(done).to_contain_text("Imported mnist_model.h5 as run", timeout=120_000)
        shown = float(re.search(r"(\d+\.\d+)% on MNIST", done.inner_text()).group(1))
        assert abs(shown / 100 - accuracy) <= 0.001
        expect(ui.metric_value(page, "Input")).to_have_text("(28, 28)")
        expect(page.get_by_test_id("stException")).to_have_count(0)

        ui.open_page(page, url + "/sketch", "Sketch")
        ui.choose(page, "Model", "imported")
        expect(page.get_by_text("Draw a digit", exact=True)).to_be_visible(timeout=60_000)
        ui.draw(page, ui.one(x=140, top=50, height=180))
        expect(ui.metric_value(page, "Prediction")).to_have_text("1")
        ui.wait_until_idle(page)
        assert not tensorflow_loaded(url)
