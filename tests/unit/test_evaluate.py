"""Tests for mnist_core.evaluate: scores from hand-made probabilities, and on a real model."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mnist_core.evaluate import Evaluation, confusion_matrix, evaluate


def probabilities_for(predicted: list[int], confidence: list[float]) -> np.ndarray:
    """(N, 10) float32 rows: `confidence` on the predicted digit, the rest spread evenly."""
    rows = np.empty((len(predicted), 10), dtype=np.float32)
    for row, (digit, top) in enumerate(zip(predicted, confidence, strict=True)):
        rows[row] = (1 - top) / 9
        rows[row, digit] = top
    return rows


@pytest.fixture
def evaluation() -> Evaluation:
    # sample:     0    1    2    3    4
    # true:       0    1    2    3    1
    # predicted:  0    2    2    1    1   (samples 1 and 3 are wrong)
    return Evaluation(
        labels=np.array([0, 1, 2, 3, 1], dtype=np.uint8),
        probabilities=probabilities_for([0, 2, 2, 1, 1], [0.7, 0.6, 0.9, 0.8, 0.5]),
    )


def test_predictions_and_confidence(evaluation: Evaluation) -> None:
    assert evaluation.predicted.tolist() == [0, 2, 2, 1, 1]
    assert evaluation.predicted.dtype == np.uint8
    np.testing.assert_allclose(evaluation.confidence, [0.7, 0.6, 0.9, 0.8, 0.5], rtol=1e-6)


def test_accuracy(evaluation: Evaluation) -> None:
    assert evaluation.accuracy == pytest.approx(0.6)


def test_loss_is_keras_sparse_categorical_crossentropy(evaluation: Evaluation) -> None:
    expected = keras.ops.convert_to_numpy(
        keras.losses.sparse_categorical_crossentropy(evaluation.labels, evaluation.probabilities)
    ).mean()
    by_hand = -np.mean(np.log([0.7, 0.4 / 9, 0.9, 0.2 / 9, 0.5]))

    assert evaluation.loss == pytest.approx(float(expected), rel=1e-5)
    assert evaluation.loss == pytest.approx(by_hand, rel=1e-5)


def test_loss_of_a_zero_probability_is_clipped_like_keras() -> None:
    labels = np.array([3], dtype=np.uint8)
    probabilities = np.zeros((1, 10), dtype=np.float32)
    probabilities[0, 5] = 1.0

    expected = keras.ops.convert_to_numpy(
        keras.losses.sparse_categorical_crossentropy(labels, probabilities)
    ).mean()

    loss = Evaluation(labels, probabilities).loss
    assert np.isfinite(loss)
    assert loss == pytest.approx(float(expected), rel=1e-4)
    assert loss == pytest.approx(-np.log(1e-7), rel=1e-4)


def test_confusion_matrix(evaluation: Evaluation) -> None:
    expected = np.zeros((10, 10), dtype=np.int64)
    for true, predicted in [(0, 0), (1, 2), (2, 2), (3, 1), (1, 1)]:
        expected[true, predicted] += 1

    assert evaluation.confusion.dtype == np.int64
    np.testing.assert_array_equal(evaluation.confusion, expected)
    np.testing.assert_array_equal(
        confusion_matrix(np.array([9, 9, 0]), np.array([9, 0, 0]))[[9, 9, 0], [9, 0, 0]], [1, 1, 1]
    )


def test_precision_and_recall(evaluation: Evaluation) -> None:
    # Digit 3 is never predicted and digits 4-9 never occur: their scores are 0, not NaN.
    np.testing.assert_allclose(evaluation.precision, [1, 0.5, 0.5, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(evaluation.recall, [1, 0.5, 1, 0, 0, 0, 0, 0, 0, 0])


def test_misclassified_most_confident_first(evaluation: Evaluation) -> None:
    assert evaluation.misclassified().tolist() == [3, 1]


def test_misclassified_ties_keep_dataset_order() -> None:
    evaluation = Evaluation(
        labels=np.array([1, 1, 1, 1], dtype=np.uint8),
        probabilities=probabilities_for([2, 1, 3, 4], [0.5, 0.9, 0.7, 0.5]),
    )

    assert evaluation.misclassified().tolist() == [2, 0, 3]


@pytest.mark.parametrize(
    ("filters", "indices"),
    [
        ({}, [0, 1, 2, 3, 4]),
        ({"true_digit": 1}, [1, 4]),
        ({"predicted_digit": 2}, [1, 2]),
        ({"wrong_only": True}, [1, 3]),
        ({"true_digit": 1, "wrong_only": True}, [1]),
        ({"true_digit": 1, "predicted_digit": 1}, [4]),
        ({"true_digit": 7}, []),
    ],
)
def test_select(evaluation: Evaluation, filters: dict, indices: list[int]) -> None:
    assert evaluation.select(**filters).tolist() == indices


@pytest.mark.usefixtures("keras_seed")
def test_evaluate_agrees_with_keras(trained, digits) -> None:
    result = evaluate(trained.model, digits.x_test, digits.y_test)

    scores = trained.model.evaluate(
        digits.x_test.astype(np.float32) / 255, digits.y_test, verbose=0, return_dict=True
    )
    assert result.labels.dtype == np.uint8
    assert result.probabilities.shape == (100, 10)
    assert result.accuracy == pytest.approx(scores["accuracy"], abs=1e-6)
    assert result.loss == pytest.approx(scores["loss"], rel=1e-4)
