"""Loading MNIST from every supported source, and the one place pixels are normalised.

`load_mnist` finds the data (an explicit path, else `$MNIST_PATH`, else the Keras download
cache, downloading it only when the network answers), reads a Keras-layout `.npz` or a folder of
the four original IDX files, checks shapes, dtypes and labels, and returns an immutable
`MnistData`. Every problem becomes a `DataError` whose message names the file and says how to
fix it. Images stay uint8 in memory; `to_float` turns them into model input.

This module must stay importable without TensorFlow: Keras is imported only to download.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import socket
import tempfile
import threading
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_core.errors import DataError, ImageError

IMAGE_SIZE = 28  # MNIST images are IMAGE_SIZE x IMAGE_SIZE pixels
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE)
NUM_CLASSES = 10

HOW_TO_FIX = (
    "Set MNIST_PATH (or pass a path) to a Keras-layout mnist.npz or to a folder with the four "
    "MNIST IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    "t10k-labels-idx1-ubyte, plain or .gz)."
)

_SPLITS = ("x_train", "y_train", "x_test", "y_test")

# IDX file stem for each array; LeCun's site uses dashes, many mirrors a dot before "idx".
_IDX_STEMS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_IMAGES_MAGIC = 2051  # 0x0803: unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # 0x0801: unsigned bytes, 1 dimension

# The same file and checksum that keras.datasets.mnist.load_data() uses, so both share a cache.
_DOWNLOAD_HOST = "storage.googleapis.com"
_DOWNLOAD_PORT = 443
_DOWNLOAD_URL = f"https://{_DOWNLOAD_HOST}/tensorflow/tf-keras-datasets/mnist.npz"
_DOWNLOAD_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
# urllib (inside Keras) has no timeout and DNS lookups ignore socket timeouts, so reachability
# is probed first in a thread we stop waiting for after this many seconds.
_PROBE_TIMEOUT_S = 5.0

# Errors numpy, zipfile, gzip and zlib raise for missing, truncated or corrupt files.
_READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)


@dataclass(frozen=True, eq=False)
class MnistData:
    """The four MNIST arrays, validated, read-only and uint8.

    Creating one checks the arrays: images `(N, 28, 28)` and labels `(N,)` with the same N > 0,
    labels in 0-9, integer values that fit in 0-255 (cast to uint8); floats are rejected. The
    arrays are stored as read-only views because `load_mnist` hands the same object to every
    caller.

    Raises:
        DataError: an array has the wrong shape, dtype or values; the message names `source`.
    """

    x_train: np.ndarray = field(repr=False)  # (N_train, 28, 28) uint8, 0 = background
    y_train: np.ndarray = field(repr=False)  # (N_train,) uint8 digits 0-9
    x_test: np.ndarray = field(repr=False)  # (N_test, 28, 28) uint8
    y_test: np.ndarray = field(repr=False)  # (N_test,) uint8
    source: str  # where the data came from, for messages and the UI

    def __post_init__(self) -> None:
        for name in _SPLITS:
            array = _checked_array(name, getattr(self, name), self.source)
            object.__setattr__(self, name, array)
        for split in ("train", "test"):
            num_images = len(getattr(self, f"x_{split}"))
            num_labels = len(getattr(self, f"y_{split}"))
            if num_images != num_labels:
                raise _error(
                    f"{self.source}: x_{split} has {num_images} images but y_{split} has "
                    f"{num_labels} labels; they must match one to one."
                )

    @functools.cached_property
    def fingerprint(self) -> str:
        """16 hex digits of a SHA-256 over all four arrays: equal data, equal fingerprint.

        Computed on first use (about 0.05 s for full MNIST) and then remembered.
        """
        digest = hashlib.sha256()
        for name in _SPLITS:
            array = getattr(self, name)
            digest.update(f"{name}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]


def load_mnist(path: str | os.PathLike[str] | None = None) -> MnistData:
    """Load MNIST from `path`, else `$MNIST_PATH`, else the Keras download cache.

    `path` (or `$MNIST_PATH`) is either a Keras-layout `.npz` with uint8 arrays `x_train`
    `(N, 28, 28)`, `y_train` `(N,)`, `x_test`, `y_test`, or a folder with the four original IDX
    files (`train-images-idx3-ubyte` etc., also dotted `train-images.idx3-ubyte`, each plain or
    `.gz`). Without either, the Keras cache (`$KERAS_HOME/datasets/mnist.npz`, default
    `~/.keras`) is read, and downloaded first if the download host answers within 5 s.

    Loading the same unchanged file(s) again returns the same object (cached on resolved path,
    modification time and size).

    Raises:
        DataError: the data is missing, unreadable, corrupt or invalid, or it would have to be
            downloaded and the network is unavailable. The message says how to fix it.
    """
    if path is not None:
        return _load_path(Path(path).expanduser(), origin="the given path")
    env_path = os.environ.get("MNIST_PATH")
    if env_path:
        return _load_path(Path(env_path).expanduser(), origin="MNIST_PATH")
    return _load_keras_cache()


@dataclass(frozen=True)
class TestDigits:
    """MNIST's test split alone: what a web process showing results needs."""

    x_test: np.ndarray = field(repr=False)  # (N_test, 28, 28) uint8
    y_test: np.ndarray = field(repr=False)  # (N_test,) uint8
    source: str


def load_test_digits(path: str | os.PathLike[str] | None = None) -> TestDigits:
    """The test split of `load_mnist(path)`, without keeping the 60,000 training digits
    (47 MB) in memory: `load_mnist`'s cache is emptied. Raises DataError as it does."""
    data = load_mnist(path)
    test = TestDigits(data.x_test.copy(), data.y_test.copy(), data.source)
    del data
    clear_cache()
    return test


def clear_cache() -> None:
    """Forget the data sets `load_mnist` keeps (≈ 55 MB each), e.g. in a web process."""
    _load_cached.cache_clear()


def describe_source(path: str | os.PathLike[str] | None = None) -> str:
    """Where `load_mnist(path)` would read MNIST from, without reading it (for display)."""
    if path is not None:
        return str(Path(path).expanduser())
    env_path = os.environ.get("MNIST_PATH")
    if env_path:
        return f"MNIST_PATH ({Path(env_path).expanduser()})"
    cache_file = keras_cache_file()
    if cache_file.is_file():
        return _keras_source(cache_file)
    return "not found yet: downloaded on first use (or set MNIST_PATH)"


PIXEL_MAX = 255  # uint8 ink; models see pixels / PIXEL_MAX, floats in [0, 1]


def to_float(images: np.ndarray) -> np.ndarray:
    """Scale uint8 pixels `(..., 28, 28)` to float32 in [0, 1], the input every model expects.

    Raises:
        ValueError: `images` is not uint8 (already scaled data would be divided twice).
    """
    if images.dtype != np.uint8:
        raise ValueError(f"to_float expects uint8 pixels 0-255, got dtype {images.dtype}.")
    return np.divide(images, np.float32(PIXEL_MAX), dtype=np.float32)


def as_images(images: np.ndarray) -> np.ndarray:
    """`images` as contiguous `(N, 28, 28)` float32 in [0, 1]: one `(28, 28)` image becomes a
    batch of one, uint8 in [0, 255] is scaled. Raises ImageError for any other shape."""
    array = np.asarray(images)
    if array.shape == IMAGE_SHAPE:
        array = array[np.newaxis]
    if array.ndim != 3 or array.shape[1:] != IMAGE_SHAPE:
        raise ImageError(f"expected images of shape (N, 28, 28), got {array.shape}")
    if array.dtype == np.uint8:
        array = to_float(array)
    return np.ascontiguousarray(array, dtype=np.float32)


def _error(problem: str) -> DataError:
    return DataError(f"{problem} {HOW_TO_FIX}")


def _checked_array(name: str, value: object, source: str) -> np.ndarray:
    array = np.asarray(value)
    is_images = name.startswith("x_")
    sample_shape = (IMAGE_SIZE, IMAGE_SIZE) if is_images else ()
    if array.ndim != 1 + len(sample_shape) or array.shape[1:] != sample_shape:
        expected = f"(N, {IMAGE_SIZE}, {IMAGE_SIZE})" if is_images else "(N,)"
        raise _error(f"{source}: {name} has shape {array.shape}, expected {expected}.")
    if len(array) == 0:
        raise _error(f"{source}: {name} is empty; MNIST needs at least one sample per split.")
    if not np.issubdtype(array.dtype, np.integer):
        raise _error(
            f"{source}: {name} has dtype {array.dtype}, expected uint8 "
            f"{'pixels 0-255 (not normalised floats)' if is_images else 'digits 0-9'}."
        )
    max_value = 255 if is_images else NUM_CLASSES - 1
    # uint8 images cannot be out of range; skipping the scan saves time on full MNIST.
    if not (is_images and array.dtype == np.uint8):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > max_value:
            values = "pixel values" if is_images else "labels"
            raise _error(f"{source}: {name} has {values} {low}..{high}, expected 0..{max_value}.")
    view = array.astype(np.uint8, copy=False).view()
    view.setflags(write=False)
    return view


def _load_path(path: Path, origin: str, source: str | None = None) -> MnistData:
    path = path.resolve()
    if path.is_dir():
        files = _find_idx_files(path)
    elif path.is_file():
        files = (path,)
    else:
        raise _error(f"MNIST data not found: {path} (from {origin}) does not exist.")
    return _load_cached(tuple(_stamp(file) for file in files), source or str(path))


def _stamp(file: Path) -> tuple[str, int, int]:
    try:
        stat = file.stat()
    except OSError as exc:
        raise _error(f"Cannot read {file}: {exc.strerror or exc}.") from exc
    return str(file), stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=4)  # full MNIST is ~55 MB; a few sources are plenty
def _load_cached(stamps: tuple[tuple[str, int, int], ...], source: str) -> MnistData:
    for file, _, size in stamps:
        if size == 0:
            raise _error(f"{file} is empty (0 bytes); replace it with a complete copy.")
    files = [Path(file) for file, _, _ in stamps]
    arrays = _read_npz(files[0]) if len(files) == 1 else _read_idx_files(files)
    return MnistData(**arrays, source=source)


def _read_npz(file: Path) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(file, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise _error(f"{file} is a single .npy array, not an .npz archive.")
        with loaded as archive:
            missing = [name for name in _SPLITS if name not in archive.files]
            if missing:
                raise _error(
                    f"{file} lacks the arrays {', '.join(missing)}; it has "
                    f"{', '.join(archive.files) or 'no arrays'} (expected {', '.join(_SPLITS)})."
                )
            return {name: archive[name] for name in _SPLITS}
    except _READ_ERRORS as exc:
        raise _error(
            f"Cannot read {file} as an .npz archive ({type(exc).__name__}: {exc}); the file is "
            "missing, truncated or not an .npz. Replace it with a complete copy."
        ) from exc


def _find_idx_files(folder: Path) -> tuple[Path, ...]:
    found: list[Path] = []
    missing: list[str] = []
    for stem in _IDX_STEMS.values():
        dotted = stem.replace("-idx", ".idx")
        names = (stem, dotted, f"{stem}.gz", f"{dotted}.gz")
        match = next((folder / name for name in names if (folder / name).is_file()), None)
        if match is None:
            missing.append(stem)
        else:
            found.append(match)
    if missing:
        raise _error(
            f"{folder} is a folder but has no {', '.join(missing)} (plain or .gz), so it is "
            "not an MNIST IDX folder."
        )
    return tuple(found)


def _read_idx_files(files: list[Path]) -> dict[str, np.ndarray]:
    arrays = {
        name: _read_idx(file, is_images=name.startswith("x_"))
        for name, file in zip(_SPLITS, files, strict=True)
    }
    for split, (images_file, labels_file) in {
        "train": files[0:2],
        "test": files[2:4],
    }.items():
        num_images, num_labels = len(arrays[f"x_{split}"]), len(arrays[f"y_{split}"])
        if num_images != num_labels:
            raise _error(
                f"{images_file.name} holds {num_images} images but {labels_file.name} holds "
                f"{num_labels} labels (in {images_file.parent}); the files do not belong together."
            )
    return arrays


def _read_idx(file: Path, is_images: bool) -> np.ndarray:
    """Parse one IDX file (big-endian header, then raw uint8 values) into a read-only array."""
    try:
        if file.suffix == ".gz":
            with gzip.open(file, "rb") as stream:
                content = stream.read()
        else:
            content = file.read_bytes()
    except _READ_ERRORS as exc:
        raise _error(
            f"Cannot read {file} ({type(exc).__name__}: {exc}); replace it with a complete copy."
        ) from exc
    expected_magic = _IDX_IMAGES_MAGIC if is_images else _IDX_LABELS_MAGIC
    kind = "image" if is_images else "label"
    header_size = 16 if is_images else 8
    if len(content) < header_size:
        raise _error(f"{file} has {len(content)} bytes, too short for an IDX {kind} header.")
    header = np.frombuffer(content, dtype=">u4", count=header_size // 4)
    magic, count, *dims = (int(value) for value in header)
    if magic != expected_magic:
        raise _error(
            f"{file} is not an IDX {kind} file: magic number {magic}, expected {expected_magic}."
        )
    shape = (count, *dims)
    expected_size = header_size + int(np.prod(shape))
    if len(content) != expected_size:
        raise _error(
            f"{file} has {len(content)} bytes but its header {shape} needs {expected_size}; "
            "the file is truncated or corrupt."
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header_size).reshape(shape)


def keras_cache_file() -> Path:
    """Where Keras keeps (or would download) `mnist.npz`; the file may not exist yet."""
    # Mirrors keras.utils.get_file: $KERAS_HOME or ~/.keras, /tmp/.keras if not writable.
    base = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()
    if not os.access(base, os.W_OK):
        base = Path(tempfile.gettempdir()) / ".keras"
    return base / "datasets" / "mnist.npz"


def _load_keras_cache() -> MnistData:
    cache_file = keras_cache_file()
    if cache_file.is_file():
        return _load_path(cache_file, "the Keras download cache", _keras_source(cache_file))
    if not _can_reach(_DOWNLOAD_HOST, _DOWNLOAD_PORT, _PROBE_TIMEOUT_S):
        raise _error(
            f"MNIST is not available: no path was given, MNIST_PATH is not set, there is no "
            f"Keras download cache at {cache_file}, and {_DOWNLOAD_HOST} cannot be reached "
            "to download it (no network?)."
        )
    import keras  # deferred: importing TensorFlow takes seconds and is needed only here

    try:
        cache_file.parent.parent.mkdir(parents=True, exist_ok=True)
        downloaded = keras.utils.get_file(
            "mnist.npz",
            origin=_DOWNLOAD_URL,
            file_hash=_DOWNLOAD_SHA256,
            cache_dir=str(cache_file.parent.parent),
        )
    except Exception as exc:  # Keras wraps network failures in a bare Exception
        raise _error(f"Downloading MNIST from {_DOWNLOAD_URL} failed: {exc}.") from exc
    return _load_path(Path(downloaded), "the Keras download", _keras_source(Path(downloaded)))


def _keras_source(cache_file: Path) -> str:
    return f"Keras download cache ({cache_file})"


def _can_reach(host: str, port: int, timeout: float) -> bool:
    outcome: list[bool] = []
    finished = threading.Event()

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(True)
        except OSError:
            outcome.append(False)
        finally:
            finished.set()

    # A daemon thread, because a hung DNS lookup cannot be cancelled; we just stop waiting.
    threading.Thread(target=probe, name="mnist-download-probe", daemon=True).start()
    return finished.wait(timeout) and outcome == [True]
