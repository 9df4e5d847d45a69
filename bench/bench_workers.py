"""Training in worker processes: the web server's memory, and two trainings at once.

    MNIST_PATH=../shared/data/mnist.npz python bench/bench_workers.py [--trainings 5]

1. Web server: the dashboard on an empty run store; one visitor opens /train alone and
   trains the `mlp` preset cut to 1 epoch, `--trainings` times one after another, through the
   page in Chromium. After each: the server's RSS and whether TensorFlow's library is mapped
   into it (`/proc/PID/maps`). Baseline: its RSS once /train is open, before any training.
2. Concurrency: two trainings of the `mlp` preset cut to `--epochs` epochs through the job
   service, first with `MNIST_WORKERS=2` (both at once), then with 1 (one after the other);
   seconds from submitting both until both ended, and their ratio (target ≤ 1.15).

Prints each figure beside its baseline, measured in the same run. Needs Debian's Chromium.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_app import open_when_up, rss_mb, start, stop  # noqa: E402
from mnist_core.config import TrainConfig  # noqa: E402
from mnist_core.job_service import LocalJobs  # noqa: E402
from tests.e2e import ui  # noqa: E402
from tests.e2e.server import CHROMIUM_ARGS  # noqa: E402
from tests.needs import CHROMIUM  # noqa: E402


def tensorflow_mapped(pid: int) -> bool:
    """Whether TensorFlow's shared library is loaded into process `pid`."""
    return "libtensorflow" in Path(f"/proc/{pid}/maps").read_text()


def web_server(trainings: int, folder: Path) -> None:
    process, url, _ = start(ROOT / "dashboard.py", folder / "runs")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = open_when_up(browser, url + "/train")
            ui.open_page(page, url + "/train", "Train")
            time.sleep(2)
            print(
                f"/train open: server RSS {rss_mb(process.pid):.0f} MB, "
                f"TensorFlow loaded: {tensorflow_mapped(process.pid)}",
                flush=True,
            )
            for number in range(1, trainings + 1):
                ui.set_slider_to_minimum(page, "Epochs")
                page.get_by_role("button", name="Train", exact=True).click()
                # The previous training's summary goes first; then this one's arrives.
                summary = page.get_by_test_id("stAlert").filter(has_text="test accuracy")
                expect(summary).to_have_count(0, timeout=60_000)
                ui.success_message(page, "test accuracy, 1 epoch")
                ui.wait_until_idle(page)
                expect(page.get_by_role("button", name="Train", exact=True)).to_be_enabled()
                print(
                    f"after training {number}: server RSS {rss_mb(process.pid):.0f} MB, "
                    f"TensorFlow loaded: {tensorflow_mapped(process.pid)}",
                    flush=True,
                )
            browser.close()
    finally:
        stop(process)


def both_trained(workers: int, epochs: int, folder: Path) -> float:
    """Seconds from submitting two trainings until both ended, with `workers` at once."""
    service = LocalJobs(folder / f"runs-{workers}", workers=workers, queue_limit=10)
    config = TrainConfig.preset("mlp", epochs=epochs)
    started = time.perf_counter()
    jobs = [service.submit(config.replace(seed=seed), owner=f"visitor {seed}") for seed in (1, 2)]
    while any(service.status(job).active for job in jobs):
        service.tick()
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    states = [service.status(job).state for job in jobs]
    assert states == ["finished", "finished"], states
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainings", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    if not os.environ.get("MNIST_PATH"):
        sys.exit("error: set MNIST_PATH to mnist.npz")
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        web_server(args.trainings, folder)
        together = both_trained(2, args.epochs, folder)
        one_by_one = both_trained(1, args.epochs, folder)
    print(
        f"two mlp trainings of {args.epochs} epochs: MNIST_WORKERS=2 {together:.1f} s, "
        f"MNIST_WORKERS=1 (one after the other) {one_by_one:.1f} s, "
        f"ratio {together / one_by_one:.2f} (target <= 1.15)"
    )


if __name__ == "__main__":
    main()
