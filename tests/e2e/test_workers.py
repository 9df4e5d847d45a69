"""Trainings in worker processes, seen in the browser: a worker that dies takes only its own
job with it, and the page says so."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e import ui

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
