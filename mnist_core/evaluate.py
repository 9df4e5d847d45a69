"""Metrics on a labelled set: accuracy, loss, confusion matrix, per-class scores, mistakes.

`Evaluation` works from stored probabilities alone, so showing a saved run's results needs no
TensorFlow; only `evaluate()` runs a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from mnist_core.data import NUM_CLASSES

if TYPE_CHECKING:
    import keras

_EPSILON = 1e-7  # Keras clips probabilities the same way before taking the log


@dataclass(frozen=True)
class Evaluation:
    """A model's answers on a labelled set, and the scores derived from them."""

    labels: np.ndarray  # (N,) uint8 true digits
    probabilities: np.ndarray  # (N, 10) float32

    @cached_property
    def predicted(self) -> np.ndarray:
        """(N,) uint8 predicted digits."""
        return self.probabilities.argmax(axis=1).astype(np.uint8)

    @cached_property
    def confidence(self) -> np.ndarray:
        """(N,) float32 probability of the predicted digit."""
        return self.probabilities.max(axis=1)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.predicted == self.labels))

    @property
    def loss(self) -> float:
        """Mean cross-entropy, as Keras reports it."""
        true_probability = self.probabilities[np.arange(len(self.labels)), self.labels]
        return float(-np.mean(np.log(np.clip(true_probability, _EPSILON, 1.0))))

    @cached_property
    def confusion(self) -> np.ndarray:
        """(10, 10) int64 counts; row = true digit, column = predicted digit."""
        return confusion_matrix(self.labels, self.predicted)

    @property
    def precision(self) -> np.ndarray:
        """(10,) float64: of the samples predicted as each digit, the share that are it."""
        confusion = self.confusion
        return _safe_ratio(np.diag(confusion), confusion.sum(axis=0))

    @property
    def recall(self) -> np.ndarray:
        """(10,) float64: of the samples of each digit, the share predicted right."""
        confusion = self.confusion
        return _safe_ratio(np.diag(confusion), confusion.sum(axis=1))

    def misclassified(self) -> np.ndarray:
        """Indices of wrong predictions, most confident first (the most surprising mistakes)."""
        return self.select(wrong_only=True, order="descending")

    def select(
        self,
        true_digit: int | None = None,
        predicted_digit: int | None = None,
        wrong_only: bool = False,
        order: str | None = None,
    ) -> np.ndarray:
        """Indices matching every given filter.

        `order` is None (dataset order), "ascending" or "descending" (by confidence).
        """
        mask = np.ones(len(self.labels), dtype=bool)
        if true_digit is not None:
            mask &= self.labels == true_digit
        if predicted_digit is not None:
            mask &= self.predicted == predicted_digit
        if wrong_only:
            mask &= self.predicted != self.labels
        indices = np.flatnonzero(mask)
        if order is None:
            return indices
        if order not in ("ascending", "descending"):
            raise ValueError(f"order must be None, 'ascending' or 'descending', got {order!r}")
        keys = self.confidence[indices]
        return indices[np.argsort(keys if order == "ascending" else -keys, kind="stable")]


def evaluate(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> Evaluation:
    """Run `model` on `(N, 28, 28)` uint8 `images` with `(N,)` true `labels`."""
    from mnist_core.ml.predict import predict_proba

    return Evaluation(
        labels=np.asarray(labels, dtype=np.uint8), probabilities=predict_proba(model, images)
    )


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(10, 10) int64 counts of (true, predicted) pairs."""
    pairs = labels.astype(np.int64) * NUM_CLASSES + predicted.astype(np.int64)
    return np.bincount(pairs, minlength=NUM_CLASSES * NUM_CLASSES).reshape(NUM_CLASSES, NUM_CLASSES)


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


@dataclass(frozen=True)
class ReplayFrame:
    """The learning replay's panel as the model read it after one epoch."""

    predicted: np.ndarray  # (N,) int64 digit read for each test digit (0 off the panel)
    confidence: np.ndarray  # (N,) float32 its probability (0 off the panel)
    right: int  # panel digits read right


def replay_frame(
    indices: np.ndarray, answers: np.ndarray, labels: np.ndarray, epoch: int
) -> ReplayFrame:
    """The panel `indices` (P,) of the test set with true `labels` (N,), read after `epoch`
    (1-based) from `answers` (epochs, P, 10), as full-length arrays a gallery can index."""
    predicted = np.zeros(len(labels), dtype=np.int64)
    confidence = np.zeros(len(labels), dtype=np.float32)
    predicted[indices] = answers[epoch - 1].argmax(axis=1)
    confidence[indices] = answers[epoch - 1].max(axis=1)
    right = int(np.sum(predicted[indices] == labels[indices]))
    return ReplayFrame(predicted, confidence, right)
