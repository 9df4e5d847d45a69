"""Tests for mnist_core.config: the presets, every validation rule and its message, round trips."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from mnist_core.config import LIMITS, PRESETS, TrainConfig, parse_sizes
from mnist_core.errors import ConfigError, MnistCoreError


def test_mlp_preset_is_the_original_recipe() -> None:
    config = TrainConfig.preset("mlp")

    assert config.to_dict() == {
        "architecture": "mlp",
        "hidden_units": [256, 128],
        "conv_filters": [32, 64],
        "dropout_rate": 0.4,
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "lr_decay": False,
        "batch_size": 128,
        "epochs": 20,
        "patience": 5,
        "validation_split": 0.1,
        "seed": 42,
        "augment": False,
    }
    assert config == TrainConfig()


def test_cnn_preset_fields() -> None:
    config = TrainConfig.preset("cnn")

    assert config.architecture == "cnn"
    assert config.conv_filters == (32, 64)
    assert config.hidden_units == (128,)
    assert config.dropout_rate == 0.4
    assert (config.optimizer, config.learning_rate, config.lr_decay) == ("adam", 1e-3, True)
    assert (config.batch_size, config.epochs, config.patience) == (128, 12, 0)
    assert config.validation_split == 0.1
    assert config.augment is False
    assert sorted(PRESETS) == ["cnn", "mlp"]


def test_preset_overrides_are_applied_and_validated() -> None:
    config = TrainConfig.preset("mlp", epochs=3, hidden_units=(32,))

    assert (config.epochs, config.hidden_units, config.batch_size) == (3, (32,), 128)
    with pytest.raises(ConfigError) as info:
        TrainConfig.preset("mlp", batch_size=10**6)
    assert info.value.field == "batch_size"


def test_unknown_preset_is_rejected_with_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig.preset("resnet")

    assert info.value.field == "preset"
    assert str(info.value) == "preset: unknown preset 'resnet'; choose one of ['mlp', 'cnn']"


NAN = math.nan


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("architecture", "rnn", "must be one of ['mlp', 'cnn'], got 'rnn'"),
        ("architecture", None, "must be one of ['mlp', 'cnn'], got None"),
        ("optimizer", "adagrad", "must be one of ['adam', 'sgd', 'rmsprop'], got 'adagrad'"),
        ("hidden_units", [256, 128], "must be a list of whole numbers, got [256, 128]"),
        ("hidden_units", (0,), "must be from 1 to 2048, got 0"),
        ("hidden_units", (10**7,), "must be from 1 to 2048, got 10000000"),
        ("hidden_units", (256, 128.0), "must be a whole number from 1 to 2048, got 128.0"),
        ("hidden_units", (True,), "must be a whole number from 1 to 2048, got True"),
        ("hidden_units", (8, 8, 8, 8, 8), "must have from 1 to 4 entries, got 5"),
        ("conv_filters", (), "must have from 1 to 3 entries, got 0"),
        ("conv_filters", (32, 257), "must be from 1 to 256, got 257"),
        ("dropout_rate", 0.95, "must be from 0 to 0.9, got 0.95"),
        ("dropout_rate", -0.1, "must be from 0 to 0.9, got -0.1"),
        ("dropout_rate", NAN, "must be from 0 to 0.9, got nan"),
        ("dropout_rate", "0.4", "must be a number from 0 to 0.9, got '0.4'"),
        ("dropout_rate", True, "must be a number from 0 to 0.9, got True"),
        ("learning_rate", 0.0, "must be from 1e-06 to 1, got 0.0"),
        ("learning_rate", 2.0, "must be from 1e-06 to 1, got 2.0"),
        ("learning_rate", math.inf, "must be from 1e-06 to 1, got inf"),
        ("learning_rate", NAN, "must be from 1e-06 to 1, got nan"),
        ("batch_size", 0, "must be from 1 to 4096, got 0"),
        ("batch_size", 10**6, "must be from 1 to 4096, got 1000000"),
        ("batch_size", 128.0, "must be a whole number from 1 to 4096, got 128.0"),
        ("batch_size", True, "must be a whole number from 1 to 4096, got True"),
        ("batch_size", "128", "must be a whole number from 1 to 4096, got '128'"),
        ("epochs", 0, "must be from 1 to 200, got 0"),
        ("epochs", 10**5, "must be from 1 to 200, got 100000"),
        ("epochs", NAN, "must be a whole number from 1 to 200, got nan"),
        ("epochs", False, "must be a whole number from 1 to 200, got False"),
        ("patience", -1, "must be from 0 to 50, got -1"),
        ("patience", 51, "must be from 0 to 50, got 51"),
        ("validation_split", 0.6, "must be from 0 to 0.5, got 0.6"),
        ("validation_split", NAN, "must be from 0 to 0.5, got nan"),
        ("validation_split", None, "must be a number from 0 to 0.5, got None"),
        ("seed", -1, "must be from 0 to 2147483647, got -1"),
        ("seed", 2**31, "must be from 0 to 2147483647, got 2147483648"),
        ("augment", 1, "must be true or false, got 1"),
        ("lr_decay", "yes", "must be true or false, got 'yes'"),
    ],
)
def test_invalid_value_raises_config_error_naming_the_field(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{field: value})

    assert info.value.field == field
    assert str(info.value) == f"{field}: {message}"


def test_config_error_is_a_value_error_and_a_package_error() -> None:
    with pytest.raises(ValueError, match="^epochs: "):
        TrainConfig(epochs=0)
    assert issubclass(ConfigError, MnistCoreError)


@pytest.mark.parametrize(
    "field", ["batch_size", "epochs", "patience", "seed", "dropout_rate", "learning_rate"]
)
def test_limits_are_inclusive(field: str) -> None:
    low, high = LIMITS[field]

    assert getattr(TrainConfig(**{field: low}), field) == low
    assert getattr(TrainConfig(**{field: high}), field) == high


def test_hidden_unit_and_filter_limits_are_inclusive() -> None:
    config = TrainConfig(hidden_units=(2048, 1, 1, 1), conv_filters=(256, 1, 1))

    assert config.hidden_units == (2048, 1, 1, 1)
    assert TrainConfig(hidden_units=()).hidden_units == ()  # softmax regression on pixels


def test_early_stopping_needs_a_validation_split() -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig(patience=3, validation_split=0.0)

    assert info.value.field == "patience"
    assert "set validation_split above 0 or patience to 0" in str(info.value)
    assert TrainConfig(patience=0, validation_split=0.0).validation_split == 0.0


def test_config_is_frozen() -> None:
    config = TrainConfig()

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3  # type: ignore[misc]


def test_to_dict_from_dict_round_trip_through_json() -> None:
    config = TrainConfig.preset("cnn", hidden_units=(64, 32), seed=3, augment=True)

    values = json.loads(json.dumps(config.to_dict()))

    assert values["hidden_units"] == [64, 32]
    assert values["conv_filters"] == [32, 64]
    restored = TrainConfig.from_dict(values)
    assert restored == config
    assert restored.hidden_units == (64, 32)


def test_from_dict_fills_missing_fields_with_defaults() -> None:
    assert TrainConfig.from_dict({"epochs": 3}) == TrainConfig(epochs=3)


def test_from_dict_rejects_unknown_fields() -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"epochs": 3, "hiden_units": [256]})

    assert info.value.field == "hiden_units"
    assert "unknown setting" in str(info.value)
    assert "'hidden_units'" in str(info.value)


def test_from_dict_rejects_invalid_values_and_non_objects() -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"dropout_rate": 5})
    assert info.value.field == "dropout_rate"

    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict([["epochs", 3]])  # type: ignore[arg-type]
    assert info.value.field == "config"


def test_replace_validates_again_and_rejects_unknown_fields() -> None:
    assert TrainConfig().replace(epochs=7).epochs == 7

    with pytest.raises(ConfigError) as info:
        TrainConfig().replace(epochs=0)
    assert info.value.field == "epochs"

    with pytest.raises(ConfigError) as info:
        TrainConfig().replace(layers=3)
    assert info.value.field == "layers"
    assert "unknown setting" in str(info.value)


@pytest.mark.parametrize(
    ("text", "sizes"), [("256, 128", (256, 128)), ("64", (64,)), ("32;16,", (32, 16)), ("", ())]
)
def test_parse_sizes(text: str, sizes: tuple[int, ...]) -> None:
    assert parse_sizes("hidden_units", text) == sizes


def test_parse_sizes_rejects_non_numbers_naming_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        parse_sizes("conv_filters", "32, x")

    assert info.value.field == "conv_filters"
    assert "whole numbers separated by commas" in str(info.value)
