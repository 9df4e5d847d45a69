"""The accuracy ladder: every preset trained with several seeds; its test accuracy (mean and
min-max), the validation accuracy its choices were made on, and its training time in E-units.

    MNIST_PATH=../shared/data/mnist.npz python bench/bench_presets.py \
        [--presets quick,mlp,cnn,deep,best] [--seeds 3] [--first-seed 1] [--json FILE]

An E-unit is the seconds per epoch of the keras-io MNIST convnet (3x3 conv 32, pool, 3x3 conv 64,
pool, dropout 0.5, dense 10, Adam, batch 128, plain `model.fit` with `validation_split=0.1`),
measured in this run on this machine before the first training and after every training, the
median of each measurement's epochs after the first (which includes tracing); a training is
divided by the mean of the measurements on either side of it. A preset's
time is its training loop's seconds (`TrainResult.train_seconds`, validation included, the
test-set evaluation not); an ensemble's is the sum of its members'. Preset seeds are
`first-seed`, `+ 1`, ...; an ensemble preset with seed s averages the runs of its member preset
(`ENSEMBLE_PRESETS` in mnist_core/config.py) with seeds s, s + 1, ..., one per member, so its
seeds step by its member count and no two of its rows share a member; a member already trained
with the same settings in this run is reused, not trained again (a preset row and an ensemble
row over the same preset and seeds train those runs once).

The test set is read once per figure: nothing here chooses anything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import keras
from keras import layers

from mnist_core.config import ENSEMBLE_PRESETS, PRESETS, TrainConfig
from mnist_core.data import load_mnist
from mnist_core.ml.ensemble import save_ensemble
from mnist_core.ml.train import train
from mnist_core.runs import RunStore

# preset -> (test accuracy to reach, most E-units it may take or None), issue 16's targets.
TARGETS: dict[str, tuple[float, float | None]] = {
    "quick": (0.990, 3),
    "mlp": (0.982, None),
    "cnn": (0.9955, 15),
    "deep": (0.9965, 100),
    "best": (0.9970, 300),
}


def cpu_model() -> str:
    """The CPU as /proc/cpuinfo names it, with its family, model and widest vector unit."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    flags = fields.get("flags", "").split()
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return (
        f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')} model "
        f"{fields.get('model', '?')}, {vector}), {len(os.sched_getaffinity(0))} cores"
    )


def keras_io_epoch_seconds(data, epochs: int = 4) -> float:
    """Median seconds per epoch of the keras-io MNIST convnet, epochs after the first."""
    keras.utils.set_random_seed(0)
    x = data.x_train.astype("float32")[..., None] / 255.0
    y = keras.utils.to_categorical(data.y_train, 10)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    seconds: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None) -> None:
            seconds.append(time.perf_counter() - self.start)

    model.fit(
        x, y, batch_size=128, epochs=epochs, validation_split=0.1, verbose=0, callbacks=[Timer()]
    )
    return statistics.median(seconds[1:])


class Trainings:
    """Trains configs into one run store, each once: an ensemble whose member was already
    trained with the same settings (as a row of its own) reuses it."""

    def __init__(self, store, data) -> None:
        self.store, self.data = store, data
        self.run_ids: dict[TrainConfig, str] = {}

    def run(self, config: TrainConfig) -> str:
        """The run id of `config`, trained now if it is new."""
        if config not in self.run_ids:
            self.run_ids[config] = self.store.save(train(config, self.data))
        return self.run_ids[config]

    def figures(self, name: str, seed: int) -> dict:
        """One row's figures: preset `name` (or an ensemble preset) with `seed`."""
        if name not in ENSEMBLE_PRESETS:
            run = self.store.get(self.run(TrainConfig.preset(name, seed=seed)))
            return {
                "test_accuracy": run.test_accuracy,
                "val_accuracy": run.val_accuracy,
                "seconds": run.metrics.train_seconds,
                "epochs_run": run.metrics.epochs_run,
            }
        preset = ENSEMBLE_PRESETS[name]
        member_ids = [self.run(preset.member_config(seed=seed + n)) for n in range(preset.members)]
        run = self.store.get(save_ensemble(self.store, member_ids, self.data, tta=preset.tta))
        members = run.ensemble.members
        return {
            "test_accuracy": run.test_accuracy,
            "val_accuracy": run.val_accuracy,
            # The choices behind the preset, on validation digits only: the members
            # averaged without shifted copies, and the first two members alone.
            "val_without_tta": validation_accuracy(self.store, members, self.data, tta=False),
            "val_two_members": validation_accuracy(
                self.store, members[:2], self.data, tta=preset.tta
            ),
            "seconds": sum(m.train_seconds or 0.0 for m in members),
            "members": [
                {"seed": m.seed, "test_accuracy": m.test_accuracy, "val_accuracy": m.val_accuracy}
                for m in members
            ],
        }


def validation_accuracy(store, members, data, tta: bool) -> float:
    """Validation accuracy of an ensemble of `members` (saved runs) built here, not saved."""
    from mnist_core.evaluate import evaluate
    from mnist_core.ml.ensemble import ensemble_model

    models = [store.load_model(member.run_id) for member in members]
    split = store.get(members[0].run_id).config.validation_split
    n_val = int(round(len(data.x_train) * split))
    model = ensemble_model(models, tta=tta)
    return evaluate(model, data.x_train[-n_val:], data.y_train[-n_val:]).accuracy


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    values = [v * scale for v in values]
    return (
        f"{statistics.mean(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="quick,mlp,cnn,deep,best")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--json", help="also write every figure to this file")
    args = parser.parse_args()
    names = [name.strip() for name in args.presets.split(",") if name.strip()]
    unknown = [name for name in names if name not in PRESETS and name not in ENSEMBLE_PRESETS]
    if unknown:
        parser.error(f"unknown presets {unknown}")
    data = load_mnist()
    print(f"CPU: {cpu_model()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", flush=True)
    # The machine's pace drifts (a shared host: 19.3 s per keras-io epoch at the start of one
    # run, 8.6 s at its end), so the unit is measured between every two trainings and each
    # training is divided by the mean of the measurements on either side of it.
    marks = [keras_io_epoch_seconds(data, epochs=3)]
    print(f"keras-io convnet: {marks[0]:.2f} s per epoch", flush=True)

    rows: dict[str, list[dict]] = {}
    folder = tempfile.TemporaryDirectory()
    trainings = Trainings(RunStore(folder.name), data)
    for name in names:
        step = ENSEMBLE_PRESETS[name].members if name in ENSEMBLE_PRESETS else 1
        for index in range(args.seeds):
            seed = args.first_seed + index * step
            figures = trainings.figures(name, seed)
            marks.append(keras_io_epoch_seconds(data, epochs=3))
            figures["seed"] = seed
            figures["e_unit_seconds"] = (marks[-2] + marks[-1]) / 2
            figures["e_units"] = figures["seconds"] / figures["e_unit_seconds"]
            rows.setdefault(name, []).append(figures)
            print(
                f"{name} seed {seed}: test {figures['test_accuracy']:.2%}, validation "
                f"{(figures['val_accuracy'] or float('nan')):.2%}, {figures['seconds']:.1f} s "
                f"= {figures['e_units']:.1f} E (keras-io convnet after it: {marks[-1]:.2f} s "
                "per epoch)",
                flush=True,
            )
            if "members" in figures:
                alone = ", ".join(f"{m['val_accuracy']:.2%}" for m in figures["members"])
                print(
                    f"  validation: members alone {alone}; the {len(figures['members'])} "
                    f"without shifted copies {figures['val_without_tta']:.2%}; the first two "
                    f"{figures['val_two_members']:.2%}",
                    flush=True,
                )
    print(
        f"keras-io convnet: {min(marks):.2f}–{max(marks):.2f} s per epoch over the run "
        f"(median {statistics.median(marks):.2f} s)",
        flush=True,
    )

    print()
    print("| preset | test accuracy, mean (min–max) | validation | time, E | seconds | target |")
    print("| --- | --- | --- | --- | --- | --- |")
    summary = {}
    for name, figures in rows.items():
        tests = [f["test_accuracy"] for f in figures]
        vals = [f["val_accuracy"] for f in figures if f["val_accuracy"] is not None]
        seconds = [f["seconds"] for f in figures]
        units = [f["e_units"] for f in figures]
        accuracy, budget = TARGETS.get(name, (None, None))
        met = []
        if accuracy is not None:
            met.append(
                f"≥ {accuracy:.2%} {'met' if statistics.mean(tests) >= accuracy else 'MISSED'}"
            )
        if budget is not None:
            met.append(f"≤ {budget} E {'met' if statistics.mean(units) <= budget else 'MISSED'}")
        print(
            f"| `{name}` | {spread(tests, 100)} % | {spread(vals, 100) if vals else '—'} % | "
            f"{spread(units, 1, 1)} | {spread(seconds, 1, 0)} | {', '.join(met)} |"
        )
        summary[name] = {"runs": figures, "mean_test": statistics.mean(tests)}
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "cpu": cpu_model(),
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "keras_io_epoch_seconds": marks,
                    "presets": summary,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
