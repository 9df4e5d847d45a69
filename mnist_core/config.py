"""Training configuration: one frozen, validated dataclass and the named presets.

A `TrainConfig` that exists is a valid one: `__post_init__` checks every field and raises
`ConfigError` naming the field and its allowed range, so nothing invalid ever reaches training.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from mnist_core.errors import ConfigError

ARCHITECTURES = ("mlp", "cnn")
OPTIMIZERS = ("adam", "sgd", "rmsprop")

# Allowed ranges, shared by validation, the command line and the dashboard's widgets.
# The upper bounds keep one request from exhausting the memory of a small hosted demo.
LIMITS: dict[str, tuple[float, float]] = {
    "hidden_units": (1, 2048),  # units per dense layer
    "hidden_layers": (1, 4),  # number of dense hidden layers
    "conv_filters": (1, 256),  # filters per convolution block
    "conv_blocks": (1, 3),  # number of convolution blocks
    "dropout_rate": (0.0, 0.9),
    "learning_rate": (1e-6, 1.0),
    "batch_size": (1, 4096),
    "epochs": (1, 200),
    "patience": (0, 50),
    "validation_split": (0.0, 0.5),
    "seed": (0, 2**31 - 1),
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a model is built and trained.

    Two runs with equal configs (seed included) on the same machine give the same history.
    """

    architecture: str = "mlp"  # "mlp": dense layers on raw pixels; "cnn": convolution blocks
    hidden_units: tuple[int, ...] = (256, 128)  # dense layers after the input (MLP) or convs
    conv_filters: tuple[int, ...] = (32, 64)  # one entry per convolution block (CNN only)
    dropout_rate: float = 0.4  # after every hidden dense layer; fights overfitting
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    lr_decay: bool = False  # cosine decay to 0 over all epochs: higher final accuracy
    batch_size: int = 128
    epochs: int = 20  # upper bound; early stopping may end sooner
    patience: int = 5  # epochs without val_loss improvement before stopping; 0 = off
    validation_split: float = 0.1  # last fraction of the training set, held out
    seed: int = 42  # weights, shuffling, dropout and augmentation
    augment: bool = False  # random shifts, rotations and zoom of training images

    def __post_init__(self) -> None:
        _check_choice("architecture", self.architecture, ARCHITECTURES)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_int_tuple("hidden_units", self.hidden_units, "hidden_layers", allow_empty=True)
        _check_int_tuple("conv_filters", self.conv_filters, "conv_blocks", allow_empty=False)
        _check_float("dropout_rate", self.dropout_rate, closed_low=True)
        _check_float("learning_rate", self.learning_rate, closed_low=True)
        _check_float("validation_split", self.validation_split, closed_low=True)
        for name in ("batch_size", "epochs", "patience", "seed"):
            _check_int(name, getattr(self, name))
        for name in ("augment", "lr_decay"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, f"must be true or false, got {getattr(self, name)!r}")
        if self.patience > 0 and self.validation_split == 0:
            raise ConfigError(
                "patience",
                "early stopping watches the validation loss: set validation_split above 0 "
                "or patience to 0",
            )

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TrainConfig:
        """The preset called `name` ("mlp" or "cnn") with some fields replaced.

        Raises ConfigError for an unknown preset, an unknown field or an invalid value.
        """
        if name not in PRESETS:
            raise ConfigError("preset", f"unknown preset {name!r}; choose one of {list(PRESETS)}")
        return PRESETS[name].replace(**overrides)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed, validated again."""
        known = {f.name for f in dataclasses.fields(self)}
        for name in changes:
            if name not in known:
                raise ConfigError(name, f"unknown setting; known settings: {sorted(known)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The config saved by `to_dict`; raises ConfigError for unknown or invalid fields."""
        if not isinstance(values, dict):
            raise ConfigError("config", "must be a JSON object of settings")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(unknown[0], f"unknown setting; known settings: {sorted(known)}")
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**fixed)


def parse_sizes(name: str, text: str) -> tuple[int, ...]:
    """Layer sizes typed as text ("256, 128") as a tuple; raises ConfigError naming `name`."""
    parts = [part.strip() for part in str(text).replace(";", ",").split(",") if part.strip()]
    try:
        return tuple(int(part) for part in parts)
    except ValueError as error:
        raise ConfigError(
            name, f"expected whole numbers separated by commas, like 256, 128; got {text!r}"
        ) from error


def _describe_range(name: str) -> str:
    low, high = LIMITS[name]
    return f"from {_number(low)} to {_number(high)}"


def _number(value: float) -> str:
    # Whole numbers in full: ":g" would show the largest seed as 2.14748e+09.
    return str(value) if isinstance(value, int) else f"{value:g}"


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(name, f"must be one of {list(choices)}, got {value!r}")


def _check_int(name: str, value: object, limit_name: str | None = None) -> None:
    limit_name = limit_name or name
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            name, f"must be a whole number {_describe_range(limit_name)}, got {value!r}"
        )
    low, high = LIMITS[limit_name]
    if not low <= value <= high:
        raise ConfigError(name, f"must be {_describe_range(limit_name)}, got {value}")


def _check_float(name: str, value: object, closed_low: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(name, f"must be a number {_describe_range(name)}, got {value!r}")
    low, high = LIMITS[name]
    if math.isnan(value) or not low <= value <= high or (not closed_low and value == low):
        raise ConfigError(name, f"must be {_describe_range(name)}, got {value}")


def _check_int_tuple(name: str, value: object, count_name: str, allow_empty: bool) -> None:
    if not isinstance(value, tuple):
        raise ConfigError(name, f"must be a list of whole numbers, got {value!r}")
    low, high = LIMITS[count_name]
    if not (allow_empty and len(value) == 0) and not low <= len(value) <= high:
        raise ConfigError(
            name, f"must have {_describe_range(count_name)} entries, got {len(value)}"
        )
    for item in value:
        _check_int(name, item, limit_name=name)


PRESETS: dict[str, TrainConfig] = {
    # The original script's recipe, unchanged.
    "mlp": TrainConfig(),
    "cnn": TrainConfig(
        architecture="cnn",
        hidden_units=(128,),
        conv_filters=(32, 64),
        dropout_rate=0.4,
        optimizer="adam",
        learning_rate=1e-3,
        lr_decay=True,
        batch_size=128,
        epochs=12,
        patience=0,
        validation_split=0.1,
        augment=False,
    ),
}
