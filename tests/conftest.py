"""Shared fixtures: fixed seeds, real MNIST when available, small synthetic digits, a trained
model, a temporary run store."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests import needs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory):
    """A Ray head node on loopback (2 CPUs) for the whole session, started on first use;
    its address. This process connects to it as the dashboard would."""
    from tests.ray_cluster import head_node

    folder = tmp_path_factory.mktemp("ray")
    with head_node(folder) as address:
        yield address
        import ray

        ray.shutdown()


@pytest.fixture(autouse=True)
def _fixed_seeds() -> None:
    np.random.seed(0)


@pytest.fixture
def keras_seed() -> None:
    """Fixed seeds for Python, numpy, TensorFlow and Keras (weights, dropout, shuffling).

    Not autouse: importing TensorFlow takes seconds that the data tests do not need.
    """
    import keras

    keras.utils.set_random_seed(0)


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    """Path of the real MNIST file from $MNIST_PATH; skips the test when it is absent (and
    fails it under CI)."""
    return needs.require_mnist()


@pytest.fixture(scope="session")
def mnist(mnist_path: Path):
    """The real MNIST data set, loaded once per test session."""
    from mnist_core.data import load_mnist

    return load_mnist(mnist_path)


def _digit_patterns(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` digit-like images (uint8 (N, 28, 28)) and labels (uint8 (N,)), classes balanced.

    Every class has its own fixed shape of three thick strokes (the same for every seed); a
    sample is that shape shifted by up to 2 pixels, dimmed and speckled, so a small model must
    generalise a little but learns the classes within a few epochs.
    """
    shapes = np.zeros((10, 28, 28), dtype=np.uint8)
    shape_rng = np.random.default_rng(1234)
    for digit in range(10):
        for _ in range(3):
            (row0, col0), (row1, col1) = shape_rng.integers(6, 22, size=(2, 2))
            for t in np.linspace(0.0, 1.0, 40):
                row, col = round(row0 + (row1 - row0) * t), round(col0 + (col1 - col0) * t)
                shapes[digit, row - 1 : row + 2, col - 1 : col + 2] = 255
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % 10).astype(np.uint8)
    images = np.empty((count, 28, 28), dtype=np.uint8)
    for index, digit in enumerate(labels):
        shift = tuple(int(s) for s in rng.integers(-2, 3, size=2))
        image = np.roll(shapes[digit], shift, axis=(0, 1)).astype(np.float32)
        image = image * rng.uniform(0.6, 1.0) + rng.uniform(0.0, 60.0, size=(28, 28))
        images[index] = np.clip(image, 0, 255).astype(np.uint8)
    return images, labels


@pytest.fixture(scope="session")
def digits():
    """A small synthetic MNIST: 400 training and 100 test images of ten learnable patterns."""
    from mnist_core.data import MnistData

    x_train, y_train = _digit_patterns(400, seed=1)
    x_test, y_test = _digit_patterns(100, seed=2)
    return MnistData(x_train, y_train, x_test, y_test, source="synthetic digits")


@pytest.fixture(scope="session")
def data_file(digits, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic digits as a Keras-layout .npz file."""
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(
        path,
        x_train=digits.x_train,
        y_train=digits.y_train,
        x_test=digits.x_test,
        y_test=digits.y_test,
    )
    return path


@pytest.fixture(scope="session")
def small_config():
    """A quick MLP recipe for `digits`: 12 batches per epoch, 3 epochs, no early stopping."""
    from mnist_core.config import TrainConfig

    return TrainConfig(
        hidden_units=(64,), learning_rate=1e-2, batch_size=32, epochs=3, patience=0, seed=7
    )


@pytest.fixture(scope="session")
def trained(digits, small_config):
    """`small_config` trained on `digits` once per session (a `train.TrainResult`).

    Shared and read-only: tests must not train or modify its model.
    """
    from mnist_core.ml.train import train

    return train(small_config, digits)


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty run store, also set as $MNIST_RUNS_DIR."""
    folder = tmp_path / "runs"
    monkeypatch.setenv("MNIST_RUNS_DIR", str(folder))
    return folder


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many tests of each folder (unit, app, e2e) passed, failed and were skipped, so a
    reader of CI's log sees at once that nothing was left out. A test counts once, by its
    worst phase (an error in set-up or tear-down is a failure)."""
    worst: dict[str, str] = {}
    for outcome in ("passed", "skipped", "failed", "error"):  # later ones win
        for report in terminalreporter.stats.get(outcome, []):
            if nodeid := getattr(report, "nodeid", ""):
                worst[nodeid] = "failed" if outcome == "error" else outcome
    counts: dict[str, dict[str, int]] = {}
    for nodeid, outcome in worst.items():
        parts = nodeid.split("/")
        folder = parts[1] if len(parts) > 2 and parts[0] == "tests" else "other"
        counts.setdefault(folder, dict.fromkeys(("passed", "failed", "skipped"), 0))[outcome] += 1
    if counts:
        terminalreporter.section("tests per folder")
    for folder, tally in sorted(counts.items()):
        terminalreporter.line(
            f"{folder}: {tally['passed']} passed, {tally['failed']} failed, "
            f"{tally['skipped']} skipped"
        )
