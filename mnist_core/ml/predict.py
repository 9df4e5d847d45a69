"""Fast probabilities for one or many images.

`model.predict` costs tens of milliseconds per call in fixed overhead; a sketch needs a single
image in about a millisecond. Each model gets one compiled forward pass, traced once and shared
by every thread (the dashboard's cached model serves many sessions at once).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mnist_core.data import as_images

_BATCH = 2048  # images per call: bounds activation memory for big inputs
_forwards: weakref.WeakKeyDictionary[keras.Model, Callable[[tf.Tensor], tf.Tensor]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def predict_proba(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Class probabilities `(N, 10)` float32 for `(N, 28, 28)` (or one `(28, 28)`) images.

    Pixels are floats in [0, 1], white digit on black (what `preprocess.to_mnist` returns);
    uint8 images in [0, 255] are scaled. Raises ImageError for any other shape.
    """
    array = as_images(images)
    forward = _forward(model)
    if len(array) <= _BATCH:
        return forward(tf.constant(array)).numpy()
    parts = [
        forward(tf.constant(array[i : i + _BATCH])).numpy() for i in range(0, len(array), _BATCH)
    ]
    return np.concatenate(parts)


def compiled_per_model(
    cache: weakref.WeakKeyDictionary[keras.Model, Any],
    model: keras.Model,
    build: Callable[[keras.Model], Any],
) -> Any:
    """`build(model)` (a traced function) made once per model and shared by all threads.

    `build` must hold the model only through a weak reference: a strong one from the cached
    value would keep its key, the model, alive forever, and every model trained in a session
    would leak.
    """
    function = cache.get(model)
    if function is not None:
        return function
    with _lock:
        function = cache.get(model)
        if function is None:
            function = build(model)  # traces now, under the lock, not in a race
            cache[model] = function
    return function


def _forward(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    return compiled_per_model(_forwards, model, _build_forward)


def alive(model_ref: weakref.ReferenceType[keras.Model]) -> keras.Model:
    """The model behind the weak reference a compiled function holds: alive whenever the
    function runs, since the cache drops the function with its model."""
    model = model_ref()
    if model is None:
        raise RuntimeError("a compiled function outlived its model")
    return model


def _build_forward(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    model_ref = weakref.ref(model)
    forward = tf.function(
        lambda x: alive(model_ref)(x, training=False),
        input_signature=[tf.TensorSpec([None, 28, 28], tf.float32)],
    )
    forward(tf.zeros([1, 28, 28]))  # trace now
    return forward
