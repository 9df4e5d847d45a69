"""Training speed: `mnist_core.ml.train.train` (mlp preset, progress callback attached, as the
Train page uses it) against the original script's plain `model.fit` of the same model on the
same data, measured side by side in one run, plus the cost of progress reporting.

    MNIST_PATH=../shared/data/mnist.npz python bench/bench_training.py [--epochs 5] [--seeds 3]

Per-epoch times are medians over the epochs after the first (the first includes tracing).
The progress cost is the time spent reporting (reading the metrics, building each event and
calling the hook, timed around every report) over the whole training time: timing two runs
with and without the hook cannot resolve it, their totals differ by ±10 % from noise alone.
With `--accuracy` every seed also trains the full recipe (20 epochs, early stopping) both ways
and prints the test accuracies.
"""

from __future__ import annotations

import argparse
import statistics
import time

import keras
import numpy as np
from keras import layers

from mnist_core.config import TrainConfig
from mnist_core.data import load_mnist
from mnist_core.ml.train import _TrainingMonitor, train


class EpochTimer(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def original_script(
    data, epochs: int, seed: int, patience: int | None
) -> tuple[list[float], float]:
    """The seed script: Flatten-Dense256-Dropout-Dense128-Dropout-Dense10, plain fit."""
    keras.utils.set_random_seed(seed)
    x_train = data.x_train.astype("float32") / 255.0
    x_test = data.x_test.astype("float32") / 255.0
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            layers.Flatten(),
            layers.Dense(256, activation="relu"),
            layers.Dropout(0.4),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.4),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimer()
    callbacks: list[keras.callbacks.Callback] = [timer]
    if patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True)
        )
    model.fit(
        x_train,
        data.y_train,
        batch_size=128,
        epochs=epochs,
        validation_split=0.1,
        callbacks=callbacks,
        verbose=0,
    )
    _, accuracy = model.evaluate(x_test, data.y_test, verbose=0)
    return timer.seconds, float(accuracy)


def ours(
    data, epochs: int, seed: int, patience: int, lr_decay: bool = True
) -> tuple[list[float], float, float]:
    """mnist_core.ml.train.train on the mlp preset, with a progress hook as the Train page has
    (`lr_decay=False`: at the original script's constant learning rate).

    Returns per-epoch seconds, the share of training time spent reporting progress and the
    test accuracy.
    """
    stamps: list[float] = []
    reporting = [0.0]

    def on_progress(event) -> None:
        if event.epoch_end:
            stamps.append(event.elapsed)

    report = _TrainingMonitor.on_train_batches_end

    def timed_report(monitor, batches_done: int) -> None:
        start = time.perf_counter()
        report(monitor, batches_done)
        reporting[0] += time.perf_counter() - start

    config = TrainConfig.preset(
        "mlp", epochs=epochs, seed=seed, patience=patience, lr_decay=lr_decay
    )
    _TrainingMonitor.on_train_batches_end = timed_report
    try:
        result = train(config, data, on_progress=on_progress)
    finally:
        _TrainingMonitor.on_train_batches_end = report
    seconds = [b - a for a, b in zip([0.0, *stamps], stamps, strict=False)]
    return seconds, reporting[0] / result.train_seconds, result.test_accuracy


def steady(seconds: list[float]) -> float:
    return statistics.median(seconds[1:] or seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--accuracy", action="store_true", help="also the full 20-epoch recipe")
    args = parser.parse_args()
    data = load_mnist()

    print(
        f"{'seed':>4} {'plain fit s/epoch':>18} {'train() s/epoch':>16} {'speed-up':>9} "
        f"{'progress cost':>14}"
    )
    ratios, costs = [], []
    for seed in range(args.seeds):
        plain, _ = original_script(data, args.epochs, seed, patience=None)
        with_progress, cost, _ = ours(data, args.epochs, seed, 0)
        ratio = steady(plain) / steady(with_progress)
        ratios.append(ratio)
        costs.append(cost)
        print(
            f"{seed:>4} {steady(plain):>18.3f} {steady(with_progress):>16.3f} {ratio:>8.2f}x "
            f"{cost:>13.2%}"
        )
    print(
        f"median speed-up {statistics.median(ratios):.2f}x; "
        f"median progress cost {statistics.median(costs):.2%} of training time"
    )

    if args.accuracy:
        # The preset anneals its learning rate; at the script's constant rate the difference
        # left is the training loop's alone.
        print(
            f"\n{'seed':>4} {'plain fit acc':>14} {'train() preset':>15} {'difference':>11} "
            f"{'train() constant rate':>22} {'difference':>11}"
        )
        gaps: dict[bool, list[float]] = {True: [], False: []}
        for seed in range(args.seeds):
            _, plain_accuracy = original_script(data, 20, seed, patience=5)
            row = f"{seed:>4} {plain_accuracy:>14.2%}"
            for lr_decay, width in ((True, 15), (False, 22)):
                _, _, accuracy = ours(data, 20, seed, patience=5, lr_decay=lr_decay)
                gaps[lr_decay].append(accuracy - plain_accuracy)
                row += f" {accuracy:>{width}.2%} {100 * gaps[lr_decay][-1]:>+10.2f}pt"
            print(row)
        print(
            f"mean difference: preset {100 * float(np.mean(gaps[True])):+.2f} points, "
            f"constant rate {100 * float(np.mean(gaps[False])):+.2f} points"
        )


if __name__ == "__main__":
    main()
