"""Tests for mnist_core.config: the presets, every validation rule and its message, round trips,
and the caps of a hosted demo (DemoLimits)."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_core.config import (
    DEMO_LIMIT_VARIABLES,
    LIMITS,
    MAX_UPLOAD_BYTES,
    PRESETS,
    DemoLimits,
    TrainConfig,
    format_setting,
    parse_setting,
    parse_sizes,
)
from mnist_core.errors import ConfigError, MnistCoreError

ARCHITECTURE_LIST = "['mlp', 'cnn', 'vgg', 'strided', 'deep']"
# Differs from TrainConfig() in every field: a round trip of it shows any field left out.
EVERY_FIELD_CHANGED = TrainConfig(
    architecture="vgg",
    hidden_units=(64, 32),
    conv_filters=(8, 16),
    dropout_rate=0.35,
    optimizer="rmsprop",
    learning_rate=3e-5,
    lr_decay=True,
    batch_size=256,
    epochs=7,
    patience=2,
    restore_best=False,
    validation_split=0.15,
    seed=9,
    augment=True,
    shift=0.05,
    elastic=True,
    drawings=True,
    start_from="20261206-061500-cnn-abcdef",
)


def test_mlp_preset_is_the_original_recipe_with_its_learning_rate_annealed() -> None:
    config = TrainConfig.preset("mlp")

    assert config.to_dict() == {
        "architecture": "mlp",
        "hidden_units": [256, 128],
        "conv_filters": [32, 64],
        "dropout_rate": 0.4,
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "lr_decay": True,  # the only change from the original script
        "batch_size": 128,
        "epochs": 20,
        "patience": 5,
        "restore_best": True,  # the best epoch's weights, as the original's checkpoint kept
        "validation_split": 0.1,
        "seed": 42,
        "augment": False,
        "shift": 0.0,
        "elastic": False,
        "drawings": False,
        "start_from": "",
    }
    assert config == TrainConfig(lr_decay=True)
    assert not TrainConfig().lr_decay  # the defaults are the original script exactly


def test_cnn_preset_fields() -> None:
    config = TrainConfig.preset("cnn")

    assert config.architecture == "strided"
    assert config.conv_filters == (24, 48)
    assert config.hidden_units == (256,)
    assert config.dropout_rate == 0.3
    assert (config.optimizer, config.learning_rate, config.lr_decay) == ("adam", 3e-3, True)
    assert (config.batch_size, config.epochs, config.patience) == (128, 6, 0)
    assert (config.augment, config.shift, config.elastic) == (False, 0.08, False)
    assert config.validation_split == 0.1
    assert config.restore_best is False  # the cosine schedule's last epoch
    assert list(PRESETS) == ["mlp", "quick", "cnn", "deep"]  # the Train page's order


def test_quick_preset_is_a_short_annealed_cnn_and_every_preset_has_a_label() -> None:
    from mnist_core.config import PRESET_LABELS

    config = TrainConfig.preset("quick")

    assert (config.architecture, config.conv_filters, config.hidden_units) == (
        "cnn",
        (32, 64),
        (128,),
    )
    assert (config.epochs, config.learning_rate, config.lr_decay) == (2, 3e-3, True)
    assert (config.dropout_rate, config.shift, config.augment) == (0.2, 0.0, False)
    assert config.restore_best is False and config.patience == 0
    assert set(PRESET_LABELS) == set(PRESETS)


def test_deep_preset_is_the_cnn_recipe_on_a_wider_vgg_trained_longer() -> None:
    config = TrainConfig.preset("deep")

    assert config == TrainConfig.preset("cnn", architecture="vgg", conv_filters=(32, 64), epochs=25)
    assert (config.architecture, config.lr_decay, config.restore_best) == ("vgg", True, False)


def test_best_averages_three_deep_runs_over_shifted_copies() -> None:
    from mnist_core.config import ENSEMBLE_PRESETS

    best = ENSEMBLE_PRESETS["best"]

    assert (best.members, best.tta, best.runs_text()) == (3, True, "3 deep runs of 25 epochs")
    member = best.member_config(seed=4)
    assert member == TrainConfig.preset("deep", seed=4)
    assert (member.architecture, member.conv_filters, member.epochs) == ("vgg", (32, 64), 25)
    assert best.member_config(epochs=2).epochs == 2  # a setting given wins


@pytest.mark.parametrize("architecture", ["vgg", "strided", "deep"])
def test_a_vgg_or_deep_network_has_room_for_two_blocks(architecture: str) -> None:
    assert TrainConfig(architecture=architecture, conv_filters=(16, 32)).conv_filters == (16, 32)
    with pytest.raises(ConfigError) as info:
        TrainConfig(architecture=architecture, conv_filters=(16, 32, 64))
    assert info.value.field == "conv_filters"
    assert f"a {architecture} network has room for at most 2 blocks" in str(info.value)
    assert TrainConfig(architecture="cnn", conv_filters=(16, 32, 64)).conv_filters[2] == 64


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
    assert (
        str(info.value)
        == "preset: unknown preset 'resnet'; choose one of ['mlp', 'quick', 'cnn', 'deep']"
    )


NAN = math.nan


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("architecture", "rnn", f"must be one of {ARCHITECTURE_LIST}, got 'rnn'"),
        ("architecture", None, f"must be one of {ARCHITECTURE_LIST}, got None"),
        ("optimizer", "adagrad", "must be one of ['adam', 'sgd', 'rmsprop'], got 'adagrad'"),
        ("optimizer", 3, "must be one of ['adam', 'sgd', 'rmsprop'], got 3"),
        ("hidden_units", [256, 128], "must be a list of whole numbers, got [256, 128]"),
        ("hidden_units", "256", "must be a list of whole numbers, got '256'"),
        ("hidden_units", None, "must be a list of whole numbers, got None"),
        ("hidden_units", (0,), "must be from 1 to 2048, got 0"),
        ("hidden_units", (-5,), "must be from 1 to 2048, got -5"),
        ("hidden_units", (10**7,), "must be from 1 to 2048, got 10000000"),
        ("hidden_units", (256, 128.0), "must be a whole number from 1 to 2048, got 128.0"),
        ("hidden_units", (True,), "must be a whole number from 1 to 2048, got True"),
        ("hidden_units", (8, 8, 8, 8, 8), "must have from 1 to 4 entries, got 5"),
        ("conv_filters", (), "must have from 1 to 3 entries, got 0"),
        ("conv_filters", (32, 257), "must be from 1 to 256, got 257"),
        ("conv_filters", (-1,), "must be from 1 to 256, got -1"),
        ("conv_filters", (NAN,), "must be a whole number from 1 to 256, got nan"),
        ("conv_filters", [32], "must be a list of whole numbers, got [32]"),
        ("dropout_rate", 0.95, "must be from 0 to 0.9, got 0.95"),
        ("dropout_rate", -0.1, "must be from 0 to 0.9, got -0.1"),
        ("dropout_rate", NAN, "must be from 0 to 0.9, got nan"),
        ("dropout_rate", math.inf, "must be from 0 to 0.9, got inf"),
        ("dropout_rate", "0.4", "must be a number from 0 to 0.9, got '0.4'"),
        ("dropout_rate", True, "must be a number from 0 to 0.9, got True"),
        ("learning_rate", 0.0, "must be from 1e-06 to 1, got 0.0"),
        ("learning_rate", 2.0, "must be from 1e-06 to 1, got 2.0"),
        ("learning_rate", math.inf, "must be from 1e-06 to 1, got inf"),
        ("learning_rate", NAN, "must be from 1e-06 to 1, got nan"),
        ("learning_rate", -1e-3, "must be from 1e-06 to 1, got -0.001"),
        ("batch_size", 0, "must be from 1 to 4096, got 0"),
        ("batch_size", -1, "must be from 1 to 4096, got -1"),
        ("batch_size", 10**6, "must be from 1 to 4096, got 1000000"),
        ("batch_size", 128.0, "must be a whole number from 1 to 4096, got 128.0"),
        ("batch_size", True, "must be a whole number from 1 to 4096, got True"),
        ("batch_size", "128", "must be a whole number from 1 to 4096, got '128'"),
        ("epochs", 0, "must be from 1 to 200, got 0"),
        ("epochs", -5, "must be from 1 to 200, got -5"),
        ("epochs", 10**5, "must be from 1 to 200, got 100000"),
        ("epochs", NAN, "must be a whole number from 1 to 200, got nan"),
        ("epochs", False, "must be a whole number from 1 to 200, got False"),
        ("patience", -1, "must be from 0 to 50, got -1"),
        ("patience", 51, "must be from 0 to 50, got 51"),
        ("patience", 1.5, "must be a whole number from 0 to 50, got 1.5"),
        ("validation_split", 0.6, "must be from 0 to 0.5, got 0.6"),
        ("validation_split", -0.1, "must be from 0 to 0.5, got -0.1"),
        ("validation_split", NAN, "must be from 0 to 0.5, got nan"),
        ("validation_split", math.inf, "must be from 0 to 0.5, got inf"),
        ("validation_split", None, "must be a number from 0 to 0.5, got None"),
        ("seed", -1, "must be from 0 to 2147483647, got -1"),
        ("seed", 2**31, "must be from 0 to 2147483647, got 2147483648"),
        ("seed", "42", "must be a whole number from 0 to 2147483647, got '42'"),
        ("seed", NAN, "must be a whole number from 0 to 2147483647, got nan"),
        ("augment", 1, "must be true or false, got 1"),
        ("lr_decay", "yes", "must be true or false, got 'yes'"),
        ("augment", None, "must be true or false, got None"),
        ("elastic", "on", "must be true or false, got 'on'"),
        ("shift", 0.5, "must be from 0 to 0.3, got 0.5"),
        ("shift", -0.01, "must be from 0 to 0.3, got -0.01"),
        ("shift", "2px", "must be a number from 0 to 0.3, got '2px'"),
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
    assert values["conv_filters"] == [24, 48]
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


@pytest.mark.parametrize("name", [field.name for field in dataclasses.fields(TrainConfig)])
def test_every_setting_survives_its_text(name: str) -> None:
    for config in (TrainConfig(), EVERY_FIELD_CHANGED):
        value = getattr(config, name)

        assert parse_setting(name, format_setting(value)) == value


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("learning_rate", "3e-05", 3e-5),
        ("learning_rate", "0.00012345678", 0.00012345678),  # exactly, not to 6 digits
        ("dropout_rate", "0.3", 0.3),
        ("epochs", " 7", 7),
        ("augment", "On", True),
        ("lr_decay", "0", False),
        ("hidden_units", "256, 128", (256, 128)),
        ("hidden_units", "", ()),
        ("optimizer", "sgd", "sgd"),  # a word: its choices are TrainConfig's to check
    ],
)
def test_parse_setting_reads_each_kind(name: str, text: str, value: object) -> None:
    parsed = parse_setting(name, text)

    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("learning_rate", "abc", "learning_rate: 'abc' is not a number"),
        ("epochs", "2.5", "epochs: '2.5' is not a whole number"),
        ("augment", "maybe", "augment: 'maybe' is not true or false"),
        ("hidden_units", "256+128", "hidden_units: expected whole numbers separated by commas"),
        ("layers", "3", "layers: unknown setting; known settings: ["),
    ],
)
def test_parse_setting_names_the_setting_and_the_kind_it_expects(
    name: str, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_setting(name, text)

    assert info.value.field == name
    assert str(info.value).startswith(message), str(info.value)


def test_format_setting_writes_floats_exactly() -> None:
    assert [format_setting(value) for value in (0.003, 3e-5, 0.1 + 0.2, 1.0)] == [
        "0.003",
        "3e-05",
        "0.30000000000000004",
        "1.0",
    ]
    assert [format_setting(value) for value in ((256, 128), (), True, "vgg", 42)] == [
        "256,128",
        "",
        "true",
        "vgg",
        "42",
    ]


# --- DemoLimits: the caps of a hosted demo ---


def test_no_variables_no_caps() -> None:
    limits = DemoLimits.from_env({})

    assert limits == DemoLimits()
    assert limits.problems == ()
    assert limits.caption() == ""
    assert limits.upload_bytes == MAX_UPLOAD_BYTES == 5_000_000
    for name in ("epochs", "hidden_units", "conv_filters", "batch_size"):
        assert limits.maximum(name) == LIMITS[name][1]
    assert (limits.maximum("hidden_layers"), limits.maximum("conv_blocks")) == (4, 3)
    limits.check(TrainConfig(epochs=200, batch_size=4096, hidden_units=(2048,) * 4))


def test_every_variable_is_read() -> None:
    environ = {
        "MNIST_MAX_EPOCHS": "3",
        "MNIST_MAX_UNITS": " 64 ",
        "MNIST_MAX_FILTERS": "16",
        "MNIST_MAX_LAYERS": "2",
        "MNIST_MAX_BATCH_SIZE": "256",
        "MNIST_MAX_UPLOAD_MB": "0.5",
        "MNIST_PATH": "/ignored",
    }

    limits = DemoLimits.from_env(environ)

    assert sorted(DEMO_LIMIT_VARIABLES) == sorted(k for k in environ if k != "MNIST_PATH")
    assert limits == DemoLimits(
        epochs=3, hidden_units=64, conv_filters=16, layers=2, batch_size=256, upload_mb=0.5
    )
    assert limits.problems == ()
    assert [limits.maximum(name) for name in ("epochs", "hidden_units", "conv_filters")] == [
        3,
        64,
        16,
    ]
    assert (limits.maximum("hidden_layers"), limits.maximum("conv_blocks")) == (2, 2)
    assert limits.maximum("batch_size") == 256
    assert limits.upload_bytes == 500_000
    assert limits.caption() == (
        "This server limits training to 3 epochs, 64 units per dense layer, 16 filters per "
        "convolution block, 2 layers of each kind and batches of 256."
    )


def test_the_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_MAX_EPOCHS", "1")

    assert DemoLimits.from_env().epochs == 1
    assert DemoLimits.from_env().caption() == "This server limits training to 1 epoch."


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MNIST_MAX_EPOCHS", "lots", "it must be a whole number of at least 1"),
        ("MNIST_MAX_EPOCHS", "0", "it must be a whole number of at least 1"),
        ("MNIST_MAX_UNITS", "-64", "it must be a whole number of at least 1"),
        ("MNIST_MAX_BATCH_SIZE", "2.5", "it must be a whole number of at least 1"),
        ("MNIST_MAX_UPLOAD_MB", "nan", "it must be a number of megabytes above 0"),
        ("MNIST_MAX_UPLOAD_MB", "inf", "it must be a number of megabytes above 0"),
        ("MNIST_MAX_UPLOAD_MB", "0", "it must be a number of megabytes above 0"),
        ("MNIST_MAX_UPLOAD_MB", "5MB", "it must be a number of megabytes above 0"),
    ],
)
def test_invalid_values_are_ignored_with_a_message(
    variable: str, value: str, expected: str
) -> None:
    limits = DemoLimits.from_env({variable: value, "MNIST_MAX_LAYERS": "2"})

    name = DEMO_LIMIT_VARIABLES[variable]
    assert getattr(limits, name) is None  # ignored: no cap rather than a crash
    assert limits.problems == (
        f"{variable}={value!r} is ignored: {expected}"
        + (", like 2 or 0.5" if name == "upload_mb" else "")
        + ". Fix it in the server's environment.",
    )
    assert limits.layers == 2  # the valid variable still counts


def test_caps_above_the_built_in_limits_change_nothing() -> None:
    limits = DemoLimits.from_env(
        {"MNIST_MAX_EPOCHS": "100000", "MNIST_MAX_UNITS": "10000000", "MNIST_MAX_UPLOAD_MB": "900"}
    )

    assert limits.maximum("epochs") == 200
    assert limits.maximum("hidden_units") == 2048
    assert limits.upload_bytes == MAX_UPLOAD_BYTES


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"epochs": 4}, "epochs", "this server allows at most 3, got 4; choose 3 or less"),
        (
            {"batch_size": 512},
            "batch_size",
            "this server allows at most 256, got 512; choose 256 or less",
        ),
        (
            {"hidden_units": (64, 65)},
            "hidden_units",
            "this server allows at most 64 per layer, got 65; choose 64 or less",
        ),
        (
            {"hidden_units": (8, 8, 8)},
            "hidden_units",
            "this server allows at most 2 dense layers, got 3; remove some",
        ),
        (
            {"architecture": "cnn", "conv_filters": (16, 32)},
            "conv_filters",
            "this server allows at most 16 per layer, got 32; choose 16 or less",
        ),
        (
            {"architecture": "cnn", "conv_filters": (8, 8, 8)},
            "conv_filters",
            "this server allows at most 2 convolution blocks, got 3; remove some",
        ),
    ],
)
def test_check_names_the_field_and_the_cap(changes: dict, field: str, message: str) -> None:
    limits = DemoLimits(epochs=3, hidden_units=64, conv_filters=16, layers=2, batch_size=256)
    allowed = TrainConfig(epochs=3, batch_size=256, hidden_units=(64, 64), conv_filters=(16,))
    limits.check(allowed)

    with pytest.raises(ConfigError) as info:
        limits.check(allowed.replace(**changes))

    assert info.value.field == field
    assert str(info.value) == f"{field}: {message}"


def test_an_mlp_is_not_checked_for_its_unused_filters() -> None:
    DemoLimits(conv_filters=8, layers=1).check(TrainConfig(hidden_units=(32,)))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_fit_lowers_presets_to_the_caps(preset: str) -> None:
    limits = DemoLimits(epochs=3, hidden_units=64, conv_filters=16, layers=1, batch_size=100)

    fitted = limits.fit(PRESETS[preset])

    limits.check(fitted)
    assert (fitted.epochs, fitted.batch_size) == (min(3, PRESETS[preset].epochs), 100)
    assert fitted.hidden_units == (64,)
    assert fitted.conv_filters == (16,)
    assert DemoLimits().fit(PRESETS[preset]) == PRESETS[preset]


def test_huge_values_are_refused_before_anything_is_built() -> None:
    # In a fresh interpreter: the refusal must not even import TensorFlow, let alone allocate.
    code = (
        "import sys\n"
        "from mnist_core.config import TrainConfig\n"
        "from mnist_core.errors import ConfigError\n"
        "fields = []\n"
        "for huge in ({'batch_size': 10**6}, {'epochs': 10**5}, {'hidden_units': (10**7,)},\n"
        "             {'conv_filters': (10**6,)}, {'hidden_units': (8,) * 1000}):\n"
        "    try:\n"
        "        TrainConfig(**huge)\n"
        "    except ConfigError as error:\n"
        "        fields.append(error.field)\n"
        "print(fields, 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == (
        "['batch_size', 'epochs', 'hidden_units', 'conv_filters', 'hidden_units'] False False"
    )
