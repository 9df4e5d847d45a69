"""Tests for mnist_core.jobs: one training per process, whoever asks and however often.

The jobs here never train: their data loader waits for the test, then fails, so no test needs
TensorFlow (the job thread loads data before it imports the training code).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from mnist_core.config import TrainConfig
from mnist_core.errors import DataError
from mnist_core.jobs import TrainingSlot


class HeldData:
    """A data loader that blocks until `release()`, then fails like a missing data set."""

    def __init__(self) -> None:
        self.called = threading.Event()
        self._release = threading.Event()

    def __call__(self):
        self.called.set()
        self._release.wait(30)
        raise DataError("held data released")

    def release(self) -> None:
        self._release.set()


@pytest.fixture
def held() -> HeldData:
    return HeldData()


@pytest.fixture
def slot(held: HeldData) -> Iterator[TrainingSlot]:
    """A training slot whose job is released and finished after the test."""
    slot = TrainingSlot()
    yield slot
    held.release()
    if slot.job is not None:
        slot.job.join(timeout=10)


def test_a_second_start_is_refused_while_one_runs(slot: TrainingSlot, held: HeldData) -> None:
    first = slot.start(TrainConfig(), held)
    assert held.called.wait(10)
    second = slot.start(TrainConfig(epochs=1), lambda: pytest.fail("a second job ran"))

    assert first is not None and len(first) == 32
    assert second is None
    assert slot.job_id == first and slot.job.config == TrainConfig()
    assert slot.job.running


def test_the_slot_is_free_again_once_the_job_ends(
    slot: TrainingSlot, held: HeldData, capsys: pytest.CaptureFixture[str]
) -> None:
    first = slot.start(TrainConfig(), held)
    held.release()
    slot.job.join(timeout=10)
    assert (slot.job.state, slot.job.error) == ("failed", "held data released")

    second = slot.start(TrainConfig(epochs=1), held)

    assert second is not None and second != first
    assert slot.job.config.epochs == 1
    assert "DataError: held data released" in capsys.readouterr().err  # logged, not lost


def test_fifty_simultaneous_requests_start_exactly_one_job(
    slot: TrainingSlot, held: HeldData
) -> None:
    start = threading.Barrier(50)

    def request(seed: int) -> str | None:
        start.wait()
        return slot.start(TrainConfig(seed=seed), held)

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(request, range(50)))

    started = [answer for answer in answers if answer is not None]
    assert len(started) == 1
    assert slot.job_id == started[0]
    assert slot.job.config.seed == answers.index(started[0])
