"""The pretrained run shipped in mnist_core/pretrained: complete, safe to load and as accurate
as it claims on the real MNIST test set."""

from __future__ import annotations

import pytest

from mnist_core.config import TrainConfig
from mnist_core.evaluate import evaluate
from mnist_core.runs import PRETRAINED_DIR, RunStore


@pytest.fixture(scope="module")
def pretrained():
    runs = [run for run in RunStore(pretrained=PRETRAINED_DIR).list() if run.pretrained]
    assert len(runs) == 1, f"expected one pretrained run in {PRETRAINED_DIR}, found {len(runs)}"
    return runs[0]


def test_pretrained_run_is_the_cnn_preset(pretrained) -> None:
    assert pretrained.config == TrainConfig.preset("cnn")
    assert pretrained.status == "completed"
    assert pretrained.metrics.epochs_run == pretrained.config.epochs
    assert pretrained.model_path.stat().st_size < 3_000_000  # no optimizer state


def test_pretrained_model_scores_what_it_claims(pretrained, mnist) -> None:
    model = RunStore(pretrained=PRETRAINED_DIR).load_model(pretrained.run_id)
    evaluation = evaluate(model, mnist.x_test, mnist.y_test)

    assert evaluation.accuracy >= 0.99
    assert evaluation.accuracy == pytest.approx(pretrained.test_accuracy, abs=5e-4)
    stored = pretrained.test_probabilities()
    assert stored is not None and stored.shape == (10_000, 10)
    assert (stored.argmax(axis=1) == evaluation.predicted).mean() > 0.999


def test_pretrained_onnx_model_reads_every_test_digit_as_keras_does(pretrained, mnist) -> None:
    """The shipped model.onnx, which the web process predicts with, against Keras on all
    10,000 test digits: the same digit every time, probabilities within 1e-4 (the export's
    own limit; ONNX Runtime and TensorFlow run different kernels)."""
    from mnist_core.ml.predict import predict_proba
    from mnist_core.serving import OnnxModel

    keras_model = RunStore(pretrained=PRETRAINED_DIR).load_model(pretrained.run_id)
    expected = predict_proba(keras_model, mnist.x_test)

    probabilities = OnnxModel(pretrained.onnx_path).predict_proba(mnist.x_test)

    assert (probabilities.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert float(abs(probabilities - expected).max()) <= 1e-4
