"""Links: a training setup as a web address's query, and back
(`/train?preset=cnn&learning_rate=0.003`).

A link's parameters are `preset`, the names of `TrainConfig`'s fields (one schema with the
command line's options and the Train form's keys, all derived from the dataclass) and `grid`, a
sweep's setting and values as the command line's `--grid` writes them
(`grid=learning_rate=0.0005,0.001,0.003`, once or twice). A link names the preset closest to
its config and only the settings that differ from it, so links stay short; values are written
exactly (`format_setting`), layer sizes separated by commas (`hidden_units=256,128`).

Opening a link never fails: `parse_link` applies every valid value and says, for each
parameter it could not use, which it is, what is wrong and what was kept. Links get old, are
edited by hand, and come from servers with other caps.

This module imports neither TensorFlow nor Streamlit.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from mnist_core.config import PRESETS, DemoLimits, TrainConfig, format_setting, parse_setting
from mnist_core.errors import ConfigError
from mnist_core.sweeps import MAX_AXES, Axis, parse_axis

PRESET = "preset"  # the parameter naming the preset a link starts from
GRID = "grid"  # the parameter holding one swept setting and its values
DEFAULT_PRESET = next(iter(PRESETS))  # a link without a preset starts where Train does
FIELDS = tuple(field.name for field in dataclasses.fields(TrainConfig))


@dataclass(frozen=True)
class Link:
    """What a link asks for, as far as it is valid."""

    preset: str  # the preset it starts from
    config: TrainConfig  # that preset with the link's valid settings, within the server's caps
    axes: tuple[Axis, ...]  # its sweep's grid: up to MAX_AXES settings and their values
    problems: tuple[str, ...]  # a sentence for each parameter not used as given

    def summary(self) -> str:
        """The link's setup in words: `the cnn preset with learning_rate=0.003 · epochs=3`."""
        changes = _changes(PRESETS[self.preset], self.config)
        text = f"the {self.preset} preset"
        if not changes:
            return text
        return f"{text} with " + " · ".join(
            f"{name}={format_setting(value)}" for name, value in changes.items()
        )


def closest_preset(config: TrainConfig) -> str:
    """The preset `config` differs from in the fewest settings (the first of equals)."""
    return min(PRESETS, key=lambda name: len(_changes(PRESETS[name], config)))


def link_query(config: TrainConfig, axes: Sequence[Axis] = ()) -> str:
    """The query of a Train link to `config` (and a sweep of `axes` on top of it): its
    closest preset and the settings that differ from it, `preset=cnn&learning_rate=0.003`."""
    preset = closest_preset(config)
    params: dict[str, str | list[str]] = {PRESET: preset}
    params.update(
        (name, format_setting(value)) for name, value in _changes(PRESETS[preset], config).items()
    )
    if axes:
        params[GRID] = [f"{axis.setting}={values_text(axis)}" for axis in axes]
    # Commas and the = of a grid item are valid in a query: left as they are, links stay legible.
    return urlencode(params, doseq=True, safe=",=")


def values_text(axis: Axis) -> str:
    """A grid's values as `parse_values` reads them back exactly: `0.0005,0.001`, `256+128,64`."""
    return ",".join(format_setting(value).replace(",", "+") for value in axis.values)


def parse_link(
    params: Mapping[str, str | Sequence[str]],
    limits: DemoLimits | None = None,
    run_ids: Collection[str] | None = None,
) -> Link:
    """The setup a link's query parameters ask for; never raises.

    `params` maps each parameter to its value, or to its values when it is given more than
    once: `grid` may be given twice, any other parameter counts with its last value (as the
    browser's address does). Every setting is checked by TrainConfig's own validation, alone
    and with the others; with `limits`, the preset and the settings are lowered to this
    server's caps; with `run_ids`, the run to start from must be one of them. Each parameter
    that cannot be used as given (unknown, not of its kind, out of range, refused in
    combination, above a cap, a grid item a sweep cannot vary) leaves the preset's value and
    adds a problem naming it: `learning_rate: 'abc' is not a number; kept 0.003`.
    """
    values = {
        name: [given] if isinstance(given, str) else list(given) for name, given in params.items()
    }
    problems: list[str] = []
    preset = (values.pop(PRESET, None) or [DEFAULT_PRESET])[-1]
    if preset not in PRESETS:
        problems.append(
            f"preset: {preset!r} is not a preset; choose one of {', '.join(PRESETS)}; "
            f"used {DEFAULT_PRESET}"
        )
        preset = DEFAULT_PRESET
    base = PRESETS[preset] if limits is None else limits.fit(PRESETS[preset])
    grid = values.pop(GRID, [])
    settings = {}
    for name, given in values.items():
        if name not in FIELDS:
            problems.append(_unknown(name))
            continue
        try:
            settings[name] = parse_setting(name, given[-1])
        except ConfigError as error:
            problems.append(_kept(name, error.reason, getattr(base, name)))
    config = _apply(base, settings, problems)
    if run_ids is not None and config.start_from and config.start_from not in run_ids:
        problems.append(
            _kept(
                "start_from",
                f"run {config.start_from} is not on this server (deleted, or the link comes "
                "from another server)",
                base.start_from,
            )
        )
        config = config.replace(start_from=base.start_from)
    if limits is not None:
        fitted = limits.fit(config)
        problems.extend(
            f"{name}: {format_setting(getattr(config, name))} is above this server's limit; "
            f"lowered to {format_setting(getattr(fitted, name))}"
            for name in FIELDS
            if getattr(fitted, name) != getattr(config, name)
        )
        config = fitted
    axes = _parse_grid(grid, problems)
    return Link(preset, config, tuple(axes), tuple(problems))


def _changes(base: TrainConfig, config: TrainConfig) -> dict[str, Any]:
    """The settings of `config` that differ from `base`'s, in the dataclass's order."""
    return {
        name: getattr(config, name)
        for name in FIELDS
        if getattr(config, name) != getattr(base, name)
    }


def _apply(base: TrainConfig, settings: dict[str, Any], problems: list[str]) -> TrainConfig:
    """`base` with `settings`; those refused, alone or in combination, leave base's value."""
    try:
        return base.replace(**settings)
    except ConfigError:
        pass  # some value or combination is refused: find which, one setting at a time
    config = base
    for name in FIELDS:  # the dataclass's order: the architecture before its layers
        if name not in settings:
            continue
        try:
            config = config.replace(**{name: settings[name]})
        except ConfigError as error:
            # The reason may name the other setting of a combination, as in "early stopping
            # watches the validation loss: set validation_split above 0 or patience to 0".
            problems.append(_kept(name, error.reason, getattr(config, name)))
    return config


def _parse_grid(items: list[str], problems: list[str]) -> list[Axis]:
    axes: list[Axis] = []
    for item in items:
        if len(axes) == MAX_AXES:
            problems.append(f"grid: a sweep varies at most {MAX_AXES} settings; ignored {item}")
            continue
        setting = item.partition("=")[0]
        if isinstance(getattr(TrainConfig(), setting, None), tuple):
            # A + typed into an address arrives as a space: layers 256+128 as "256 128".
            item = item.replace(" ", "+")
        try:
            axes.append(parse_axis(item))
        except ConfigError as error:
            problems.append(f"grid: {error}")
    return axes


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, [PRESET, GRID, *FIELDS], n=1)
    hint = (
        f"did you mean {close[0]}?"
        if close
        else f"a link takes {PRESET}, {GRID} and the settings {', '.join(FIELDS)}"
    )
    return f"{name}: not a setting, ignored; {hint}"


def _kept(name: str, reason: str, kept: Any) -> str:
    return f"{name}: {reason}; kept {format_setting(kept) or 'none'}"
