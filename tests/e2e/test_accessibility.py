"""Every page, in the light and the dark theme, checked by axe-core against WCAG 2.1 A and AA;
and the main flows used with the keyboard alone.

axe-core comes bundled with axe-playwright-python, so the checks run offline. A visitor's
theme is their system's: Chromium is told to prefer light or dark (`color_scheme`), as an
operating system's setting would.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Locator, Page, expect

from tests.e2e import ui
from tests.e2e.conftest import VIEWPORT

pytestmark = pytest.mark.e2e

WCAG_AA = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}
BLOCKING = ("serious", "critical")
# The app's background in each theme (Streamlit's own, with our accent and text colours).
BACKGROUND = {"light": "rgb(255, 255, 255)", "dark": "rgb(23, 22, 20)"}


@pytest.fixture(params=["light", "dark"])
def themed_page(request: pytest.FixtureRequest, browser: Browser) -> Iterator[Page]:
    """A new visitor whose system prefers the light or the dark theme."""
    context = browser.new_context(viewport=VIEWPORT, color_scheme=request.param)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.theme = request.param  # type: ignore[attr-defined]  # for the assertions below
    yield page
    context.close()


def blocking_violations(page: Page) -> list[str]:
    """axe-core's serious and critical WCAG 2.1 AA violations on the page as it is now, one
    line each: rule, impact, how many elements, the first element and why."""
    found = Axe().run(page, options=WCAG_AA).response["violations"]
    return [
        f"{v['id']} ({v['impact']}, {len(v['nodes'])} elements): {v['nodes'][0]['target']} "
        + v["nodes"][0].get("failureSummary", "").replace("\n", " ")
        for v in found
        if v["impact"] in BLOCKING
    ]


def assert_accessible(page: Page) -> None:
    theme = page.theme  # type: ignore[attr-defined]
    app = page.get_by_test_id("stApp")
    expect(app).to_have_css("background-color", BACKGROUND[theme])  # the visitor's theme
    # Streamlit switches to a dark system setting's theme after the first render, and buttons
    # fade to their new colours: axe must not read one halfway (white on the light blue).
    page.wait_for_timeout(1000)
    assert blocking_violations(page) == [], f"axe-core, {theme} theme"


def test_home_is_accessible(themed_page: Page, app_url: str) -> None:
    ui.open_page(themed_page, app_url, "Digit recognition dashboard")
    expect(themed_page.get_by_test_id("stDataFrame")).to_be_visible()  # the latest runs
    assert_accessible(themed_page)


def test_train_is_accessible(themed_page: Page, app_url: str) -> None:
    ui.open_page(themed_page, app_url + "/train", "Train")
    expect(themed_page.get_by_role("button", name="Train", exact=True)).to_be_visible()
    assert_accessible(themed_page)


def test_train_opened_from_a_link_and_its_copy_box_are_accessible(
    themed_page: Page, app_url: str
) -> None:
    ui.open_page(themed_page, app_url + "/train?preset=quick&epochs=3&seed=x", "Train")
    expect(themed_page.get_by_text("Some of this link's settings were not used")).to_be_visible()
    themed_page.get_by_role("button", name="Copy link", exact=True).click()
    expect(themed_page.get_by_test_id("stCode")).to_contain_text("/train?preset=quick&epochs=3")
    assert_accessible(themed_page)


def finished_sweep(runs_dir: Path, run_id: str) -> str:
    """A sweep whose one trial finished as run `run_id`, written straight into the job
    service's folder (never queued, so no worker starts); its id."""
    from mnist_core.job_service import JobRequest, JobState, write_state
    from mnist_core.runs import RunStore

    config = RunStore(runs_dir).get(run_id).config
    sweep_id = f"{time.time_ns():020d}-a11y"
    job_id = f"{time.time_ns():020d}-a11y"
    folder = runs_dir / ".jobs" / f".{job_id}"  # hidden until complete, as the service does
    folder.mkdir(parents=True)
    request = JobRequest(job_id, config, "another visitor", time.time(), sweep_id)
    (folder / "job.json").write_text(json.dumps(request.to_json()))
    write_state(folder, JobState(state="finished", run_id=run_id))
    folder.rename(runs_dir / ".jobs" / job_id)
    return sweep_id


def test_a_finished_sweep_is_accessible(
    themed_page: Page, app_url: str, starter_runs: tuple[Path, str]
) -> None:
    sweep_id = finished_sweep(*starter_runs)
    ui.open_page(themed_page, f"{app_url}/train?sweep={sweep_id}", "Train")
    themed_page.get_by_text("Try several settings", exact=True).click()  # the form, too
    expect(themed_page.get_by_role("button", name="Use the best trial")).to_be_visible()
    expect(themed_page.get_by_role("button", name="Start sweep")).to_be_visible()
    assert_accessible(themed_page)


def test_results_is_accessible(themed_page: Page, app_url: str) -> None:
    ui.open_page(themed_page, app_url + "/results", "Results")
    gallery = themed_page.locator(".digit-gallery").first
    expect(gallery.locator("figure")).to_have_count(40)
    # A wrong prediction's caption is red, a right one's green, in either theme.
    themed_page.get_by_text("misclassified", exact=True).first.click()
    ui.wait_until_idle(themed_page)
    expect(gallery.locator("figure.wrong").first).to_be_visible()
    assert_accessible(themed_page)


@pytest.mark.usefixtures("kept_drawings_removed")
def test_sketch_is_accessible_with_a_prediction_and_kept_drawings(
    themed_page: Page, app_url: str
) -> None:
    page = themed_page
    ui.open_page(page, app_url + "/sketch", "Sketch")
    expect(page.get_by_text("Draw a digit", exact=True)).to_be_visible(timeout=60_000)
    ui.draw(page, ui.one(x=140, top=50, height=180))
    expect(ui.metric_value(page, "Prediction")).to_have_text(re.compile(r"^\d$"))
    expect(page.locator(".probabilities")).to_be_visible()
    assert_accessible(page)  # probability bars, label choice, "Add to my drawings"

    page.get_by_role("button", name="Add to my drawings").click()
    expect(page.get_by_text("Added as a")).to_be_visible()
    ui.wait_until_idle(page)
    page.get_by_text(re.compile(r"^My drawings \(\d+\)$")).click()  # thumbnails open
    expect(page.locator(".drawings figure").first).to_be_visible()
    assert_accessible(page)


def tab_to(page: Page, target: Locator) -> None:
    """Press Tab, as a keyboard user would, until the focus is on `target` or inside it."""
    expect(target).to_be_visible()
    for _ in range(150):
        if target.evaluate("element => element.contains(document.activeElement)"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {target}")


def press_button(page: Page, name: str) -> None:
    """Tab to the button named `name` and press Enter."""
    tab_to(page, page.get_by_role("button", name=name, exact=True))
    page.keyboard.press("Enter")


def test_train_and_stop_with_the_keyboard_alone(
    page: Page, app_url: str, starter_runs: tuple[Path, str]
) -> None:
    ui.open_page(page, app_url + "/train", "Train")
    press_button(page, "Train")
    ui.read_progress(page)  # training has begun
    press_button(page, "Stop")
    message = ui.success_message(page, "stopped by you", timeout=60_000)
    (run_id,) = re.findall(r"\d{8}-\d{6}-mlp-[0-9a-f]{6}", message)
    metrics = json.loads((starter_runs[0] / run_id / "metrics.json").read_text())
    assert metrics["status"] == "stopped"


def test_gallery_pages_with_the_keyboard_alone(page: Page, app_url: str) -> None:
    ui.open_page(page, app_url + "/results", "Results")
    captions = page.locator(".digit-gallery").first.locator("figcaption")
    expect(captions).to_have_count(40)
    first_page = captions.all_inner_texts()
    number = page.get_by_role("spinbutton", name="Page")  # the gallery's page number
    tab_to(page, number)
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    expect(number).to_have_value("2")
    expect(captions.first).not_to_have_text(first_page[0])
    assert captions.all_inner_texts() != first_page


@pytest.mark.usefixtures("kept_drawings_removed")
def test_keep_a_drawing_with_the_keyboard_alone(
    page: Page, app_url: str, starter_runs: tuple[Path, str]
) -> None:
    """Drawing needs a pointer; everything after it (choosing the label, keeping it) works
    with keys."""
    ui.open_page(page, app_url + "/sketch", "Sketch")
    ui.choose(page, "Model", starter_runs[1])
    expect(page.get_by_text("Draw a digit", exact=True)).to_be_visible(timeout=60_000)
    count = page.get_by_text(re.compile(r"^My drawings \(\d+\)$"))
    before = int(re.findall(r"\d+", count.inner_text())[0])
    ui.draw(page, ui.one(x=140, top=50, height=180))
    expect(ui.metric_value(page, "Prediction")).to_have_text("1")
    # Meant as a 7: into the label choice with Tab, along it with the arrow keys.
    labels = page.get_by_role("radiogroup", name="Right label")
    tab_to(page, labels)
    seven = labels.get_by_role("radio", name="7", exact=True)
    for _ in range(10):
        if seven.evaluate("element => element.contains(document.activeElement)"):
            break
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Space")
    expect(seven).to_be_checked()
    press_button(page, "Add to my drawings")
    expect(page.get_by_text("Added as a 7")).to_be_visible()
    expect(count).to_have_text(f"My drawings ({before + 1})")
