"""Trainings in worker processes, seen in the browser: a worker that dies takes only its own
job with it, and the page says so."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e import ui
from tests.e2e.server import running_app

pytestmark = pytest.mark.e2e


def running_worker(runs_dir: Path, timeout: float = 60) -> int:
    """The process id of the one worker training now, from the job service's state files."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for state_file in (runs_dir / ".jobs").glob("*/state.json"):
            state = json.loads(state_file.read_text())
            if state["state"] == "running" and state["pid"]:
                return int(state["pid"])
        time.sleep(0.2)
    raise AssertionError("no worker is training")


def test_a_killed_worker_is_reported_within_seconds_and_the_server_carries_on(
    page: Page, app_url: str, starter_runs: tuple[Path, str]
) -> None:
    ui.open_page(page, app_url + "/train", "Train")
    page.get_by_role("button", name="Train", exact=True).click()
    ui.read_progress(page)  # training has begun
    pid = running_worker(starter_runs[0])

    os.kill(pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    killed = time.monotonic()

    failure = page.get_by_text("Training failed: The training process died")
    expect(failure).to_be_visible(timeout=5_000)
    assert time.monotonic() - killed < 5
    expect(failure).to_contain_text("smaller batch size")
    with urllib.request.urlopen(app_url + "/_stcore/health", timeout=5) as response:
        assert response.read().decode() == "ok"  # the web server never noticed
    expect(page.get_by_role("button", name="Train", exact=True)).to_be_enabled()


def test_two_visitors_train_at_once_with_two_workers(
    new_page: Callable[[], Page], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNIST_WORKERS", "2")
    with running_app(tmp_path / "runs", tmp_path / "streamlit.log") as url:
        visitors = [new_page(), new_page()]
        for visitor in visitors:
            ui.open_page(visitor, url + "/train", "Train")
            visitor.get_by_role("button", name="Train", exact=True).click()
        # Both progress at the same time: neither waits in the queue.
        first = [ui.read_progress(visitor) for visitor in visitors]
        for visitor, before in zip(visitors, first, strict=True):
            visitor.bring_to_front()
            ui.read_progress(visitor, beyond=before)
            both = visitor.get_by_text("Trainings on this server (2), at most 2 at once")
            expect(both).to_be_visible()
            expect(visitor.get_by_text("in line")).to_have_count(0)
        for visitor in visitors:
            visitor.bring_to_front()
            visitor.get_by_role("button", name="Stop", exact=True).click()
            ui.success_message(visitor, "stopped by you", timeout=60_000)


def test_a_training_carries_on_through_a_web_server_restart(page: Page, tmp_path: Path) -> None:
    """Workers run in their own process session: a new server finds the running job, its
    progress goes on on the reloaded page, and Stop still reaches it."""
    runs = tmp_path / "runs"
    with running_app(runs, tmp_path / "first.log") as url:
        ui.open_page(page, url + "/train", "Train")
        ui.choose(page, "Preset", "cnn")  # long epochs: still training after the restart
        ui.set_slider_to_minimum(page, "Validation split")  # a stop never waits for validation
        page.get_by_role("button", name="Train", exact=True).click()
        before = ui.read_progress(page)
        job = page.url.split("?", 1)[1]  # the page's own job, kept in its address
    pid = running_worker(runs)
    os.kill(pid, 0)  # the server stopped; its worker did not

    with running_app(runs, tmp_path / "second.log") as url:
        ui.open_page(page, f"{url}/train?{job}", "Train")
        ui.read_progress(page, beyond=before)
        expect(page.get_by_text("Trainings on this server (1), at most 1 at once")).to_be_visible()
        page.get_by_role("button", name="Stop", exact=True).click()
        summary = ui.success_message(page, "stopped by you", timeout=60_000)
    assert "stopped" in summary
