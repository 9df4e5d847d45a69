"""Run bundles: a saved run as one `.zip` file to share, and its safe import into a run store.

A bundle holds the run's `model.keras`, `config.json`, `history.json`, `metrics.json`, its
`test_probabilities.npy` when it has one, and a manifest `bundle.json` (format, version, the
run's id, when the bundle was made). Its TensorBoard event files stay behind: they hold nothing
that history.json does not, and `python -m mnist_core logs` writes them from it where the run
is imported.

`import_bundle` treats every bundle as hostile: the upload's size, the archive's directory
(number of files, their names, sizes and compression ratios: no paths, links or zip bombs),
every JSON file, the probabilities array and the model's architecture are checked before the
run is placed in the store, under a new id, with the store's atomic rename. The model is
loaded by `ml.model_files.load_model_file`, which refuses code (Lambda layers, custom classes)
and uses Keras' safe mode, in a subprocess that also writes its ONNX file
(`serving.convert_now`): importing never brings TensorFlow into the web process. Anything wrong
raises `ModelError` with a one-line message, and leaves nothing behind.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mnist_core.config import LIMITS, RUN_ID, TrainConfig
from mnist_core.errors import ConfigError, ModelError, first_line
from mnist_core.progress import HISTORY_KEYS
from mnist_core.run_record import METRICS_FILE, RunMetrics, is_number
from mnist_core.runs import (
    PROBABILITIES_FILE,
    REPLAY_FILE,
    RUN_FILES,
    RunInfo,
    RunStore,
)
from mnist_core.serving import convert_now

BUNDLE_FORMAT = "mnist-run-bundle"
BUNDLE_VERSION = 1
MANIFEST = "bundle.json"
MAX_BUNDLE_BYTES = 50_000_000  # a bundle file; the presets' runs make bundles of 1 to 3 MB
# Most bytes each member may unpack to: kilobytes of JSON, (N, 10) float32 probabilities, and a
# model whose weights barely compress, so a real bundle never comes near these.
_MEMBER_LIMITS = {
    MANIFEST: 100_000,
    "config.json": 100_000,
    "history.json": 1_000_000,
    METRICS_FILE: 1_000_000,
    PROBABILITIES_FILE: 10_000_000,
    REPLAY_FILE: 10_000_000,
    "model.keras": 100_000_000,
}
# Inside replay.npz (a zip archive too): the panel's indices and answers after each epoch.
_REPLAY_MEMBER_LIMITS = {"indices.npy": 100_000, "probabilities.npy": 10_000_000}
_REQUIRED = (MANIFEST, *RUN_FILES)
OPTIONAL_FILES = (PROBABILITIES_FILE, REPLAY_FILE)  # bundled when the run has them
# Inside model.keras, which is itself a zip archive, as Keras writes it for our models.
_MODEL_MEMBER_LIMITS = {
    "metadata.json": 100_000,
    "config.json": 10_000_000,
    "model.weights.h5": 100_000_000,
}
_MAX_UNPACKED_BYTES = 100_000_000  # all members together, in either archive
# Unpacked / packed size of one member. Deflate cannot exceed about 1030; real JSON and weights
# stay far below 100. Members smaller than _RATIO_FLOOR are too small to matter.
_MAX_RATIO = 100
_RATIO_FLOOR = 1_000_000
_MAX_MEMBERS = 20  # in either archive: more are refused before zipfile reads their directory
_END_OF_DIRECTORY = b"PK\x05\x06"  # the record that closes a zip archive (22 bytes + comment)
_DIRECTORY_ENTRY_BYTES = 1_000  # generous for one entry of a short name
_EXPORT_AGAIN = "Export the run again (Results or `python -m mnist_core export`) and import that"
_IMPORT_OURS = "Import only bundles exported by this tool"


def export_bundle(store: RunStore, run_id: str) -> bytes:
    """The run `run_id` of `store` (bundled runs included) as the bytes of a `.zip` bundle.

    Raises:
        ModelError: the run does not exist, is damaged, vanished while being read, or is too
            large to be imported again (over `MAX_BUNDLE_BYTES`).
    """
    run = store.get(run_id)
    names = [*RUN_FILES]
    names += [name for name in OPTIONAL_FILES if (run.path / name).is_file()]
    if bundle_size(run) > MAX_BUNDLE_BYTES:
        raise _too_large_to_share(run.run_id, bundle_size(run))
    manifest = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "run_id": run.run_id,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    buffer = io.BytesIO()
    try:
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST, json.dumps(manifest, indent=2))
            for name in names:
                archive.write(run.path / name, name)
    except OSError as error:
        raise ModelError(
            f"cannot read run {run.run_id!r} ({error.strerror}); it may have been deleted"
        ) from error
    data = buffer.getvalue()
    if len(data) > MAX_BUNDLE_BYTES:  # files that barely compress, plus the directory
        raise _too_large_to_share(run.run_id, len(data))
    return data


def _too_large_to_share(run_id: str, size: int) -> ModelError:
    return ModelError(
        f"run {run_id!r} is too large to share as a bundle ({_megabytes(size)}; a bundle may have "
        f"{_megabytes(MAX_BUNDLE_BYTES)}). Share its model file instead"
    )


def bundle_size(run: RunInfo) -> int:
    """Bytes of the run's files that a bundle holds, before compression: the bundle is at most
    this large, give or take its directory's few hundred bytes."""
    total = 0
    for name in (*RUN_FILES, *OPTIONAL_FILES):
        try:
            total += (run.path / name).stat().st_size
        except OSError:  # no probabilities, or deleted meanwhile: export says which
            continue
    return total


def read_bundle_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of the bundle file at `path`; raises ModelError when it cannot be read or is
    larger than `MAX_BUNDLE_BYTES` (checked before reading it)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BUNDLE_BYTES:
            raise _refused(_too_large(size), _IMPORT_OURS)
        return path.read_bytes()
    except OSError as error:
        raise ModelError(f"cannot read {str(path)!r}: {error.strerror}") from error


def import_bundle(store: RunStore, data: bytes) -> str:
    """Add the run in the bundle `data` to `store` as a new run; return its run id.

    The new run has the bundle's config, history, metrics (plus `imported_from`, the id the run
    had where it was exported), probabilities and model; an existing run is never replaced.

    Raises:
        ModelError: the bundle is too large, not a zip archive, damaged, a zip bomb, holds other
            files (or paths, links), invalid JSON, settings, history, metrics or probabilities,
            or a model that holds code or maps other shapes. Nothing is left in the store.
    """
    if len(data) > MAX_BUNDLE_BYTES:
        raise _refused(_too_large(len(data)), _IMPORT_OURS)
    members = _read_members(data)
    manifest = _manifest(members[MANIFEST])
    try:
        config = TrainConfig.from_dict(_json(members, "config.json"))
    except ConfigError as error:
        raise _refused(f"config.json holds an invalid setting ({error})") from error
    history = _history(_json(members, "history.json"))
    metrics = _metrics(_json(members, METRICS_FILE), config)
    metrics = metrics.replace(imported_from=manifest["run_id"])
    probabilities = None
    if PROBABILITIES_FILE in members:
        probabilities = _probabilities(members[PROBABILITIES_FILE])
    _check_archive(members["model.keras"], _MODEL_MEMBER_LIMITS, "its model.keras").close()
    if REPLAY_FILE in members:
        _check_replay(members[REPLAY_FILE])

    def write(folder: Path) -> None:
        (folder / "model.keras").write_bytes(members["model.keras"])
        try:
            # In a subprocess (no TensorFlow here): refuses code, loads in Keras' safe mode,
            # writes the run's model.onnx.
            convert_now(folder)
        except ModelError as error:
            raise _refused(str(error), "") from error
        for name, value in (
            ("config.json", config.to_dict()),
            ("history.json", history),
            (METRICS_FILE, metrics.to_json()),
        ):
            (folder / name).write_text(json.dumps(value, indent=2), encoding="utf-8")
        if probabilities is not None:
            np.save(folder / PROBABILITIES_FILE, probabilities)
        if REPLAY_FILE in members:
            (folder / REPLAY_FILE).write_bytes(members[REPLAY_FILE])

    try:
        return store.add(write, metrics.kind or config.architecture)
    except OSError as error:
        raise ModelError(
            f"cannot save the imported run in {str(store.root)!r}: {error.strerror}; "
            "free some space or choose another runs folder"
        ) from error


def _read_members(data: bytes) -> dict[str, bytes]:
    """The members of the bundle archive `data`, checked and read; raises ModelError."""
    with _check_archive(data, _MEMBER_LIMITS, "it") as archive:
        missing = [name for name in _REQUIRED if name not in archive.NameToInfo]
        if missing:
            raise _refused(f"it lacks {', '.join(missing)}")
        try:
            return {info.filename: archive.read(info) for info in archive.infolist()}
        except Exception as error:  # noqa: BLE001 - zipfile and zlib raise many types
            raise _refused(f"it is damaged ({first_line(error)})", _EXPORT_AGAIN) from error


def _check_archive(data: bytes, limits: Mapping[str, int], what: str) -> zipfile.ZipFile:
    """`data` opened as a zip archive whose members are plain files named in `limits` (name ->
    most bytes unpacked), each at most once, together at most `_MAX_UNPACKED_BYTES`, none
    compressed more than `_MAX_RATIO` times. `what` names the archive in messages."""
    end = data.rfind(_END_OF_DIRECTORY, max(0, len(data) - 65_557))
    if end < 0 or len(data) - end < 22:
        if data.startswith(b"PK\x03\x04"):
            raise _refused(f"{what} is a truncated or damaged zip archive", _EXPORT_AGAIN)
        if what == "it":
            raise _refused("the file is not a .zip archive", _IMPORT_OURS)
        raise _refused(f"{what} is not a Keras model file", _EXPORT_AGAIN)
    # Checked before zipfile reads the directory: a 50 MB directory would be a million entries.
    entries = int.from_bytes(data[end + 10 : end + 12], "little")
    directory_bytes = int.from_bytes(data[end + 12 : end + 16], "little")
    if entries > _MAX_MEMBERS or directory_bytes > _MAX_MEMBERS * _DIRECTORY_ENTRY_BYTES:
        raise _refused(
            f"{what} holds {entries} files; refused (at most {len(limits)} belong in it)",
            _IMPORT_OURS,
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception as error:  # noqa: BLE001 - zipfile raises many types for a bad archive
        raise _refused(
            f"{what} is a truncated or damaged zip archive ({first_line(error)})", _EXPORT_AGAIN
        ) from error
    try:
        _check_members(archive.infolist(), limits, what)
    except ModelError:
        archive.close()
        raise
    return archive


def _check_members(infos: list[zipfile.ZipInfo], limits: Mapping[str, int], what: str) -> None:
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        if name not in limits:
            if "/" in name or "\\" in name or ".." in name or ":" in name:
                raise _refused(f"{what} holds a file with a path, {name!r}; refused", _IMPORT_OURS)
            raise _refused(
                f"{what} holds the unexpected file {name!r} (allowed: {', '.join(limits)})",
                _IMPORT_OURS,
            )
        if name in seen:
            raise _refused(f"{what} holds {name!r} twice", _IMPORT_OURS)
        seen.add(name)
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archive does not say
        if kind not in (0, stat.S_IFREG):
            raise _refused(f"{what} holds {name!r} as a link or special file", _IMPORT_OURS)
        if info.flag_bits & 0x1:
            raise _refused(f"{what} holds {name!r} encrypted", _IMPORT_OURS)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _refused(f"{what} compresses {name!r} with an unsupported method", _IMPORT_OURS)
        if info.file_size > limits[name]:
            raise _refused(
                f"{what} holds {name!r}, which unpacks to {_megabytes(info.file_size)}; at most "
                f"{_megabytes(limits[name])} is allowed (a zip bomb?)",
                _IMPORT_OURS,
            )
        ratio = info.file_size / max(1, info.compress_size)
        if info.file_size > _RATIO_FLOOR and ratio > _MAX_RATIO:
            raise _refused(
                f"{what} holds {name!r}, compressed {ratio:.0f} times (real files: under "
                f"{_MAX_RATIO}): refused as a zip bomb",
                _IMPORT_OURS,
            )
        total += info.file_size
    if total > _MAX_UNPACKED_BYTES:
        raise _refused(
            f"{what} unpacks to {_megabytes(total)}; at most {_megabytes(_MAX_UNPACKED_BYTES)} "
            "is allowed",
            _IMPORT_OURS,
        )


def _json(members: Mapping[str, bytes], name: str) -> Any:
    try:
        return json.loads(members[name])
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise _refused(f"{name} is not valid JSON ({first_line(error)})") from error


def _manifest(raw: bytes) -> dict[str, Any]:
    manifest = _json({MANIFEST: raw}, MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise _refused(f"{MANIFEST} does not describe a run bundle", _IMPORT_OURS)
    version = manifest.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > BUNDLE_VERSION:
        raise _refused(
            f"it was made by a newer version of this tool (bundle format {version}; this one "
            f"reads {BUNDLE_VERSION})",
            "Update this tool",
        )
    if version != BUNDLE_VERSION:
        raise _refused(f"{MANIFEST} has the invalid format version {version!r}")
    run_id = manifest.get("run_id")
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise _refused(f"{MANIFEST} names no valid run id (got {str(run_id)[:40]!r})")
    return manifest


def _history(history: Any) -> dict[str, list[float]]:
    """Lists of numbers per known key, `loss` among them; lists that are not empty (no
    validation split leaves val_* empty) all as long, one entry per epoch."""
    expected = f"an object mapping {', '.join(HISTORY_KEYS)} to lists of numbers, one per epoch"
    if not isinstance(history, dict) or "loss" not in history:
        raise _refused(f"history.json must be {expected}")
    for key, values in history.items():
        if key not in HISTORY_KEYS:
            raise _refused(f"history.json holds the unknown curve {str(key)[:40]!r}")
        if not isinstance(values, list) or not all(map(is_number, values)):
            raise _refused(f"history.json: {key} must be a list of numbers")
    lengths = {len(values) for values in history.values() if values}
    if len(lengths) > 1:
        raise _refused(
            f"history.json: the curves have different lengths ({sorted(lengths)}); "
            "they must have one value per epoch each"
        )
    if lengths and max(lengths) > LIMITS["epochs"][1]:
        raise _refused(f"history.json has {max(lengths)} epochs, more than training allows")
    return {key: [float(value) for value in values] for key, values in history.items()}


def _metrics(value: Any, config: TrainConfig) -> RunMetrics:
    """The bundle's record, checked (`RunMetrics.from_json`) and agreeing with its config;
    without the id of a process training it, which means nothing here."""
    try:
        metrics = RunMetrics.from_json(value)
    except ValueError as error:
        raise _refused(str(error)) from error
    if metrics.seed != config.seed:
        raise _refused(
            f"{METRICS_FILE} says seed {metrics.seed}, but config.json says {config.seed}"
        )
    return metrics.replace(writer_pid=None)


def _probabilities(raw: bytes) -> np.ndarray:
    """(N, 10) float32 probabilities from an .npy file; the header is checked before any
    array is allocated, so it cannot ask for terabytes."""
    expected = "test_probabilities.npy must be an (N, 10) array of probabilities"
    stream = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        if dtype.kind != "f" or len(shape) != 2 or shape[1] != 10 or shape[0] < 1:
            raise _refused(f"{expected}; it holds {dtype} of shape {shape}")
        if math.prod(shape) * dtype.itemsize > len(raw):
            raise ValueError(f"the file is too short for shape {shape}")
        array = np.load(io.BytesIO(raw), allow_pickle=False)
    except ModelError:
        raise
    except (ValueError, OSError, EOFError) as error:
        raise _refused(f"{expected} ({first_line(error)})") from error
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
        raise _refused(f"{expected}; it holds values outside 0 to 1")
    return array.astype(np.float32)


def _check_replay(raw: bytes) -> None:
    """Refuse a replay.npz that is not the panel's (P,) indices and (E, P, 10) answers."""
    expected = "replay.npz must hold the replay panel's indices and answers"
    _check_archive(raw, _REPLAY_MEMBER_LIMITS, "its replay.npz").close()
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as saved:
            indices, answers = saved["indices"], saved["probabilities"]
    except (ValueError, OSError, KeyError, EOFError) as error:
        raise _refused(f"{expected} ({first_line(error)})") from error
    if (
        indices.ndim != 1
        or indices.dtype.kind not in "iu"
        or answers.ndim != 3
        or answers.shape[1:] != (len(indices), 10)
        or answers.dtype.kind != "f"
        or not np.all(np.isfinite(answers))
    ):
        raise _refused(f"{expected}; it holds arrays of shapes {indices.shape}, {answers.shape}")


def _refused(problem: str, fix: str = _EXPORT_AGAIN) -> ModelError:
    return ModelError(f"cannot import this run bundle: {problem}" + (f". {fix}" if fix else ""))


def _too_large(size: int) -> str:
    return f"it is {_megabytes(size)}; a bundle may have at most {_megabytes(MAX_BUNDLE_BYTES)}"


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
