"""Start the dashboard with `streamlit run` for the browser suite and the screenshot script.

`running_app(runs_dir, log_path)` serves the app on a free loopback port with its own run store
and stops it afterwards; `train_run(runs_dir)` saves a quick model there first, so pages that
need one (Sketch, Results) work without training in the browser.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class AppStartError(RuntimeError):
    """The app did not answer its health check; the message ends with its log."""


SERVER_PIDS: dict[str, int] = {}  # base URL -> process id of the servers running_app started


def drawings_dir(runs_dir: Path) -> Path:
    """Where the app started by `running_app(runs_dir, ...)` keeps the drawings users add."""
    return runs_dir.parent / f"{runs_dir.name}-drawings"


def app_env(runs_dir: Path) -> dict[str, str]:
    """The environment of the app and the CLI: this one, with the run store set."""
    env = dict(os.environ)
    env.update(
        MNIST_RUNS_DIR=str(runs_dir),
        # Drawings kept in the browser tests go beside the run store, not into data/drawings.
        MNIST_DRAWINGS_DIR=str(drawings_dir(runs_dir)),
        TF_CPP_MIN_LOG_LEVEL="2",  # keep TensorFlow's start-up chatter out of the log
        PYTHONUNBUFFERED="1",  # the log is complete when a test fails
    )
    return env


def train_run(runs_dir: Path, epochs: int = 2, timeout: float = 300) -> str:
    """Train a quick MLP on `$MNIST_PATH` into `runs_dir` with the CLI; its run id."""
    completed = subprocess.run(
        [sys.executable, "-m", "mnist_core", "train", "--preset", "mlp"]
        + ["--epochs", str(epochs), "--runs-dir", str(runs_dir), "--json"],
        cwd=ROOT,
        env=app_env(runs_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"training the starter run failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])["run_id"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_app(runs_dir: Path, log_path: Path, timeout: float = 60) -> Iterator[str]:
    """Serve `dashboard.py` with run store `runs_dir`; yields its base URL.

    Output goes to `log_path`. The server is stopped on exit, also when the body raises:
    terminated, then killed if it has not ended within 10 s. Raises AppStartError when
    `/_stcore/health` does not answer "ok" within `timeout` seconds.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard.py"]
            + ["--server.headless", "true", "--server.port", str(port)]
            + ["--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=ROOT,
            env=app_env(runs_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        SERVER_PIDS[url] = process.pid
        try:
            _wait_healthy(process, f"{url}/_stcore/health", timeout, log_path)
            yield url
        finally:
            del SERVER_PIDS[url]
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def server_maps(url: str) -> str:
    """The files mapped into the server at `url` (started by `running_app`): its libraries."""
    return Path(f"/proc/{SERVER_PIDS[url]}/maps").read_text()


def tensorflow_loaded(url: str) -> bool:
    """Whether the server at `url` has TensorFlow's library mapped."""
    return "libtensorflow" in server_maps(url)


def _wait_healthy(
    process: subprocess.Popen[bytes], health_url: str, timeout: float, log_path: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AppStartError(
                f"streamlit exited with code {process.returncode}:\n{_tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(health_url, timeout=2) as response:
                if response.read().decode().strip() == "ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise AppStartError(f"no answer from {health_url} in {timeout:.0f} s:\n{_tail(log_path)}")


def _tail(log_path: Path, size: int = 3000) -> str:
    return log_path.read_text(errors="replace")[-size:]
