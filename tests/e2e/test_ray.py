"""The dashboard with its trainings on a Ray cluster (`MNIST_RAY_ADDRESS`), in the browser:
two replicas of the web server, as behind a load balancer, share one queue on the cluster and
one run store."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from mnist_core.runs import RunStore
from tests.e2e import ui
from tests.e2e.server import running_app

pytestmark = pytest.mark.e2e
RUN_ID = re.compile(r"\d{8}-\d{6}-mlp-[0-9a-f]{6}")


def test_two_replicas_share_the_clusters_queue_and_the_run_store(
    new_page: Callable[[], Page],
    ray_head: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MNIST_RAY_ADDRESS", ray_head)
    runs_dir = tmp_path / "runs"  # the shared run-store folder
    with (
        running_app(runs_dir, tmp_path / "replica-1.log") as first,
        running_app(runs_dir, tmp_path / "replica-2.log") as second,
    ):
        ada, bob = new_page(), new_page()
        ui.open_page(ada, first + "/train", "Train")  # the mlp preset: 20 epochs, ~30 s
        ada.get_by_role("button", name="Train", exact=True).click()
        ui.read_progress(ada)  # training on the cluster, its progress on the page

        # Bob, on the other replica, sees Ada's training in the cluster's queue.
        ui.open_page(bob, second + "/train", "Train")
        queue = bob.get_by_text(re.compile(r"^Trainings on the training cluster \(1\), at most"))
        expect(queue).to_be_visible(timeout=30_000)

        ada.bring_to_front()
        summary = ui.success_message(ada, "test accuracy")
        assert "test accuracy" in summary and "stopped by you" not in summary, summary
        run_id = RUN_ID.search(summary)[0]
        run = RunStore(runs_dir).get(run_id)  # trained on the cluster, landed in the store
        assert run.status == "completed" and run.onnx_path.is_file()
        assert f"{run.test_accuracy:.2%}" in summary

        # The run is Bob's to explore on his replica.
        bob.bring_to_front()
        ui.open_page(bob, second + "/results", "Results")
        ui.selectbox(bob, "Run").click()
        expect(bob.get_by_role("option", name=re.compile(run_id))).to_be_visible()
