"""The TensorFlow line: the modules the web process uses to list data and queue trainings
import neither TensorFlow (seconds and hundreds of megabytes), TensorBoard nor Streamlit; nor do
the ones it predicts and explains with (ONNX Runtime), lists runs with, imports bundles with,
plans sweeps with and reads links with."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "module",
    [
        "mnist_core.data",
        "mnist_core.job_service",
        "mnist_core.serving",
        "mnist_core.explain",
        "mnist_core.runs",
        "mnist_core.bundles",
        "mnist_core.worker",
        "mnist_core.cli",
        "mnist_core.sweeps",
        "mnist_core.links",
    ],
)
def test_module_imports_neither_tensorflow_nor_streamlit(module: str) -> None:
    """Nor Ray, which only `MNIST_RAY_ADDRESS` or `--ray` brings in."""
    code = (
        f"import sys, {module}; "
        "print(sorted(m for m in ('tensorflow', 'tensorboard', 'keras', 'streamlit', 'ray') "
        "if m in sys.modules))"
    )
    environ = {k: v for k, v in os.environ.items() if k != "MNIST_RAY_ADDRESS"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"


def test_the_job_service_is_local_without_a_cluster_and_ray_with_one(tmp_path: Path) -> None:
    from mnist_core.job_service import JobError, LocalJobs, job_service

    assert isinstance(job_service(tmp_path), LocalJobs)
    for address in ("ray://127.0.0.2:9", "127.0.0.2:9", "no-port"):  # nothing listens there
        with pytest.raises(JobError, match=r"does not answer .* Check MNIST_RAY_ADDRESS"):
            job_service(tmp_path, ray=address)
