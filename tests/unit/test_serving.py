"""Tests for ONNX serving: export (`onnx_export`) and prediction without TensorFlow (`serving`).

Tolerances: ONNX Runtime and TensorFlow run different kernels (and oneDNN picks its own per
CPU), so probabilities agree to float32 rounding of sums over hundreds of terms, not exactly:
1e-5 here, the export's own refusal threshold being 1e-4.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
import pytest

from mnist_core import explain, serving
from mnist_core.config import TrainConfig
from mnist_core.errors import ImageError, ModelError
from mnist_core.ml import onnx_export
from mnist_core.ml.models import build_model
from mnist_core.ml.onnx_export import ExportRefused, convert_run, export_onnx
from mnist_core.ml.predict import predict_proba
from mnist_core.runs import _without_optimizer
from mnist_core.serving import ONNX_ERROR_FILE, ONNX_FILE, Conversions, OnnxModel, convert_now

pytestmark = pytest.mark.usefixtures("keras_seed")
AGREE = 1e-5

CONFIGS = {
    "mlp": TrainConfig(hidden_units=(32, 16)),
    "cnn with shift": TrainConfig(
        architecture="cnn", conv_filters=(4, 8), hidden_units=(16,), shift=0.1
    ),
    "deep": TrainConfig(architecture="deep", conv_filters=(4,), hidden_units=(16,)),
    "vgg": TrainConfig(architecture="vgg", conv_filters=(4, 8), hidden_units=(16,)),
    "strided": TrainConfig(architecture="strided", conv_filters=(4, 8), hidden_units=(16,)),
    "augmented mlp": TrainConfig(hidden_units=(16,), augment=True),
}


def exported(model: keras.Model, folder: Path) -> OnnxModel:
    path = folder / ONNX_FILE
    export_onnx(model, path)
    return OnnxModel(path)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory) -> tuple[keras.Model, OnnxModel]:
    keras.utils.set_random_seed(3)
    model = build_model(CONFIGS["cnn with shift"])
    return model, exported(model, tmp_path_factory.mktemp("cnn"))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_architecture_exports_with_the_same_probabilities(name, digits, tmp_path) -> None:
    model = build_model(CONFIGS[name])
    if name in (
        "deep",
        "vgg",
        "strided",
    ):  # batch statistics away from their initial values, as after training
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                gamma, beta, mean, variance = layer.get_weights()
                layer.set_weights([gamma * 1.5, beta + 0.1, mean + 0.2, variance * 3])

    onnx = exported(model, tmp_path)

    expected = predict_proba(model, digits.x_test)
    np.testing.assert_allclose(onnx.predict_proba(digits.x_test), expected, atol=AGREE)
    training_only = any(isinstance(layer, onnx_export.TRAINING_ONLY) for layer in model.layers)
    assert training_only == (name in ("cnn with shift", "augmented mlp"))  # and left out


def test_a_trained_deep_model_with_augmentation_exports_in_inference_mode(digits, tmp_path) -> None:
    """Its batch normalisation once exported in training mode (through `clone_model`) and read
    digits with probabilities up to 0.34 off; the export check refused it."""
    from mnist_core.ml.train import train

    config = TrainConfig(
        architecture="deep",
        conv_filters=(4,),
        hidden_units=(16,),
        augment=True,
        epochs=1,
        batch_size=32,
        patience=0,
    )
    model = train(config, digits).model

    onnx = exported(model, tmp_path)

    expected = predict_proba(model, digits.x_test)
    np.testing.assert_allclose(onnx.predict_proba(digits.x_test), expected, atol=AGREE)


def test_a_trained_model_agrees_and_predicts_the_same_digits(trained, digits, tmp_path) -> None:
    onnx = exported(trained.model, tmp_path)

    probabilities = onnx.predict_proba(digits.x_test)

    expected = predict_proba(trained.model, digits.x_test)
    np.testing.assert_allclose(probabilities, expected, atol=AGREE)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), expected.argmax(axis=1))
    assert probabilities.dtype == np.float32 and probabilities.shape == (100, 10)
    digit, confidence, single = serving.predict_digit(onnx, digits.x_test[3])
    assert digit == int(expected[3].argmax()) and confidence == pytest.approx(
        expected[3].max(), abs=AGREE
    )
    np.testing.assert_allclose(single, expected[3], atol=AGREE)


def test_training_only_layers_are_left_out_of_the_exported_graph(cnn) -> None:
    import onnx

    graph = onnx.load(str(cnn[1].path)).graph
    kinds = {node.op_type for node in graph.node}
    assert not {"RandomUniform", "RandomUniformLike", "RandomNormal"} & kinds
    assert "Conv" in kinds


def test_uint8_images_are_scaled_and_other_shapes_refused(cnn, digits) -> None:
    _, onnx = cnn
    as_float = digits.x_test[:5].astype(np.float32) / 255

    np.testing.assert_array_equal(
        onnx.predict_proba(digits.x_test[:5]), onnx.predict_proba(as_float)
    )
    for shape in [(28,), (2, 28, 29), (2, 28, 28, 1), (784,)]:
        with pytest.raises(ImageError, match=r"expected images of shape \(N, 28, 28\)"):
            onnx.predict_proba(np.zeros(shape, dtype=np.float32))


def test_large_inputs_go_in_chunks_with_the_same_results(cnn, digits) -> None:
    _, onnx = cnn
    images = np.resize(digits.x_test, (1100, 28, 28))

    probabilities = onnx.predict_proba(images)

    assert probabilities.shape == (1100, 10)
    np.testing.assert_allclose(probabilities[:100], onnx.predict_proba(images[:100]), atol=1e-6)


def test_fifty_threads_get_the_single_threaded_results(cnn, digits) -> None:
    _, onnx = cnn
    inputs = [digits.x_test[i : i + 2] for i in range(50)]
    start = threading.Barrier(50)

    def run(images: np.ndarray) -> np.ndarray:
        start.wait()
        return onnx.predict_proba(images)

    with ThreadPoolExecutor(max_workers=50) as pool:
        threaded = list(pool.map(run, inputs))

    for images, result in zip(inputs, threaded, strict=True):
        np.testing.assert_array_equal(result, onnx.predict_proba(images))


def test_first_layer_and_feature_maps_come_from_the_onnx_file(
    cnn, trained, digits, tmp_path
) -> None:
    model, onnx = cnn
    image = digits.x_test[4]

    layer, expected = explain.first_layer(onnx), explain.first_layer(model)
    assert (layer.kind, layer.layer_name, layer.title) == ("conv", "conv1", "conv1: 4 filters, 5×5")
    np.testing.assert_array_equal(layer.images, expected.images)
    maps = explain.activations(onnx, image)
    assert maps.shape == (4, 28, 28) and maps.dtype == np.float32 and maps.min() >= 0
    np.testing.assert_allclose(maps, explain.activations(model, image), atol=AGREE)

    mlp = exported(trained.model, tmp_path)
    dense = explain.first_layer(mlp)
    assert (dense.kind, dense.layer_name, dense.images.shape) == ("dense", "dense1", (64, 28, 28))
    np.testing.assert_array_equal(dense.images, explain.first_layer(trained.model).images)
    assert explain.activations(mlp, image) is None


def test_occlusion_with_onnx_matches_keras(cnn, digits) -> None:
    model, onnx = cnn

    values = explain.occlusion(onnx, digits.x_test[7], 3)

    np.testing.assert_allclose(values, explain.occlusion(model, digits.x_test[7], 3), atol=AGREE)


def test_an_export_that_disagrees_is_refused_and_nothing_is_written(
    cnn, tmp_path, monkeypatch
) -> None:
    model, _ = cnn
    monkeypatch.setattr(onnx_export, "MAX_DIFFERENCE", 0.0)
    monkeypatch.setattr(
        onnx_export, "check_images", lambda: np.ones((4, 28, 28), dtype=np.float32) * 0.5
    )
    monkeypatch.setattr(
        OnnxModel, "predict_proba", lambda self, images: np.full((len(images), 10), 0.1, np.float32)
    )

    with pytest.raises(
        ModelError, match=r"ONNX export gives other probabilities than Keras \(by up to"
    ):
        export_onnx(model, tmp_path / ONNX_FILE)

    assert list(tmp_path.iterdir()) == []


def test_a_refused_conversion_is_recorded_in_the_run_folder(trained, tmp_path, monkeypatch) -> None:
    _without_optimizer(trained.model).save(tmp_path / "model.keras")
    monkeypatch.setattr(onnx_export, "MAX_DIFFERENCE", -1.0)

    with pytest.raises(ExportRefused):
        convert_run(tmp_path)

    assert not (tmp_path / ONNX_FILE).exists()
    assert "other probabilities than Keras" in serving.onnx_error(tmp_path)
    monkeypatch.setattr(onnx_export, "MAX_DIFFERENCE", 1e-4)
    assert convert_run(tmp_path) <= 1e-4  # a later success clears the record
    assert serving.onnx_error(tmp_path) is None and (tmp_path / ONNX_FILE).is_file()


def test_a_missing_or_damaged_onnx_file_is_a_model_error(tmp_path) -> None:
    with pytest.raises(ModelError, match="cannot read the ONNX model"):
        OnnxModel(tmp_path / "absent.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="ONNX Runtime cannot load .bad.onnx.*The file is damaged"):
        OnnxModel(tmp_path / "bad.onnx")


def test_threads_per_prediction_come_from_the_environment(monkeypatch) -> None:
    for value, threads in [(None, 1), ("2", 2), ("0", 1), ("many", 1)]:
        if value is None:
            monkeypatch.delenv("MNIST_PREDICT_THREADS", raising=False)
        else:
            monkeypatch.setenv("MNIST_PREDICT_THREADS", value)
        assert serving.predict_threads() == threads


def test_background_conversion_of_an_old_run_becomes_ready(trained, digits, tmp_path) -> None:
    """A real subprocess, as the web process starts it (it imports TensorFlow: seconds)."""
    _without_optimizer(trained.model).save(tmp_path / "model.keras")
    conversions = Conversions()

    assert conversions.state(tmp_path) == "converting"
    assert conversions.state(tmp_path) == "converting"  # asked again: not started twice
    deadline = time.monotonic() + 120
    while conversions.state(tmp_path) == "converting" and time.monotonic() < deadline:
        time.sleep(0.2)

    assert conversions.state(tmp_path) == "ready"
    onnx = OnnxModel(tmp_path / ONNX_FILE)
    expected = predict_proba(trained.model, digits.x_test)
    np.testing.assert_allclose(onnx.predict_proba(digits.x_test), expected, atol=AGREE)


def test_a_damaged_model_fails_to_convert_with_its_reason(tmp_path) -> None:
    (tmp_path / "model.keras").write_bytes(b"not a zip")
    conversions = Conversions()

    deadline = time.monotonic() + 120
    while conversions.state(tmp_path) == "converting" and time.monotonic() < deadline:
        time.sleep(0.2)

    assert conversions.state(tmp_path) == "failed"
    assert "model.keras" in conversions.error(tmp_path)
    assert not (tmp_path / ONNX_FILE).exists() and not (tmp_path / ONNX_ERROR_FILE).exists()
    with pytest.raises(ModelError, match="model.keras"):
        convert_now(tmp_path)


def test_a_model_holding_code_is_refused_by_the_subprocess(tmp_path) -> None:
    inputs = keras.Input((28, 28))
    outputs = keras.layers.Dense(10, activation="softmax")(
        keras.layers.Lambda(lambda x: x * 2)(keras.layers.Flatten()(inputs))
    )
    keras.Model(inputs, outputs).save(tmp_path / "model.keras")

    with pytest.raises(ModelError, match="contains a Lambda layer"):
        convert_now(tmp_path)
    assert not (tmp_path / ONNX_FILE).exists()


def test_a_model_file_is_written_by_a_subprocess(trained, digits, tmp_path) -> None:
    """Results' .h5 download: the web process asks `python -m mnist_core export`."""
    from mnist_core.ml.model_files import load_model_file
    from mnist_core.runs import RunStore

    run_id = RunStore(tmp_path / "runs").save(trained)

    data = serving.exported_model(run_id, tmp_path / "runs", ".h5")

    (tmp_path / "copy.h5").write_bytes(data)
    np.testing.assert_allclose(
        predict_proba(load_model_file(tmp_path / "copy.h5"), digits.x_test),
        predict_proba(trained.model, digits.x_test),
        atol=1e-6,
    )
    with pytest.raises(ModelError, match="run '20200101-000000-mlp-abcdef' does not exist"):
        serving.exported_model("20200101-000000-mlp-abcdef", tmp_path / "runs", ".h5")
