"""The user's own drawings: digits drawn on the Sketch page, labelled by the user, kept to
measure (and improve) how a model reads real handwriting rather than MNIST's.

Each drawing is one small `.npz` file in the drawings folder (`MNIST_DRAWINGS_DIR`, default
`data/drawings` in the working directory) holding the 28x28 digit as the model sees it (uint8,
white on black), its label, when it was drawn and, when there is one, the raw canvas (RGBA).
Files are written under a temporary name and renamed, so a crash never leaves half a drawing.
"""

from __future__ import annotations

import builtins
import io
import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mnist_core.data import IMAGE_SHAPE, PIXEL_MAX, MnistData
from mnist_core.errors import DataError, ImageError

_DRAWING_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
_TEMP_SUFFIX = ".tmp"
# Share of each training epoch that mixed-in drawings make up (by repeating them): a few dozen
# drawings among 54,000 MNIST digits would otherwise be drowned out.
DRAWINGS_SHARE = 0.02
MAX_REPEATS = 200
MAX_CANVAS_PIXELS = 4_000_000  # the raw canvas kept with a drawing (the page's is 280x280)


@dataclass(frozen=True)
class Drawing:
    """One labelled drawing."""

    drawing_id: str
    label: int
    digit: np.ndarray  # (28, 28) uint8, white digit on black, as the model sees it
    created: str  # ISO time, UTC
    path: Path

    def canvas(self) -> np.ndarray | None:
        """The raw canvas it was drawn on, or None when none was kept."""
        with np.load(self.path, allow_pickle=False) as saved:
            return saved["canvas"] if "canvas" in saved.files else None


class Drawings(Protocol):
    """What training asks of a set of drawings: a `DrawingSet`, or the arrays a Ray job ships."""

    def arrays(self) -> tuple[np.ndarray, np.ndarray]: ...


class DrawingSet:
    """The drawings under `root` (default: env `MNIST_DRAWINGS_DIR`, else `data/drawings`)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root or os.environ.get("MNIST_DRAWINGS_DIR") or "data/drawings").resolve()

    def add(self, digit: np.ndarray, label: int, canvas: np.ndarray | None = None) -> str:
        """Keep `digit` ((28, 28) floats in [0, 1] or uint8) labelled `label`; its id.

        Raises ImageError for a digit of another shape or with NaN, DataError for a label
        that is not a digit 0-9.
        """
        pixels = _as_uint8_digit(digit)
        is_digit = isinstance(label, int | np.integer) and not isinstance(label, bool)
        if not is_digit or not 0 <= label <= 9:
            raise DataError(f"the label must be a digit from 0 to 9, got {label!r}")
        # Any: numpy's stubs would take a key of `arrays` for savez's `allow_pickle` flag.
        arrays: dict[str, Any] = {"digit": pixels, "label": np.uint8(label)}
        if canvas is not None:
            canvas = np.asarray(canvas)
            if canvas.dtype != np.uint8 or canvas.size > MAX_CANVAS_PIXELS * 4:
                raise ImageError("the canvas must be a uint8 image of at most 4 megapixels")
            arrays["canvas"] = canvas
        self.root.mkdir(parents=True, exist_ok=True)
        drawing_id = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
        arrays["created"] = np.array(datetime.now(UTC).isoformat(timespec="microseconds"))
        temp = self.root / f".{drawing_id}{_TEMP_SUFFIX}"
        with open(temp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.root / f"{drawing_id}.npz")
        return drawing_id

    def list(self) -> list[Drawing]:
        """Every readable drawing, newest first; damaged files are skipped."""
        drawings = []
        for path in self._paths():
            try:
                drawings.append(_read(path))
            except (OSError, ValueError, KeyError, DataError, ImageError):
                continue
        return sorted(drawings, key=lambda d: (d.created, d.drawing_id), reverse=True)

    def _paths(self) -> builtins.list[Path]:  # `list` is this class's method
        """The drawing files (by name; not yet read)."""
        try:
            return [p for p in self.root.iterdir() if _DRAWING_ID.match(p.stem)]
        except OSError:  # no drawings yet
            return []

    def __len__(self) -> int:
        """How many drawing files there are, counted by name without reading them (pages
        show the count on every rerun); a damaged file counts here, `list` skips it."""
        return len(self._paths())

    def delete(self, drawing_id: str) -> None:
        """Remove a drawing; DataError when there is no such drawing."""
        if not isinstance(drawing_id, str) or not _DRAWING_ID.match(drawing_id):
            raise DataError(f"{drawing_id!r} is not a drawing id")
        try:
            (self.root / f"{drawing_id}.npz").unlink()
        except FileNotFoundError as error:
            raise DataError(f"drawing {drawing_id!r} does not exist (deleted already?)") from error

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All drawings as MNIST-like arrays: images (N, 28, 28) uint8 and labels (N,) uint8,
        oldest first."""
        return _arrays(self.list()[::-1])

    def fingerprint(self) -> str:
        """Changes whenever a drawing is added or deleted (for caching scores).

        From the file names alone: it is asked for once per run on Results, and reading
        every drawing each time would cost runs x drawings file reads.
        """
        return ",".join(sorted(path.stem for path in self._paths()))

    def export_npz(self) -> bytes:
        """The set as one `.npz`: `x` (N, 28, 28) uint8, `y` (N,) uint8 and `ids`, oldest first,
        in MNIST's layout (load it with `numpy.load`)."""
        drawings = self.list()[::-1]
        images, labels = _arrays(drawings)
        ids = np.array([d.drawing_id for d in drawings])
        buffer = io.BytesIO()
        np.savez_compressed(buffer, x=images, y=labels, ids=ids)
        return buffer.getvalue()


def _arrays(drawings: list[Drawing]) -> tuple[np.ndarray, np.ndarray]:
    images = np.zeros((len(drawings), *IMAGE_SHAPE), dtype=np.uint8)
    for row, drawing in enumerate(drawings):
        images[row] = drawing.digit
    return images, np.array([d.label for d in drawings], dtype=np.uint8)


def mix_into(
    data: MnistData, images: np.ndarray, labels: np.ndarray, share: float = DRAWINGS_SHARE
) -> MnistData:
    """`data` with the drawings added to its training set, repeated so that they make up about
    `share` of it (at most `MAX_REPEATS` times each).

    They go first: `train` holds out the *last* training samples for validation, so the
    drawings are trained on, never validated on. The test set is MNIST's, unchanged.
    """
    if len(images) == 0:
        raise DataError("there are no drawings to mix in: add some on the Sketch page first")
    repeats = int(np.clip(round(share * len(data.x_train) / len(images)), 1, MAX_REPEATS))
    return MnistData(
        np.concatenate([np.repeat(images, repeats, axis=0), data.x_train]),
        np.concatenate([np.repeat(labels, repeats), data.y_train]),
        data.x_test,
        data.y_test,
        source=f"{data.source} + {len(images)} of your drawings (x{repeats})",
    )


def _as_uint8_digit(digit: np.ndarray) -> np.ndarray:
    pixels = np.asarray(digit)
    if pixels.shape != IMAGE_SHAPE:
        raise ImageError(f"a drawing must be 28x28 pixels, got shape {pixels.shape}")
    if pixels.dtype == np.uint8:
        return pixels.copy()
    if not np.issubdtype(pixels.dtype, np.floating) or not np.all(np.isfinite(pixels)):
        raise ImageError("a drawing must be uint8, or floats in [0, 1] without NaN")
    return np.round(np.clip(pixels, 0.0, 1.0) * PIXEL_MAX).astype(np.uint8)


def _read(path: Path) -> Drawing:
    with np.load(path, allow_pickle=False) as saved:
        digit = _as_uint8_digit(saved["digit"])
        label = int(saved["label"])
        created = str(saved["created"])
    if not 0 <= label <= 9:
        raise DataError(f"{path.name}: label {label} is not a digit")
    return Drawing(path.stem, label, digit, created, path)
