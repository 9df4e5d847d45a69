"""What the test suite needs from the machine: real MNIST and Debian's Chromium.

Without one of them, the tests that need it are skipped, with the reason, on a developer's
machine; under CI (`CI=true`) they fail instead, so a missing file or browser can never pass
as a green run.

`python -m tests.needs mnist` finds MNIST as the app does ($MNIST_PATH, else Keras' download
cache, downloading it when the network allows) and prints the file's path, or one line saying
what is missing and exits 1. `.ci/run` uses it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import pytest

CHROMIUM = Path("/usr/bin/chromium")  # Debian's Chromium: Playwright's own is never fetched


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip the current test with `reason`; under CI, fail it."""
    if in_ci():
        pytest.fail(f"{reason} (under CI=true a test that cannot run fails)", pytrace=False)
    pytest.skip(reason)


def mnist_path() -> Path | None:
    """`$MNIST_PATH` when it names an existing file or folder, else None."""
    value = os.environ.get("MNIST_PATH")
    return Path(value) if value and Path(value).exists() else None


def require_mnist() -> Path:
    """The real MNIST named by `$MNIST_PATH`; skips (fails under CI) when it is absent."""
    path = mnist_path()
    if path is None:
        unavailable("real MNIST not available: set MNIST_PATH to mnist.npz to run this test")
    return path


def require_chromium() -> Path:
    """Debian's Chromium; skips (fails under CI) when it is not installed."""
    if not CHROMIUM.exists():
        unavailable(f"no Chromium at {CHROMIUM}: install Debian's chromium package")
    return CHROMIUM


def _find_mnist() -> int:
    from mnist_core.data import keras_cache_file, load_mnist
    from mnist_core.errors import DataError

    try:
        load_mnist()  # reads, checks and, if it must and can, downloads it
    except DataError as error:
        print(f"error: MNIST is missing: {error}", file=sys.stderr)
        return 1
    print(os.environ.get("MNIST_PATH") or keras_cache_file())
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["mnist"]:
        sys.exit("usage: python -m tests.needs mnist")
    sys.exit(_find_mnist())
