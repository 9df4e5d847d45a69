"""The Sketch page's canvas in Chromium: its code comes before the other widgets', a finger
draws on a phone without scrolling the page, the slider's width is the ink's, and the drawing
outlives a visit to another page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, ElementHandle, Page, expect

from tests.e2e import ui

PHONE = {"width": 390, "height": 844}

# Pixels with ink in the canvas's backing store (white on black), and its pixel density.
INK = """canvas => {
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let ink = 0;
    for (let i = 0; i < pixels.length; i += 4) if (pixels[i] > 127) ink++;
    return ink / (canvas.width / 280) ** 2;
}"""


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    """A phone: 390 px wide, a touch screen, twice the pixels per CSS pixel."""
    context = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    yield context.new_page()
    context.close()


def swipe(page: Page, surface: ElementHandle, points: list[tuple[float, float]]) -> None:
    """One finger on the canvas: down at the first point, along the others, lifted."""
    box = surface.bounding_box()
    assert box is not None
    session = page.context.new_cdp_session(page)
    at = [{"x": box["x"] + x, "y": box["y"] + y} for x, y in points]
    session.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [at[0]]})
    for point in at[1:]:
        session.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
    session.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    session.detach()


# When the browser asked for each of Streamlit's scripts, by the name before its build hash.
REQUESTED = """() => Object.fromEntries(performance.getEntriesByType("resource")
    .map(entry => [entry.name.split("/").pop().split(".")[0], entry.startTime]))"""


def test_a_first_visit_fetches_the_canvas_code_before_the_other_widgets(
    page: Page, app_url: str
) -> None:
    # The page's widgets' scripts are fetched six at a time; the components code (the canvas)
    # comes first because every page starts with the app's style component (pages/parts/style.py).
    ui.open_sketch(page, app_url)
    requested = page.evaluate(REQUESTED)
    others = [requested[name] for name in ("Selectbox", "Checkbox", "Slider", "Metric")]
    assert requested["BidiComponent"] < min(others), requested


def test_a_finger_draws_a_digit_on_a_phone_and_the_page_stays_put(
    phone: Page, app_url: str
) -> None:
    surface = ui.open_sketch(phone, app_url)
    surface.scroll_into_view_if_needed()
    scrolled = phone.evaluate("window.scrollY")
    # A downward swipe, which would scroll the page if the canvas let it.
    swipe(phone, surface, [(150, 40 + 10 * step) for step in range(21)])
    expect(ui.metric_value(phone, "Prediction")).to_have_text("1")
    assert phone.evaluate("window.scrollY") == scrolled
    assert surface.evaluate("canvas => canvas.width") == 2 * ui.CANVAS_SIZE  # sharp on the phone


def test_the_stroke_width_slider_sets_the_inks_width(page: Page, app_url: str) -> None:
    ui.open_sketch(page, app_url)
    line = [[(40.0, 140.0), (240.0, 140.0)]]  # 200 px across
    inks = []
    for width in (10, 30):
        ui.set_slider(page, "Stroke width", width)
        surface = ui.drawing_surface(page)
        ui.draw(page, line, surface)
        expect(ui.metric_value(page, "Prediction")).to_be_visible()
        inks.append(surface.evaluate(INK))
        ui.clear_canvas(page)
    # A line with round ends: about 200 x width pixels plus a disc of ink.
    for width, ink in zip((10, 30), inks, strict=True):
        assert 200 * width <= ink <= 200 * width + 3.14 * (width / 2) ** 2 * 1.3, (width, inks)


def test_each_stroke_adds_to_the_drawing_and_is_read_with_the_ones_before(
    page: Page, app_url: str
) -> None:
    surface = ui.open_sketch(page, app_url)
    prediction = ui.metric_value(page, "Prediction")
    ui.draw(page, [[(60.0, 50.0), (195.0, 50.0)]], surface)  # a bar: no 7 yet
    expect(prediction).to_be_visible()  # read on its own first
    bar = surface.evaluate(INK)
    ui.draw(page, [[(195.0, 50.0), (114.0, 230.0)]], surface)  # the 7's long stroke
    expect(prediction).to_have_text("7")
    assert surface.evaluate(INK) > 1.5 * bar


def test_the_drawing_is_still_there_after_another_page_and_gone_after_clear(
    page: Page, app_url: str
) -> None:
    ui.open_sketch(page, app_url)
    ui.draw(page, ui.seven(left=60, top=50, size=180))
    prediction = ui.metric_value(page, "Prediction")
    expect(prediction).to_have_text("7")
    drawn = ui.drawing_surface(page).evaluate(INK)

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Results").click()
    expect(page.get_by_role("heading", name="Results", exact=True)).to_be_visible()
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Sketch").click()
    expect(prediction).to_have_text("7")
    surface = ui.drawing_surface(page)
    page.wait_for_function(f"canvas => ({INK})(canvas) > 0", arg=surface)
    assert surface.evaluate(INK) == pytest.approx(drawn, rel=0.05)  # repainted from its PNG

    ui.clear_canvas(page)
    assert ui.drawing_surface(page).evaluate(INK) == 0
