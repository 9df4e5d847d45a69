"""Elastic distortion of training digits (Simard, Steinkraus & Platt, 2003).

Each image gets its own random displacement field: uniform noise in [-1, 1] per pixel and
direction, smoothed by a Gaussian of width `sigma` and scaled by `alpha` pixels, so strokes
bend and wobble like another person's hand. Pixels are resampled bilinearly; whatever moves in
from outside the image is black.

It runs where the training loop prepares its batches (`train.Batches`), not in the model, so
saved models hold only Keras' own layers. (Keras' `RandomElasticTransform` ties the smoothing to
the strength: on 28×28 images it moves pixels by well under one pixel at any setting.)
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

# Simard et al.'s values for MNIST; strokes move by ~1.4 px on average, up to ~4 px.
ELASTIC_ALPHA = 34.0
ELASTIC_SIGMA = 4.0


def gaussian_kernel(sigma: float) -> np.ndarray:
    """A normalised 1-D Gaussian, `2 * ceil(2 sigma) + 1` taps."""
    radius = math.ceil(2 * sigma)
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(taps**2) / (2 * sigma**2))
    return (kernel / kernel.sum()).astype(np.float32)


def elastic_distort(
    images: tf.Tensor,
    seed: tf.Tensor,
    alpha: float = ELASTIC_ALPHA,
    sigma: float = ELASTIC_SIGMA,
) -> tf.Tensor:
    """`images` (B, H, W) float32, each distorted by its own random field drawn from `seed`
    (a stateless seed: shape (2,) int). The same seed gives the same distortion."""
    images = tf.convert_to_tensor(images, tf.float32)
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    noise = tf.random.stateless_uniform(
        tf.stack([batch, height, width, 2]), seed=seed, minval=-1.0, maxval=1.0
    )
    kernel = tf.constant(gaussian_kernel(sigma))
    size = kernel.shape[0]
    # Separable smoothing of both displacement channels: along rows, then along columns.
    along_rows = tf.tile(tf.reshape(kernel, (1, size, 1, 1)), (1, 1, 2, 1))
    along_columns = tf.tile(tf.reshape(kernel, (size, 1, 1, 1)), (1, 1, 2, 1))
    field = tf.nn.depthwise_conv2d(noise, along_rows, [1, 1, 1, 1], "SAME")
    field = tf.nn.depthwise_conv2d(field, along_columns, [1, 1, 1, 1], "SAME") * alpha
    rows, columns = tf.meshgrid(
        tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij"
    )
    return _bilinear(images, rows + field[..., 0], columns + field[..., 1])


def _bilinear(images: tf.Tensor, rows: tf.Tensor, columns: tf.Tensor) -> tf.Tensor:
    """`images` (B, H, W) sampled at fractional (B, H, W) positions; black outside."""
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    flat = tf.reshape(images, (batch, -1))
    top, left = tf.floor(rows), tf.floor(columns)
    down, right = rows - top, columns - left
    top, left = tf.cast(top, tf.int32), tf.cast(left, tf.int32)
    result = tf.zeros_like(images)
    for row_step, column_step, weight in (
        (0, 0, (1 - down) * (1 - right)),
        (0, 1, (1 - down) * right),
        (1, 0, down * (1 - right)),
        (1, 1, down * right),
    ):
        row, column = top + row_step, left + column_step
        inside = (row >= 0) & (row < height) & (column >= 0) & (column < width)
        index = tf.clip_by_value(row, 0, height - 1) * width + tf.clip_by_value(
            column, 0, width - 1
        )
        values = tf.gather(flat, tf.reshape(index, (batch, -1)), batch_dims=1)
        values = tf.reshape(values, shape) * tf.cast(inside, tf.float32)
        result += weight * values
    return result
