"""Run records for tests that need a run's metrics.json without training one."""

from __future__ import annotations

from typing import Any


def metrics_json(**changes: Any) -> dict[str, Any]:
    """A complete metrics.json of a completed run scored on 100 test digits (every key this
    tool writes), with `changes`; a change to `None` of a key other than val_accuracy leaves
    that key out."""
    value: dict[str, Any] = {
        "status": "completed",
        "test_accuracy": 0.9,
        "test_loss": 0.3,
        "confusion_matrix": [[10 if i == j else 0 for j in range(10)] for i in range(10)],
        "precision": [1.0] * 10,
        "recall": [1.0] * 10,
        "epochs_run": 1,
        "best_epoch": 1,
        "val_accuracy": 0.9,
        "stopped": False,
        "stopped_early": False,
        "train_seconds": 1.0,
        "seed": 42,
        "created": "2026-01-01T00:00:00.000000+00:00",
        "data_source": "synthetic digits",
        "data_fingerprint": "0" * 16,
        "versions": {"python": "3.11.7"},
    }
    value.update(changes)
    return {k: v for k, v in value.items() if v is not None or k == "val_accuracy"}
