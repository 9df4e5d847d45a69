"""Keras model files, loaded without running code stored in them.

A `.keras` or `.h5` file's architecture is read first (JSON, without Keras) and refused if it
holds Python code — a Lambda layer, a class from outside Keras — and only then does Keras load
it, in safe mode: a model file can never run code here, whoever made it.

Loading needs TensorFlow (Keras is imported on the first load).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from mnist_core.errors import ModelError, first_line

_MAX_CONFIG_BYTES = 10_000_000  # a model's architecture is kilobytes of JSON
_USE_OURS = "Use a .keras file saved by this tool"


def load_model_file(path: str | os.PathLike[str]) -> Any:
    """Load a `.keras` or `.h5` model saved by this tool without running any code stored in it
    (see `read_model_file`). The model must map `(N, 28, 28)` images to `(N, 10)` probabilities.

    Raises:
        ModelError: the file is missing, corrupt, not a Keras model, holds code, or has other
            input or output shapes. The message says what to do.
    """
    path = Path(path)
    model = read_model_file(path)
    if tuple(model.input_shape[1:]) != (28, 28) or tuple(model.output_shape[1:]) != (10,):
        raise ModelError(
            f"model {path.name!r} maps {model.input_shape} to {model.output_shape}; "
            "expected (None, 28, 28) images to (None, 10) probabilities"
        )
    return model


def read_model_file(path: str | os.PathLike[str], fix: str | None = None) -> Any:
    """Load any `.keras` or `.h5` Keras model without running code stored in it.

    The architecture is read first and refused if it holds Python code (a Lambda layer, a
    class from outside Keras); then Keras loads it in safe mode, uncompiled. `fix` ends the
    messages: what the user should do instead (default: use a model saved by this tool).

    Raises:
        ModelError: the file is missing, corrupt, not a Keras model or holds code.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} does not exist")
    code = _code_in(_model_config(path, fix or _USE_OURS))
    if code is not None:
        raise ModelError(
            f"model {path.name!r} contains {code}; it was not loaded, because loading it could "
            f"run code from the file. {fix or 'Use a model saved by this tool'}"
        )
    import keras  # here, not at module level: listing runs must not pay for TensorFlow

    try:
        # safe_mode also covers legacy .h5 files in Keras 3: Lambda layers are refused there too.
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - Keras raises many types for a bad file
        raise ModelError(
            f"cannot load model {path.name!r}: {first_line(error)}. {fix or _USE_OURS}"
        ) from error


def _model_config(path: Path, fix: str) -> Any:
    """The architecture stored in a `.keras` (config.json) or `.h5` (model_config) file."""
    try:
        if path.suffix == ".h5":
            import h5py  # comes with Keras

            with h5py.File(path, "r") as handle:
                text = handle.attrs.get("model_config")
            if text is None:
                raise ModelError(
                    f"model {path.name!r} holds weights but no architecture; "
                    "save the whole model (model.save) and load that"
                )
        else:
            with zipfile.ZipFile(path) as archive:
                info = archive.getinfo("config.json")
                if info.file_size > _MAX_CONFIG_BYTES:
                    raise ModelError(f"model {path.name!r} has an implausibly large architecture")
                text = archive.read(info)
        return json.loads(text)
    except ModelError:
        raise
    except Exception as error:  # noqa: BLE001 - zipfile, h5py and json raise many types
        kind = "an .h5 (HDF5)" if path.suffix == ".h5" else "a .keras"
        raise ModelError(
            f"cannot load model {path.name!r}: it is not {kind} model file, or it is damaged "
            f"({first_line(error)}). {fix}"
        ) from error


def _code_in(config: Any) -> str | None:
    """What in a model's architecture would run Python code on loading, or None.

    Refused: Lambda layers (their function is stored as Python bytecode) and any object
    from a module outside Keras or registered by a package (custom classes and functions).
    """
    pending = [config]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            class_name = item.get("class_name")
            if class_name in ("Lambda", "__lambda__") or item.get("function_type") == "lambda":
                return "a Lambda layer (Python code)"
            module, registered = item.get("module"), item.get("registered_name")
            if isinstance(module, str) and module != "keras" and not module.startswith("keras."):
                return f"{class_name!r} from the module {module!r} (custom code)"
            if isinstance(registered, str) and ">" in registered:
                return f"the custom object {registered!r} (custom code)"
            pending.extend(item.values())
    return None
