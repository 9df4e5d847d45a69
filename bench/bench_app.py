"""Start-up time and memory of the running app, in Chromium, beside baselines from the same run.

    MNIST_PATH=../shared/data/mnist.npz python bench/bench_app.py [--repeat 3]

For each repetition, with one headless Chromium already open:
- a minimal Streamlit app (one title) is started and opened: the floor any Streamlit app pays;
  and once more at /sketch, as the dashboard's Sketch is opened: Streamlit's page first asks
  for /sketch/_stcore/health (in case the app is served under /sketch), gets a 404 and tries
  again at / after its retry delay, which any Streamlit app pays for a link to one of its pages;
- the dashboard is started and its home page opened: time to the rendered "Train" link, and
  the server's RSS then (no page has needed TensorFlow yet);
- a fresh dashboard is started and /sketch opened, a "1" drawn: time to the canvas on screen
  plus time from the end of the stroke to the prediction on screen (against the minimal app's
  time to its title; the seconds the robot takes to draw are left out); then a photo is
  uploaded, and Results' gallery, a confusion-matrix cell, the learning replay and the
  drawings table are looked at, and the server's RSS is read and its memory map searched
  for `libtensorflow`;
- `python -c "import tensorflow"`: the time and RSS TensorFlow alone costs.

Prints each figure with its target and the ratio to its baseline. Needs Debian's Chromium at
/usr/bin/chromium and the `playwright` package (see tests/e2e).
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e import ui  # noqa: E402
from tests.e2e.server import CHROMIUM_ARGS, app_env, free_port  # noqa: E402
from tests.e2e.test_browser import digit_photo  # noqa: E402
from tests.needs import CHROMIUM  # noqa: E402

MINIMAL_APP = 'import streamlit as st\n\nst.title("Hello")\n'
# figure: (its baseline, measured in the same run; the target, as a ratio to the baseline or
# in seconds / MB). Start-up seconds differ by machine, so the home page's target is a ratio.
TARGETS = {
    "home_seconds": ("hello_seconds", "ratio", 1.3),
    "first_prediction_seconds": ("hello_seconds", "value", 2.5),
    "home_rss_mb": ("hello_rss_mb", "value", 200.0),
    "browsed_rss_mb": ("tensorflow_rss_mb", "value", 250.0),
    "tensorflow_in_server": ("one", "value", 0.0),  # 1 when libtensorflow is mapped
}


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (Streamlit runs in one process)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def start(script: Path, runs_dir: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    """`streamlit run script` on a free port; the process, its URL and the start time (the
    system clock's, which the browser on this machine shares: see `seen`)."""
    port = free_port()
    started = time.time()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script)]
        + ["--server.headless", "true", "--server.port", str(port)]
        + ["--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT,
        env=app_env(runs_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}", started


def open_when_up(browser: Browser, url: str, timeout: float = 120) -> Page:
    """Open `url` in a new tab as soon as the server accepts connections, as `streamlit run`
    opens the visitor's browser once its server listens. The port is tried every 5 ms with a
    bare connection. Reloading the page until it loaded instead (each refusal an error page in
    Chromium, 20-180 ms apart, and the tab made while the server started) took CPU from the
    starting server: measured, both apps were seen 0.55-0.67 s later (BENCHMARKS.md)."""
    address = urlsplit(url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((address.hostname, address.port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(url)
    return page


# The first element matching a CSS selector (in the page or in a component's shadow root) whose
# text is `text` (any text if null), once it has a box on screen: the page's clock then, in ms
# since the epoch; false before.
_ON_SCREEN_SINCE = """([selector, text]) => {
    const find = (root) => {
        for (const element of root.querySelectorAll(selector)) {
            if (text === null || element.textContent.trim() === text) return element;
        }
        for (const host of root.querySelectorAll("*")) {
            const element = host.shadowRoot && find(host.shadowRoot);
            if (element) return element;
        }
        return null;
    };
    const element = find(document);
    if (!element || getComputedStyle(element).visibility === "hidden") return false;
    const box = element.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && performance.timeOrigin + performance.now();
}"""


def seen(page: Page, selector: str, text: str | None = None, timeout: float = 120_000) -> float:
    """The time (`time.time()`'s clock) at which the element `selector` (with `text`) came on
    screen, checked by the page itself on every animation frame. Playwright's own `wait_for`
    checks after 0, 20, 50, 100, 100, then every 500 ms and answers through the page's busy main
    thread: measured, it saw the dashboard's canvas 0.39-0.73 s after it was on screen and a
    minimal app's title 0.01-0.05 s after (BENCHMARKS.md)."""
    found = page.wait_for_function(
        _ON_SCREEN_SINCE, arg=[selector, text], polling="raf", timeout=timeout
    )
    return found.json_value() / 1000


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def time_to_page(
    browser: Browser,
    script: Path,
    runs_dir: Path,
    shown: tuple[str, str | None],
    path: str = "",
) -> tuple[float, float]:
    """Seconds from `streamlit run script` to the element `shown` (a CSS selector and its text,
    see `seen`) on screen at `path`, and the server's RSS."""
    process, url, started = start(script, runs_dir)
    try:
        page = open_when_up(browser, url + path)
        seconds = seen(page, *shown) - started
        ui.wait_until_idle(page)
        page.context.close()
        return seconds, rss_mb(process.pid)
    finally:
        stop(process)


def minimal_app(browser: Browser, folder: Path, path: str = "") -> tuple[float, float]:
    script = folder / "hello.py"
    script.write_text(MINIMAL_APP)
    return time_to_page(
        browser,
        script,
        folder / "runs",
        ("h1", "Hello"),
        path,
    )


def home(browser: Browser, runs_dir: Path) -> tuple[float, float]:
    return time_to_page(
        browser,
        ROOT / "dashboard.py",
        runs_dir,
        ('[data-testid="stSidebarNav"] a[href$="/train"]', None),
    )


def first_prediction(browser: Browser, runs_dir: Path) -> tuple[float, float, float, float]:
    """Seconds from `streamlit run` to the canvas on /sketch, and from the end of the first
    stroke to its prediction on screen (the time the robot takes to draw is the visitor's, not
    the app's: it is left out); then the server's RSS after `browse`, and 1.0 if TensorFlow's
    library is mapped in it."""
    process, url, started = start(ROOT / "dashboard.py", runs_dir)
    try:
        page = open_when_up(browser, url + "/sketch")
        canvas_ready = seen(page, ui.CANVAS) - started
        ui.draw(page, ui.one(x=140, top=50, height=180))
        drawn = time.time()
        # The "Prediction" metric reading 1 (Sketch's only metric whose value is a bare digit).
        stroke_to_prediction = seen(page, '[data-testid="stMetricValue"]', "1") - drawn
        ui.wait_until_idle(page)
        browse(page)
        time.sleep(2)
        memory = rss_mb(process.pid)
        loaded = "libtensorflow" in Path(f"/proc/{process.pid}/maps").read_text()
        page.context.close()
        return canvas_ready, stroke_to_prediction, memory, float(loaded)
    finally:
        stop(process)


def browse(page: Page) -> None:
    """Upload a photo on Sketch, then look at Results: gallery, a confusion-matrix cell,
    the learning replay, the drawings table (every view that predicts or shows predictions)."""
    page.get_by_role("tab", name="Upload a photo").click()
    upload = page.get_by_test_id("stFileUploader").locator("input[type=file]")
    photo, label = digit_photo(1)  # MNIST test digit 1 as dark ink on paper
    upload.set_input_files(files=[{"name": "digit.png", "mimeType": "image/png", "buffer": photo}])
    expect(ui.metric_value(page, "Prediction").last).to_have_text(str(label), timeout=60_000)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Results").click()
    expect(page.locator(".digit-gallery").first.locator("figure")).to_have_count(40)
    ui.wait_until_idle(page)
    chart = page.get_by_test_id("stPlotlyChart").filter(has=page.locator(".hm")).first
    box = chart.locator(".nsewdrag").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.15)
    ui.wait_until_idle(page)
    expect(page.get_by_text(re.compile(r"^After epoch \d+ of \d+"))).to_be_visible()
    expect(page.get_by_text("MNIST test set vs your drawings")).to_be_visible()


def tensorflow_alone() -> tuple[float, float]:
    code = (
        "import time, pathlib; t = time.perf_counter(); import tensorflow; "
        "s = time.perf_counter() - t; "
        "rss = [l for l in pathlib.Path('/proc/self/status').read_text().splitlines() "
        "if l.startswith('VmRSS:')][0].split()[1]; print(s, int(rss) / 1024)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    seconds, memory = output.split()
    return float(seconds), float(memory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory() as temp, sync_playwright() as playwright:
        folder = Path(temp)
        runs_dir = folder / "runs"  # empty: the app serves the bundled pretrained cnn run
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for repetition in range(args.repeat):
            for name, value in zip(
                ("hello_seconds", "hello_rss_mb"), minimal_app(browser, folder), strict=True
            ):
                add(name, value)
            add("hello_at_sketch_seconds", minimal_app(browser, folder, "/sketch")[0])
            for name, value in zip(
                ("home_seconds", "home_rss_mb"), home(browser, runs_dir), strict=True
            ):
                add(name, value)
            canvas, stroke, memory, loaded = first_prediction(browser, runs_dir)
            add("canvas_ready_seconds", canvas)
            add("stroke_to_prediction_seconds", stroke)
            add("first_prediction_seconds", canvas + stroke)
            add("browsed_rss_mb", memory)
            add("tensorflow_in_server", loaded)
            for name, value in zip(
                ("tensorflow_seconds", "tensorflow_rss_mb"), tensorflow_alone(), strict=True
            ):
                add(name, value)
            print(
                f"repetition {repetition + 1}: "
                + ", ".join(f"{name} {values[-1]:.2f}" for name, values in figures.items()),
                flush=True,
            )
        browser.close()

    median = {name: statistics.median(values) for name, values in figures.items()}
    median["one"] = 1.0
    print(f"\nmedian of {args.repeat} (load {Path('/proc/loadavg').read_text().split()[0]})")
    print(f"{'figure':<26} {'value':>8} {'baseline':>24} {'ratio':>6}  target")
    for name, (base, kind, target) in TARGETS.items():
        ratio = median[name] / median[base]
        met = (ratio if kind == "ratio" else median[name]) <= target
        wanted = f"ratio <= {target:g}" if kind == "ratio" else f"value <= {target:g}"
        print(
            f"{name:<26} {median[name]:>8.2f} {base + f' {median[base]:.2f}':>24} {ratio:>6.2f}  "
            f"{wanted} {'ok' if met else 'MISSED'}"
        )
    at_sketch = median["hello_at_sketch_seconds"]
    print(
        f"first prediction ÷ the minimal app opened at /sketch ({at_sketch:.2f} s, the same "
        f"link's retry): {median['first_prediction_seconds'] / at_sketch:.2f}"
    )


if __name__ == "__main__":
    main()
