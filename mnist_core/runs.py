"""The run store: trained runs on disk, saved atomically, listed, loaded and deleted.

Layout: one folder per run under the store's root (`MNIST_RUNS_DIR`, default `runs/`):
`config.json`, `history.json`, `metrics.json` and `model.keras`, and `logs/`, its epochs as
TensorBoard event files (`tensorboard_logs`). A run is written under a hidden temporary name
(`.tmp-*`) and renamed into place when complete, so a crash mid-save never leaves a run that
lists but cannot load, and two processes saving at once never collide. What a killed process
leaves behind is never listed, and removed an hour later (`RunStore.clean`).

While a run trains, `RunRecorder` saves checkpoints of its best model under the run's id with
the status "interrupted" and the training process's id: hidden from listings while that process
lives, listed (and loadable) if it was killed. The final save replaces the checkpoint.
Training writes the run's event files as each epoch ends, in a folder reserved under the run's
id before its first save; each save of the run keeps them (`RunStore.reserve`).

Models are loaded in Keras safe mode, after checking that their architecture holds no Python
code (Lambda layers, classes from outside Keras): a model file can never run code here.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import platform
import re
import secrets
import shutil
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_core.config import RUN_ID, TrainConfig
from mnist_core.errors import ConfigError, ModelError, first_line
from mnist_core.evaluate import Evaluation
from mnist_core.run_record import (
    COMPLETED,
    INTERRUPTED,
    METRICS_FILE,
    STOPPED,
    Ensemble,
    ImportedModel,
    RunMetrics,
)
from mnist_core.serving import ONNX_FILE

if TYPE_CHECKING:  # types only: saving a result is a worker's job, with TensorFlow loaded
    from mnist_core.ml.train import TrainResult

RUN_FILES = ("config.json", "history.json", METRICS_FILE, "model.keras")
PROBABILITIES_FILE = "test_probabilities.npy"  # (10000, 10) float32, so results need no model
REPLAY_FILE = "replay.npz"  # the replay panel's test indices and answers after each epoch
LOGS_DIR = "logs"  # the run's epochs as TensorBoard event files, written while it trains
# A packed run's files: the run folder's own, and its event files' (`logs/train/events...`).
_PACKED_NAME = re.compile(rf"(?:{LOGS_DIR}/[^./\\][^/\\]*/)?[^./\\][^/\\]*")
# The small pretrained run shipped with the package, so the app can predict before any training.
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
_TEMP_PREFIX = ".tmp-"
_REPLACED = f"{_TEMP_PREFIX}replaced-"  # a run's previous version, while it is being replaced
# Leftovers of interrupted saves older than this are removed: a save takes seconds.
STALE_TEMP_SECONDS = 3600.0


@dataclass(frozen=True)
class RunInfo:
    """What a saved run holds, without its model (loading that needs TensorFlow)."""

    run_id: str
    path: Path
    config: TrainConfig
    history: dict[str, list[float]]
    metrics: RunMetrics
    pretrained: bool = False  # shipped with the package: read-only

    @property
    def model_path(self) -> Path:
        return self.path / "model.keras"

    @property
    def log_dir(self) -> Path:
        """Its TensorBoard event files (`logs/train`, `logs/validation`); runs saved before
        they were written, imported runs and ensembles have none."""
        return self.path / LOGS_DIR

    @property
    def onnx_path(self) -> Path:
        """The model as ONNX, for predictions without TensorFlow (runs saved before it was
        written, and checkpoints, may lack it: `serving.Conversions` writes it)."""
        return self.path / ONNX_FILE

    @property
    def test_accuracy(self) -> float:
        return self.metrics.test_accuracy

    @property
    def val_accuracy(self) -> float | None:
        """The validation accuracy of the epoch whose weights the run keeps (`best_epoch`):
        what sweeps rank trials by. None without a validation split or a finished epoch."""
        return self.metrics.val_accuracy

    @property
    def status(self) -> str:
        """ "completed", "stopped" (by the user) or "interrupted" (the process died: the best
        model of its last checkpoint)."""
        return self.metrics.status

    @property
    def status_text(self) -> str:
        return self.metrics.status_text

    @property
    def training(self) -> bool:
        """A checkpoint of a run that a live process on this machine is still training."""
        return self.status == INTERRUPTED and _process_alive(self.metrics.writer_pid)

    @property
    def ensemble(self) -> Ensemble | None:
        """For an ensemble run (`ensemble.py`): its members and whether it averages shifted
        copies (`tta`); None for a trained run."""
        return self.metrics.ensemble

    @property
    def imported(self) -> ImportedModel | None:
        """For a model imported from a Keras file (`model_import.py`): its name, file name,
        SHA-256, and the input layout, output kind and pixel scale found; None otherwise."""
        return self.metrics.imported_model

    @property
    def trained_here(self) -> bool:
        """Built from its `config` by this tool (not an ensemble or an imported model): its
        settings can be trained again and its weights fine-tuned."""
        return self.ensemble is None and self.imported is None

    @property
    def model_name(self) -> str:
        """The model in a few words: its architecture, "ensemble of 3 deep" or "imported
        mnist_model.h5"."""
        if self.imported is not None:
            return f"imported {self.title}"
        if self.ensemble is None:
            return self.config.architecture
        members = self.ensemble.members
        kinds = sorted({member.architecture for member in members})
        tta = " + shifts" if self.ensemble.tta else ""
        return f"ensemble of {len(members)} {'/'.join(kinds)}{tta}"

    @property
    def title(self) -> str:
        """The model's name for headings: an architecture in capitals ("VGG"), an imported
        model's name as given."""
        if self.imported is not None:
            return self.imported.name or self.imported.file
        return self.model_name.upper()

    @property
    def label(self) -> str:
        """One line for pickers: id, model, accuracy, status."""
        status = f", {self.status}" if self.status != COMPLETED else ""
        shipped = " (pretrained)" if self.pretrained else ""
        return f"{self.run_id} · {self.model_name} · {self.test_accuracy:.2%}{status}{shipped}"

    def evaluation(self, labels: np.ndarray) -> Evaluation | None:
        """The run's answers on the test set whose true digits are `labels` (N,), as saved
        with it; None for a run saved without them or scored on another test set."""
        probabilities = self.test_probabilities()
        if probabilities is None or len(probabilities) != len(labels):
            return None
        return Evaluation(labels=np.asarray(labels, dtype=np.uint8), probabilities=probabilities)

    def test_probabilities(self) -> np.ndarray | None:
        """(N_test, 10) float32 saved with the run, or None for runs saved without them."""
        path = self.path / PROBABILITIES_FILE
        try:
            probabilities = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if probabilities.ndim != 2 or probabilities.shape[1] != 10:
            return None
        return probabilities.astype(np.float32, copy=False)

    def replay(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The replay panel: test indices (P,) and answers after each epoch (E, P, 10);
        None for runs saved without it (or with a damaged file)."""
        try:
            with np.load(self.path / REPLAY_FILE, allow_pickle=False) as saved:
                indices, answers = saved["indices"], saved["probabilities"]
        except (OSError, ValueError, KeyError):
            return None
        if indices.ndim != 1 or answers.ndim != 3 or answers.shape[1:] != (len(indices), 10):
            return None
        return indices.astype(np.int64), answers.astype(np.float32, copy=False)

    def history_csv(self) -> str:
        """The history as CSV: a header `epoch,loss,accuracy,...`, then one row per epoch."""
        keys = [key for key, values in self.history.items() if values]
        lines = [",".join(["epoch", *keys])]
        epochs = max((len(self.history[key]) for key in keys), default=0)
        for epoch in range(epochs):
            row = [str(epoch + 1)]
            row += [
                repr(self.history[key][epoch]) if epoch < len(self.history[key]) else ""
                for key in keys
            ]
            lines.append(",".join(row))
        return "\n".join(lines) + "\n"


class RunStore:
    """Runs under `root` (default: env `MNIST_RUNS_DIR`, else `runs/` in the working dir).

    Runs under `pretrained` (e.g. `PRETRAINED_DIR`, shipped with the package) are listed too,
    but never written or deleted.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        pretrained: str | os.PathLike[str] | None = None,
    ) -> None:
        self.root = Path(root or os.environ.get("MNIST_RUNS_DIR") or "runs").resolve()
        self.pretrained = Path(pretrained).resolve() if pretrained else None

    def save(
        self,
        result: TrainResult,
        data_source: str | None = None,
        data_fingerprint: str | None = None,
        *,
        run_id: str | None = None,
        checkpoint: bool = False,
    ) -> str:
        """Save a `train.TrainResult` and return its run id.

        A new run, or with `run_id` a replacement of that run (a checkpoint being updated or
        finished, or the folder `reserve` made for it). `checkpoint=True` saves it as
        "interrupted", owned by this process (see `RunRecorder`). The data's source and
        fingerprint default to the result's.
        """
        config: TrainConfig = result.config

        def write(folder: Path) -> None:
            evaluation = result.evaluation
            status = STOPPED if result.stopped else COMPLETED
            metrics = RunMetrics(
                status=INTERRUPTED if checkpoint else status,
                test_accuracy=evaluation.accuracy,
                test_loss=evaluation.loss,
                confusion_matrix=tuple(map(tuple, evaluation.confusion.tolist())),
                precision=tuple(evaluation.precision.tolist()),
                recall=tuple(evaluation.recall.tolist()),
                epochs_run=result.epochs_run,
                best_epoch=result.best_epoch,
                val_accuracy=kept_val_accuracy(result.history, result.best_epoch),
                stopped=result.stopped,
                stopped_early=result.stopped_early,
                train_seconds=result.train_seconds,
                seed=config.seed,
                # Sub-second, so runs saved within one second still list newest first.
                created=datetime.now(UTC).isoformat(timespec="microseconds"),
                data_source=result.data_source if data_source is None else data_source,
                data_fingerprint=result.data_fingerprint
                if data_fingerprint is None
                else data_fingerprint,
                versions=_library_versions(),
                writer_pid=os.getpid() if checkpoint else None,
            ).replace(**(result.extra_metrics or {}))
            _write_json(folder / "config.json", config.to_dict())
            _write_json(folder / "history.json", result.history)
            _write_json(folder / METRICS_FILE, metrics.to_json())
            np.save(folder / PROBABILITIES_FILE, evaluation.probabilities.astype(np.float32))
            replay, indices = result.replay, result.replay_indices
            if replay is not None and indices is not None and len(replay):
                np.savez_compressed(
                    folder / REPLAY_FILE, indices=indices, probabilities=replay.astype(np.float16)
                )
            model = _without_optimizer(result.model)
            model.save(folder / "model.keras")
            if not checkpoint:  # a checkpoint gets its ONNX file when first used, if ever
                from mnist_core.ml.onnx_export import ExportRefused, convert_run

                try:
                    convert_run(folder)
                except ExportRefused:
                    pass  # recorded in the folder: predictions fall back to Keras

        kind = result.kind or config.architecture
        return self.add(write, kind, replacing=run_id)

    def reserve(self, architecture: str) -> str:
        """A new run id whose folder is made now, for the files a training writes before its
        run is first saved: its event files (`RunRecorder.reserve_logs`).

        `save(result, run_id=...)` later puts the run in it, keeping its `logs/`. Until then it
        is not listed; if nothing is saved in it because its process was killed, `clean`
        removes it once its files are an hour old.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        return self._claim(architecture, lambda path: path.mkdir())

    def _claim(
        self, architecture: str, take: Callable[[Path], None], run_id: str | None = None
    ) -> str:
        """`take(folder)` for the folder of `run_id` (default: a new id), which fails when the
        folder exists; then a new id, until one is free. The id taken."""
        run_id = run_id or _new_run_id(architecture)
        for _ in range(10):
            try:
                take(self.root / run_id)
                return run_id
            except OSError:
                if not (self.root / run_id).exists():
                    raise
                run_id = _new_run_id(architecture)  # another process took the same id
        raise ModelError(f"cannot find a free run id in {self.root}; try again")

    def add(
        self,
        write: Callable[[Path], None],
        architecture: str,
        *,
        replacing: str | None = None,
        run_id: str | None = None,
    ) -> str:
        """Add a run whose files `write(folder)` puts into an empty folder; its run id.

        The folder stays hidden (`.tmp-*`) until `write` returns. Then it is renamed into
        place under a new id, never over an existing run, or with `replacing` it takes the
        place of that run (see `_replace`). If anything raises, the folder is removed and
        the error propagates. `run_id` is the id to take if it is free.
        """
        run_id = replacing or run_id or _new_run_id(architecture)
        self.root.mkdir(parents=True, exist_ok=True)
        # Unique even if another process draws the same run id in the same second.
        temp = self.root / f"{_TEMP_PREFIX}{run_id}-{secrets.token_hex(4)}"
        temp.mkdir()
        try:
            write(temp)
            _fsync_dir(temp)
            if replacing is None:
                # The complete folder under its id, or a new one if another process took it.
                run_id = self._claim(architecture, lambda path: os.rename(temp, path), run_id)
            else:
                self._replace(temp, self._path(replacing))
            _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        return run_id

    def _replace(self, temp: Path, path: Path) -> None:
        """Put the complete `temp` folder in place of the run at `path`.

        The old version is moved aside first; a process killed between the two renames
        leaves it aside, and `clean` puts it back.
        """
        if self.pretrained is not None and path.parent == self.pretrained:
            raise ModelError(f"run {path.name!r} ships with the app and cannot be replaced")
        moved = self.root / f"{_REPLACED}{path.name}-{secrets.token_hex(3)}"
        aside: Path | None = moved
        try:
            os.rename(path, moved)
        except FileNotFoundError:
            aside = None  # deleted meanwhile: the new version simply takes its place
        if aside is not None and (aside / LOGS_DIR).is_dir():
            # The event files that training writes as it goes stay with the run: back at the
            # same path once `temp` is in place, where their writer finds them again (it
            # checks its file's path before each write).
            os.rename(aside / LOGS_DIR, temp / LOGS_DIR)
        os.rename(temp, path)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)

    def list(self, include_training: bool = False) -> list[RunInfo]:
        """Every complete run, newest first. Incomplete or unreadable folders are skipped,
        and so are checkpoints of runs still training (`RunInfo.training`) unless
        `include_training`.

        Stale leftovers of interrupted saves are removed on the way (see `clean`).
        """
        self.clean()
        runs = []
        for folder in (self.root, self.pretrained):
            if folder is None or not folder.is_dir():
                continue
            for path in folder.iterdir():
                if RUN_ID.match(path.name):
                    try:
                        run = self._read(path)
                    except ModelError:
                        continue
                    if include_training or not run.training:
                        runs.append(run)
        return sorted(runs, key=lambda run: (run.metrics.created, run.run_id), reverse=True)

    def signature(self) -> tuple[tuple[str, int, int], ...]:
        """What changes whenever `list` would read something new, without reading any run:
        each run folder's name and its metrics.json's modification time and inode (every
        save writes a whole folder and renames it into place)."""
        entries = []
        for folder in (self.root, self.pretrained):
            if folder is None:
                continue
            try:
                names = [path.name for path in folder.iterdir() if RUN_ID.match(path.name)]
            except OSError:  # no runs yet
                continue
            for name in names:
                try:
                    stat = (folder / name / METRICS_FILE).stat()
                    entries.append((f"{folder}/{name}", stat.st_mtime_ns, stat.st_ino))
                except OSError:
                    entries.append((f"{folder}/{name}", -1, -1))
        return tuple(sorted(entries))

    def clean(self, max_age: float = STALE_TEMP_SECONDS) -> builtins.list[str]:  # not .list
        """Remove the `.tmp-*` leftovers of killed saves and deletions, and the folders
        `reserve` made for trainings killed before their first save, older than `max_age`
        seconds (by modification time); return their names.

        A save in progress keeps its temporary folder fresh, and a training its event files,
        so neither is ever touched.
        """
        try:
            entries = [
                path
                for path in self.root.iterdir()
                if path.name.startswith(_TEMP_PREFIX) or _unsaved_reservation(path)
            ]
        except OSError:  # no store yet, or not readable: nothing to clean
            return []
        removed = []
        now = time.time()
        for path in entries:
            if path.name.startswith(_REPLACED) and self._put_back(path):
                continue
            try:
                if now - _last_change(path) < max_age:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except OSError:  # removed by another process meanwhile, or not ours to remove
                continue
            removed.append(path.name)
        return removed

    def _put_back(self, aside: Path) -> bool:
        """Restore a run's previous version left aside by a replacement that was killed."""
        run_id = aside.name[len(_REPLACED) :].rsplit("-", 1)[0]
        if not RUN_ID.match(run_id) or (self.root / run_id).exists():
            return False
        try:
            os.rename(aside, self.root / run_id)
        except OSError:
            return False
        return True

    def get(self, run_id: str) -> RunInfo:
        """The run `run_id`; raises ModelError when it does not exist or is damaged."""
        return self._read(self._path(run_id))

    def latest(self) -> RunInfo | None:
        runs = self.list()
        return runs[0] if runs else None

    def best(self) -> RunInfo | None:
        """The run with the highest test accuracy, or None when there is none."""
        runs = self.list()
        return max(runs, key=lambda run: run.test_accuracy) if runs else None

    def load_model(self, run_id: str) -> Any:
        """The run's Keras model, loaded in safe mode (no code from the file is run)."""
        from mnist_core.ml.model_files import load_model_file

        return load_model_file(self.get(run_id).model_path)

    def export_h5(self, run_id: str, destination: str | os.PathLike[str] | None = None) -> Path:
        """Write the run's model in the legacy HDF5 format (`model.h5` in the run by default)."""
        target = Path(destination) if destination else self._path(run_id) / "model.h5"
        model = self.load_model(run_id)
        temp = target.with_name(f"{_TEMP_PREFIX}{secrets.token_hex(4)}-{target.name}")
        model.save(temp)
        os.replace(temp, target)
        return target

    def delete(self, run_id: str) -> None:
        """Remove a run. It disappears from listings at once, even if removal is interrupted."""
        path = self._path(run_id)
        if self.pretrained is not None and path.parent == self.pretrained:
            raise ModelError(f"run {run_id!r} ships with the app and cannot be deleted")
        trash = self.root / f"{_TEMP_PREFIX}deleted-{run_id}-{secrets.token_hex(3)}"
        try:
            os.rename(path, trash)
        except FileNotFoundError as error:
            raise ModelError(f"run {run_id!r} does not exist (it may have been deleted)") from error
        shutil.rmtree(trash, ignore_errors=True)

    def add_packed(self, packed: bytes, run_id: str | None = None) -> str:
        """Add a run that `pack_run` packed (on another machine, say); its id: `run_id` if
        given and free, else a new one.

        Raises ModelError when `packed` is not a packed run; nothing is saved then.
        """
        try:
            with zipfile.ZipFile(io.BytesIO(packed)) as archive:
                names = archive.namelist()
                unsafe = [n for n in names if not _PACKED_NAME.fullmatch(n)]
                missing = [n for n in RUN_FILES if n not in names]
                if unsafe or missing:
                    raise ModelError(
                        f"not a packed run ({'unexpected ' + unsafe[0] if unsafe else 'no '}"
                        f"{'' if unsafe else missing[0]})"
                    )
                config = TrainConfig.from_dict(json.loads(archive.read("config.json")))

                def write(folder: Path) -> None:
                    for name in names:
                        (folder / name).parent.mkdir(parents=True, exist_ok=True)
                        (folder / name).write_bytes(archive.read(name))
                    self._read(folder)  # complete and readable, or nothing is saved

                return self.add(write, config.architecture, run_id=run_id)
        except (zipfile.BadZipFile, ValueError, KeyError, ConfigError) as error:
            raise ModelError(f"not a packed run ({first_line(error)})") from error

    def _path(self, run_id: str) -> Path:
        if not isinstance(run_id, str) or not RUN_ID.match(run_id):
            raise ModelError(f"{run_id!r} is not a run id; list the runs to pick one")
        if self.pretrained is not None and (self.pretrained / run_id).is_dir():
            return self.pretrained / run_id
        return self.root / run_id

    def _read(self, path: Path) -> RunInfo:
        if not path.is_dir():
            raise ModelError(f"run {path.name!r} does not exist (it may have been deleted)")
        missing = [name for name in RUN_FILES if not (path / name).is_file()]
        if missing:
            raise ModelError(f"run {path.name!r} is incomplete (missing {', '.join(missing)})")
        try:
            config = TrainConfig.from_dict(_read_json(path / "config.json"))
            history = _read_json(path / "history.json")
            saved = _read_json(path / METRICS_FILE)
            metrics = RunMetrics.from_json(saved)
            if "val_accuracy" not in saved:  # saved before metrics.json held it
                metrics = metrics.replace(
                    val_accuracy=kept_val_accuracy(history, metrics.best_epoch)
                )
        except (OSError, ValueError, KeyError, TypeError, ConfigError) as error:
            raise ModelError(f"run {path.name!r} is damaged ({error}); delete it") from error
        return RunInfo(
            path.name, path, config, history, metrics, pretrained=path.parent == self.pretrained
        )


class RunRecorder:
    """Saves one training run under one id: its event files and checkpoints while it trains,
    then the result.

    Pass `reserve_logs(...)` as `train(log_dir=...)`, `checkpoint` as
    `train(on_checkpoint=...)`, `finish` to save the final result (it replaces the checkpoint)
    and `abandon` when training fails, which leaves the last checkpoint listed as an
    interrupted run.
    """

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.run_id: str | None = None  # once a checkpoint or the result is saved
        self._reserved: str | None = None  # the id `reserve_logs` took for the run

    def reserve_logs(self, architecture: str) -> Path:
        """Reserve the run's id and folder now (`RunStore.reserve`); its `logs/` folder, where
        training writes the run's event files from the first epoch on."""
        self._reserved = self.store.reserve(architecture)
        return self.store.root / self._reserved / LOGS_DIR

    def checkpoint(self, result: TrainResult) -> None:
        self.run_id = self.store.save(result, run_id=self.run_id or self._reserved, checkpoint=True)

    def finish(self, result: TrainResult) -> str:
        self.run_id = self.store.save(result, run_id=self.run_id or self._reserved)
        return self.run_id

    def abandon(self) -> None:
        """Release the checkpoint (if any) from this process: it lists as "interrupted". A
        training that failed before its first save leaves nothing, not even event files."""
        if self.run_id is None:
            if self._reserved is not None:
                shutil.rmtree(self.store.root / self._reserved, ignore_errors=True)
            return
        path = self.store.root / self.run_id
        try:
            metrics = RunMetrics.from_json(_read_json(path / METRICS_FILE))
            temp = path / f"{_TEMP_PREFIX}{METRICS_FILE}"
            _write_json(temp, metrics.replace(writer_pid=None).to_json())
            os.replace(temp, path / METRICS_FILE)
        except (OSError, ValueError):
            pass  # deleted meanwhile, or damaged: it is not listed either way


def run_rows(runs: Iterable[RunInfo]) -> list[dict[str, Any]]:
    """One row per run for the tables that list runs (Home, `python -m mnist_core runs`)."""
    return [
        {
            "run_id": run.run_id,
            "architecture": run.config.architecture,
            "model": run.model_name,
            "test_accuracy": run.test_accuracy,
            "epochs_run": run.metrics.epochs_run,
            "status": run.status,
            "status_text": run.status_text,
            "pretrained": run.pretrained,
            "created": run.metrics.created,
        }
        for run in runs
    ]


def kept_val_accuracy(history: dict[str, list[float]], best_epoch: Any) -> float | None:
    """The validation accuracy in `history` of the 1-based epoch `best_epoch`, or None."""
    values = history.get("val_accuracy") or []
    if not isinstance(best_epoch, int) or not 0 < best_epoch <= len(values):
        return None
    return float(values[best_epoch - 1])


def _without_optimizer(model: Any) -> Any:
    """The same layers and weights as an uncompiled model.

    A `.keras` file always holds the optimizer's state, which for Adam is twice the weights:
    runs are used for prediction and evaluation only, so they are saved without it.
    """
    import keras

    return keras.Model(model.inputs, model.outputs, name=model.name)


def pack_run(path: str | os.PathLike[str]) -> bytes:
    """The files of the run folder at `path`, its event files included, as zip bytes for
    `RunStore.add_packed`."""
    folder = Path(path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # the files are compact
        for file in sorted([*folder.iterdir(), *folder.glob(f"{LOGS_DIR}/*/*")]):
            name = file.relative_to(folder).as_posix()
            if file.is_file() and _PACKED_NAME.fullmatch(name):
                archive.write(file, name)
    return buffer.getvalue()


def _unsaved_reservation(path: Path) -> bool:
    """Whether `path` is a folder `RunStore.reserve` made that no save has filled: a run's
    name, and nothing in it but event files."""
    if not RUN_ID.match(path.name) or path.is_symlink() or not path.is_dir():
        return False
    try:
        return {child.name for child in path.iterdir()} <= {LOGS_DIR}
    except OSError:  # removed meanwhile
        return False


def _last_change(path: Path) -> float:
    """When `path` was last modified: for a reserved run folder, its newest file (a training
    appends to its event files without touching the folders)."""
    if path.name.startswith(_TEMP_PREFIX):
        return path.lstat().st_mtime
    return max(item.lstat().st_mtime for item in (path, *path.rglob("*")))


def _new_run_id(architecture: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{stamp}-{architecture}-{secrets.token_hex(3)}"


def _write_json(path: Path, value: Any) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2, default=_json_default)
        handle.flush()
        os.fsync(handle.fileno())


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _process_alive(pid: Any) -> bool:
    """Whether a process with this id runs on this machine (and may be ours to ask)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _library_versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }
