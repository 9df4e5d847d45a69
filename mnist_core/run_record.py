"""A run's record: what its training measured and how it ended (`metrics.json`), typed.

`RunMetrics.from_json` is the one reader of that file, for the run store and for bundles
(which treat it as hostile): every key it knows is checked against `_FIELDS`, keys it does not
know are kept as they are (`extra`) and written back unchanged by `to_json`. Every save of this
tool has written the required keys from the first version on, so a run without them is damaged.

`status` is "completed", "stopped" (by the user) or "interrupted" (its process died: the run
holds its last checkpoint); `status_text` says how it ended in the words Results, Home and the
CLI show.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mnist_core.data import NUM_CLASSES

METRICS_FILE = "metrics.json"
COMPLETED, STOPPED, INTERRUPTED = "completed", "stopped", "interrupted"
_Record = TypeVar("_Record")
# Written even when None ("no validation score"); other None-valued fields are left out.
_KEPT_WHEN_NONE = frozenset({"val_accuracy"})


@dataclass(frozen=True, kw_only=True)
class ImportedModel:
    """Where an imported model came from and how it is read (`ml.model_import`)."""

    name: str  # how the run is shown: given at import, else the file's name
    file: str
    sha256: str = ""
    bytes: int | None = None
    parameters: int | None = None  # its weights
    input: str  # the layout found: "(28, 28)", "(28, 28, 1)" or "(784,)"
    output: str  # "probabilities", or "logits" (a softmax is added)
    scale: str = ""  # the pixels it expects: "[0, 1]" or "[0, 255]"
    scale_note: str = ""  # how the scale was decided
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ImportedModel:
        """From a record `_is_imported_model` accepted."""
        return _record(cls, value)


@dataclass(frozen=True, kw_only=True)
class EnsembleMember:
    """What an ensemble keeps of a member run: enough to list and retrain it."""

    run_id: str
    config: Mapping[str, Any] = field(default_factory=dict)  # its TrainConfig, as a dict
    test_accuracy: float | None = None
    val_accuracy: float | None = None
    epochs_run: int | None = None
    train_seconds: float | None = None
    seed: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        return str(self.config.get("architecture", "?"))


@dataclass(frozen=True, kw_only=True)
class Ensemble:
    """An ensemble run's members, and whether it also averages shifted copies (`tta`)."""

    tta: bool
    shifts: tuple[tuple[int, int], ...] = ()  # (rows, columns) of each copy, with tta
    members: tuple[EnsembleMember, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Ensemble:
        """From a record `_is_ensemble` accepted."""
        return _record(
            cls,
            {
                **value,
                "shifts": tuple((int(row), int(column)) for row, column in value.get("shifts", ())),
                "members": tuple(_record(EnsembleMember, m) for m in value["members"]),
            },
        )


@dataclass(frozen=True, kw_only=True)
class RunMetrics:
    """A run's `metrics.json`, its fields in the file's order. Epochs count from 1;
    accuracies are fractions."""

    status: str
    test_accuracy: float
    test_loss: float
    confusion_matrix: tuple[tuple[int, ...], ...]  # [true digit][predicted digit] -> count
    precision: tuple[float, ...]  # per digit, on the test set
    recall: tuple[float, ...]
    epochs_run: int
    best_epoch: int  # the epoch whose weights the run keeps (0: none finished)
    # The validation accuracy of `best_epoch` (what sweeps rank trials by); None without a
    # validation split or a finished epoch, and for imported models. Runs saved before it was
    # recorded get it from their history when read (`RunStore`).
    val_accuracy: float | None
    stopped: bool  # by the user
    stopped_early: bool  # by early stopping
    train_seconds: float
    seed: int
    created: str = ""  # ISO 8601 with microseconds, UTC
    data_source: str = ""
    data_fingerprint: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)  # python, tensorflow, keras, ...
    ensemble: Ensemble | None = None  # for an ensemble run
    imported_model: ImportedModel | None = None  # for a model imported from a Keras file
    imported_from: str | None = None  # the run's id where its bundle was exported
    writer_pid: int | None = None  # the process training a checkpoint; None when saved
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys this version does not know

    @property
    def status_text(self) -> str:
        """How the run ended, in words: "completed", "early stop", "stopped by user" or
        "interrupted" (its process died; it holds its last checkpoint)."""
        if self.status == INTERRUPTED:
            return "interrupted"
        if self.stopped:
            return "stopped by user"
        return "early stop" if self.stopped_early else "completed"

    @property
    def ending(self) -> str:
        """How the run ended, as Train tells the visitor who started it: "completed",
        "stopped early (no better validation loss)", "stopped by you" or "interrupted"."""
        return {
            "early stop": "stopped early (no better validation loss)",
            "stopped by user": "stopped by you",
        }.get(self.status_text, self.status_text)

    @property
    def kind(self) -> str | None:
        """ "ensemble" or "imported" for runs not trained from a config here, else None."""
        if self.ensemble is not None:
            return "ensemble"
        return "imported" if self.imported_model is not None else None

    def to_json(self) -> dict[str, Any]:
        """The record as `metrics.json` holds it (None-valued optional keys left out)."""
        plain: dict[str, Any] = _plain(self)
        return plain

    @classmethod
    def from_json(cls, value: Any) -> RunMetrics:
        """The record in `value` (metrics.json's content), checked key by key.

        Raises:
            ValueError: `value` is not an object, lacks a required key or holds a value of the
                wrong kind; the message names the key and what it must be.
        """
        if not isinstance(value, dict):
            raise ValueError(f"{METRICS_FILE} must be an object")
        known: dict[str, Any] = {}
        for key, (required, check, expected) in _FIELDS.items():
            if key not in value:
                if required:
                    raise ValueError(f"{METRICS_FILE} lacks {key}")
            elif not check(value[key]):
                raise ValueError(
                    f"{METRICS_FILE}: {key} must be {expected}, got {value[key]!r:.60}"
                )
            else:
                known[key] = value[key]
        return cls(
            status=known["status"],
            test_accuracy=float(known["test_accuracy"]),
            test_loss=float(known["test_loss"]),
            confusion_matrix=tuple(tuple(row) for row in known["confusion_matrix"]),
            precision=tuple(float(v) for v in known["precision"]),
            recall=tuple(float(v) for v in known["recall"]),
            epochs_run=known["epochs_run"],
            best_epoch=known["best_epoch"],
            stopped=known["stopped"],
            stopped_early=known["stopped_early"],
            train_seconds=float(known["train_seconds"]),
            seed=known["seed"],
            val_accuracy=_float_or_none(known.get("val_accuracy")),
            created=known.get("created", ""),
            data_source=known.get("data_source", ""),
            data_fingerprint=known.get("data_fingerprint", ""),
            versions=dict(known.get("versions", {})),
            ensemble=_optional(Ensemble.from_json, known.get("ensemble")),
            imported_model=_optional(ImportedModel.from_json, known.get("imported_model")),
            imported_from=known.get("imported_from"),
            writer_pid=known.get("writer_pid"),
            extra={key: item for key, item in value.items() if key not in _FIELDS},
        )

    def replace(self, **changes: Any) -> RunMetrics:
        """A copy with `changes` (field names; a misspelt one raises TypeError)."""
        return dataclasses.replace(self, **changes)


def _plain(value: Any) -> Any:
    """`value` with records, tuples and mappings as JSON's objects and lists; a record's
    fields in order, None-valued ones left out (but `_KEPT_WHEN_NONE`), then the keys it did
    not know."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            item.name: getattr(value, item.name)
            for item in dataclasses.fields(value)
            if item.name != "extra"
        }
        plain = {
            key: _plain(item)
            for key, item in fields.items()
            if item is not None or key in _KEPT_WHEN_NONE
        }
        return {**plain, **_plain(getattr(value, "extra", {}))}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _record(cls: Callable[..., _Record], value: Mapping[str, Any]) -> _Record:
    """`cls` (a record with `extra`) from the keys of `value` it has fields for; the others
    go to `extra`."""
    names = {item.name for item in dataclasses.fields(cls)} - {"extra"}  # type: ignore[arg-type]
    known = {key: item for key, item in value.items() if key in names and item is not None}
    return cls(**known, extra={key: item for key, item in value.items() if key not in names})


def _optional(read: Callable[[Mapping[str, Any]], _Record], value: Any) -> _Record | None:
    return None if value is None else read(value)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def is_number(value: Any) -> bool:
    """A JSON number (not a boolean)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_count(value: Any) -> bool:
    """A whole number ≥ 0 (not a boolean)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_text(value: Any) -> bool:
    """A string of at most 1,000 characters."""
    return isinstance(value, str) and len(value) <= 1_000


def _are_numbers(count: int) -> Callable[[Any], bool]:
    return lambda value: (
        isinstance(value, list) and len(value) == count and all(map(is_number, value))
    )


def _is_fraction(value: Any) -> bool:
    return is_number(value) and 0 <= value <= 1


def _is_flag(value: Any) -> bool:
    return isinstance(value, bool)


def _is_text_map(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and len(value) <= 20
        and all(is_text(key) and is_text(text) for key, text in value.items())
    )


def _has(value: dict[str, Any], check: Callable[[Any], bool], *keys: str) -> bool:
    """Whether each of `keys` that `value` holds passes `check`, or is null."""
    return all(value.get(key) is None or check(value[key]) for key in keys)


def _is_member(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and is_text(value.get("run_id"))
        and isinstance(value.get("config", {}), dict)
        and _has(value, _is_fraction, "test_accuracy", "val_accuracy")
        and _has(value, is_count, "epochs_run", "seed")
        and _has(value, is_number, "train_seconds")
    )


def _is_shift(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(map(_is_small_int, value))


def _is_small_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= 28


def _is_ensemble(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("tta"), bool)
        and isinstance(value.get("shifts", []), list)
        and len(value.get("shifts", [])) <= 25
        and all(map(_is_shift, value.get("shifts", [])))
        and isinstance(value.get("members"), list)
        and 2 <= len(value["members"]) <= 10
        and all(map(_is_member, value["members"]))
    )


def _is_imported_model(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and len(value) <= 20
        and all(is_text(key) for key in value)
        and all(is_text(value.get(key)) for key in ("name", "file", "input", "output"))
        and _has(value, is_text, "sha256", "scale", "scale_note")
        and _has(value, is_count, "bytes", "parameters")
    )


def _is_confusion_matrix(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == NUM_CLASSES
        and all(isinstance(row, list) and len(row) == NUM_CLASSES for row in value)
        and all(is_count(count) for row in value for count in row)
    )


# The keys of metrics.json: (required, check, what it must be, for messages).
_FIELDS: dict[str, tuple[bool, Callable[[Any], bool], str]] = {
    "status": (
        True,
        lambda value: value in (COMPLETED, STOPPED, INTERRUPTED),
        '"completed", "stopped" or "interrupted"',
    ),
    "test_accuracy": (True, _is_fraction, "from 0 to 1"),
    "test_loss": (True, is_number, "a number"),
    "confusion_matrix": (True, _is_confusion_matrix, "10 rows of 10 counts"),
    "precision": (True, _are_numbers(NUM_CLASSES), "a list of 10 numbers"),
    "recall": (True, _are_numbers(NUM_CLASSES), "a list of 10 numbers"),
    "epochs_run": (True, is_count, "a whole number"),
    "best_epoch": (True, is_count, "a whole number"),
    "val_accuracy": (
        False,
        lambda value: value is None or _is_fraction(value),
        "from 0 to 1, or null",
    ),
    "stopped": (True, _is_flag, "true or false"),
    "stopped_early": (True, _is_flag, "true or false"),
    "train_seconds": (True, lambda value: is_number(value) and value >= 0, "seconds"),
    "seed": (True, is_count, "a whole number"),
    "created": (False, is_text, "a date"),
    "data_source": (False, is_text, "text"),
    "data_fingerprint": (False, is_text, "text"),
    "ensemble": (
        False,
        _is_ensemble,
        "an ensemble's members (2 to 10, each with its run_id) and tta",
    ),
    "imported_model": (
        False,
        _is_imported_model,
        "an imported model's name, file, input and output",
    ),
    "imported_from": (False, is_text, "a run id"),
    "versions": (False, _is_text_map, "library names and versions"),
    "writer_pid": (False, lambda value: value is None or is_count(value), "a process id"),
}
