"""Keras models for 28x28 digits, built from a `TrainConfig`.

Every model takes `(batch, 28, 28)` float32 pixels in [0, 1] (white digit on black) and returns
`(batch, 10)` softmax probabilities, so prediction code never needs to know the architecture.
"""

from __future__ import annotations

import keras
from keras import layers

from mnist_core.config import CONVNETS, TrainConfig
from mnist_core.data import IMAGE_SHAPE, NUM_CLASSES

AUGMENT_SHIFT = 0.1  # how far `augment` shifts images when `shift` is not set
# Steps run inside one compiled call. Larger values cut Python overhead per batch (the MLP's
# steps take about a millisecond), smaller ones keep progress and stop requests responsive.
STEPS_PER_EXECUTION = {"mlp": 64, "cnn": 4, "vgg": 2, "strided": 2, "deep": 2}
# Networks of vgg blocks (two batch-normalised 3x3 convolutions each); `strided` differs only
# in how its first block shrinks the digit.
VGG_BLOCKS = ("vgg", "strided")


def build_model(config: TrainConfig, steps_per_epoch: int | None = None) -> keras.Model:
    """A compiled model for `config`.

    `steps_per_epoch` (batches per epoch) sets the length of the cosine learning-rate decay
    when `config.lr_decay` is on; without it the full MNIST training split is assumed.
    """
    inputs = keras.Input(shape=IMAGE_SHAPE, name="pixels")  # (batch, 28, 28) float32 in [0, 1]
    x = inputs
    shift = config.shift or (AUGMENT_SHIFT if config.augment else 0.0)
    if shift or config.architecture in CONVNETS:  # augment always shifts
        x = layers.Reshape((*IMAGE_SHAPE, 1))(x)  # (batch, 28, 28, 1) for image layers
    # Only active while training: small shifts, tilts and size changes, like handwriting.
    if shift:
        x = layers.RandomTranslation(shift, shift, fill_mode="constant", name="shift")(x)
    if config.augment:
        x = layers.RandomRotation(0.04, fill_mode="constant", name="rotate")(x)
        x = layers.RandomZoom(0.1, fill_mode="constant", name="zoom")(x)
    if config.architecture == "cnn":
        # A 5x5 first block sees whole stroke segments; the later blocks, on more channels,
        # use 3x3 kernels, 2.8x cheaper than 5x5 for the same accuracy.
        # No batch normalisation: on 2 CPU cores it cost more time than it saved.
        for block, filters in enumerate(config.conv_filters, start=1):
            size = 5 if block == 1 else 3
            x = layers.Conv2D(
                filters, size, padding="same", activation="relu", name=f"conv{block}"
            )(x)
            x = layers.MaxPooling2D(2, name=f"pool{block}")(x)
    if config.architecture in VGG_BLOCKS:
        # Each block: two 3x3 convolutions, each batch-normalised before its relu, then 2x2
        # pooling (28 -> 26 -> 24 -> 12 pixels, then 10 -> 8 -> 4), as in VGG networks.
        # `strided` shrinks its first block with the second convolution itself, a step of 2
        # (26 -> 12 pixels): a quarter of that convolution's work, the same shapes after it.
        for block, filters in enumerate(config.conv_filters, start=1):
            strided = config.architecture == "strided" and block == 1
            for part in (1, 2):
                x = layers.Conv2D(
                    filters,
                    3,
                    strides=2 if strided and part == 2 else 1,
                    use_bias=False,  # batch normalisation adds its own offset
                    name=f"conv{block}_{part}",
                )(x)
                x = layers.BatchNormalization(name=f"norm{block}_{part}")(x)
                x = layers.Activation("relu", name=f"relu{block}_{part}")(x)
            if not strided:
                x = layers.MaxPooling2D(2, name=f"pool{block}")(x)
    if config.architecture == "deep":
        # Each block: two 3x3 convolutions and a strided 5x5 one in place of pooling, each
        # followed by batch normalisation (28 -> 26 -> 24 -> 12 pixels, then 10 -> 8 -> 4).
        for block, filters in enumerate(config.conv_filters, start=1):
            for part, (size, stride) in enumerate(((3, 1), (3, 1), (5, 2)), start=1):
                x = layers.Conv2D(
                    filters,
                    size,
                    strides=stride,
                    padding="same" if stride > 1 else "valid",
                    activation="relu",
                    use_bias=False,  # batch normalisation adds its own offset
                    name=f"conv{block}_{part}",
                )(x)
                x = layers.BatchNormalization(name=f"norm{block}_{part}")(x)
            x = layers.Dropout(config.dropout_rate, name=f"dropout_block{block}")(x)
    x = layers.Flatten(name="flatten")(x)
    if config.architecture in ("cnn", *VGG_BLOCKS):
        x = layers.Dropout(config.dropout_rate, name="dropout_features")(x)
    for index, units in enumerate(config.hidden_units, start=1):
        if config.architecture in VGG_BLOCKS:  # normalised before the relu, as above
            x = layers.Dense(units, use_bias=False, name=f"dense{index}")(x)
            x = layers.BatchNormalization(name=f"norm_dense{index}")(x)
            x = layers.Activation("relu", name=f"relu_dense{index}")(x)
        elif config.architecture == "deep":
            x = layers.Dense(units, activation="relu", use_bias=False, name=f"dense{index}")(x)
            x = layers.BatchNormalization(name=f"norm_dense{index}")(x)
        else:
            x = layers.Dense(units, activation="relu", name=f"dense{index}")(x)
        x = layers.Dropout(config.dropout_rate, name=f"dropout{index}")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name=f"mnist_{config.architecture}")

    model.compile(
        optimizer=_optimizer(config, steps_per_epoch),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=STEPS_PER_EXECUTION[config.architecture],
    )
    return model


def _optimizer(config: TrainConfig, steps_per_epoch: int | None) -> keras.optimizers.Optimizer:
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = config.learning_rate
    if config.lr_decay:
        if steps_per_epoch is None:
            train_size = round(60_000 * (1 - config.validation_split))
            steps_per_epoch = -(-train_size // config.batch_size)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=max(1, steps_per_epoch * config.epochs)
        )
    optimizers = {
        "adam": keras.optimizers.Adam,
        "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate, momentum=0.9),
        "rmsprop": keras.optimizers.RMSprop,
    }
    return optimizers[config.optimizer](learning_rate=learning_rate)
