"""A Ray cluster on loopback for the tests: `ray start` nodes in their own process groups.

    with head_node(folder) as address:    # 127.0.0.2:PORT, 2 CPUs
        with worker_node(folder, address, cpus=1, resources={"spare": 1}) as node: ...

Every port a node opens is chosen free and bound to a loopback address; each node is ended by
its own process group and the processes it started (SIGTERM, then SIGKILL), never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from tests.e2e.server import free_port

RAY = str(Path(sys.executable).with_name("ray"))
STARTED = "Ray runtime started"
# Ray replaces 127.0.0.1 (and "localhost") by the machine's own network address wherever it
# meets it, in --node-ip-address and in --address alike; other loopback addresses it leaves
# as they are. So the head listens on 127.0.0.2 and a second node on 127.0.0.3: all loopback.
HEAD_IP = "127.0.0.2"
HEADS: dict[str, subprocess.Popen] = {}  # address -> `ray start` process of the head nodes
SECOND_NODE_IP = "127.0.0.3"


def _ports() -> list[str]:
    return [
        "--node-manager-port", str(free_port()),
        "--object-manager-port", str(free_port()),
        "--dashboard-agent-listen-port", str(free_port()),
        "--dashboard-agent-grpc-port", str(free_port()),
        "--runtime-env-agent-port", str(free_port()),
        "--metrics-export-port", str(free_port()),
    ]  # fmt: skip


@contextmanager
def _node(
    ip: str, arguments: list[str], log: Path, timeout: float = 90
) -> Iterator[subprocess.Popen]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [RAY, "start", "--block", "--node-ip-address", ip, *arguments, *_ports()],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its raylet and workers: one process group to end
            env=env,
        )
    try:
        deadline = time.monotonic() + timeout
        while STARTED not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start failed:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield process
    finally:
        end(process)


def end(process: subprocess.Popen, grace: float = 5) -> None:
    """End a node: its process group and every process it started (Ray's workers run in
    groups of their own), by their ids; politely first, then SIGKILL."""
    try:
        started = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        started = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for child in started:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    process.wait(timeout=10)


@contextmanager
def head_node(folder: Path, cpus: int = 2) -> Iterator[str]:
    """A head node with `cpus` CPUs; its address, HOST:PORT."""
    port = free_port()
    arguments = ["--head", "--port", str(port), "--num-cpus", str(cpus)]
    arguments += ["--include-dashboard=false", "--ray-client-server-port", str(free_port())]
    address = f"{HEAD_IP}:{port}"
    with _node(HEAD_IP, arguments, folder / "ray-head.log") as process:
        HEADS[address] = process
        yield address


@contextmanager
def worker_node(
    folder: Path, address: str, cpus: int = 1, resources: dict[str, float] | None = None
) -> Iterator[subprocess.Popen]:
    """A second node joined to the head at `address`; its `ray start` process."""
    arguments = ["--address", address, "--num-cpus", str(cpus)]
    if resources:
        arguments += ["--resources", json.dumps(resources)]
    log = folder / f"ray-node-{free_port()}.log"
    with _node(SECOND_NODE_IP, arguments, log) as process:
        yield process
