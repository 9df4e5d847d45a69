"""A bounded load test on loopback: ten visitors sketch with the pretrained `cnn` at once while
an eleventh trains a convnet in a worker; every prediction is right and reaches their screen
without a stall.

Each sketcher's page times itself: a capturing `pointerup` listener notes when the stroke ends,
a MutationObserver when the "Prediction" metric appears, both on the page's own clock, so the
figure is what the visitor sees and not how fast this test polls.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Page, expect

from tests.e2e import ui

pytestmark = pytest.mark.e2e

VISITORS = 10
ROUNDS = 4  # strokes per visitor: 40 timed predictions
# Seconds from the end of a stroke to the prediction on screen, 95th percentile. The target is
# 0.6 s with the pretrained cnn predicting in ONNX Runtime (BENCHMARKS.md follows it, machine
# named). A time limit in a test must hold on every CI machine (a 2-core AMD EPYC with AVX2
# measured 1.3-1.6 s here before predictions left TensorFlow), so it is 2.5 s here: it fails on
# a stall (a lock, a full-page rerun per stroke), not on a slower CPU.
P95_LIMIT = 2.5

# Installed in every sketcher's page before Streamlit loads.
TIMER = """
window.__sketchTimer = {up: null, shown: null, text: null};
document.addEventListener('pointerup', () => {
  Object.assign(window.__sketchTimer, {up: performance.now(), shown: null, text: null});
}, true);
new MutationObserver(() => {
  const timer = window.__sketchTimer;
  if (timer.up === null || timer.shown !== null) return;
  const metric = [...document.querySelectorAll('[data-testid="stMetric"]')]
    .find(m => m.querySelector('[data-testid="stMetricLabel"]')?.innerText === 'Prediction');
  if (metric) {
    timer.shown = performance.now();
    timer.text = metric.querySelector('[data-testid="stMetricValue"]').innerText;
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def test_ten_visitors_sketch_while_one_trains(
    new_page: Callable[[], Page], app_url: str, starter_runs: tuple[Path, str]
) -> None:
    trainer = new_page()
    ui.open_page(trainer, app_url + "/train", "Train")
    ui.choose(trainer, "Preset", "cnn")  # the heaviest training: both cores busy
    ui.set_slider_to_minimum(trainer, "Validation split")  # a stop never waits for validation
    trainer.get_by_role("button", name="Train", exact=True).click()
    started = ui.read_progress(trainer)

    sketchers = []
    for _ in range(VISITORS):
        page = new_page()
        page.add_init_script(TIMER)
        ui.open_page(page, app_url + "/sketch", "Sketch")
        ui.choose(page, "Model", "pretrained")  # the shipped cnn
        expect(page.get_by_text("Draw a digit", exact=True)).to_be_visible(timeout=60_000)
        sketchers.append(page)

    digits = [
        ("1", ui.one(x=140, top=50, height=180)),
        ("0", ui.zero(centre_x=140, centre_y=140, width=130, height=200)),
    ]
    latencies: list[float] = []
    for number in range(ROUNDS):
        expected, strokes = digits[number % 2]
        surfaces = [ui.drawing_surface(page) for page in sketchers]
        # Ten strokes within about a second: the server runs ten sketch reruns at once.
        for page, surface in zip(sketchers, surfaces, strict=True):
            ui.draw(page, strokes, surface)
        for page in sketchers:
            page.wait_for_function("window.__sketchTimer.shown !== null", timeout=60_000)
            timer = page.evaluate("window.__sketchTimer")
            assert timer["text"] == expected, timer
            latencies.append((timer["shown"] - timer["up"]) / 1000)
        print("round", number, [round(x, 2) for x in latencies[-VISITORS:]], flush=True)
        for page in sketchers:
            ui.clear_canvas(page)

    p50, p95 = np.percentile(latencies, [50, 95])
    print(f"prediction to screen, {len(latencies)} strokes: p50 {p50:.3f} s, p95 {p95:.3f} s")
    assert len(latencies) == VISITORS * ROUNDS
    assert p95 <= P95_LIMIT, f"p95 {p95:.2f} s > {P95_LIMIT} s: {sorted(latencies)}"

    # The training went on all along, and still stops on request.
    trainer.bring_to_front()
    ui.read_progress(trainer, beyond=started)
    expect(trainer.get_by_text("Trainings on this server (1), at most 1 at once")).to_be_visible()
    trainer.get_by_role("button", name="Stop", exact=True).click()
    ui.success_message(trainer, "stopped by you", timeout=120_000)
