"""The parts of `explain` that need TensorFlow: gradients, and a Keras model's first layer
and feature maps. The web process imports this only when a visitor asks for a gradient map.

Like `predict`, the compiled functions are traced once per model, hold the model only weakly
and are shared by every thread: the dashboard's cached model serves many sessions at once.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from mnist_core.data import IMAGE_SHAPE
from mnist_core.errors import ModelError
from mnist_core.ml.predict import alive, compiled_per_model

_Compiled = Callable[..., tf.Tensor]
_gradients: weakref.WeakKeyDictionary[keras.Model, _Compiled] = weakref.WeakKeyDictionary()
_feature_maps: weakref.WeakKeyDictionary[keras.Model, _Compiled] = weakref.WeakKeyDictionary()
_IMAGES = tf.TensorSpec([None, *IMAGE_SHAPE], tf.float32)


def gradient_times_input(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, 28, 28) gradient of each image's class score times the image; a label of -1
    explains the predicted class. Images are float32 in [0, 1]."""
    compiled = compiled_per_model(_gradients, model, _gradient_times_input)
    return compiled(tf.constant(images), tf.constant(labels, dtype=tf.int32)).numpy()


def first_keras_weights(model: keras.Model) -> tuple[Literal["dense", "conv"], str, np.ndarray]:
    """The first Dense or Conv2D layer: its kind, name and kernel; ModelError if none."""
    layer = _first_layer_of(model, (keras.layers.Dense, keras.layers.Conv2D))
    if layer is None:
        raise ModelError(
            f"model {model.name!r} has no Dense or Conv2D layer whose weights could be shown; "
            "pick a model trained by this tool"
        )
    kernel = np.asarray(layer.get_weights()[0], dtype=np.float32)
    kind: Literal["dense", "conv"] = "conv" if isinstance(layer, keras.layers.Conv2D) else "dense"
    return kind, layer.name, kernel


def first_feature_maps(model: keras.Model, images: np.ndarray) -> np.ndarray | None:
    """The first Conv2D layer's output `(N, filters, H, W)`; None without such a layer."""
    if _first_layer_of(model, (keras.layers.Conv2D,)) is None:
        return None
    compiled = compiled_per_model(_feature_maps, model, _first_feature_maps)
    return compiled(tf.constant(images)).numpy().transpose(0, 3, 1, 2)


def _first_layer_of(model: keras.Model, kinds: tuple[type, ...]) -> keras.layers.Layer | None:
    return next((layer for layer in model.layers if isinstance(layer, kinds)), None)


def _gradient_times_input(model: keras.Model) -> _Compiled:
    """A traced function: images (N, 28, 28), labels (N,) (-1: predicted) -> (N, 28, 28)."""
    scores = _class_scores(model)

    @tf.function(input_signature=[_IMAGES, tf.TensorSpec([None], tf.int32)])
    def gradient_times_input(images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(images)
            logits = scores(images)  # (N, 10)
            predicted = tf.argmax(logits, axis=1, output_type=tf.int32)
            targets = tf.where(labels < 0, predicted, labels)
            chosen = tf.gather(logits, targets, axis=1, batch_dims=1)  # (N,)
        # Images are independent, so the gradient of the sum is each image's own gradient.
        return tape.gradient(chosen, images) * images

    gradient_times_input(tf.zeros([1, *IMAGE_SHAPE]), tf.constant([-1]))
    return gradient_times_input


def _class_scores(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """images -> (N, 10) logits for a model ending in a softmax Dense layer, else its output.

    Holds the model only weakly (the cache's value must not keep its key alive); the sub-model
    holds its layers, which do not refer back to the model.
    """
    head = model.layers[-1]
    softmax_head = (
        isinstance(head, keras.layers.Dense)
        and head.activation is keras.activations.softmax
        and len(model.outputs) == 1
    )
    if not softmax_head:
        model_ref = weakref.ref(model)
        return lambda images: alive(model_ref)(images, training=False)
    features = keras.Model(model.input, head.input)  # everything up to the softmax layer

    def logits(images: tf.Tensor) -> tf.Tensor:
        hidden = features(images, training=False)
        values = keras.ops.matmul(hidden, head.kernel)
        return values + head.bias if head.use_bias else values

    return logits


def _first_feature_maps(model: keras.Model) -> _Compiled:
    """A traced function: images (N, 28, 28) -> the first Conv2D's output (N, H, W, filters)."""
    conv = _first_layer_of(model, (keras.layers.Conv2D,))
    if conv is None:
        raise ModelError("this model has no convolution: it has no feature maps to show")
    features = keras.Model(model.input, conv.output)

    @tf.function(input_signature=[_IMAGES])
    def feature_maps(images: tf.Tensor) -> tf.Tensor:
        return features(images, training=False)

    feature_maps(tf.zeros([1, *IMAGE_SHAPE]))
    return feature_maps
