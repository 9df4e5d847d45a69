"""Tests for mnist_core.sweeps: grid items parsed and validated, their cross product, the cap
on trials, and trials ranked and picked by validation accuracy, never by test accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mnist_core.config import TrainConfig
from mnist_core.errors import ConfigError
from mnist_core.job_service import JobRequest, JobState, JobStatus
from mnist_core.run_record import RunMetrics
from mnist_core.runs import RunInfo, RunStore
from mnist_core.sweeps import (
    Axis,
    best,
    expand,
    format_value,
    max_sweep,
    parse_axis,
    parse_values,
    results,
    sweep_results,
    swept_settings,
)
from tests.records import metrics_json

MLP = TrainConfig.preset("mlp")


@pytest.mark.parametrize(
    ("item", "setting", "values"),
    [
        ("learning_rate=0.0005,0.001,0.003", "learning_rate", (0.0005, 0.001, 0.003)),
        ("dropout_rate= 0.2 , 0.4", "dropout_rate", (0.2, 0.4)),
        ("batch-size=64,128", "batch_size", (64, 128)),  # spelt like the option
        ("hidden_units=128,256+128", "hidden_units", ((128,), (256, 128))),
        ("lr_decay=true,off", "lr_decay", (True, False)),
        ("optimizer=sgd,adam", "optimizer", ("sgd", "adam")),
        ("epochs=3", "epochs", (3,)),
    ],
)
def test_parse_axis_reads_each_kind_of_value(item: str, setting: str, values: tuple) -> None:
    assert parse_axis(item) == Axis(setting, values)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("learning_rate", "grid: 'learning_rate' is not SETTING=VALUE,VALUE...; write e.g."),
        ("learning_rate=", "learning_rate: has no values; write them like 0.0005,0.001,0.003"),
        ("learning_rat=0.1", "learning_rat: is not a setting a sweep can vary; choose one of"),
        ("learning_rate=fast", "learning_rate: 'fast' is not a number; write values like"),
        ("learning_rate=5", "learning_rate: must be from 1e-06 to 1, got 5.0"),
        ("learning_rate=0.001,0.0010", "learning_rate: 0.001 is given twice; give each value once"),
        ("batch_size=0.5", "batch_size: '0.5' is not a whole number"),
        ("batch_size=64,100000", "batch_size: must be from 1 to 4096, got 100000"),
        ("dropout_rate=0.2,,0.4", "dropout_rate: '' is not a number"),
        ("hidden_units=256+x", "hidden_units: '256+x' is not layer sizes joined by +"),
        ("lr_decay=maybe", "lr_decay: 'maybe' is not true or false"),
        ("optimizer=adam,nadam", "optimizer: must be one of ['adam', 'sgd', 'rmsprop']"),
        ("validation_split=0.1,0.2", "validation_split: cannot be swept: trials are compared"),
        ("restore_best=true,false", "restore_best: cannot be swept"),
    ],
)
def test_bad_grid_items_name_the_setting_and_say_what_to_do(item: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_axis(item)
    assert str(info.value).startswith(message), str(info.value)


def test_expand_is_the_cross_product_first_axis_slowest() -> None:
    rates, dropouts = (
        parse_axis("learning_rate=0.0005,0.001,0.003"),
        parse_axis("dropout_rate=0.2,0.4"),
    )

    configs = expand(MLP.replace(epochs=1), [rates, dropouts])

    assert [(c.learning_rate, c.dropout_rate) for c in configs] == [
        (0.0005, 0.2),
        (0.0005, 0.4),
        (0.001, 0.2),
        (0.001, 0.4),
        (0.003, 0.2),
        (0.003, 0.4),
    ]
    # Everything else is the base's.
    assert {c.replace(learning_rate=1e-3, dropout_rate=0.4) for c in configs} == {
        MLP.replace(epochs=1)
    }
    assert swept_settings(configs) == ["learning_rate", "dropout_rate"]
    swapped = expand(MLP, [dropouts, rates])
    assert swept_settings(swapped) == ["dropout_rate", "learning_rate"]
    assert swept_settings(expand(MLP, [rates])) == ["learning_rate"]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([], "grid: choose a setting to vary and its values"),
        (
            ["learning_rate=0.001", "learning_rate=0.003"],
            "learning_rate: is given twice; give all its values at once, like learning_rate=",
        ),
        (
            ["learning_rate=0.001", "dropout_rate=0.2", "epochs=1"],
            "grid: a sweep varies at most 2 settings, got 3 (learning_rate, dropout_rate, "
            "epochs); drop one",
        ),
        (
            ["learning_rate=0.0005,0.001,0.003", "batch_size=32,64,128"],
            "grid: 3 × 3 values make 9 trials, more than this server's limit of 6 "
            "(MNIST_MAX_SWEEP); remove some values",
        ),
    ],
)
def test_expand_refuses_bad_grids(items: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        expand(MLP, [parse_axis(item) for item in items])
    assert str(info.value).startswith(message), str(info.value)


def test_expand_names_the_trial_whose_combination_is_invalid() -> None:
    base = TrainConfig.preset("quick", conv_filters=(8, 16, 32))

    with pytest.raises(ConfigError) as info:
        expand(base, [parse_axis("architecture=cnn,deep")])

    assert info.value.field == "conv_filters"
    assert str(info.value).endswith("remove some (in the trial architecture=deep)")


def test_expand_needs_a_validation_split_to_rank_trials() -> None:
    base = MLP.replace(validation_split=0.0, patience=0)
    with pytest.raises(ConfigError, match="set validation_split above 0"):
        expand(base, [parse_axis("learning_rate=0.001,0.003")])


def test_the_cap_comes_from_mnist_max_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    grid = [parse_axis("learning_rate=0.001,0.003"), parse_axis("dropout_rate=0.2,0.4")]
    monkeypatch.setenv("MNIST_MAX_SWEEP", "3")
    with pytest.raises(ConfigError, match=r"2 × 2 values make 4 trials, more .* limit of 3 "):
        expand(MLP, grid)
    assert len(expand(MLP, grid, limit=4)) == 4
    monkeypatch.setenv("MNIST_MAX_SWEEP", "4")
    assert len(expand(MLP, grid)) == 4


@pytest.mark.parametrize(("value", "cap"), [(None, 6), ("10", 10), ("0", 6), ("six", 6)])
def test_max_sweep_from_the_environment(value: str | None, cap: int) -> None:
    assert max_sweep({} if value is None else {"MNIST_MAX_SWEEP": value}) == cap


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0005, "0.0005"), (1e-5, "1e-05"), ((256, 128), "256+128"), (True, "true")],
)
def test_format_value_writes_what_parse_reads(value: object, text: str) -> None:
    assert format_value(value) == text
    setting = {float: "learning_rate", tuple: "hidden_units", bool: "lr_decay"}[type(value)]
    assert parse_values(setting, text).values == (value,)


def fake_run(run_id: str, learning_rate: float, val: float | None, test: float) -> RunInfo:
    """A run's record as the store reads it (no model needed to rank)."""
    metrics = metrics_json(
        test_accuracy=test, val_accuracy=val, epochs_run=2, best_epoch=2, train_seconds=3.5
    )
    config = MLP.replace(learning_rate=learning_rate)
    return RunInfo(run_id, Path(run_id), config, {}, RunMetrics.from_json(metrics))


def test_trials_are_ranked_and_picked_by_validation_accuracy_never_by_test_accuracy() -> None:
    runs = [
        fake_run("a", 0.001, val=0.970, test=0.990),  # the best on the test set
        fake_run("b", 0.003, val=0.980, test=0.975),  # the best on the validation digits
        fake_run("c", 0.01, val=None, test=0.999),  # no validation score: ranked last
        fake_run("d", 0.0005, val=0.975, test=0.970),
    ]

    ranked = results(runs, ["learning_rate"])

    assert [row.run_id for row in ranked] == ["b", "d", "a", "c"]
    assert [row.val_accuracy for row in ranked] == [0.980, 0.975, 0.970, None]
    assert ranked[0].settings == {"learning_rate": 0.003}
    assert ranked[0].label == "learning_rate=0.003"
    assert (ranked[0].test_accuracy, ranked[0].epochs_run, ranked[0].train_seconds) == (
        0.975,
        2,
        3.5,
    )
    assert best(ranked).run_id == "b"
    assert best(reversed(ranked)).run_id == "b"


def test_equal_validation_scores_keep_the_trials_order_whatever_the_test_says() -> None:
    runs = [fake_run("a", 0.001, val=0.98, test=0.95), fake_run("b", 0.003, val=0.98, test=0.99)]
    ranked = results(runs, ["learning_rate"])
    assert [row.run_id for row in ranked] == ["a", "b"]
    assert best(ranked).run_id == "a"


def test_no_trial_with_a_validation_score_means_no_best() -> None:
    assert best(results([fake_run("a", 0.001, val=None, test=0.99)], ["learning_rate"])) is None
    assert best([]) is None


def save_fake_run(store: RunStore, run_id: str, config: TrainConfig, val: float) -> None:
    folder = store.root / run_id
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    history = {"loss": [0.3], "val_accuracy": [val]}
    (folder / "history.json").write_text(json.dumps(history))
    metrics = metrics_json(test_accuracy=0.9, best_epoch=1, epochs_run=1)
    del metrics["val_accuracy"]  # an old run: the store reads it from the history
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "model.keras").write_bytes(b"")


def test_sweep_results_rank_the_finished_trials_of_a_sweep(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    configs = expand(MLP, [parse_axis("learning_rate=0.001,0.003,0.01")])
    ids = ["20260101-000000-mlp-00000a", "20260101-000000-mlp-00000b", None]
    for run_id, config, val in zip(ids[:2], configs[:2], (0.95, 0.97), strict=True):
        save_fake_run(store, run_id, config, val)
    states = ["finished", "stopped", "failed"]
    trials = [
        JobStatus(
            JobRequest(f"job{n}", config, "ada", 0.0, sweep_id="s1"),
            JobState(state=state, run_id=run_id),
            None,
            False,
        )
        for n, (config, state, run_id) in enumerate(zip(configs, states, ids, strict=True))
    ]

    ranked = sweep_results(trials, store)

    assert [(row.run_id, row.val_accuracy) for row in ranked] == [(ids[1], 0.97), (ids[0], 0.95)]
    assert [row.settings for row in ranked] == [{"learning_rate": 0.003}, {"learning_rate": 0.001}]
    store.delete(ids[1])  # deleted meanwhile: left out
    assert [row.run_id for row in sweep_results(trials, store)] == [ids[0]]
