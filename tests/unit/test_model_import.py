"""Importing a Keras model file (`model_import`, `python -m mnist_core import FILE.h5`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from mnist_core.cli import main
from mnist_core.errors import ModelError
from mnist_core.ml.model_import import import_model_file
from mnist_core.ml.predict import predict_proba
from mnist_core.runs import RunStore
from mnist_core.serving import OnnxModel
from tests.keras_models import original_recipe

# ONNX Runtime beside Keras: the export check's own bound (`serving.MAX_DIFFERENCE`).
ONNX_TOLERANCE = 1e-4
# The wrapped model against the user's model called by hand: the same float32 operations,
# in another graph (oneDNN may order a reduction differently).
SAME_MODEL_TOLERANCE = 1e-5


def fit(model: keras.Model, images: np.ndarray, labels: np.ndarray, epochs: int = 3) -> None:
    loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=model.layers[-1].get_config().get("activation") == "linear"
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss, metrics=["accuracy"])
    model.fit(images, labels, batch_size=32, epochs=epochs, verbose=0)


def test_the_original_recipe_imports_with_the_accuracy_model_evaluate_gives(
    mnist, mnist_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], keras_seed
) -> None:
    model = original_recipe()
    fit(model, mnist.x_train[:6000] / 255.0, mnist.y_train[:6000], epochs=1)
    h5 = tmp_path / "mnist_model.h5"
    model.save(h5)
    _, expected = model.evaluate(mnist.x_test / 255.0, mnist.y_test, verbose=0)

    runs = tmp_path / "runs"
    code = main(["import", str(h5), "--runs-dir", str(runs), "--data", str(mnist_path), "--json"])

    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["input"] == "(28, 28)" and summary["output"] == "probabilities"
    assert summary["scale"] == "[0, 1]"
    assert abs(summary["test_accuracy"] - expected) <= 0.001
    assert 0.85 < expected < 0.99  # one epoch on 6,000 digits: a real, imperfect model
    run = RunStore(runs).get(summary["run_id"])
    assert "-imported-" in run.run_id and run.model_name == "imported mnist_model.h5"
    assert run.imported.sha256 == hashlib.sha256(h5.read_bytes()).hexdigest()
    assert run.imported.parameters == model.count_params() == 235_146
    assert not run.trained_here and run.history["loss"] == []
    assert run.test_probabilities().shape == (10_000, 10)
    onnx = OnnxModel(run.onnx_path).predict_proba(mnist.x_test[:500])
    keras_answers = predict_proba(model, mnist.x_test[:500] / 255.0)
    np.testing.assert_allclose(onnx, keras_answers, atol=ONNX_TOLERANCE)


def conv_model(output: str) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation=output),
        ]
    )


def flat_model(output: str) -> keras.Model:
    inputs = keras.Input((784,), name="flat")
    hidden = keras.layers.Dense(32, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(10, activation=output)(hidden))


def image_model(output: str) -> keras.Model:
    return keras.Sequential(
        [keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10, activation=output)]
    )


LAYOUTS = {"(28, 28)": image_model, "(28, 28, 1)": conv_model, "(784,)": flat_model}


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("output", ["softmax", "linear"], ids=["probabilities", "logits"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_input_layout_and_output_kind_is_read_as_the_model_reads_it(
    digits, tmp_path: Path, layout: str, output: str, suffix: str, keras_seed
) -> None:
    model = LAYOUTS[layout](output)
    shape = model.input_shape[1:]
    images = digits.x_train.reshape(-1, *shape) / 255.0
    fit(model, images, digits.y_train)
    path = tmp_path / f"model{suffix}"
    model.save(path)
    store = RunStore(tmp_path / "runs")

    run = store.get(import_model_file(store, path, digits, name="  my model  "))

    assert run.imported.input == layout
    assert run.imported.output == ("probabilities" if output == "softmax" else "logits")
    assert run.model_name == "imported my model"
    answers = np.asarray(model(digits.x_test.reshape(-1, *shape) / 255.0))
    if output == "linear":
        answers = np.asarray(keras.ops.softmax(answers))
    np.testing.assert_allclose(run.test_probabilities(), answers, atol=SAME_MODEL_TOLERANCE)
    accuracy = float((answers.argmax(axis=1) == digits.y_test).mean())
    assert run.test_accuracy == pytest.approx(accuracy, abs=1e-9)
    assert accuracy > 0.5  # learnt something, so a wrong reshape or scale would show
    onnx = OnnxModel(run.onnx_path).predict_proba(digits.x_test)
    np.testing.assert_allclose(onnx, answers, atol=ONNX_TOLERANCE)


def raw_pixel_model(rescaling: bool) -> keras.Model:
    """A model of pixels in [0, 255]: with its own Rescaling(1/255) layer, or trained so."""
    layers = [keras.Input((28, 28))]
    layers += [keras.layers.Rescaling(1 / 255)] if rescaling else []
    layers += [keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
    return keras.Sequential(layers)


def test_the_pixel_scale_is_told_by_a_rescaling_layer(digits, tmp_path: Path, keras_seed) -> None:
    model = raw_pixel_model(rescaling=True)
    fit(model, digits.x_train.astype(np.float32), digits.y_train)
    model.save(tmp_path / "raw.keras")
    store = RunStore(tmp_path / "runs")

    run = store.get(import_model_file(store, tmp_path / "raw.keras", digits))

    assert run.imported.scale == "[0, 255]"
    assert run.imported.scale_note.startswith("told by the model")
    answers = predict_proba(model, digits.x_test.astype(np.float32))
    np.testing.assert_allclose(run.test_probabilities(), answers, atol=SAME_MODEL_TOLERANCE)


def test_the_pixel_scale_is_measured_on_training_digits_and_can_be_given(
    digits, tmp_path: Path, keras_seed
) -> None:
    model = raw_pixel_model(rescaling=False)
    fit(model, digits.x_train.astype(np.float32), digits.y_train, epochs=5)
    model.save(tmp_path / "raw.h5")
    store = RunStore(tmp_path / "runs")

    measured = store.get(import_model_file(store, tmp_path / "raw.h5", digits))
    given = store.get(import_model_file(store, tmp_path / "raw.h5", digits, scale="1"))

    assert measured.imported.scale == "[0, 255]"
    assert measured.imported.scale_note.startswith("measured on 400 training digits")
    right = float(
        (predict_proba(model, digits.x_test.astype(np.float32)).argmax(1) == digits.y_test).mean()
    )
    assert measured.test_accuracy == pytest.approx(right, abs=1e-9) and right > 0.5
    assert given.imported.scale == "[0, 1]"
    assert given.imported.scale_note == "chosen at import"
    # Read at the wrong scale: faint digits, near-uniform probabilities.
    assert given.metrics.test_loss > measured.metrics.test_loss + 0.3


def save(model: keras.Model, path: Path) -> Path:
    model.save(path)
    return path


def two_inputs() -> keras.Model:
    first, second = keras.Input((28, 28)), keras.Input((28, 28))
    joined = keras.layers.Concatenate()([first, second])
    return keras.Model([first, second], keras.layers.Dense(10)(keras.layers.Flatten()(joined)))


REFUSED = {
    "cifar": (
        lambda: keras.Sequential(
            [keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)]
        ),
        "reads inputs of shape (32, 32, 3), not MNIST digits",
    ),
    "five_classes": (
        lambda: keras.Sequential(
            [keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(5)]
        ),
        "gives outputs of shape (5,), not 10 digit scores",
    ),
    "two_inputs": (two_inputs, "has 2 inputs and 1 outputs"),
    "lambda": (
        lambda: keras.Sequential(
            [keras.Input((28, 28)), keras.layers.Lambda(lambda x: x * 2.0), keras.layers.Flatten()]
        ),
        "contains a Lambda layer (Python code); it was not loaded",
    ),
}


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("case", list(REFUSED))
def test_a_model_that_is_not_an_mnist_classifier_is_refused_and_nothing_saved(
    digits, tmp_path: Path, case: str, suffix: str
) -> None:
    build, expected = REFUSED[case]
    path = save(build(), tmp_path / f"{case}{suffix}")
    store = RunStore(tmp_path / "runs")

    with pytest.raises(ModelError) as error:
        import_model_file(store, path, digits)

    message = str(error.value)
    assert f"model '{case}{suffix}' " in message and expected in message
    assert "\n" not in message and message.endswith("that uses Keras' own layers only")
    assert store.list() == [] and not any((tmp_path / "runs").glob("*"))


def test_the_command_line_says_what_it_cannot_import(
    data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "model.h5"
    garbage.write_bytes(b"not a model")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    runs = str(tmp_path / "runs")

    assert main(["import", str(garbage), "--runs-dir", runs, "--data", str(data_file)]) == 1
    assert main(["import", str(text), "--runs-dir", runs]) == 1

    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[-2].startswith(
        "error: cannot load model 'model.h5': it is not an .h5 (HDF5) model file, or it is damaged"
    )
    assert errors[-1] == (
        f"error: cannot import {str(text)!r}: import a run bundle (.zip) or a Keras model file "
        "(.keras, .h5)"
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_an_imported_model_travels_in_a_bundle(digits, tmp_path: Path, keras_seed) -> None:
    from mnist_core.bundles import export_bundle, import_bundle

    model = image_model("softmax")
    fit(model, digits.x_train / 255.0, digits.y_train)
    source = RunStore(tmp_path / "here")
    run_id = import_model_file(source, save(model, tmp_path / "mine.keras"), digits)
    elsewhere = RunStore(tmp_path / "there")

    copy = elsewhere.get(import_bundle(elsewhere, export_bundle(source, run_id)))

    assert "-imported-" in copy.run_id and copy.imported == source.get(run_id).imported
    assert copy.metrics.imported_from == run_id
    np.testing.assert_array_equal(
        copy.test_probabilities(), source.get(run_id).test_probabilities()
    )
