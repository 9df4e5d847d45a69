"""What a model sees: saliency maps over its 28x28 input, its first layer's weights, and the
feature maps a convnet's first layer computes for one image.

Two saliency methods answer "which pixels made the model say this digit?":
    - `saliency`, gradient x input: one backward pass, milliseconds. How much each pixel's ink
      adds to the class score, to first order. Blank pixels get exactly zero.
    - `occlusion`: blank a small patch, see how much the class probability drops, for every
      patch position at once in one batch. Slower, but it asks the model itself rather than
      its gradient, so it works for any model. For a very confident prediction the drops are
      small (the probability is saturated), but where they fall still shows.

Everything but `saliency` works on an `serving.OnnxModel` without TensorFlow; gradients need a
Keras model and TensorFlow (`gradients`, imported when first asked for). Keras models work
everywhere too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mnist_core import serving
from mnist_core.data import IMAGE_SHAPE, NUM_CLASSES, as_images
from mnist_core.errors import ImageError, ModelError
from mnist_core.serving import OnnxModel

if TYPE_CHECKING:
    import keras

Model = Any  # an `OnnxModel`, or a Keras model (its functions import TensorFlow)


@dataclass(frozen=True)
class FirstLayer:
    """The weights of a model's first Dense or Conv2D layer, one image per unit or filter.

    Attributes:
        kind: "dense" for an MLP (each unit weighs all 784 pixels) or "conv" for a convnet
            (each filter is a small kernel slid over the image).
        layer_name: the Keras layer's name, e.g. "dense1" or "conv1".
        images: (K, h, w) float32 raw weights, signed and not normalised: (units, 28, 28) for
            "dense", (filters, k, k) on the input's only channel for "conv".
        title: what the images are, for a figure, e.g. "conv1: 32 filters, 5×5".
    """

    kind: Literal["dense", "conv"]
    layer_name: str
    images: np.ndarray
    title: str


def saliency(model: keras.Model, image: np.ndarray, label: int | None = None) -> np.ndarray:
    """Gradient x input of one class's score, for one `(28, 28)` image.

    The score is the class's logit (the output layer's input to its softmax) when the model
    ends in a softmax Dense layer, as every model built here does; otherwise the model's output
    for the class. Logits, unlike probabilities, do not saturate: a digit read with 99.99 %
    confidence still gets a meaningful map.

    Args:
        model: maps (N, 28, 28) float32 to (N, 10).
        image: (28, 28) float in [0, 1] or uint8 in [0, 255], white digit on black.
        label: the digit to explain; None explains the model's prediction.

    Returns:
        (28, 28) float32 in [-1, 1]: each pixel's gradient times its value, divided by the
        largest absolute value, so the strongest pixel is +1 or -1. Positive pixels raise the
        score, negative ones lower it, and pixels without ink are exactly 0. All zeros when
        nothing moves the score.

    Raises:
        ImageError: `image` is not a single 28x28 image.
        ValueError: `label` is not a digit 0-9.
    """
    from mnist_core.ml.gradients import gradient_times_input  # TensorFlow: only here

    pixels = _one_image(image)
    target = -1 if label is None else _digit(label)
    values = gradient_times_input(model, pixels[np.newaxis], np.array([target]))[0]
    largest = float(np.abs(values).max())
    if largest == 0.0 or not np.isfinite(largest):
        return np.zeros(IMAGE_SHAPE, dtype=np.float32)
    return (values / np.float32(largest)).astype(np.float32)


def occlusion(
    model: Model,
    image: np.ndarray,
    label: int | None = None,
    patch: int = 4,
    stride: int = 2,
) -> np.ndarray:
    """How much one class's probability drops when the pixels around each pixel are blanked.

    Every `patch` x `patch` square at a multiple of `stride` (overhanging the frame, so every
    pixel is covered equally often) is set to 0, the background, in its own copy of the image;
    the copies in which that changes a pixel and the image itself go through the model in one
    batch. A pixel's value is the mean drop over the patches that cover it. patch 4 and
    stride 2 make at most 225 copies.

    Args:
        model: an `OnnxModel` or a Keras model, (N, 28, 28) float32 to (N, 10) probabilities.
        image: (28, 28) float in [0, 1] or uint8 in [0, 255], white digit on black.
        label: the digit to explain; None explains the model's prediction.
        patch: side of the blanked square, pixels, 1 to 28.
        stride: step between patch positions, pixels, 1 to `patch`.

    Returns:
        (28, 28) float32 in [-1, 1], in units of probability, not normalised: 0.3 means that
        blanking the patches around this pixel cost the class 30 percentage points on average.
        Negative values: blanking there made the class more likely. Patches that hold no ink
        change nothing and are not even predicted, so pixels far from any ink are exactly 0.

    Raises:
        ImageError: `image` is not a single 28x28 image.
        ValueError: `label`, `patch` or `stride` is out of range.
    """
    pixels = _one_image(image)
    size = IMAGE_SHAPE[0]
    if not 1 <= patch <= size:
        raise ValueError(f"patch must be 1 to {size} pixels, got {patch}")
    if not 1 <= stride <= patch:
        raise ValueError(f"stride must be 1 to patch ({patch}) pixels, got {stride}")
    # The frame, padded so that patches may overhang it: pixel (r, c) sits at (r + pad, c + pad).
    pad = patch - stride
    starts = range(0, size + pad, stride)  # patch corners in the padded frame
    corners = [(top, left) for top in starts for left in starts]
    frame = np.zeros((size + 2 * pad, size + 2 * pad), dtype=np.float32)
    frame[pad : pad + size, pad : pad + size] = pixels
    # A patch over no ink leaves the image as it is: its drop is 0 by definition, not a model
    # output that another CPU's kernels might round to -6e-8. Only the others are predicted.
    inked = [frame[top : top + patch, left : left + patch].any() for top, left in corners]
    changed = [corner for corner, ink in zip(corners, inked, strict=True) if ink]
    padded = np.repeat(frame[np.newaxis], len(changed) + 1, axis=0)
    for copy, (top, left) in enumerate(changed, start=1):  # copy 0 stays whole
        padded[copy, top : top + patch, left : left + patch] = 0.0
    probabilities = serving.probabilities(model, padded[:, pad : pad + size, pad : pad + size])
    target = int(np.argmax(probabilities[0])) if label is None else _digit(label)
    drops = np.zeros(len(corners), dtype=np.float64)  # (patches,)
    drops[np.flatnonzero(inked)] = probabilities[0, target] - probabilities[1:, target]
    total = np.zeros(frame.shape, dtype=np.float64)
    covered = np.zeros(padded.shape[1:], dtype=np.int64)
    for drop, (top, left) in zip(drops, corners, strict=True):
        total[top : top + patch, left : left + patch] += drop
        covered[top : top + patch, left : left + patch] += 1
    inside = (slice(pad, pad + size), slice(pad, pad + size))
    return (total[inside] / covered[inside]).astype(np.float32)


def first_layer(model: Model) -> FirstLayer:
    """The weights of the model's first Dense or Conv2D layer, as images.

    For an MLP, the first Dense layer's kernel (784, units) becomes (units, 28, 28): the
    pattern each unit looks for. For a convnet, the first Conv2D kernel (k, k, 1, filters)
    becomes (filters, k, k). An `OnnxModel`'s come from the file's stored weights.

    Raises:
        ModelError: the model has neither layer, or its first Dense layer does not take the
            784 pixels of a 28x28 image.
    """
    if isinstance(model, OnnxModel):
        kind, name, kernel = model.first_weights()
    else:
        from mnist_core.ml.gradients import first_keras_weights

        kind, name, kernel = first_keras_weights(model)
    if kind == "conv":
        filters = np.ascontiguousarray(kernel[:, :, 0, :].transpose(2, 0, 1))
        height, width = filters.shape[1:]
        return FirstLayer(
            kind="conv",
            layer_name=name,
            images=filters,
            title=f"{name}: {len(filters)} filters, {height}×{width}",
        )
    pixels = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
    if kernel.shape[0] != pixels:
        raise ModelError(
            f"the first Dense layer of the model ({name}) takes {kernel.shape[0]} inputs, not "
            f"the {pixels} pixels of an image, so its weights cannot be shown as images"
        )
    units = np.ascontiguousarray(kernel.T.reshape(-1, *IMAGE_SHAPE))
    return FirstLayer(
        kind="dense",
        layer_name=name,
        images=units,
        title=f"{name}: input weights of {len(units)} units",
    )


def activations(model: Model, image: np.ndarray) -> np.ndarray | None:
    """The feature maps the first Conv2D layer computes for one `(28, 28)` image.

    Args:
        model: an `OnnxModel` or a Keras model, (N, 28, 28) float32 to (N, 10).
        image: (28, 28) float in [0, 1] or uint8 in [0, 255], white digit on black.

    Returns:
        (filters, H, W) float32, the layer's output after its activation (ReLU for models
        built here, so >= 0; H = W = 28 with "same" padding); None for a model without a
        Conv2D layer, such as an MLP, which has no feature maps to show.

    Raises:
        ImageError: `image` is not a single 28x28 image.
    """
    pixels = _one_image(image)[np.newaxis]
    if isinstance(model, OnnxModel):
        maps = model.first_feature_maps(pixels)
    else:
        from mnist_core.ml.gradients import first_feature_maps

        maps = first_feature_maps(model, pixels)
    return None if maps is None else np.ascontiguousarray(maps[0], dtype=np.float32)


def _one_image(image: np.ndarray) -> np.ndarray:
    """`image` as (28, 28) float32 in [0, 1]; uint8 is scaled. ImageError for other shapes."""
    array = np.asarray(image)
    if array.shape != IMAGE_SHAPE:
        raise ImageError(f"expected one image of shape (28, 28), got {array.shape}")
    return as_images(array)[0]


def _digit(label: int) -> int:
    if isinstance(label, bool) or not isinstance(label, int | np.integer):
        raise ValueError(f"label must be a digit 0-9, got {label!r}")
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"label must be a digit 0-9, got {label}")
    return int(label)
