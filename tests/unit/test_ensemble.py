"""Tests for mnist_core.ml.ensemble and test-time augmentation (`serving.tta_probabilities`):
an ensemble run averages its members (and their shifted copies), is saved, listed, exported,
bundled and served like any run, and refuses member lists it cannot judge."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mnist_core.bundles import export_bundle, import_bundle
from mnist_core.cli import main
from mnist_core.config import TrainConfig
from mnist_core.errors import ConfigError
from mnist_core.ml.ensemble import build_ensemble, check_members, ensemble_model
from mnist_core.ml.model_files import load_model_file
from mnist_core.ml.predict import predict_proba
from mnist_core.ml.train import train
from mnist_core.runs import RunStore
from mnist_core.serving import TTA_SHIFTS, OnnxModel, shifted, tta_probabilities

pytestmark = pytest.mark.usefixtures("keras_seed")


@pytest.fixture(scope="module")
def members(digits, small_config):
    """Two small runs of `small_config` with other seeds, a cnn and an mlp, trained once."""
    return [
        train(small_config.replace(seed=1), digits),
        train(
            small_config.replace(
                architecture="cnn", conv_filters=(4, 8), hidden_units=(16,), seed=2, shift=0.1
            ),
            digits,
        ),
    ]


@pytest.fixture
def saved_members(members, runs_dir: Path) -> list[str]:
    store = RunStore(runs_dir)
    return [store.save(result) for result in members]


def test_shifted_moves_pixels_and_fills_with_black() -> None:
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 5, 7] = 1.0
    image[0, 0, 0] = 0.5  # moves out of the image when shifted up or left

    down = shifted(image, 1, 0)
    right_up = shifted(image, -1, 2)

    assert down[0, 6, 7] == 1.0 and down.sum() == 1.5 and down[0, 1, 0] == 0.5
    assert right_up[0, 4, 9] == 1.0 and right_up.sum() == 1.0
    assert np.array_equal(shifted(image, 0, 0), image)


def test_the_ensemble_model_averages_members_and_their_shifted_copies(members, digits) -> None:
    images = digits.x_test[:20].astype(np.float32) / 255
    models = [result.model for result in members]
    each = [predict_proba(model, images) for model in models]

    plain = predict_proba(ensemble_model(models), images)
    with_shifts = predict_proba(ensemble_model(models, tta=True), images)

    np.testing.assert_allclose(plain, np.mean(each, axis=0), atol=1e-6)
    # The Keras graph's padding and cropping move pixels as serving.shifted does in numpy.
    expected = np.mean([tta_probabilities(model, images) for model in models], axis=0)
    np.testing.assert_allclose(with_shifts, expected, atol=1e-6)
    assert np.abs(with_shifts - plain).max() > 1e-3  # the copies do change the answers
    assert len(TTA_SHIFTS) == 5 and (0, 0) in TTA_SHIFTS


def test_an_ensemble_run_is_saved_scored_served_and_bundled_like_any_run(
    saved_members: list[str], digits, runs_dir: Path
) -> None:
    store = RunStore(runs_dir)
    runs = [store.get(run_id) for run_id in saved_members]

    run = store.get(store.save(build_ensemble(runs, digits, tta=True)))

    assert "-ensemble-" in run.run_id and run.model_name == "ensemble of 2 cnn/mlp + shifts"
    assert run.ensemble is not None
    assert [m.run_id for m in run.ensemble.members] == saved_members
    assert run.ensemble.members[1].config["architecture"] == "cnn"
    assert run.ensemble.tta is True
    # Scored on the test set from its averaged probabilities; judged on the validation split.
    model = load_model_file(run.model_path)
    x_test = digits.x_test.astype(np.float32) / 255
    probabilities = predict_proba(model, x_test)
    assert run.test_accuracy == pytest.approx(np.mean(probabilities.argmax(1) == digits.y_test))
    np.testing.assert_allclose(run.test_probabilities(), probabilities, atol=1e-6)
    n_val = round(len(digits.x_train) * runs[0].config.validation_split)
    val = predict_proba(model, digits.x_train[-n_val:].astype(np.float32) / 255)
    assert run.val_accuracy == pytest.approx(np.mean(val.argmax(1) == digits.y_train[-n_val:]))
    # Served by ONNX Runtime with Keras' answers.
    np.testing.assert_allclose(
        OnnxModel(run.onnx_path).predict_proba(x_test), probabilities, atol=1e-4
    )
    # Whole without its members: they are inside its model file.
    for run_id in saved_members:
        store.delete(run_id)
    kept = store.get(run.run_id).ensemble
    assert kept is not None and kept.members[0].run_id == saved_members[0]
    np.testing.assert_allclose(
        predict_proba(load_model_file(run.model_path), x_test), probabilities, atol=1e-6
    )
    # Exported as a bundle and imported back: still an ensemble.
    imported = store.get(import_bundle(store, export_bundle(store, run.run_id)))
    assert "-ensemble-" in imported.run_id and imported.ensemble == run.ensemble
    assert imported.test_accuracy == run.test_accuracy


def test_refused_member_lists_name_the_problem(
    saved_members: list[str], runs_dir: Path, digits, trained
) -> None:
    store = RunStore(runs_dir)
    a, b = (store.get(run_id) for run_id in saved_members)
    other_split = store.get(store.save(trained))  # 0.1 as well: change it on disk
    config = json.loads((other_split.path / "config.json").read_text())
    config["validation_split"] = 0.2
    (other_split.path / "config.json").write_text(json.dumps(config))
    ensemble = store.get(store.save(build_ensemble([a, b], digits)))

    cases = {
        "listed twice": [a, a],
        "takes 2 to 10": [a],
        "ensemble itself": [a, ensemble],
        "different validation splits": [a, store.get(other_split.run_id)],
    }
    for words, runs in cases.items():
        with pytest.raises(ConfigError, match=words):
            check_members(runs)
    assert TrainConfig.from_dict(config).validation_split == 0.2


def test_cli_ensemble_json_and_refusals(
    saved_members: list[str], data_file: Path, runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--data", str(data_file), "--runs-dir", str(runs_dir)]

    assert main(["ensemble", *saved_members, "--tta", "--json", *common]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    run = RunStore(runs_dir).get(summary["run_id"])
    assert summary["members"] == saved_members and summary["tta"] is True
    assert summary["test_accuracy"] == run.test_accuracy
    assert summary["val_accuracy"] == run.val_accuracy

    with pytest.raises(SystemExit) as exit_info:
        main(["ensemble", saved_members[0], saved_members[0], *common])
    assert exit_info.value.code == 2
    assert "listed twice" in capsys.readouterr().err
    assert main(["ensemble", saved_members[0], "20990101-000000-cnn-abcdef", *common]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_train_preset_best_trains_its_members_then_their_ensemble(
    data_file: Path, runs_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    from mnist_core import config

    monkeypatch.setitem(
        config.ENSEMBLE_PRESETS, "best", config.EnsemblePreset("mlp", 2, tta=True, epochs=2)
    )
    quick = ["--hidden-units", "32", "--learning-rate", "0.01", "--batch-size", "32"]

    code = main(
        ["train", "--preset", "best", "--seed", "5", *quick, "--json"]
        + ["--data", str(data_file), "--runs-dir", str(runs_dir)]
    )

    assert code == 0
    out, err = capsys.readouterr()
    summary = json.loads(out.strip().splitlines()[-1])
    store = RunStore(runs_dir)
    assert len(store.list()) == 3
    members = [store.get(run_id) for run_id in summary["members"]]
    assert [m.config.seed for m in members] == [5, 6]
    assert {m.config.epochs for m in members} == {2}  # the ensemble's, not mlp's 20
    assert "Training best: 2 mlp runs of 2 epochs on " in err
    assert summary["tta"] is True
    assert "Member 1/2 · Epoch 2/2" in err and "Member 2/2 · Epoch 1/2" in err
    # The members' epochs as TensorBoard event files; the ensemble has none, training nothing.
    for member in members:
        assert sorted(path.name for path in member.log_dir.iterdir()) == ["train", "validation"]
    assert not store.get(summary["run_id"]).log_dir.exists()

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "best", "--ray", "127.0.0.2:9", "--runs-dir", str(runs_dir)])
    assert exit_info.value.code == 2
    assert "--preset best trains on this machine" in capsys.readouterr().err
    assert len(store.list()) == 3  # nothing more was trained
