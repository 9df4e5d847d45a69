"""Tests for mnist_core.explain: saliency, occlusion, first-layer weights and feature maps."""

from __future__ import annotations

import gc
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import signal

from mnist_core.config import TrainConfig
from mnist_core.errors import ImageError, ModelError
from mnist_core.explain import activations, first_layer, occlusion, saliency
from mnist_core.ml import gradients
from mnist_core.ml.models import build_model
from mnist_core.ml.predict import predict_proba

pytestmark = pytest.mark.usefixtures("keras_seed")

# The block of pixels the region model looks at: rows and columns 8 to 13.
REGION = (slice(8, 14), slice(8, 14))


def tiny_cnn() -> keras.Model:
    return build_model(TrainConfig(architecture="cnn", conv_filters=(4,), hidden_units=(8,)))


def region_model() -> keras.Model:
    """An MLP whose only live unit adds up a tenth of the ink in REGION; digit 3's logit is
    that sum, digit 4's its negative, every other logit 0.

    A tenth keeps digit 3's logit near 2 for `random_image`, its probability near 0.5: a
    saturated softmax (p = 1 - 1e-8) would make every drop smaller than float32 rounding."""
    model = build_model(TrainConfig(hidden_units=(2,)))
    mask = np.zeros((28, 28), dtype=np.float32)
    mask[REGION] = 0.1
    hidden_kernel = np.zeros((784, 2), dtype=np.float32)
    hidden_kernel[:, 0] = mask.ravel()
    model.get_layer("dense1").set_weights([hidden_kernel, np.zeros(2, dtype=np.float32)])
    output_kernel = np.zeros((2, 10), dtype=np.float32)
    output_kernel[0, 3], output_kernel[0, 4] = 1.0, -1.0
    model.get_layer("probabilities").set_weights([output_kernel, np.zeros(10, dtype=np.float32)])
    return model


def random_image(seed: int = 0) -> np.ndarray:
    """(28, 28) float32 in [0.1, 1]: ink everywhere, so every pixel could matter."""
    return np.random.default_rng(seed).uniform(0.1, 1.0, (28, 28)).astype(np.float32)


def as_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255


# --- saliency (gradient x input) ---


@pytest.mark.parametrize("make_model", ["trained", "cnn"])
def test_saliency_shape_dtype_and_range(make_model: str, trained, digits) -> None:
    model = trained.model if make_model == "trained" else tiny_cnn()

    values = saliency(model, digits.x_test[0])

    assert values.shape == (28, 28) and values.dtype == np.float32
    assert np.abs(values).max() == pytest.approx(1.0)  # normalised: the strongest pixel is ±1
    assert values.min() >= -1.0 and values.max() <= 1.0


@pytest.mark.parametrize("make_model", ["trained", "cnn"])
def test_saliency_is_zero_where_the_input_is_zero(make_model: str, trained, digits) -> None:
    model = trained.model if make_model == "trained" else tiny_cnn()
    image = as_float(digits.x_test[5])
    image[:, :14] = 0.0  # blank the left half

    values = saliency(model, image)

    assert np.all(values[:, :14] == 0.0)
    assert np.count_nonzero(values[:, 14:]) > 100


def test_saliency_of_a_model_looking_at_one_region_is_that_region() -> None:
    image = random_image()

    values = saliency(region_model(), image, label=3)

    # d logit_3 / d pixel is 1 inside the region and 0 outside: the map is the input there.
    expected = np.zeros((28, 28), dtype=np.float32)
    expected[REGION] = image[REGION] / image[REGION].max()
    np.testing.assert_allclose(values, expected, atol=1e-6)


def test_saliency_sign_follows_the_class_and_a_class_nothing_moves_is_zero() -> None:
    model, image = region_model(), random_image()

    against = saliency(model, image, label=4)  # logit_4 = -(ink in the region)
    unmoved = saliency(model, image, label=7)  # logit_7 = 0 whatever the input

    assert np.all(against[REGION] < 0) and against.min() == pytest.approx(-1.0)
    np.testing.assert_array_equal(against, -saliency(model, image, label=3))
    np.testing.assert_array_equal(unmoved, np.zeros((28, 28), dtype=np.float32))


def test_saliency_uses_the_logit_not_the_saturated_probability(trained, digits) -> None:
    image = as_float(digits.x_test[3])
    digit = int(np.argmax(predict_proba(trained.model, image)))
    hidden_kernel, hidden_bias = trained.model.get_layer("dense1").get_weights()
    output_kernel = trained.model.get_layer("probabilities").get_weights()[0]

    values = saliency(trained.model, image)  # default: the predicted digit

    # logit = relu(x W1 + b1) W2 + b2, so d logit_d / dx = W1 (relu'(...) * W2[:, d]).
    active = (image.ravel() @ hidden_kernel + hidden_bias) > 0
    gradient = hidden_kernel @ (active * output_kernel[:, digit])
    expected = gradient.reshape(28, 28) * image
    np.testing.assert_allclose(values, expected / np.abs(expected).max(), atol=1e-5)
    np.testing.assert_array_equal(values, saliency(trained.model, image, label=digit))


def test_saliency_of_a_model_without_a_softmax_dense_head_uses_its_output() -> None:
    inputs = keras.Input((28, 28))
    scores = keras.layers.Dense(10, name="scores")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Softmax()(scores))  # softmax as its own layer
    image = random_image()

    values = saliency(model, image, label=3)

    pixels = tf.constant(image[np.newaxis])
    with tf.GradientTape() as tape:
        tape.watch(pixels)
        probability = model(pixels, training=False)[0, 3]
    expected = tape.gradient(probability, pixels).numpy()[0] * image
    np.testing.assert_allclose(values, expected / np.abs(expected).max(), atol=1e-5)


def test_saliency_accepts_uint8_like_floats(trained, digits) -> None:
    np.testing.assert_allclose(
        saliency(trained.model, digits.x_test[2]),
        saliency(trained.model, as_float(digits.x_test[2])),
        atol=1e-6,
    )


@pytest.mark.parametrize("shape", [(784,), (1, 28, 28), (28, 27)])
def test_a_wrong_shape_is_an_image_error(trained, shape: tuple[int, ...]) -> None:
    image = np.zeros(shape, dtype=np.float32)
    for explainer in (saliency, occlusion, activations):
        with pytest.raises(ImageError, match=r"expected one image of shape \(28, 28\)"):
            explainer(trained.model, image)


@pytest.mark.parametrize("label", [10, -1, 2.0, True, "3"])
def test_a_label_that_is_not_a_digit_is_a_value_error(trained, label: object) -> None:
    for explainer in (saliency, occlusion):
        with pytest.raises(ValueError, match="label must be a digit 0-9"):
            explainer(trained.model, random_image(), label=label)


# --- occlusion ---


def test_occlusion_shape_dtype_and_range(trained, digits) -> None:
    values = occlusion(trained.model, digits.x_test[0])

    assert values.shape == (28, 28) and values.dtype == np.float32
    assert values.min() >= -1.0 and values.max() <= 1.0
    assert values.max() > 0.0


def test_occlusion_is_the_probability_drop_of_each_patch() -> None:
    model, image = region_model(), random_image()
    base = predict_proba(model, image)[0, 3]

    values = occlusion(model, image, label=3, patch=4, stride=4)  # 49 patches, no overlap

    for top, left in [(8, 8), (12, 12), (0, 0), (20, 4)]:
        blanked = image.copy()
        blanked[top : top + 4, left : left + 4] = 0.0
        drop = base - predict_proba(model, blanked)[0, 3]
        np.testing.assert_allclose(values[top : top + 4, left : left + 4], drop, atol=1e-6)
    # Only the patches overlapping the region (rows and columns 8-15) change anything. The
    # others blank ink the model ignores, so their drop is 0 up to rounding: float32
    # probabilities near 0.5 are 3e-8 apart, and one row of a batch may round a few steps
    # apart from another with other CPUs' kernels (measured: -5.96e-8). The smallest real drop,
    # a 2x2 corner of the region blanked, is about 0.05.
    outside = np.ones((28, 28), dtype=bool)
    outside[8:16, 8:16] = False
    np.testing.assert_allclose(values[outside], 0.0, atol=1e-6)
    assert np.all(values[REGION] > 1e-2)


def test_occlusion_drops_mostly_where_the_digit_is(trained, digits) -> None:
    image = digits.x_test[7]
    ink = image >= 128  # the strokes; the rest is faint speckle

    values = occlusion(trained.model, image)

    assert np.abs(values[ink]).mean() > 3 * np.abs(values[~ink]).mean()
    assert values[ink].mean() > 0  # blanking strokes costs the predicted digit probability


def test_occlusion_is_zero_far_from_any_ink(trained) -> None:
    image = np.zeros((28, 28), dtype=np.float32)
    image[10:18, 12:16] = 1.0

    values = occlusion(trained.model, image, patch=4, stride=2)

    # A pixel is only covered by patches within 3 pixels of it. Patches over no ink are not
    # predicted at all (their drop is 0 by definition), so this holds exactly on every CPU.
    near = np.zeros((28, 28), dtype=bool)
    near[7:21, 9:19] = True
    assert np.all(values[~near] == 0.0)
    assert np.count_nonzero(values[near]) > 0


@pytest.mark.parametrize(("patch", "stride"), [(0, 1), (29, 1), (4, 0), (4, 5)])
def test_occlusion_refuses_bad_patches(trained, patch: int, stride: int) -> None:
    with pytest.raises(ValueError, match="must be 1 to"):
        occlusion(trained.model, random_image(), patch=patch, stride=stride)


# --- first layer and feature maps ---


def test_first_layer_of_an_mlp_is_each_units_pixel_weights(trained) -> None:
    kernel = trained.model.get_layer("dense1").get_weights()[0]  # (784, 64)

    layer = first_layer(trained.model)

    assert (layer.kind, layer.layer_name) == ("dense", "dense1")
    assert layer.images.shape == (64, 28, 28) and layer.images.dtype == np.float32
    for unit in (0, 17, 63):
        np.testing.assert_array_equal(layer.images[unit], kernel[:, unit].reshape(28, 28))
    assert layer.title == "dense1: input weights of 64 units"


def test_first_layer_of_a_cnn_is_its_filters() -> None:
    model = tiny_cnn()
    kernel = model.get_layer("conv1").get_weights()[0]  # (5, 5, 1, 4)

    layer = first_layer(model)

    assert (layer.kind, layer.layer_name) == ("conv", "conv1")
    assert layer.images.shape == (4, 5, 5) and layer.images.dtype == np.float32
    for index in range(4):
        np.testing.assert_array_equal(layer.images[index], kernel[:, :, 0, index])
    assert layer.title == "conv1: 4 filters, 5×5"


def test_activations_are_the_first_convolution_after_relu(digits) -> None:
    model = tiny_cnn()
    image = as_float(digits.x_test[4])
    kernel, bias = model.get_layer("conv1").get_weights()

    maps = activations(model, image)

    assert maps.shape == (4, 28, 28) and maps.dtype == np.float32
    for index in range(4):
        # Keras convolves like a cross-correlation, zero-padded to keep 28x28 ("same").
        manual = signal.correlate2d(image, kernel[:, :, 0, index], mode="same") + bias[index]
        np.testing.assert_allclose(maps[index], np.maximum(manual, 0.0), atol=1e-5)
    features = keras.Model(model.input, model.get_layer("conv1").output)
    expected = keras.ops.convert_to_numpy(features(image[np.newaxis], training=False))[0]
    np.testing.assert_allclose(maps, expected.transpose(2, 0, 1), atol=1e-6)


def test_activations_of_an_mlp_are_none(trained, digits) -> None:
    assert activations(trained.model, digits.x_test[0]) is None


def test_a_model_without_dense_or_conv_layers_is_a_model_error() -> None:
    inputs = keras.Input((28, 28))
    outputs = keras.layers.Softmax()(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs, name="no_weights")

    with pytest.raises(ModelError, match="model 'no_weights' has no Dense or Conv2D layer"):
        first_layer(model)
    assert activations(model, random_image()) is None


def test_a_first_dense_layer_not_on_the_pixels_is_a_model_error() -> None:
    inputs = keras.Input((28, 28))
    pooled = keras.layers.MaxPooling1D(2)(inputs)  # (14, 28): 392 inputs to the Dense layer
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(pooled))
    model = keras.Model(inputs, outputs, name="pooled")

    with pytest.raises(ModelError, match="takes 392 inputs, not the 784 pixels"):
        first_layer(model)


# --- compiled functions: threads and memory ---


def test_concurrent_threads_get_the_single_threaded_results(digits) -> None:
    model = tiny_cnn()  # not traced yet: the first calls race to trace it
    images = [as_float(digits.x_test[i]) for i in range(8)]
    start = threading.Barrier(len(images))

    def explain_one(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        start.wait()
        return saliency(model, image), activations(model, image)

    with ThreadPoolExecutor(max_workers=len(images)) as pool:
        threaded = list(pool.map(explain_one, images))

    for image, (values, maps) in zip(images, threaded, strict=True):
        np.testing.assert_array_equal(values, saliency(model, image))
        np.testing.assert_array_equal(maps, activations(model, image))
    assert len({id(gradients._gradients[model]), id(gradients._feature_maps[model])}) == 2


def test_explaining_does_not_keep_the_model_alive(digits) -> None:
    model = tiny_cnn()
    saliency(model, digits.x_test[0])
    activations(model, digits.x_test[0])
    assert model in gradients._gradients and model in gradients._feature_maps
    alive = weakref.ref(model)

    del model
    gc.collect()

    assert alive() is None
