"""The Train form's state: one widget key per `TrainConfig` field, derived from the dataclass.

`to_state(config)` gives the widget values showing a config and `from_state(state)` the config
the widgets describe; other modules fill the form through `fill(config)` and read single
settings through `key(name)`, never by writing `train_*` keys of their own.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, MutableMapping
from typing import Any

from mnist_core.config import PRESETS, TrainConfig, parse_sizes

PRESET = "train_preset"  # the preset picker's key
FIELDS = tuple(field.name for field in dataclasses.fields(TrainConfig))
_TYPES = typing.get_type_hints(TrainConfig)
_SIZES = tuple[int, ...]  # layer sizes: a "256, 128" text field
NETWORK = ("architecture", "hidden_units", "conv_filters")  # what fine-tuning must keep


def key(name: str) -> str:
    """The widget key of the `TrainConfig` field `name`."""
    if name not in _TYPES:
        raise KeyError(f"TrainConfig has no field {name!r}")
    return f"train_{name}"


def to_state(config: TrainConfig) -> dict[str, Any]:
    """The widget values (by key) that show `config`."""
    return {key(name): _to_widget(name, getattr(config, name)) for name in FIELDS}


def from_state(state: Mapping[str, Any]) -> TrainConfig:
    """The config the widgets in `state` describe; raises ConfigError naming a bad field."""
    return TrainConfig(**{name: _from_widget(name, state[key(name)]) for name in FIELDS})


def fill(state: MutableMapping[str, Any], config: TrainConfig, preset: bool = True) -> None:
    """Show `config` in the form; with `preset`, also pick the preset of its architecture."""
    state.update(to_state(config))
    if preset:
        state[PRESET] = preset_for(config)


def fill_network(state: MutableMapping[str, Any], config: TrainConfig) -> None:
    """Show `config`'s network (architecture and layer sizes) in the form, nothing else."""
    values = to_state(config)
    state.update({key(name): values[key(name)] for name in NETWORK})


def preset_for(config: TrainConfig) -> str:
    """The preset `config` is, else the first preset of its architecture, else the first."""
    same = [name for name, preset in PRESETS.items() if preset == config.replace(seed=preset.seed)]
    kin = [name for name, preset in PRESETS.items() if preset.architecture == config.architecture]
    return (same or kin or list(PRESETS))[0]


def _to_widget(name: str, value: Any) -> Any:
    if _TYPES[name] == _SIZES:
        return ", ".join(map(str, value))
    return value


def _from_widget(name: str, value: Any) -> Any:
    kind = _TYPES[name]
    if kind == _SIZES:
        return parse_sizes(name, value)
    if kind is float:  # 6 significant digits: sliders add float noise (0.30000000000000004)
        return float(f"{float(value):.6g}")
    if kind is int:
        return int(value)
    return value
