"""What a person does in the dashboard, as Playwright helpers shared by the tests and the
screenshot script: wait for Streamlit, read a metric, draw strokes on the Sketch canvas."""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Callable, Sequence

from playwright.sync_api import ElementHandle, Error, Locator, Page, expect

CANVAS = "canvas.digit-canvas"  # the Sketch page's drawable surface (pages/parts/canvas.py)
CANVAS_SIZE = 280  # its size, in CSS pixels
TRAINING_TIMEOUT = 240_000  # ms; TensorFlow start-up plus one MLP epoch on two busy cores
PROGRESS = re.compile(r"Epoch (\d+)/(\d+) · batch (\d+)/(\d+) · (\d+) s elapsed")

Progress = tuple[int, int, int]  # (epoch, batch, elapsed seconds) on the progress bar
Stroke = Sequence[tuple[float, float]]  # points in canvas pixels, (x, y) from the top left


def open_page(page: Page, url: str, heading: str) -> None:
    """Load `url` and wait until the page's title heading shows and the script has finished."""
    page.goto(url)
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=60_000)
    wait_until_idle(page)


def wait_until_idle(page: Page, timeout: float = 60_000) -> None:
    """Wait until Streamlit's "Running…" indicator is gone."""
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=timeout)


def metric_value(page: Page, label: str) -> Locator:
    """The value of the metric labelled exactly `label`."""
    metric = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
    )
    return metric.get_by_test_id("stMetricValue")


def selectbox(page: Page, label: str) -> Locator:
    """The select box labelled `label`; its value is the chosen option's text."""
    return page.get_by_role("combobox", name=label, exact=True)


def choose(page: Page, label: str, option: str) -> None:
    """Pick the option containing `option` in the select box labelled `label`."""
    selectbox(page, label).click()
    page.get_by_role("option").filter(has_text=option).click()
    expect(selectbox(page, label)).to_have_value(re.compile(re.escape(option)))
    # Until the rerun it started has ended: a widget moved meanwhile sends the values the page
    # showed before it (a preset's settings not yet among them), as no person is quick enough to.
    wait_until_idle(page)


def slider(page: Page, label: str) -> Locator:
    """The thumb (an input of type range) of the slider labelled `label`."""
    return page.get_by_role("group", name=label, exact=True).get_by_role("slider")


def set_slider_to_minimum(page: Page, label: str) -> None:
    thumb = slider(page, label)
    thumb.focus()
    thumb.press("Home")
    expect(thumb).to_have_value(thumb.get_attribute("min") or "")


def set_slider(page: Page, label: str, value: int) -> None:
    """Move the slider labelled `label` (steps of 1) to `value` with the keyboard."""
    thumb = slider(page, label)
    thumb.focus()
    thumb.press("Home")
    for _ in range(value - int(thumb.get_attribute("min") or 0)):
        thumb.press("ArrowRight")
    expect(thumb).to_have_value(str(value))
    wait_until_idle(page)


def progress_text(page: Page) -> str:
    return page.get_by_test_id("stProgress").inner_text()


def parse_progress(text: str) -> Progress | None:
    """(epoch, batch, elapsed seconds) from a progress text; None before the first batch."""
    match = PROGRESS.search(text)
    return (int(match[1]), int(match[3]), int(match[5])) if match else None


def read_progress(
    page: Page, beyond: Progress | None = None, timeout: float = TRAINING_TIMEOUT
) -> Progress:
    """The progress as soon as the bar shows a training batch (past `beyond`'s, if given)."""
    shown = watch_progress(
        page, until=lambda progress: beyond is None or progress[:2] > beyond[:2], timeout=timeout
    )
    progress = parse_progress(shown[-1])
    assert progress is not None
    return progress


def watch_progress(
    page: Page,
    until: Locator | Callable[[Progress], bool],
    timeout: float = TRAINING_TIMEOUT,
) -> list[str]:
    """Every distinct text the progress bar shows, in order, until `until` is visible (a
    locator) or holds for the progress shown (a predicate).

    Fails at once if training fails or the page shows an exception.
    """
    seen: list[str] = []
    deadline = time.monotonic() + timeout / 1000
    failed = page.get_by_text("Training failed").or_(page.get_by_test_id("stException"))
    while True:
        with contextlib.suppress(Error):  # the bar is redrawn twice a second
            text = page.get_by_test_id("stProgress").inner_text(timeout=1_000)
            if not seen or seen[-1] != text:
                seen.append(text)
        if isinstance(until, Locator):
            if until.first.is_visible():
                return seen
        elif seen and (progress := parse_progress(seen[-1])) and until(progress):
            return seen
        assert time.monotonic() < deadline, f"gave up waiting after {seen}"
        assert not failed.first.is_visible(), failed.first.inner_text()
        page.wait_for_timeout(200)


def success_message(page: Page, containing: str, timeout: float = TRAINING_TIMEOUT) -> str:
    alert = page.get_by_test_id("stAlert").filter(has_text=containing)
    expect(alert).to_be_visible(timeout=timeout)
    return alert.inner_text()


def draw(page: Page, strokes: Sequence[Stroke], surface: ElementHandle | None = None) -> None:
    """Draw `strokes` with the mouse on the Sketch canvas, one press-move-release each.

    `surface` is the canvas from `drawing_surface`, when the caller found it already.
    """
    for attempt in range(3):
        surface = surface or drawing_surface(page)
        try:
            surface.scroll_into_view_if_needed()
            box = surface.bounding_box()
            break
        except Error:  # replaced even after settling, on a slow machine: find it again
            if attempt == 2:
                raise
            surface = None
    assert box is not None, "the drawing canvas is not visible"
    assert round(box["width"]) == CANVAS_SIZE, box
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=4)
        page.mouse.up()


def drawing_surface(page: Page, settle: float = 0.3, timeout: float = 30) -> ElementHandle:
    """The canvas that takes the strokes, once it has stayed the same element for `settle`
    seconds: a cleared canvas is replaced a moment after the page says "Draw a digit", and
    strokes on the old one would be lost."""
    canvas = page.locator(CANVAS).last
    deadline = time.monotonic() + timeout
    settled, since = None, time.monotonic()
    while True:
        current = canvas.element_handle()
        if settled is None or not settled.evaluate("(a, b) => a === b && b.isConnected", current):
            settled, since = current, time.monotonic()
        elif time.monotonic() - since >= settle:
            return current
        assert time.monotonic() < deadline, "the drawing canvas keeps being replaced"
        page.wait_for_timeout(50)


def open_sketch(page: Page, base_url: str) -> ElementHandle:
    """Open Sketch with its default model; the drawing surface, once it has settled."""
    open_page(page, base_url + "/sketch", "Sketch")
    expect(page.get_by_text("Draw a digit", exact=True)).to_be_visible(timeout=60_000)
    return drawing_surface(page)


def clear_canvas(page: Page) -> None:
    page.get_by_role("button", name="Clear").click()
    expect(page.get_by_text("Draw a digit", exact=True)).to_be_visible()


def one(x: float, top: float, height: float) -> list[Stroke]:
    """A 1: one slightly slanted vertical stroke."""
    return [[(x + height * 0.08, top), (x, top + height)]]


def zero(centre_x: float, centre_y: float, width: float, height: float) -> list[Stroke]:
    """A 0: a closed ellipse."""
    return [
        [
            (
                centre_x + width / 2 * math.sin(2 * math.pi * step / 36),
                centre_y - height / 2 * math.cos(2 * math.pi * step / 36),
            )
            for step in range(37)
        ]
    ]


def seven(left: float, top: float, size: float) -> list[Stroke]:
    """A 7: a bar across the top, then a long stroke down to the left."""
    return [[(left, top), (left + size * 0.75, top), (left + size * 0.3, top + size)]]
