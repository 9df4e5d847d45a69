"""The run record (metrics.json): read, checked, written back unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mnist_core.run_record import RunMetrics
from mnist_core.runs import PRETRAINED_DIR


def saved() -> dict[str, Any]:
    """The pretrained run's metrics.json: what every save of this tool writes."""
    (path,) = PRETRAINED_DIR.glob("*/metrics.json")
    return json.loads(path.read_text())


def test_a_saved_record_reads_typed_and_writes_back_byte_for_byte() -> None:
    value = saved()
    metrics = RunMetrics.from_json(value)

    assert metrics.to_json() == value
    assert json.dumps(metrics.to_json(), indent=2) == json.dumps(value, indent=2)  # key order too
    assert isinstance(metrics.test_accuracy, float) and 0.9 < metrics.test_accuracy <= 1
    assert metrics.confusion_matrix[3][3] == value["confusion_matrix"][3][3]
    assert sum(map(sum, metrics.confusion_matrix)) == 10_000
    assert len(metrics.precision) == len(metrics.recall) == 10
    assert metrics.epochs_run == value["epochs_run"] and metrics.seed == value["seed"]
    assert metrics.versions["keras"] == value["versions"]["keras"]
    assert (metrics.ensemble, metrics.imported_model, metrics.writer_pid) == (None, None, None)
    assert metrics.kind is None


def test_keys_it_does_not_know_are_kept() -> None:
    value = {**saved(), "notes": {"from": "a later version"}}

    metrics = RunMetrics.from_json(value)

    assert metrics.extra == {"notes": {"from": "a later version"}}
    assert metrics.to_json() == value


@pytest.mark.parametrize(
    ("status", "stopped", "stopped_early", "text", "ending"),
    [
        ("completed", False, False, "completed", "completed"),
        ("completed", False, True, "early stop", "stopped early (no better validation loss)"),
        ("stopped", True, False, "stopped by user", "stopped by you"),
        ("interrupted", False, True, "interrupted", "interrupted"),
        ("interrupted", True, False, "interrupted", "interrupted"),
    ],
)
def test_status_in_words(
    status: str, stopped: bool, stopped_early: bool, text: str, ending: str
) -> None:
    value = {**saved(), "status": status, "stopped": stopped, "stopped_early": stopped_early}

    metrics = RunMetrics.from_json(value)

    assert (metrics.status_text, metrics.ending) == (text, ending)


MEMBER = {
    "run_id": "20260101-000000-cnn-aaaaaa",
    "config": {"architecture": "cnn", "epochs": 2},
    "test_accuracy": 0.99,
    "val_accuracy": 0.985,
    "epochs_run": 2,
    "train_seconds": 30.5,
    "seed": 1,
}
IMPORTED = {
    "name": "mine",
    "file": "m.h5",
    "sha256": "ab" * 32,
    "bytes": 1_234_567,
    "parameters": 235_146,
    "input": "(784,)",
    "output": "logits",
    "scale": "[0, 255]",
    "scale_note": "chosen at import",
}


def test_an_ensemble_and_an_imported_model_read_typed_and_write_back_unchanged() -> None:
    second = {**MEMBER, "run_id": "20260101-000000-deep-bbbbbb", "config": {"architecture": "deep"}}
    ensembled = {
        **saved(),
        "ensemble": {"tta": True, "shifts": [[0, 0], [-1, 0]], "members": [MEMBER, second]},
    }
    imported = {
        **saved(),
        "val_accuracy": None,
        "imported_model": IMPORTED,
        "imported_from": "20250101-000000-mlp-bbbbbb",
    }

    ensemble, model = RunMetrics.from_json(ensembled), RunMetrics.from_json(imported)

    assert (ensemble.kind, model.kind) == ("ensemble", "imported")
    assert ensemble.ensemble is not None and ensemble.ensemble.tta is True
    assert ensemble.ensemble.shifts == ((0, 0), (-1, 0))
    assert [m.architecture for m in ensemble.ensemble.members] == ["cnn", "deep"]
    assert ensemble.ensemble.members[0].train_seconds == 30.5
    assert model.imported_model is not None and model.imported_model.bytes == 1_234_567
    assert (model.imported_model.output, model.imported_model.scale) == ("logits", "[0, 255]")
    assert model.val_accuracy is None and model.imported_from == "20250101-000000-mlp-bbbbbb"
    assert ensemble.to_json() == ensembled and model.to_json() == imported


def test_replace_changes_one_field_and_refuses_unknown_names() -> None:
    metrics = RunMetrics.from_json({**saved(), "writer_pid": 4321})

    released = metrics.replace(writer_pid=None)

    assert metrics.writer_pid == 4321 and "writer_pid" in metrics.to_json()
    assert released.writer_pid is None and "writer_pid" not in released.to_json()
    with pytest.raises(TypeError):
        metrics.replace(test_acuracy=0.5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": "done"}, 'status must be "completed", "stopped" or "interrupted"'),
        ({"test_accuracy": 1.5}, "test_accuracy must be from 0 to 1, got 1.5"),
        ({"test_accuracy": True}, "test_accuracy must be from 0 to 1"),
        ({"confusion_matrix": [[1] * 10] * 9}, "confusion_matrix must be 10 rows of 10 counts"),
        ({"confusion_matrix": [[-1] * 10] * 10}, "confusion_matrix must be 10 rows of 10 counts"),
        ({"recall": [0.5] * 9}, "recall must be a list of 10 numbers"),
        ({"epochs_run": 2.5}, "epochs_run must be a whole number"),
        ({"stopped": "no"}, "stopped must be true or false"),
        ({"train_seconds": -1}, "train_seconds must be seconds"),
        ({"val_accuracy": "high"}, "val_accuracy must be from 0 to 1, or null"),
        ({"versions": {"keras": 3}}, "versions must be library names and versions"),
        ({"ensemble": {"tta": False, "members": [{}]}}, "ensemble must be an ensemble's"),
        ({"ensemble": {"tta": False, "members": [MEMBER, {**MEMBER, "seed": "one"}]}}, "ensem"),
        ({"ensemble": {"tta": True, "shifts": [[0]], "members": [MEMBER] * 2}}, "ensemble must"),
        ({"imported_model": {"name": "x"}}, "imported_model must be an imported model's"),
        ({"imported_model": {**IMPORTED, "bytes": "1 MB"}}, "imported_model must be"),
        ({"imported_model": {**IMPORTED, "scale": 255}}, "imported_model must be"),
        ({"writer_pid": "me"}, "writer_pid must be a process id"),
    ],
)
def test_a_wrong_value_is_named_with_what_it_must_be(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="^metrics.json: ") as raised:
        RunMetrics.from_json({**saved(), **change})
    assert message in str(raised.value)


@pytest.mark.parametrize(
    "key", ["status", "test_accuracy", "confusion_matrix", "best_epoch", "stopped_early", "seed"]
)
def test_a_missing_required_key_is_named(key: str) -> None:
    value = saved()
    del value[key]

    with pytest.raises(ValueError, match=f"^metrics.json lacks {key}$"):
        RunMetrics.from_json(value)


@pytest.mark.parametrize("value", [[], "completed", None, 3])
def test_not_an_object(value: Any) -> None:
    with pytest.raises(ValueError, match="^metrics.json must be an object$"):
        RunMetrics.from_json(value)
