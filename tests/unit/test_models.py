"""Tests for mnist_core.ml.models: the exact MLP of the original recipe, the CNN, augmentation."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mnist_core.config import TrainConfig
from mnist_core.ml.models import build_model

pytestmark = pytest.mark.usefixtures("keras_seed")


def images(count: int) -> np.ndarray:
    """(count, 28, 28) float32 in [0, 1]."""
    return np.random.default_rng(0).random((count, 28, 28), dtype=np.float32)


def test_mlp_is_the_original_architecture() -> None:
    model = build_model(TrainConfig.preset("mlp"))

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    summary = [
        (
            type(layer).__name__,
            getattr(layer, "units", None),
            getattr(getattr(layer, "activation", None), "__name__", None),
            getattr(layer, "rate", None),
        )
        for layer in layers
    ]
    assert summary == [
        ("Flatten", None, None, None),
        ("Dense", 256, "relu", None),
        ("Dropout", None, None, 0.4),
        ("Dense", 128, "relu", None),
        ("Dropout", None, None, 0.4),
        ("Dense", 10, "softmax", None),
    ]
    assert model.input_shape == (None, 28, 28)
    assert model.output_shape == (None, 10)
    assert model.count_params() == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10


def test_mlp_is_compiled_like_the_original() -> None:
    model = build_model(TrainConfig.preset("mlp"))

    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    assert model.loss == "sparse_categorical_crossentropy"


@pytest.mark.parametrize("preset", ["mlp", "quick", "cnn", "deep"])
def test_output_is_probabilities(preset: str) -> None:
    model = build_model(TrainConfig.preset(preset))

    output = keras.ops.convert_to_numpy(model(images(5), training=False))

    assert output.shape == (5, 10)
    assert output.dtype == np.float32
    assert np.all(output >= 0)
    np.testing.assert_allclose(output.sum(axis=1), 1.0, atol=1e-5)


def test_cnn_has_one_convolution_block_per_filter_count() -> None:
    model = build_model(TrainConfig.preset("quick", conv_filters=(8, 16, 24), hidden_units=(32,)))

    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.filters for layer in convolutions] == [8, 16, 24]
    assert [layer.kernel_size for layer in convolutions] == [(5, 5), (3, 3), (3, 3)]
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert len(pools) == 3
    dense = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert dense == [32, 10]
    assert model.output_shape == (None, 10)


def test_lr_decay_spans_all_training_steps() -> None:
    config = TrainConfig.preset("cnn", epochs=4)

    model = build_model(config, steps_per_epoch=25)

    schedule = model.optimizer.get_config()["learning_rate"]
    assert schedule["class_name"] == "CosineDecay"
    assert schedule["config"]["decay_steps"] == 100
    assert schedule["config"]["initial_learning_rate"] == pytest.approx(3e-3)


@pytest.mark.parametrize(
    ("optimizer", "kind"),
    [
        ("adam", keras.optimizers.Adam),
        ("sgd", keras.optimizers.SGD),
        ("rmsprop", keras.optimizers.RMSprop),
    ],
)
def test_optimizer_and_learning_rate_follow_the_config(optimizer: str, kind: type) -> None:
    model = build_model(TrainConfig(optimizer=optimizer, learning_rate=0.05, hidden_units=(8,)))

    assert isinstance(model.optimizer, kind)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
def test_shift_alone_adds_only_a_translation_of_its_range(architecture: str) -> None:
    model = build_model(TrainConfig(architecture=architecture, shift=0.08))
    augmenting = [layer for layer in model.layers if layer.name in ("shift", "rotate", "zoom")]
    assert [layer.name for layer in augmenting] == ["shift"]
    assert (augmenting[0].height_factor, augmenting[0].width_factor) == (0.08, 0.08)
    # With augment on, shift sets the range of its translation; unset, augment's own 0.1.
    both = build_model(TrainConfig(augment=True, shift=0.05)).get_layer("shift")
    assert both.height_factor == 0.05
    assert build_model(TrainConfig(augment=True)).get_layer("shift").height_factor == 0.1


def test_deep_blocks_are_three_batch_normalised_convolutions() -> None:
    model = build_model(TrainConfig.preset("quick", architecture="deep"))

    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size, c.strides, c.padding) for c in convs] == [
        (32, (3, 3), (1, 1), "valid"),
        (32, (3, 3), (1, 1), "valid"),
        (32, (5, 5), (2, 2), "same"),
        (64, (3, 3), (1, 1), "valid"),
        (64, (3, 3), (1, 1), "valid"),
        (64, (5, 5), (2, 2), "same"),
    ]
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 7  # after every convolution and the hidden dense layer
    assert model.get_layer("flatten").output.shape == (None, 4 * 4 * 64)
    assert model.get_layer("dense1").units == 128
    # Batch normalisation uses its running statistics at inference: outputs are repeatable.
    x = images(4)
    first = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_array_equal(first, keras.ops.convert_to_numpy(model(x, training=False)))


def test_vgg_blocks_are_two_convolutions_normalised_before_their_relu() -> None:
    model = build_model(TrainConfig.preset("deep"))

    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size, c.padding, c.use_bias) for c in convs] == [
        (32, (3, 3), "valid", False),
        (32, (3, 3), "valid", False),
        (64, (3, 3), "valid", False),
        (64, (3, 3), "valid", False),
    ]
    names = [layer.name for layer in model.layers]
    # Each convolution and the dense layer: normalised, then the relu.
    for part in ("1_1", "1_2", "2_1", "2_2", "_dense1"):
        norm, relu = names.index(f"norm{part}"), names.index(f"relu{part}")
        assert relu == norm + 1
    assert model.get_layer("pool2").output.shape == (None, 4, 4, 64)
    assert model.get_layer("dense1").units == 256 and not model.get_layer("dense1").use_bias
    assert model.get_layer("dropout_features").rate == 0.3
    assert model.get_layer("shift").height_factor == 0.08
    x = images(4)
    first = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_array_equal(first, keras.ops.convert_to_numpy(model(x, training=False)))
    np.testing.assert_allclose(first.sum(axis=1), 1.0, atol=1e-6)


def test_strided_shrinks_its_first_block_by_a_step_2_convolution_to_vgg_shapes() -> None:
    config = TrainConfig.preset("cnn")
    assert config.architecture == "strided"
    model = build_model(config)
    vgg = build_model(config.replace(architecture="vgg"))

    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    first, second = config.conv_filters
    assert [(c.filters, c.kernel_size, c.strides, c.use_bias) for c in convs] == [
        (first, (3, 3), (1, 1), False),
        (first, (3, 3), (2, 2), False),  # 26 -> 12 pixels, in place of pooling
        (second, (3, 3), (1, 1), False),
        (second, (3, 3), (1, 1), False),
    ]
    names = {layer.name for layer in model.layers}
    assert "pool1" not in names and "pool1" in {layer.name for layer in vgg.layers}
    # The same shapes after the first block as vgg's, and the same weights' shapes: the
    # second convolution does a quarter of its work.
    assert model.get_layer("relu1_2").output.shape == vgg.get_layer("pool1").output.shape
    assert model.get_layer("relu1_2").output.shape == (None, 12, 12, first)
    assert [w.shape for w in model.weights] == [w.shape for w in vgg.weights]
    assert model.get_layer("pool2").output.shape == (None, 4, 4, second)
    probabilities = keras.ops.convert_to_numpy(model(images(4), training=False))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)


def test_augmentation_layers_are_added_and_inactive_at_inference() -> None:
    config = TrainConfig(augment=True, dropout_rate=0.0, hidden_units=(16,))
    model = build_model(config)

    kinds = {layer.name: type(layer).__name__ for layer in model.layers}
    assert kinds["shift"] == "RandomTranslation"
    assert kinds["rotate"] == "RandomRotation"
    assert kinds["zoom"] == "RandomZoom"
    assert "shift" not in {layer.name for layer in build_model(TrainConfig()).layers}

    x = images(8)
    first = keras.ops.convert_to_numpy(model(x, training=False))
    second = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_array_equal(first, second)
    # Without dropout only the random layers can change the output while training.
    trained_view = keras.ops.convert_to_numpy(model(x, training=True))
    assert np.abs(trained_view - first).max() > 1e-4


def test_a_deep_network_trains_saves_and_reloads_safely(digits, small_config, tmp_path) -> None:
    from mnist_core.ml.predict import predict_proba
    from mnist_core.ml.train import train
    from mnist_core.runs import RunStore

    # Batch normalisation's running statistics need a few hundred steps to settle.
    config = small_config.replace(
        architecture="deep", conv_filters=(4, 8), hidden_units=(16,), epochs=20
    )
    result = train(config, digits)
    store = RunStore(tmp_path)
    run_id = store.save(result)
    loaded = store.load_model(run_id)  # Keras safe mode: only Keras' own layers

    assert result.test_accuracy > 0.5  # ten patterns, chance is 0.1
    assert loaded.get_layer("norm2_3").moving_variance.shape == (8,)
    np.testing.assert_allclose(
        predict_proba(loaded, digits.x_test), result.evaluation.probabilities, atol=1e-5
    )
