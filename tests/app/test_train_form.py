"""The Train form's state, derived from `TrainConfig`: every field has one widget key, and a
config survives the trip to widget values and back."""

from __future__ import annotations

import dataclasses

import pytest

from mnist_core.config import PRESETS, TrainConfig
from mnist_core.errors import ConfigError
from pages.parts import train_form
from tests.unit.test_config import EVERY_FIELD_CHANGED


def test_every_field_has_its_own_key() -> None:
    names = [field.name for field in dataclasses.fields(TrainConfig)]
    keys = [train_form.key(name) for name in names]

    assert set(train_form.to_state(TrainConfig())) == set(keys)
    assert len(set(keys)) == len(names) and train_form.PRESET not in keys
    assert train_form.key("learning_rate") == "train_learning_rate"
    with pytest.raises(KeyError, match="no field 'learning_rte'"):
        train_form.key("learning_rte")
    # EVERY_FIELD_CHANGED differs from the defaults in every field: its round trip below
    # would show a field the form leaves out.
    default = TrainConfig()
    assert all(getattr(EVERY_FIELD_CHANGED, name) != getattr(default, name) for name in names)


@pytest.mark.parametrize("config", [*PRESETS.values(), EVERY_FIELD_CHANGED])
def test_a_config_survives_the_form(config: TrainConfig) -> None:
    state = train_form.to_state(config)

    assert train_form.from_state(state) == config


def test_widget_values_are_read_as_the_field_types() -> None:
    state = train_form.to_state(TrainConfig())
    assert state[train_form.key("hidden_units")] == "256, 128"
    state[train_form.key("hidden_units")] = " 64,32 "
    state[train_form.key("dropout_rate")] = 0.30000000000000004  # a slider's float noise
    state[train_form.key("epochs")] = 3.0

    config = train_form.from_state(state)

    assert config.hidden_units == (64, 32)
    assert config.dropout_rate == 0.3
    assert config.epochs == 3 and isinstance(config.epochs, int)
    state[train_form.key("conv_filters")] = "32, many"
    with pytest.raises(ConfigError) as info:
        train_form.from_state(state)
    assert info.value.field == "conv_filters"


def test_filling_the_form_picks_the_preset_of_the_config() -> None:
    state: dict = {}
    train_form.fill(state, PRESETS["cnn"].replace(seed=3))
    assert state[train_form.PRESET] == "cnn"  # the preset itself, another seed
    train_form.fill(state, PRESETS["quick"].replace(epochs=9))
    assert state[train_form.PRESET] == "quick"  # the first preset of its architecture
    train_form.fill(state, EVERY_FIELD_CHANGED)
    assert state[train_form.PRESET] == "deep"  # vgg: the deep preset's architecture

    train_form.fill_network(state, PRESETS["mlp"])

    assert state[train_form.key("architecture")] == "mlp"
    assert state[train_form.key("hidden_units")] == "256, 128"
    assert state[train_form.key("learning_rate")] == 3e-5  # the rest stays
