"""Keras model -> ONNX file, checked: `python -m mnist_core.ml.onnx_export RUN_FOLDER...`.

Training-only layers (random shift, rotation, zoom, noise) do nothing at inference and are
left out of the exported graph: ONNX Runtime refuses the random ops they would bring. The file
is then run by ONNX Runtime beside Keras on a fixed set of images, and refused (nothing is
written) when any probability differs by more than `serving.MAX_DIFFERENCE`.

This module needs TensorFlow; workers and the command line use it, the web process never does
(it starts the command above in a subprocess, see `serving.Conversions`).
"""

from __future__ import annotations

import inspect
import os
import secrets
import sys
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mnist_core.errors import MnistCoreError, ModelError
from mnist_core.serving import (
    EXPORT_REFUSED,
    MAX_DIFFERENCE,
    ONNX_ERROR_FILE,
    ONNX_FILE,
    OnnxModel,
)

# Layers that pass their input through unchanged at inference.
TRAINING_ONLY = (
    keras.layers.RandomTranslation,
    keras.layers.RandomRotation,
    keras.layers.RandomZoom,
    keras.layers.RandomFlip,
    keras.layers.RandomContrast,
    keras.layers.RandomBrightness,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
)


def check_images(count: int = 64, seed: int = 0) -> np.ndarray:
    """`count` fixed images `(count, 28, 28)` float32 to compare ONNX with Keras on: a blank
    one, uniform noise and sparse strokes-like noise (half each)."""
    rng = np.random.default_rng(seed)
    noise = rng.random((count, 28, 28), dtype=np.float32)
    sparse = (rng.random((count, 28, 28)) > 0.8) * noise
    images = np.where(np.arange(count)[:, None, None] % 2 == 0, noise, sparse)
    images[0] = 0.0
    return images.astype(np.float32)


def layer_chain(model: keras.Model) -> list[keras.layers.Layer] | None:
    """`model`'s layers in calling order, its input layer left out, when each layer feeds the
    next alone (a Sequential model, or a functional one built as a chain); None otherwise."""
    if isinstance(model, keras.Sequential):
        return list(model.layers)
    layers = model.layers  # a functional model's first layer is its input
    chain = len(model.inputs) == 1 and all(
        len(layer._inbound_nodes) == 1 and layer.input is previous.output
        for previous, layer in zip(layers, layers[1:], strict=False)
    )
    return layers[1:] if chain else None


def call_in_inference_mode(layers: list[keras.layers.Layer], x: Any) -> Any:
    """`x` through `layers` in turn, each called in inference mode, training-only ones left
    out: a `clone_model` copy traced batch normalisation in training mode, and its export
    read digits wrongly."""
    for layer in layers:
        if not isinstance(layer, TRAINING_ONLY):
            takes_training = "training" in inspect.signature(layer.call).parameters
            x = layer(x, training=False) if takes_training else layer(x)
    return x


def inference_model(model: keras.Model) -> keras.Model:
    """The same model with its training-only layers left out (same weights, shared).

    A chain of layers (every model built here) is wired again in inference mode
    (`call_in_inference_mode`); other graphs are cloned. `export_onnx`'s check catches a wrong
    export either way.
    """
    if not any(isinstance(layer, TRAINING_ONLY) for layer in model.layers):
        return model
    chain = layer_chain(model)
    if chain is not None:
        first = model.layers[0]
        name = first.name if isinstance(first, keras.layers.InputLayer) else "pixels"
        inputs = keras.Input(model.input_shape[1:], name=name)
        return keras.Model(inputs, call_in_inference_mode(chain, inputs), name=model.name)

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, TRAINING_ONLY):
            return keras.layers.Identity(name=layer.name)
        return layer  # the layer itself: its weights are shared, not copied

    return keras.models.clone_model(model, clone_function=clone)


def export_onnx(
    model: keras.Model, target: str | os.PathLike[str], images: np.ndarray | None = None
) -> float:
    """Write `model` as an ONNX file at `target`; the largest |Δp| against Keras.

    `images` (default `check_images()`) are run through both; the file is written only when
    they agree within `MAX_DIFFERENCE`. Raises ModelError otherwise, or when the export fails.
    """
    from mnist_core.ml.predict import predict_proba

    target = Path(target)
    images = check_images() if images is None else images
    inference = inference_model(model)
    with warnings.catch_warnings():  # a loaded model expects its input as a list: same thing
        warnings.simplefilter("ignore", UserWarning)
        inference(images[:1])  # a model must have been called before it is exported
    temp = target.with_name(f".tmp-{secrets.token_hex(4)}-{target.name}")
    try:
        try:
            inference.export(str(temp), format="onnx", verbose=False)
        except Exception as error:  # noqa: BLE001 - tf2onnx raises many types
            raise ModelError(f"the model cannot be exported as ONNX: {error}") from error
        difference = float(
            np.abs(OnnxModel(temp).predict_proba(images) - predict_proba(model, images)).max()
        )
        if not difference <= MAX_DIFFERENCE:
            raise ModelError(
                f"its ONNX export gives other probabilities than Keras (by up to "
                f"{difference:.1e}, more than {MAX_DIFFERENCE:g}), so it was not kept"
            )
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return difference


def convert_run(folder: Path) -> float:
    """Write `folder`'s model.onnx from its model.keras; the largest |Δp| against Keras.

    A refused export is recorded in the folder (`serving.onnx_error`) and raised as
    ModelError, as is a model that cannot be loaded (nothing recorded then).
    """
    from mnist_core.ml.model_files import load_model_file

    model = load_model_file(folder / "model.keras")  # refuses code; Keras' safe mode
    try:
        difference = export_onnx(model, folder / ONNX_FILE)
    except ModelError as error:
        _write_error(folder, str(error))
        raise ExportRefused(str(error)) from error
    (folder / ONNX_ERROR_FILE).unlink(missing_ok=True)
    return difference


class ExportRefused(ModelError):
    """The model loads, but its ONNX export was refused (see `serving.onnx_error`)."""


def _write_error(folder: Path, message: str) -> None:
    try:
        temp = folder / f".tmp-{secrets.token_hex(4)}-{ONNX_ERROR_FILE}"
        temp.write_text(message + "\n", encoding="utf-8")
        os.replace(temp, folder / ONNX_ERROR_FILE)
    except OSError:
        pass  # a read-only folder: the message still goes to the caller


def main(argv: list[str]) -> int:
    """Convert each run folder; the exit status says how the last failure went (0: all done,
    1: a model could not be loaded, EXPORT_REFUSED: an export disagreed with Keras)."""
    if not argv:
        print("usage: python -m mnist_core.ml.onnx_export RUN_FOLDER...", file=sys.stderr)
        return 2
    status = 0
    for folder in argv:
        try:
            difference = convert_run(Path(folder))
        except ExportRefused as error:
            print(f"{folder}: {error}", file=sys.stderr)
            status = EXPORT_REFUSED
        except MnistCoreError as error:
            print(f"{error}", file=sys.stderr)
            status = 1
        else:
            print(f"{folder}: {ONNX_FILE} written (max |Δp| vs Keras {difference:.1e})")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
