"""Predictions without TensorFlow: a run's `model.onnx` in ONNX Runtime.

The worker that trains a run also writes its model as ONNX (`onnx_export`, which checks that
ONNX Runtime and Keras agree). The web process predicts from that file: ONNX Runtime loads in a
few hundredths of a second and tens of megabytes, where TensorFlow takes seconds and hundreds.
Runs saved before that (or imported) get their file from `Conversions`, which runs the export in
a subprocess in the background.

One `OnnxModel` per file serves every visitor: ONNX Runtime's `run` is safe to call from many
threads at once. Each call uses `MNIST_PREDICT_THREADS` threads (default 1), so one visitor's
stroke never takes every core from the others.

Nothing here imports TensorFlow or Streamlit.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from mnist_core.data import IMAGE_SHAPE, NUM_CLASSES, as_images
from mnist_core.errors import ModelError, first_line

if TYPE_CHECKING:
    from mnist_core.drawings import Drawings

ONNX_FILE = "model.onnx"
ONNX_ERROR_FILE = "model.onnx.error"  # why a run has no ONNX model: the export was refused
MAX_DIFFERENCE = 1e-4  # the largest |Δp| between ONNX Runtime and Keras an export may show
_BATCH = 512  # images per call: bounds activation memory (a cnn: ~50 MB a call)
_THREADS_VARIABLE = "MNIST_PREDICT_THREADS"
EXPORT_REFUSED = 3  # exit status of `onnx_export` when the model loads but its export disagrees


class Classifier(Protocol):
    """Anything that maps `(N, 28, 28)` images to `(N, 10)` probabilities."""

    def predict_proba(self, images: np.ndarray) -> np.ndarray: ...


def probabilities(model: Any, images: np.ndarray) -> np.ndarray:
    """`(N, 10)` probabilities from an `OnnxModel`, or from a Keras model (TensorFlow)."""
    if isinstance(model, OnnxModel):
        return model.predict_proba(images)
    from mnist_core.ml.predict import predict_proba

    return predict_proba(model, images)


def accuracy_on(model: Any, drawings: Drawings) -> float | None:
    """The share of `drawings` (`drawings.Drawings`) whose label `model` reads; None when
    there are none."""
    images, labels = drawings.arrays()
    if len(images) == 0:
        return None
    return float(np.mean(probabilities(model, images).argmax(axis=1) == labels))


def predict_digit(
    model: Any, image: np.ndarray, tta: bool = False
) -> tuple[int, float, np.ndarray]:
    """(digit, confidence in [0, 1], probabilities (10,)) for one `(28, 28)` image, from an
    `OnnxModel` or a Keras model; with `tta`, averaged over shifted copies (`TTA_SHIFTS`)."""
    values = (tta_probabilities if tta else probabilities)(model, image)[0]
    digit = int(np.argmax(values))
    return digit, float(values[digit]), values


# Test-time augmentation: the image itself and copies moved one pixel up, down, left and
# right, chosen on validation digits (BENCHMARKS.md, How the presets were chosen,
# "Test-time augmentation").
TTA_SHIFTS: tuple[tuple[int, int], ...] = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


def shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`(N, H, W)` images moved `dy` pixels down and `dx` right; what moves in is black (0)."""
    moved = np.zeros_like(images)
    height, width = images.shape[1:]
    moved[:, max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = images[
        :, max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return moved


def tta_probabilities(
    model: Any, images: np.ndarray, shifts: tuple[tuple[int, int], ...] = TTA_SHIFTS
) -> np.ndarray:
    """`(N, 10)` probabilities averaged over copies of each image moved by `shifts`
    (`(dy, dx)` pixels), in one call of the model on all the copies."""
    array = as_images(images)
    views = np.concatenate([shifted(array, dy, dx) for dy, dx in shifts])
    answers = probabilities(model, views).reshape(len(shifts), len(array), NUM_CLASSES)
    return answers.mean(axis=0, dtype=np.float32)


def predict_threads() -> int:
    """Threads per prediction (`MNIST_PREDICT_THREADS`, default 1; invalid values give 1)."""
    try:
        return max(1, int(os.environ.get(_THREADS_VARIABLE, "1")))
    except ValueError:
        return 1


class OnnxModel:
    """A model saved as ONNX, run by ONNX Runtime on the CPU; shared by every thread.

    Raises ModelError when the file is missing, not an ONNX model, or does not map
    `(N, 28, 28)` images to `(N, 10)` probabilities.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._bytes = self.path.read_bytes()
        except OSError as error:
            raise ModelError(
                f"cannot read the ONNX model {str(self.path)!r}: {error.strerror}"
            ) from error
        self._session = _session(self._bytes, self.path.name)
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or list(inputs[0].shape[1:]) != list(IMAGE_SHAPE):
            raise ModelError(
                f"ONNX model {self.path.name!r} takes {[i.shape for i in inputs]}, not "
                "(N, 28, 28) images; export it again with `python -m mnist_core export`"
            )
        if list(outputs[0].shape[1:]) != [NUM_CLASSES]:
            raise ModelError(
                f"ONNX model {self.path.name!r} gives {outputs[0].shape}, not (N, 10) "
                "probabilities; export it again with `python -m mnist_core export`"
            )
        self._input = inputs[0].name
        self._output = outputs[0].name
        self._lock = threading.Lock()
        self._maps_session: Any = None  # a second session that also outputs the first conv's
        self._maps_output: str | None = None

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities `(N, 10)` float32 for `(N, 28, 28)` (or one `(28, 28)`) images,
        floats in [0, 1] (uint8 in [0, 255] is scaled); ImageError for other shapes."""
        array = as_images(images)
        parts = [
            self._session.run([self._output], {self._input: array[i : i + _BATCH]})[0]
            for i in range(0, max(len(array), 1), _BATCH)
        ]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def first_weights(self) -> tuple[Literal["dense", "conv"], str, np.ndarray]:
        """The first Conv or Dense (MatMul, Gemm) layer: its kind, its Keras layer's name and
        its kernel in Keras' layout ((k, k, channels, filters) or (inputs, units)).

        Read from the file once: an open explanation asks again on every stroke. Raises
        ModelError when the graph has no such layer with stored weights."""
        return self._first_weights

    @functools.cached_property
    def _first_weights(self) -> tuple[Literal["dense", "conv"], str, np.ndarray]:
        import onnx  # only for the explanations: predictions need ONNX Runtime alone

        graph = onnx.load_from_string(self._bytes).graph
        weights = {tensor.name: tensor for tensor in graph.initializer}
        from onnx import numpy_helper

        for node in graph.node:
            if node.op_type not in ("Conv", "MatMul", "Gemm") or len(node.input) < 2:
                continue
            if node.input[1] not in weights:
                break  # weights computed in the graph: not a layer we can show
            kernel = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
            # A convolution fused with its batch normalisation loses its name ("Conv__58");
            # its kernel's keeps the layer's ("mnist_vgg_1/conv1_1_1/convolution/...").
            name = _layer_name(node.name if "/" in node.name else node.input[1])
            if node.op_type == "Conv":  # (filters, channels, k, k) -> Keras' (k, k, ch, filters)
                return "conv", name, kernel.transpose(2, 3, 1, 0)
            transposed = any(a.name == "transB" and a.i == 1 for a in node.attribute)
            return "dense", name, kernel.T if transposed else kernel
        raise ModelError(
            f"model {self.path.name!r} has no Dense or Conv2D layer whose weights could be "
            "shown; pick a model trained by this tool"
        )

    def first_feature_maps(self, images: np.ndarray) -> np.ndarray | None:
        """The first convolution's output after its activation, `(N, filters, H, W)` float32,
        for `(N, 28, 28)` images; None for a model without a convolution (an MLP)."""
        array = as_images(images)
        with self._lock:
            if self._maps_session is None:
                self._maps_session, self._maps_output = self._with_first_conv_output()
        if self._maps_output is None:
            return None
        return self._maps_session.run([self._maps_output], {self._input: array})[0]

    def _with_first_conv_output(self) -> tuple[Any, str | None]:
        import onnx

        model = onnx.load_from_string(self._bytes)
        nodes = list(model.graph.node)
        conv = next((node for node in nodes if node.op_type == "Conv"), None)
        if conv is None:
            return False, None
        output = conv.output[0]
        users = [node for node in nodes if output in node.input]
        if len(users) == 1 and users[0].op_type in ("Relu", "Sigmoid", "Tanh", "Elu", "Selu"):
            output = users[0].output[0]  # Keras' Conv2D output includes its activation
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(output))
        return _session(model.SerializeToString(), self.path.name), output


def _session(model: bytes, name: str) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = predict_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: warnings are for developers
    try:
        return onnxruntime.InferenceSession(
            model, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # noqa: BLE001 - ONNX Runtime raises its own types
        raise ModelError(
            f"ONNX Runtime cannot load {name!r}: {first_line(error)}. The file is damaged: "
            "export the model again, or delete the run and train it again"
        ) from error


def _layer_name(node_name: str) -> str:
    """Keras' layer name in a node name like 'mnist_cnn_1/conv1_1/BiasAdd' -> 'conv1'."""
    parts = node_name.split("/")
    return re.sub(r"_\d+$", "", parts[1]) if len(parts) >= 3 else node_name


def onnx_error(folder: Path) -> str | None:
    """Why the run in `folder` has no ONNX model (its export was refused), or None."""
    try:
        return (folder / ONNX_ERROR_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


class Conversions:
    """ONNX files for runs saved without one, written by `python -m mnist_core.ml.onnx_export`
    in a background subprocess (it needs TensorFlow; the web process must not).

    `state(folder)` starts the conversion the first time it is asked and says where it is:
    "ready", "converting" or "failed" (then `onnx_error(folder)` or `error(folder)` says why).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[Path, subprocess.Popen[bytes]] = {}
        self._errors: dict[Path, str] = {}
        self._logs: dict[Path, IO[bytes]] = {}

    def state(self, folder: Path) -> Literal["ready", "converting", "failed"]:
        folder = folder.resolve()
        with self._lock:
            process = self._running.get(folder)
            if process is not None:
                if process.poll() is None:
                    return "converting"
                del self._running[folder]
                if process.returncode != 0:
                    self._errors[folder] = last_line(self._logs.pop(folder))
            if (folder / ONNX_FILE).is_file():
                return "ready"
            if folder in self._errors or onnx_error(folder) is not None:
                return "failed"
            log = self._logs[folder] = tempfile.TemporaryFile()  # a pipe could fill and block
            self._running[folder] = subprocess.Popen(
                **_converter(folder),
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
            return "converting"

    def error(self, folder: Path) -> str:
        """Why the conversion of the run in `folder` failed."""
        folder = folder.resolve()
        return (
            onnx_error(folder)
            or self._errors.get(folder)
            or "its model could not be converted to ONNX"
        )


def convert_now(folder: Path, timeout: float = 300.0) -> None:
    """Check the model in `folder` and write its ONNX file, in a subprocess (TensorFlow stays
    out of this process).

    Raises ModelError with the subprocess's one-line reason when the model cannot be loaded
    (damaged, holds code, other shapes). A model that loads but whose ONNX export disagrees
    with it is kept without one: `onnx_error(folder)` then says why.
    """
    try:
        result = subprocess.run(**_converter(folder), capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise ModelError(
            f"checking the model took over {timeout:.0f} s; try again when the server is idle"
        ) from error
    if result.returncode not in (0, EXPORT_REFUSED):
        raise ModelError(last_line(result.stderr))


def exported_model(run_id: str, runs_dir: Path, suffix: str, timeout: float = 300.0) -> bytes:
    """Run `run_id`'s model as a `suffix` file (".h5", ...), written by
    `python -m mnist_core export` in a subprocess: TensorFlow stays out of this process."""
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / f"model{suffix}"
        command = python_command(
            "mnist_core", "export", run_id, str(target), "--runs-dir", str(runs_dir)
        )
        try:
            result = subprocess.run(**command, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as error:
            raise ModelError(f"writing the model took over {timeout:.0f} s; try again") from error
        if result.returncode != 0:
            raise ModelError(last_line(result.stderr))
        return target.read_bytes()


def _converter(folder: Path) -> dict[str, Any]:
    """How to start `python -m mnist_core.ml.onnx_export FOLDER`."""
    return python_command("mnist_core.ml.onnx_export", str(folder))


def python_command(module: str, *arguments: str) -> dict[str, Any]:
    """`subprocess` arguments for `python -m module arguments...` from any working directory,
    without input and with TensorFlow's start-up chatter turned down."""
    return {
        "args": [sys.executable, "-m", module, *arguments],
        "stdin": subprocess.DEVNULL,
        "cwd": Path(__file__).resolve().parent.parent,
        "env": {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    }


def last_line(
    log: IO[bytes] | bytes, default: str = "the model could not be converted to ONNX"
) -> str:
    """The last line a subprocess wrote to its error output (a file or bytes): its one-line
    reason; `default` when it wrote nothing."""
    if not isinstance(log, bytes):
        log.seek(0)
        text = log.read()
        log.close()
        log = text
    lines = log.decode(errors="replace").strip().splitlines()
    return lines[-1].removeprefix("error: ") if lines else default
