"""Keras models built the way users build them, for the tests of importing model files."""

from __future__ import annotations

import keras


def original_recipe() -> keras.Model:
    """The script this project started from: Flatten → 256 → 128 → 10 softmax, dropout 0.4."""
    return keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dropout(0.4),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dropout(0.4),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
