"""Bring your own model: a Keras classifier of MNIST digits (`.keras` or `.h5`) as a run.

`import_model_file` loads the file without running code stored in it (`model_files.read_model_file`:
safe mode, Lambda layers and custom classes refused), finds out what the model expects and
gives, wraps it so that it reads this project's digits — `(N, 28, 28)` floats in [0, 1] — and
answers ten probabilities, scores it on MNIST's test set and saves it as a run: metrics,
confusion matrix, gallery, Sketch and ONNX export work as for a trained one.

What is found out, and how:
- **input layout**: the model's input shape, `(28, 28)`, `(28, 28, 1)` or `(784,)`; anything
  else is not a model of MNIST digits and is refused;
- **output**: ten probabilities when the last layer ends in a softmax or its outputs on sample
  digits sum to 1; otherwise logits, and a softmax is added;
- **pixel scale**, [0, 1] or [0, 255]: told by a `Rescaling` of 1/255 at the model's start;
  else measured on 1,000 training digits (never test digits) at both scales, taking the one
  whose cross-entropy is clearly lower; else [0, 1], and the record says it was assumed.

This module needs TensorFlow; the web process runs `python -m mnist_core import` in a
subprocess instead (`serving.import_model_in_subprocess`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np

from mnist_core.config import TrainConfig
from mnist_core.data import IMAGE_SHAPE, IMAGE_SIZE, NUM_CLASSES, PIXEL_MAX, MnistData
from mnist_core.errors import ModelError
from mnist_core.evaluate import evaluate
from mnist_core.import_jobs import Scale
from mnist_core.ml.model_files import read_model_file
from mnist_core.ml.onnx_export import call_in_inference_mode, inference_model, layer_chain
from mnist_core.ml.predict import predict_proba
from mnist_core.ml.train import TrainResult
from mnist_core.progress import HISTORY_KEYS
from mnist_core.run_record import ImportedModel
from mnist_core.runs import RunStore

PixelScale = Literal["1", "255"]  # pixels in [0, 1] or in [0, 255]
SCALE_TEXT = {"1": "[0, 1]", "255": "[0, 255]"}
# The input shapes (batch left out) of a model of MNIST digits, and how they are named.
INPUT_LAYOUTS = {
    layout: str(layout) for layout in (IMAGE_SHAPE, (*IMAGE_SHAPE, 1), (IMAGE_SIZE * IMAGE_SIZE,))
}
SUFFIXES = (".keras", ".h5")
KIND = "imported"  # the word in an imported run's id
SCALE_SAMPLE = 1_000  # training digits that tell the pixel scale
SCALE_LOSS_RATIO = 2.0  # how much worse the other scale's loss must be to take one as measured
_FIX = (
    "Import a Keras model of MNIST digits saved with model.save('model.keras') (or .h5) "
    "that uses Keras' own layers only"
)


@dataclass(frozen=True)
class Adapted:
    """A user's model wrapped to read `(N, 28, 28)` floats in [0, 1] and answer probabilities."""

    model: keras.Model
    input: str  # the model's own input layout: "(28, 28)", "(28, 28, 1)" or "(784,)"
    output: Literal["probabilities", "logits"]
    scale: PixelScale  # the pixel scale the model expects
    scale_note: str  # how the scale was decided, for the user

    def record(self, name: str, file: str, raw: bytes, parameters: int) -> ImportedModel:
        """The run's record of the model: `name`, the file's name and bytes, its weights."""
        return ImportedModel(
            name=name,
            file=file,
            sha256=hashlib.sha256(raw).hexdigest(),
            bytes=len(raw),
            parameters=parameters,
            input=self.input,
            output=self.output,
            scale=SCALE_TEXT[self.scale],
            scale_note=self.scale_note,
        )


def import_model_file(
    store: RunStore,
    path: str | Path,
    data: MnistData,
    name: str | None = None,
    scale: Scale = "auto",
) -> str:
    """Score the Keras model file at `path` on `data`'s test set and save it in `store` as a new
    run; its run id. `name` (default: the file's name) is how the run is shown; `scale` the
    pixel scale the model expects, or "auto" to find out.

    Raises:
        ModelError: not a `.keras`/`.h5` file, damaged, holds code, or not a classifier of
            MNIST digits (another input or output shape). Nothing is saved then.
    """
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ModelError(f"{path.name!r} is not a Keras model file: import a .keras or .h5 file")
    raw = path.read_bytes() if path.is_file() else b""
    model = read_model_file(path, fix=_FIX)
    adapted = adapt(model, path.name, data, scale)
    evaluation = evaluate(adapted.model, data.x_test, data.y_test)
    record = adapted.record(
        (name or "").strip() or path.name, path.name, raw, int(model.count_params())
    )
    result = TrainResult(
        model=adapted.model,
        config=TrainConfig(),  # not trained here: the record's `imported_model` says so
        history={key: [] for key in HISTORY_KEYS},
        evaluation=evaluation,
        epochs_run=0,
        best_epoch=0,
        stopped=False,
        stopped_early=False,
        train_seconds=0.0,
        data_source=data.source,
        data_fingerprint=data.fingerprint,
        kind=KIND,
        extra_metrics={"val_accuracy": None, "imported_model": record},
    )
    return store.save(result)


def adapt(model: keras.Model, file_name: str, data: MnistData, scale: Scale) -> Adapted:
    """`model` wrapped to read this project's digits (see the module's docstring); `data`'s
    last `SCALE_SAMPLE` training digits tell the scale when `scale` is "auto"."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(
            f"model {file_name!r} has {len(model.inputs)} inputs and {len(model.outputs)} "
            f"outputs: a classifier of MNIST digits has one of each. {_FIX}"
        )
    shape = tuple(model.input_shape[1:])
    if shape not in INPUT_LAYOUTS:
        raise ModelError(
            f"model {file_name!r} reads inputs of shape {shape}, not MNIST digits (28×28 grey: "
            f"(28, 28), (28, 28, 1) or (784,)). {_FIX}"
        )
    outputs = tuple(model.output_shape[1:])
    if outputs != (NUM_CLASSES,):
        raise ModelError(
            f"model {file_name!r} gives outputs of shape {outputs}, not 10 digit scores. {_FIX}"
        )
    sample = data.x_train[-SCALE_SAMPLE:], data.y_train[-SCALE_SAMPLE:]
    inner = inference_model(model)
    output = _output_kind(inner, shape, sample[0])
    if scale == "auto":
        scale, note = _scale(inner, shape, output, sample, file_name)
    else:
        note = "chosen at import"
    return Adapted(_wrap(inner, shape, output, scale), INPUT_LAYOUTS[shape], output, scale, note)


def _wrap(
    model: keras.Model,
    shape: tuple[int, ...],
    output: Literal["probabilities", "logits"],
    scale: PixelScale,
) -> keras.Model:
    """(N, 28, 28) [0, 1] -> `model` in its layout and scale -> (N, 10) probabilities.

    A chain's layers are called in turn (their names stay the layers' own, for the
    explanations' captions); another graph is called whole."""
    inputs = keras.Input(IMAGE_SHAPE, name="digit_pixels")
    x = inputs
    if scale == "255":
        x = keras.layers.Rescaling(float(PIXEL_MAX), name="to_0_255")(x)
    if shape != IMAGE_SHAPE:
        x = keras.layers.Reshape(shape, name="to_model_layout")(x)
    chain = layer_chain(model)
    x = call_in_inference_mode(chain, x) if chain is not None else model(x, training=False)
    if output == "logits":
        x = keras.layers.Softmax(name="softmax_of_logits")(x)
    return keras.Model(inputs, x, name="imported")


def _output_kind(
    model: keras.Model, shape: tuple[int, ...], images: np.ndarray
) -> Literal["probabilities", "logits"]:
    """Probabilities when the last layer ends in a softmax, or when the outputs on `images`
    are in [0, 1] and sum to 1; logits otherwise."""
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Softmax) or getattr(activation, "__name__", "") == "softmax":
        return "probabilities"
    answers = predict_proba(_wrap(model, shape, "probabilities", "1"), images)
    sums_to_one = np.allclose(answers.sum(axis=1), 1.0, atol=1e-3)
    in_range = answers.min() >= 0.0 and answers.max() <= 1.0
    return "probabilities" if sums_to_one and in_range else "logits"


def _scale(
    model: keras.Model,
    shape: tuple[int, ...],
    output: Literal["probabilities", "logits"],
    sample: tuple[np.ndarray, np.ndarray],
    file_name: str,
) -> tuple[PixelScale, str]:
    """The pixel scale `model` expects, and how it was told."""
    first = _first_computing_layer(model)
    if isinstance(first, keras.layers.Rescaling) and np.isclose(
        float(np.ravel(first.scale)[0]), 1 / PIXEL_MAX, rtol=1e-3
    ):
        return "255", "told by the model: it divides its input by 255 itself"
    images, labels = sample
    # A digit's ink times 255 mostly scales the logits, so both scales often pick the same
    # digit; the probabilities given to the right digit tell them apart: near uniform when
    # the pixels are too faint, certain and often wrong when they are too bright.
    loss, accuracy = {}, {}
    for scale in ("1", "255"):
        answers = predict_proba(_wrap(model, shape, output, scale), images)
        right = answers[np.arange(len(labels)), labels]
        loss[scale] = float(-np.log(np.clip(right, 1e-7, 1.0)).mean())
        accuracy[scale] = float((answers.argmax(axis=1) == labels).mean())
    pairs: tuple[tuple[PixelScale, PixelScale], ...] = (("1", "255"), ("255", "1"))
    for scale, other in pairs:
        if loss[other] > SCALE_LOSS_RATIO * loss[scale]:
            return scale, (
                f"measured on {len(labels):,} training digits: a mean loss of {loss[scale]:.2f} "
                f"({accuracy[scale]:.1%} right) at {SCALE_TEXT[scale]}, {loss[other]:.2f} "
                f"({accuracy[other]:.1%}) at {SCALE_TEXT[other]}"
            )
    return "1", (
        f"assumed: the model reads {len(labels):,} training digits about as well at [0, 1] "
        f"(mean loss {loss['1']:.2f}) as at [0, 255] ({loss['255']:.2f}); if {file_name} was "
        "trained on pixels of 0 to 255, import it again with the scale [0, 255]"
    )


def _first_computing_layer(model: keras.Model) -> Any:
    """The first layer that changes values (reshaping layers and the input skipped)."""
    passive = (keras.layers.InputLayer, keras.layers.Reshape, keras.layers.Flatten)
    chain = layer_chain(model) or model.layers
    return next((layer for layer in chain if not isinstance(layer, passive)), None)
