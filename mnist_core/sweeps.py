"""Sweeps: several trainings that differ in up to two settings, ranked by validation accuracy.

A sweep is a base config (a preset, perhaps with changes) and a grid: one or two settings with
the values to try, written `learning_rate=0.0005,0.001,0.003` (`parse_axis`). `expand` turns
them into one `TrainConfig` per combination, each checked by TrainConfig's own validation; a
job service runs them as jobs (`submit_sweep`). Their runs become `TrialResult`s, ranked by the
validation accuracy of the epoch each run keeps; `best` picks the first. The test set is
shown beside it and never used to choose: a model chosen on the test set would make its test
accuracy an optimistic guess.

This module imports neither TensorFlow nor Streamlit.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mnist_core.config import TrainConfig, parse_setting
from mnist_core.errors import ConfigError, ModelError
from mnist_core.job_service import max_sweep

if TYPE_CHECKING:
    from mnist_core.job_service import JobStatus
    from mnist_core.runs import RunInfo, RunStore

MAX_AXES = 2  # settings one sweep varies: a table and a plot still show every combination
# The settings a sweep may vary, with example values (the page's suggestions, the messages'):
# the learning rate's three times any other's two make the default cap's six trials.
SWEEPABLE: dict[str, str] = {
    "learning_rate": "0.0005,0.001,0.003",
    "dropout_rate": "0.2,0.4",
    "batch_size": "64,256",
    "epochs": "5,10",
    "hidden_units": "128,256+128",
    "conv_filters": "16+32,32+64",
    "optimizer": "adam,sgd",
    "lr_decay": "true,false",
    "patience": "0,5",
    "shift": "0,0.08",
    "augment": "true,false",
    "elastic": "true,false",
    "architecture": "mlp,cnn",
    "seed": "1,2",
}
# Why the other settings cannot be swept.
_NOT_SWEPT = {
    "validation_split": "trials are compared on the same validation digits; set it for all trials",
    "drawings": "set it for all trials",
    "start_from": "set it for all trials",
    "restore_best": "keeping the best epoch picks on the validation digits too, which favours "
    "those trials; set it for all trials",
}
_TYPES = {f.name: f.type for f in dataclasses.fields(TrainConfig)}


@dataclass(frozen=True)
class Axis:
    """One swept setting and the values its trials take, in the order given."""

    setting: str  # a key of SWEEPABLE
    values: tuple[Any, ...]  # each valid for that TrainConfig field


def parse_axis(item: str) -> Axis:
    """A grid item, `SETTING=VALUE,VALUE,...` (`learning_rate=0.001,0.003`), as an Axis.

    A layer-size value joins its layers with `+` (`hidden_units=128,256+128`); a switch is
    true or false. Raises ConfigError naming the setting and saying what to write.
    """
    setting, equals, text = str(item).partition("=")
    if not equals:
        raise ConfigError(
            "grid", f"{item!r} is not SETTING=VALUE,VALUE...; write e.g. learning_rate=0.001,0.003"
        )
    return parse_values(setting, text)


def parse_values(setting: str, text: str) -> Axis:
    """The values typed for `setting` (`"0.001, 0.003"`, comma-separated) as an Axis.

    Each value is checked by TrainConfig's own validation. Raises ConfigError for an unknown
    or unsweepable setting, a value that is not of its kind or outside its range, no values,
    or a value given twice.
    """
    setting = setting.strip().replace("-", "_")
    if setting not in SWEEPABLE:
        if setting in _NOT_SWEPT:
            raise ConfigError(setting, f"cannot be swept: {_NOT_SWEPT[setting]}")
        raise ConfigError(
            setting or "grid", f"is not a setting a sweep can vary; choose one of {list(SWEEPABLE)}"
        )
    parts = [part.strip() for part in str(text).split(",")]
    if not any(parts):
        raise ConfigError(setting, f"has no values; write them like {SWEEPABLE[setting]}")
    values: list[Any] = []
    for part in parts:
        value = _parse_value(setting, part)
        TrainConfig().replace(**{setting: value})  # raises ConfigError naming the setting
        if value in values:
            raise ConfigError(
                setting, f"{format_value(value)} is given twice; give each value once"
            )
        values.append(value)
    return Axis(setting, tuple(values))


def _parse_value(setting: str, text: str) -> Any:
    if _TYPES[setting].startswith("tuple"):  # one value of a list: its layers joined by +
        try:
            return tuple(int(size) for size in text.split("+"))
        except ValueError:
            reason = f"{text!r} is not layer sizes joined by +"
    else:
        try:
            return parse_setting(setting, text)
        except ConfigError as error:
            reason = error.reason
    raise ConfigError(setting, f"{reason}; write values like {SWEEPABLE[setting]}")


def format_value(value: Any) -> str:
    """A setting's value as a grid item writes it (`0.001`, `256+128`, `true`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "+".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def describe_settings(settings: dict[str, Any]) -> str:
    """Settings as one label: `learning_rate=0.001 · dropout_rate=0.2`."""
    return " · ".join(f"{name}={format_value(value)}" for name, value in settings.items())


def expand(base: TrainConfig, axes: Sequence[Axis], limit: int | None = None) -> list[TrainConfig]:
    """One config per combination of the axes' values on top of `base`: the first axis
    varies slowest, then the second, each in the order its values were given.

    `limit` is the most trials allowed (default `max_sweep()`, `MNIST_MAX_SWEEP`).

    Raises:
        ConfigError: no axis, more than two, a setting given twice, more trials than
            `limit`, a base without a validation split (trials are ranked on it), or a
            combination TrainConfig refuses (naming that trial's settings).
    """
    if not axes:
        raise ConfigError("grid", "choose a setting to vary and its values")
    names = [axis.setting for axis in axes]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(
                name,
                f"is given twice; give all its values at once, like {name}={SWEEPABLE[name]}",
            )
    if len(axes) > MAX_AXES:
        raise ConfigError(
            "grid",
            f"a sweep varies at most {MAX_AXES} settings, got {len(axes)} "
            f"({', '.join(names)}); drop one",
        )
    if base.validation_split == 0:
        raise ConfigError(
            "validation_split",
            "a sweep ranks its trials by validation accuracy: set validation_split above 0",
        )
    limit = max_sweep() if limit is None else limit
    count = math.prod(len(axis.values) for axis in axes)
    if count > limit:
        sizes = " × ".join(str(len(axis.values)) for axis in axes)
        raise ConfigError(
            "grid",
            f"{sizes} values make {count} trials, more than this server's limit of {limit} "
            "(MNIST_MAX_SWEEP); remove some values",
        )
    configs = []
    for combination in itertools.product(*(axis.values for axis in axes)):
        changes = dict(zip(names, combination, strict=True))
        try:
            configs.append(base.replace(**changes))
        except ConfigError as error:
            raise ConfigError(
                error.field, f"{error.reason} (in the trial {describe_settings(changes)})"
            ) from error
    return configs


def swept_settings(configs: Sequence[TrainConfig]) -> list[str]:
    """The settings in which a sweep's trials (in `expand`'s order) differ, the one that
    varies slowest first: the sweep's first axis, then its second."""
    varying = [
        name
        for name in _TYPES
        if len({format_value(getattr(config, name)) for config in configs}) > 1
    ]

    def first_change(name: str) -> int:
        values = [getattr(config, name) for config in configs]
        return next(index for index in range(1, len(values)) if values[index] != values[0])

    return sorted(varying, key=first_change, reverse=True)


@dataclass(frozen=True)
class TrialResult:
    """A finished (or stopped) trial's run, as a sweep's table shows it."""

    run_id: str
    settings: dict[str, Any]  # the swept settings' values, first axis first
    val_accuracy: float | None  # at the epoch the run keeps: what trials are ranked by
    test_accuracy: float  # shown beside it, never used to rank or to choose
    epochs_run: int
    train_seconds: float
    status: str  # the run's: completed or stopped

    @property
    def label(self) -> str:
        return describe_settings(self.settings)


def results(runs: Iterable[RunInfo], settings: Sequence[str]) -> list[TrialResult]:
    """The trials' runs as results, the highest validation accuracy first (runs without one
    last); equal ones keep the order of `runs`. The test accuracy plays no part."""
    rows = [
        TrialResult(
            run_id=run.run_id,
            settings={name: getattr(run.config, name) for name in settings},
            val_accuracy=run.val_accuracy,
            test_accuracy=run.test_accuracy,
            epochs_run=run.metrics.epochs_run,
            train_seconds=run.metrics.train_seconds,
            status=run.status,
        )
        for run in runs
    ]
    return sorted(rows, key=lambda row: (row.val_accuracy is None, -(row.val_accuracy or 0.0)))


def best(ranked: Iterable[TrialResult]) -> TrialResult | None:
    """The trial with the highest validation accuracy (the first of equals); None when no
    trial has one. Never chosen by test accuracy."""
    scored = [(row.val_accuracy, row) for row in ranked if row.val_accuracy is not None]
    return max(scored, key=lambda pair: pair[0], default=(None, None))[1]


def sweep_results(trials: Sequence[JobStatus], store: RunStore) -> list[TrialResult]:
    """The results of a sweep's trials (`JobStatus`es of one sweep) that finished or were
    stopped with a run, ranked; runs deleted meanwhile are left out."""
    settings = swept_settings([trial.request.config for trial in trials])
    runs = []
    for trial in trials:
        if trial.state in ("finished", "stopped") and trial.current.run_id:
            try:
                runs.append(store.get(trial.current.run_id))
            except ModelError:
                continue
    return results(runs, settings)
