"""Tests for mnist_core.links: a setup written as a link's query and read back, through the same
query-string parsing a browser's address goes through; and every kind of bad link, applied as
far as it is valid, with a problem naming each parameter it could not use."""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs

import pytest

from mnist_core.config import PRESETS, DemoLimits, TrainConfig
from mnist_core.links import FIELDS, Link, closest_preset, link_query, parse_link
from mnist_core.sweeps import SWEEPABLE, Axis, parse_axis
from tests.unit.test_config import EVERY_FIELD_CHANGED

CNN = PRESETS["cnn"]


def opened(query: str, **options) -> Link:
    """The link `query` as a page opened with it reads it: parsed as Streamlit parses an
    address's query (blank values kept, repeated parameters as lists)."""
    return parse_link(parse_qs(query, keep_blank_values=True), **options)


def test_the_parameters_are_the_configs_fields() -> None:
    assert FIELDS == tuple(field.name for field in dataclasses.fields(TrainConfig))


@pytest.mark.parametrize("name", list(PRESETS))
def test_a_preset_is_a_link_of_its_name_alone(name: str) -> None:
    query = link_query(PRESETS[name])

    assert query == f"preset={name}"
    assert opened(query) == Link(name, PRESETS[name], (), ())


def test_a_link_names_the_closest_preset_and_only_what_differs_from_it() -> None:
    config = CNN.replace(epochs=3, hidden_units=(128, 64), learning_rate=0.0042)

    assert link_query(config) == "preset=cnn&hidden_units=128,64&learning_rate=0.0042&epochs=3"
    assert opened(link_query(config)).summary() == (
        "the cnn preset with hidden_units=128,64 · learning_rate=0.0042 · epochs=3"
    )
    # deep is cnn's recipe on a vgg network of 32 and 64 filters for 25 epochs: a cnn config
    # changed so is the deep preset itself.
    deep = CNN.replace(architecture="vgg", conv_filters=(32, 64), epochs=25)
    assert closest_preset(deep) == "deep"
    assert closest_preset(deep.replace(seed=1)) == "deep"
    assert closest_preset(TrainConfig()) == "mlp"  # the original script: mlp without decay


@pytest.mark.parametrize("config", [*PRESETS.values(), EVERY_FIELD_CHANGED, TrainConfig()])
def test_a_config_survives_its_link(config: TrainConfig) -> None:
    link = opened(link_query(config))

    assert link.config == config
    assert link.problems == ()


@pytest.mark.parametrize("name", FIELDS)
def test_every_setting_changed_alone_is_in_the_link_and_read_back(name: str) -> None:
    mlp = PRESETS["mlp"]
    value = getattr(EVERY_FIELD_CHANGED, name)
    if value == getattr(mlp, name):  # lr_decay: the mlp preset anneals, TrainConfig() does not
        value = getattr(TrainConfig(), name)
    config = mlp.replace(**{name: value})
    query = link_query(config)

    assert query.startswith("preset=mlp&")
    assert [pair.split("=")[0] for pair in query.split("&")[1:]] == [name]
    assert opened(query).config == config


def test_floats_and_empty_layers_survive_exactly() -> None:
    config = PRESETS["mlp"].replace(learning_rate=0.00012345678, hidden_units=())

    assert link_query(config) == "preset=mlp&hidden_units=&learning_rate=0.00012345678"
    assert opened(link_query(config)).config == config


@pytest.mark.parametrize("setting", list(SWEEPABLE))
def test_every_sweepable_grid_survives_its_link(setting: str) -> None:
    axes = (parse_axis(f"{setting}={SWEEPABLE[setting]}"),)
    if setting != "dropout_rate":
        axes += (parse_axis("dropout_rate=0.2,0.4"),)

    link = opened(link_query(CNN, axes))

    assert (link.config, link.axes, link.problems) == (CNN, axes, ())


def test_a_grid_is_written_as_the_command_line_writes_it() -> None:
    axes = [parse_axis("learning_rate=0.0005,0.001"), parse_axis("hidden_units=128,256+128")]

    query = link_query(CNN, axes)

    # The + of layer sizes is escaped: typed as it is, an address reads it as a space.
    assert query == "preset=cnn&grid=learning_rate=0.0005,0.001&grid=hidden_units=128,256%2B128"
    typed = opened("preset=cnn&grid=hidden_units=128,256+128")  # as a person types it
    assert typed.axes == (Axis("hidden_units", ((128,), (256, 128))),)


@pytest.mark.parametrize(
    ("query", "changes", "problems"),
    [
        (
            "preset=cnn&learning_rate=abc&epochs=3",
            {"epochs": 3},
            ["learning_rate: 'abc' is not a number; kept 0.003"],
        ),
        ("preset=cnn&epochs=0", {}, ["epochs: must be from 1 to 200, got 0; kept 6"]),
        ("preset=cnn&batch_size=12.5", {}, ["batch_size: '12.5' is not a whole number; kept 128"]),
        ("preset=cnn&augment=maybe", {}, ["augment: 'maybe' is not true or false; kept false"]),
        (
            "preset=cnn&hidden_units=256,x&seed=7",
            {"seed": 7},
            [
                "hidden_units: expected whole numbers separated by commas, like 256, 128; "
                "got '256,x'; kept 256"
            ],
        ),
        (
            "preset=cnn&optimizer=nadam",
            {},
            ["optimizer: must be one of ['adam', 'sgd', 'rmsprop'], got 'nadam'; kept adam"],
        ),
        (
            "preset=huge&epochs=3",
            {"epochs": 3},
            ["preset: 'huge' is not a preset; choose one of mlp, quick, cnn, deep; used mlp"],
        ),
        (
            "preset=cnn&learning_rte=0.1&dropout_rate=0.2",
            {"dropout_rate": 0.2},
            ["learning_rte: not a setting, ignored; did you mean learning_rate?"],
        ),
        (
            # Each valid alone, refused together: vgg has room for two blocks.
            "preset=cnn&conv_filters=8,16,32&learning_rate=0.01",
            {"learning_rate": 0.01},
            [
                "conv_filters: a strided network has room for at most 2 blocks on 28x28 "
                "digits, got 3; remove some; kept 24,48"
            ],
        ),
        (
            "preset=cnn&conv_filters=8,16,32&architecture=cnn",  # valid together, in any order
            {"architecture": "cnn", "conv_filters": (8, 16, 32)},
            [],
        ),
        (
            "preset=mlp&validation_split=0",
            {},
            [
                "validation_split: early stopping watches the validation loss: set "
                "validation_split above 0 or patience to 0; kept 0.1"
            ],
        ),
        ("preset=mlp&validation_split=0&patience=0", {"validation_split": 0.0, "patience": 0}, []),
        ("preset=cnn&epochs=3&epochs=4", {"epochs": 4}, []),  # the last counts, as in a browser
        ("", {}, []),
    ],
)
def test_a_bad_link_is_applied_as_far_as_it_is_valid(
    query: str, changes: dict, problems: list[str]
) -> None:
    link = opened(query)

    preset = "cnn" if "preset=cnn" in query else "mlp"
    assert link.preset == preset
    assert link.config == PRESETS[preset].replace(**changes)
    assert list(link.problems) == problems


def test_an_unknown_parameter_lists_what_a_link_takes() -> None:
    (problem,) = opened("colour=red").problems

    assert problem == (
        "colour: not a setting, ignored; a link takes preset, grid and the settings "
        + ", ".join(FIELDS)
    )


def test_a_link_is_lowered_to_the_servers_caps_saying_so() -> None:
    limits = DemoLimits(epochs=5, hidden_units=64)

    assert opened("preset=deep", limits=limits).config == limits.fit(PRESETS["deep"])
    assert opened("preset=deep", limits=limits).problems == ()  # presets fit silently
    link = opened("preset=deep&epochs=50&hidden_units=128,32&epochs=4&seed=3", limits=limits)

    assert link.config == PRESETS["deep"].replace(epochs=4, hidden_units=(64, 32), seed=3)
    assert link.problems == ("hidden_units: 128,32 is above this server's limit; lowered to 64,32",)
    link = opened("preset=deep&epochs=50", limits=limits)
    assert link.config.epochs == 5
    assert link.problems == ("epochs: 50 is above this server's limit; lowered to 5",)


def test_a_run_to_start_from_must_be_on_this_server() -> None:
    here = "20261206-061500-cnn-abcdef"
    elsewhere = "20261206-061500-cnn-000000"

    assert opened(f"start_from={here}", run_ids={here}).config.start_from == here
    link = opened(f"start_from={elsewhere}&seed=3", run_ids={here})

    assert link.config == PRESETS["mlp"].replace(seed=3)
    assert link.problems == (
        f"start_from: run {elsewhere} is not on this server (deleted, or the link comes from "
        "another server); kept none",
    )
    assert opened(f"start_from={elsewhere}").config.start_from == elsewhere  # nothing to check


def test_bad_grid_items_are_left_out_naming_the_setting() -> None:
    link = opened(
        "preset=cnn&grid=learning_rate=0.001,fast&grid=dropout_rate=0.2,0.4"
        "&grid=epochs=1,2&grid=seed=1,2"
    )

    assert link.config == CNN
    assert link.axes == (Axis("dropout_rate", (0.2, 0.4)), Axis("epochs", (1, 2)))
    assert link.problems == (
        "grid: learning_rate: 'fast' is not a number; write values like 0.0005,0.001,0.003",
        "grid: a sweep varies at most 2 settings; ignored seed=1,2",
    )
