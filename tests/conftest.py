"""Shared fixtures: fixed seeds, real MNIST when available, a temporary run store."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out


@pytest.fixture(autouse=True)
def _fixed_seeds() -> None:
    np.random.seed(0)


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    """Path of the real MNIST file from $MNIST_PATH; skips the test when it is absent."""
    value = os.environ.get("MNIST_PATH")
    if not value or not Path(value).exists():
        pytest.skip("real MNIST not available: set MNIST_PATH to mnist.npz to run this test")
    return Path(value)


@pytest.fixture(scope="session")
def mnist(mnist_path: Path):
    """The real MNIST data set, loaded once per test session."""
    from mnist_core.data import load_mnist

    return load_mnist(mnist_path)


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty run store, also set as $MNIST_RUNS_DIR."""
    folder = tmp_path / "runs"
    monkeypatch.setenv("MNIST_RUNS_DIR", str(folder))
    return folder
