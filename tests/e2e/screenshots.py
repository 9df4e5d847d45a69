"""Screenshots of the dashboard for the docs: `docs/screenshots/{home,train,results,sketch}.png`.

    MNIST_PATH=/path/to/mnist.npz python -m tests.e2e.screenshots [--out DIR] [--epochs N]

Serves the app as the browser suite does (a new run store holding one quick MLP run), then
photographs each page 1400 px wide: Results tall enough for the gallery, Sketch with a drawn
digit, Train in the middle of a run (which is then stopped).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

from tests.e2e import ui
from tests.e2e.server import CHROMIUM_ARGS, ROOT, running_app, train_run
from tests.needs import CHROMIUM, mnist_path

WIDTH = 1400


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the run shown")
    args = parser.parse_args(argv)
    if mnist_path() is None:
        print("error: set MNIST_PATH to mnist.npz (real MNIST is needed)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=60_000)

    with tempfile.TemporaryDirectory(prefix="screenshots-") as temp:
        runs_dir = Path(temp) / "runs"
        print(f"training a {args.epochs}-epoch MLP run…", file=sys.stderr)
        train_run(runs_dir, epochs=args.epochs)
        with (
            running_app(runs_dir, Path(temp) / "streamlit.log") as url,
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
            shoot_home(page, url, args.out / "home.png")
            shoot_results(page, url, args.out / "results.png")
            shoot_sketch(page, url, args.out / "sketch.png")
            shoot_train(page, url, args.out / "train.png")
            browser.close()
    for name in ("home", "train", "results", "sketch"):
        print(args.out / f"{name}.png")
    return 0


def shoot_home(page: Page, url: str, path: Path) -> None:
    page.set_viewport_size({"width": WIDTH, "height": 900})
    ui.open_page(page, url, "Digit recognition dashboard")  # a new server's first visit: entry
    expect(page.get_by_test_id("stDataFrame").locator("canvas").first).to_be_visible()
    page.wait_for_timeout(1_500)  # the table draws its cells on the canvas after it appears
    page.screenshot(path=path)


def shoot_results(page: Page, url: str, path: Path) -> None:
    # Streamlit scrolls inside its main container, so a tall window shows the whole page.
    page.set_viewport_size({"width": WIDTH, "height": 3700})
    ui.open_page(page, url + "/results", "Results")
    expect(page.locator(".digit-gallery").first.locator("figure")).to_have_count(40)
    expect(page.locator(".heatmap-label text")).to_have_count(100)
    page.wait_for_timeout(1_000)  # plotly's last layout pass
    page.screenshot(path=path)


def shoot_sketch(page: Page, url: str, path: Path) -> None:
    page.set_viewport_size({"width": WIDTH, "height": 2000})
    ui.open_page(page, url + "/sketch", "Sketch")
    expect(page.get_by_text("Draw a digit", exact=True)).to_be_visible()
    ui.draw(page, ui.seven(left=80, top=60, size=170))
    expect(ui.metric_value(page, "Prediction")).to_be_visible()
    page.get_by_text("Preprocessing steps").click()
    ui.wait_until_idle(page)
    page.get_by_text("What the model sees", exact=True).click()
    ui.wait_until_idle(page)
    expect(page.get_by_text("gradient × input").first).to_be_visible()
    # The saliency map is drawn after the expander opens, seconds later on a busy machine.
    expect(page.get_by_text("saliency: red for the digit").first).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1_000)
    page.screenshot(path=path)


def shoot_train(page: Page, url: str, path: Path) -> None:
    page.set_viewport_size({"width": WIDTH, "height": 1500})
    ui.open_page(page, url + "/train", "Train")
    page.get_by_role("button", name="Train", exact=True).click()
    while ui.read_progress(page)[0] < 4:  # three epochs of curves
        page.wait_for_timeout(1_000)
    expect(page.get_by_test_id("stPlotlyChart")).to_be_visible()
    page.wait_for_timeout(1_000)
    page.screenshot(path=path)
    page.get_by_role("button", name="Stop", exact=True).click()
    ui.success_message(page, "stopped by you")


if __name__ == "__main__":
    sys.exit(main())
