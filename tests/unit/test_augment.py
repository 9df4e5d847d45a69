"""Tests for mnist_core.ml.augment: elastic distortion, and the training pipeline that uses it."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mnist_core.config import TrainConfig
from mnist_core.ml.augment import _bilinear, elastic_distort, gaussian_kernel
from mnist_core.ml.train import Batches


def strokes(digits, count: int = 64) -> np.ndarray:
    """The first `count` synthetic training digits as (count, 28, 28) float32 in [0, 1], their
    faint background speckle removed: bright strokes on black, as in MNIST."""
    images = digits.x_train[:count]
    return np.where(images >= 100, images, 0).astype(np.float32) / 255


def test_gaussian_kernel_is_normalised_and_symmetric() -> None:
    kernel = gaussian_kernel(4.0)
    assert kernel.shape == (17,)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(kernel, kernel[::-1])
    assert kernel.argmax() == 8


def test_bilinear_sampling_shifts_and_blends_exactly() -> None:
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    rows, columns = np.meshgrid(np.arange(4.0), np.arange(4.0), indexing="ij")
    rows, columns = rows[None].astype(np.float32), columns[None].astype(np.float32)

    same = _bilinear(image, rows, columns).numpy()
    up = _bilinear(image, rows + 1, columns).numpy()
    half = _bilinear(image, rows, columns + 0.5).numpy()

    np.testing.assert_array_equal(same, image)
    np.testing.assert_array_equal(up[0, :3], image[0, 1:])  # each row shows the one below
    np.testing.assert_array_equal(up[0, 3], 0)  # from outside the image: black
    np.testing.assert_allclose(half[0, :, :3], image[0, :, :3] + 0.5)  # halfway between pixels
    np.testing.assert_allclose(half[0, :, 3], image[0, :, 3] / 2)  # half of it outside


def test_no_strength_leaves_images_unchanged(digits) -> None:
    images = strokes(digits)
    out = elastic_distort(images, tf.constant([1, 2]), alpha=0.0).numpy()
    np.testing.assert_allclose(out, images, atol=1e-6)


def test_distortion_bends_strokes_but_keeps_the_digit(digits) -> None:
    images = strokes(digits)

    out = elastic_distort(images, tf.constant([1, 2])).numpy()

    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1 + 1e-6
    changed = np.abs(out - images).mean(axis=(1, 2)) / images.mean(axis=(1, 2))
    assert np.all(changed > 0.15)  # every digit visibly moved (Keras' layer: ~0.05)
    # Strokes move, stretch and squeeze, but on the whole ink is neither lost nor invented.
    ink = out.sum(axis=(1, 2)) / images.sum(axis=(1, 2))
    assert 0.9 < np.median(ink) < 1.1 and np.all((ink > 0.5) & (ink < 2.5))
    # Still the same digit: its centre of mass moves by about a pixel, not across the image.
    grid = np.arange(28)
    centre = lambda x: x.sum(axis=2) @ grid / x.sum(axis=(1, 2))  # noqa: E731
    assert np.abs(centre(out) - centre(images)).max() < 3


def test_the_same_seed_gives_the_same_distortion_and_another_seed_another(digits) -> None:
    images = strokes(digits, 8)
    first = elastic_distort(images, tf.constant([5, 6])).numpy()
    again = elastic_distort(images, tf.constant([5, 6])).numpy()
    other = elastic_distort(images, tf.constant([5, 7])).numpy()
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 0.01
    # Each image of a batch gets its own field: the same digit twice comes out differently.
    twice = elastic_distort(np.repeat(images[:1], 2, axis=0), tf.constant([5, 6])).numpy()
    assert np.abs(twice[0] - twice[1]).mean() > 0.01


def whole_epoch(batches: Batches, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """All batches of `epoch`, as the training loop cuts them, joined: (N, 28, 28) float32
    pixels and (N,) uint8 labels."""
    order = batches.order(epoch)
    parts = [
        batches.batch(order, tf.constant(epoch), tf.constant(step)) for step in range(batches.count)
    ]
    return (
        np.concatenate([images.numpy() for images, _ in parts]),
        np.concatenate([labels.numpy() for _, labels in parts]),
    )


def test_training_batches_are_distorted_anew_each_epoch_and_reproducibly(digits) -> None:
    images, labels = digits.x_train[:256], digits.y_train[:256]
    config = TrainConfig(batch_size=64, seed=3, elastic=True)
    plain, plain_labels = whole_epoch(Batches(images, labels, config, shuffle=False), 0)
    batches = Batches(images, labels, config, shuffle=False, distort=True)

    (first, labels_out), (second, _) = whole_epoch(batches, 0), whole_epoch(batches, 1)
    rebuilt, _ = whole_epoch(Batches(images, labels, config, shuffle=False, distort=True), 0)

    # Scaling may divide by 255 or multiply by 1/255, depending on the kernels: one float32
    # step (6e-8 below 1) apart at most.
    np.testing.assert_allclose(plain, images / np.float32(255), rtol=0, atol=1.2e-7)
    np.testing.assert_array_equal(plain_labels, labels)
    assert np.abs(first - plain).mean() > 0.01
    assert np.abs(first - second).mean() > 0.01  # a new distortion every epoch
    np.testing.assert_array_equal(first, rebuilt)  # the same config seed: the same epochs
    np.testing.assert_array_equal(labels_out, labels)  # labels stay with their images
    # Each batch of an epoch is distorted its own way: a digit repeated in two batches differs.
    repeated = Batches(
        np.repeat(images[:1], 128, axis=0),
        np.repeat(labels[:1], 128),
        config,
        shuffle=False,
        distort=True,
    )
    twice, _ = whole_epoch(repeated, 0)
    assert np.abs(twice[0] - twice[64]).mean() > 0.01


def test_shuffled_batches_visit_every_sample_once_in_a_new_order_each_epoch(digits) -> None:
    images, labels = digits.x_train[:300], digits.y_train[:300]
    config = TrainConfig(batch_size=64, seed=5)
    batches = Batches(images, labels, config, shuffle=True)

    first, second = batches.order(0).numpy(), batches.order(1).numpy()
    again = Batches(images, labels, config, shuffle=True).order(0).numpy()
    other_seed = Batches(images, labels, config.replace(seed=6), shuffle=True).order(0).numpy()

    assert batches.count == 5  # 4 full batches and one of 44
    assert sorted(first) == sorted(second) == list(range(300))
    assert list(first) != list(range(300)) and list(first) != list(second)
    np.testing.assert_array_equal(first, again)
    assert list(first) != list(other_seed)
    x, y = whole_epoch(batches, 0)
    # The pixels with their labels, scaled (to one float32 step, as above).
    np.testing.assert_allclose(x, images[first] / np.float32(255), rtol=0, atol=1.2e-7)
    np.testing.assert_array_equal(y, labels[first])


def test_training_with_elastic_distortion_is_reproducible_and_saves_plain_keras(
    digits, small_config, tmp_path
) -> None:
    from mnist_core.ml.train import train
    from mnist_core.runs import RunStore

    config = small_config.replace(elastic=True)
    first, again = train(config, digits), train(config, digits)
    plain = train(small_config, digits)

    assert first.history == again.history  # the seed fixes every distortion
    assert first.history["loss"] != plain.history["loss"]  # and they do change the training
    # The distortion lives in the input pipeline: the model has the same layers as without it,
    # so it saves and loads in safe mode like any other run.
    assert [layer.name for layer in first.model.layers] == [
        layer.name for layer in plain.model.layers
    ]
    store = RunStore(tmp_path)
    run_id = store.save(first)
    assert store.get(run_id).config.elastic is True
    reloaded = store.load_model(run_id)
    np.testing.assert_allclose(
        reloaded.predict(digits.x_test[:5] / np.float32(255), verbose=0),
        first.model.predict(digits.x_test[:5] / np.float32(255), verbose=0),
        atol=1e-6,
    )
