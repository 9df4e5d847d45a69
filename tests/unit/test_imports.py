"""The TensorFlow line: the modules the web process uses to list data and queue trainings
import neither TensorFlow (seconds and hundreds of megabytes) nor Streamlit; nor do the ones it
predicts and explains with (ONNX Runtime), lists runs with, imports bundles with and plans
sweeps with."""

from __future__ import annotations

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
        "mnist_core.sweeps",
    ],
)
def test_module_imports_neither_tensorflow_nor_streamlit(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'streamlit') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
