"""Draw a set of digits with the mouse on the Sketch page, in Chromium, and keep each one with
its right label, as a user does with "Add to my drawings".

    MNIST_PATH=../shared/data/mnist.npz python bench/make_drawings.py --out DIR [--variants 6]

The strokes are hand-written shapes of the ten digits (`SHAPES`, in a unit box), each drawn in
several variants: size, place, slant, width and a little tremble. They go through the real
canvas, its stroke rendering and the page's keep button, so `DIR` ends up as a
`DrawingSet` (`MNIST_DRAWINGS_DIR`) like a visitor's own. `bench/bench_drawings.py` scores runs
on it.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from playwright.sync_api import TimeoutError, expect, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e import ui  # noqa: E402
from tests.e2e.server import (  # noqa: E402
    CHROMIUM_ARGS,
    drawings_dir,
    running_app,
    train_run,
)
from tests.needs import CHROMIUM  # noqa: E402

Point = tuple[float, float]


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float) -> list[Point]:
    """Points on an ellipse from angle `start` to `end` (degrees, 0 = top, clockwise)."""
    steps = max(2, round(abs(end - start) / 10))
    return [
        (
            cx + rx * math.sin(math.radians(start + (end - start) * i / steps)),
            cy - ry * math.cos(math.radians(start + (end - start) * i / steps)),
        )
        for i in range(steps + 1)
    ]


# Each digit: strokes of (x, y) points in a unit box, y downwards, as a person writes them.
SHAPES: dict[int, list[list[Point]]] = {
    0: [_arc(0.5, 0.5, 0.4, 0.5, 0, 360)],
    1: [[(0.3, 0.2), (0.55, 0.0), (0.55, 1.0)]],
    2: [_arc(0.5, 0.28, 0.4, 0.28, -70, 110) + [(0.05, 1.0), (0.95, 1.0)]],
    3: [_arc(0.5, 0.25, 0.38, 0.25, -60, 180) + _arc(0.5, 0.73, 0.42, 0.27, 0, 240)[1:]],
    4: [[(0.7, 1.0), (0.7, 0.0), (0.05, 0.68), (0.95, 0.68)]],
    5: [[(0.85, 0.0), (0.2, 0.0), (0.15, 0.45)] + _arc(0.48, 0.68, 0.4, 0.32, -60, 220)[1:]],
    6: [[(0.75, 0.0), (0.35, 0.3)] + _arc(0.5, 0.7, 0.38, 0.3, 250, -90)],
    7: [[(0.05, 0.0), (0.95, 0.0), (0.4, 1.0)]],
    8: [
        [
            (0.5 + 0.32 * math.sin(2 * t), 0.5 - 0.5 * math.cos(t))
            for t in (2 * math.pi * i / 48 for i in range(49))
        ]
    ],
    9: [_arc(0.5, 0.3, 0.38, 0.3, 90, 450) + [(0.85, 1.0)]],
}

# (height in canvas pixels, centre x, centre y, slant, width / height, tremble in pixels)
VARIANTS: list[tuple[float, float, float, float, float, float]] = [
    (200, 140, 140, 0.0, 0.65, 0.0),
    (130, 90, 90, 0.25, 0.6, 1.5),
    (230, 150, 140, -0.15, 0.75, 0.0),
    (100, 190, 180, 0.1, 0.7, 1.0),
    (170, 140, 140, 0.2, 0.45, 2.0),
    (150, 120, 160, 0.05, 0.85, 3.0),
    # Harder hands: a strong slant either way, a very narrow script, a shaky one.
    (180, 140, 140, 0.45, 0.6, 0.0),
    (160, 140, 140, -0.3, 0.9, 4.0),
    (200, 140, 140, 0.0, 0.35, 5.0),
    (120, 190, 90, 0.3, 0.8, 2.5),
]


def strokes_for(digit: int, variant: Sequence[float], rng: random.Random) -> list[ui.Stroke]:
    """`SHAPES[digit]` placed on the 280x280 canvas as `variant` says."""
    height, centre_x, centre_y, slant, aspect, tremble = variant
    width = height * aspect
    placed = []
    for stroke in SHAPES[digit]:
        points = []
        for x, y in stroke:
            px = centre_x + (x - 0.5) * width + (0.5 - y) * height * slant
            py = centre_y + (y - 0.5) * height
            px += rng.gauss(0, tremble)
            py += rng.gauss(0, tremble)
            points.append((min(max(px, 3), 277), min(max(py, 3), 277)))
        placed.append(points)
    return placed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to copy the drawings to")
    parser.add_argument("--variants", type=int, default=len(VARIANTS))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as scratch:
        runs = Path(scratch) / "runs"
        print("training a quick MLP run for the Sketch page…", flush=True)
        run_id = train_run(runs)
        with (
            running_app(runs, Path(scratch) / "streamlit.log") as url,
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            ui.open_page(page, url + "/sketch", "Sketch")
            ui.choose(page, "Model", run_id)
            labels = page.get_by_test_id("stButtonGroup")
            for variant in VARIANTS[: args.variants]:
                for digit in range(10):
                    expect(page.get_by_text("Draw a digit", exact=True)).to_be_visible()
                    strokes = strokes_for(digit, variant, rng)
                    prediction = ui.metric_value(page, "Prediction")
                    for attempt in range(3):  # a canvas replaced mid-stroke loses the stroke
                        # A hand reaches the canvas before pressing: the pointer rests on it
                        # first (a press where the pointer only just arrived, next to the
                        # canvas' hover toolbar, can be lost).
                        surface = ui.drawing_surface(page)
                        box = surface.bounding_box()
                        assert box is not None
                        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                        page.wait_for_timeout(300)
                        ui.draw(page, strokes, surface)
                        try:
                            prediction.wait_for(timeout=10_000)
                            break
                        except TimeoutError:
                            page.screenshot(path=args.out / f"failed-{digit}-{attempt}.png")
                            ui.clear_canvas(page)
                    if prediction.inner_text() != str(digit):  # correct the proposed label
                        labels.get_by_text(str(digit), exact=True).click()
                    selected = labels.locator("[aria-checked=true], [aria-pressed=true]")
                    expect(selected).to_have_text(str(digit))
                    page.get_by_role("button", name="Add to my drawings").click()
                    expect(page.get_by_text(f"Added as a {digit}")).to_be_visible()
                print(f"variant {variant}: 10 digits kept", flush=True)
            browser.close()
        kept = sorted(drawings_dir(runs).glob("*.npz"))
        for path in kept:  # the app keeps them beside its run store (see server.app_env)
            shutil.copy(path, args.out / path.name)
    print(f"{len(kept)} drawings copied to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
