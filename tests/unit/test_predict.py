"""Tests for mnist_core.ml.predict: shapes, scaling, validation, threads, batching, leaks."""

from __future__ import annotations

import gc
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import pytest

from mnist_core.config import TrainConfig
from mnist_core.errors import ImageError
from mnist_core.ml import predict
from mnist_core.ml.models import build_model
from mnist_core.ml.predict import predict_proba
from mnist_core.serving import predict_digit

pytestmark = pytest.mark.usefixtures("keras_seed")


def fresh_model() -> keras.Model:
    return build_model(TrainConfig(hidden_units=(16,)))


def test_probabilities_shape_dtype_and_sum(trained, digits) -> None:
    probabilities = predict_proba(trained.model, digits.x_test[:7])

    assert probabilities.shape == (7, 10)
    assert probabilities.dtype == np.float32
    assert np.all(probabilities >= 0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_matches_the_keras_model(trained, digits) -> None:
    pixels = digits.x_test[:20].astype(np.float32) / 255

    expected = keras.ops.convert_to_numpy(trained.model(pixels, training=False))

    np.testing.assert_allclose(predict_proba(trained.model, pixels), expected, atol=1e-6)


def test_uint8_input_is_scaled_like_floats(trained, digits) -> None:
    as_uint8 = predict_proba(trained.model, digits.x_test[:10])
    as_float = predict_proba(trained.model, digits.x_test[:10].astype(np.float32) / 255)

    np.testing.assert_allclose(as_uint8, as_float, atol=1e-6)
    # Unscaled 0-255 floats would give other answers: the scaling is not a no-op.
    as_raw = predict_proba(trained.model, digits.x_test[:10].astype(np.float32))
    assert np.abs(as_raw - as_float).max() > 1e-3


def test_single_image_is_accepted(trained, digits) -> None:
    batch = predict_proba(trained.model, digits.x_test[:3])

    single = predict_proba(trained.model, digits.x_test[1])
    digit, confidence, probabilities = predict_digit(trained.model, digits.x_test[1])

    assert single.shape == (1, 10)
    np.testing.assert_allclose(single[0], batch[1], atol=1e-6)
    assert digit == int(np.argmax(batch[1]))
    assert isinstance(digit, int) and isinstance(confidence, float)
    assert confidence == pytest.approx(float(batch[1].max()), abs=1e-6)
    assert probabilities.shape == (10,)


@pytest.mark.parametrize("shape", [(28,), (2, 28, 29), (2, 28, 28, 1), (784,), (0, 28)])
def test_wrong_shape_is_rejected(trained, shape: tuple[int, ...]) -> None:
    with pytest.raises(ImageError) as info:
        predict_proba(trained.model, np.zeros(shape, dtype=np.float32))

    assert str(info.value) == f"expected images of shape (N, 28, 28), got {shape}"


def test_concurrent_threads_get_the_single_threaded_results(digits) -> None:
    model = fresh_model()  # not traced yet: the first calls race to trace it
    inputs = [digits.x_test[i : i + 2] for i in range(50)]
    start = threading.Barrier(50)

    def run(images: np.ndarray) -> np.ndarray:
        start.wait()
        return predict_proba(model, images)

    with ThreadPoolExecutor(max_workers=50) as pool:
        threaded = list(pool.map(run, inputs))

    for images, result in zip(inputs, threaded, strict=True):
        np.testing.assert_array_equal(result, predict_proba(model, images))


def test_large_inputs_are_predicted_in_chunks(digits) -> None:
    model = fresh_model()
    images = np.resize(digits.x_test, (2 * 2048 + 100, 28, 28))

    probabilities = predict_proba(model, images)

    assert probabilities.shape == (4196, 10)
    chunks = [predict_proba(model, images[i : i + 2048]) for i in range(0, len(images), 2048)]
    np.testing.assert_array_equal(probabilities, np.concatenate(chunks))


def test_predicting_does_not_keep_the_model_alive(digits) -> None:
    model = fresh_model()
    predict_proba(model, digits.x_test[:2])
    assert model in predict._forwards
    alive = weakref.ref(model)

    del model
    gc.collect()

    assert alive() is None
