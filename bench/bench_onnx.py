"""The whole MNIST test set through ONNX Runtime and through Keras, for every preset.

    MNIST_PATH=../shared/data/mnist.npz python bench/bench_onnx.py [--epochs 1]

Each preset is trained for `--epochs` epochs (its other settings as they are; how long it
trains does not change which layers the exported graph holds), exported the way a worker
saves a run (`onnx_export.export_onnx`, training-only layers left out), and both engines read
all 10,000 test digits. Target: the same predicted digit on all 10,000, max |Δp| <= 1e-4.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mnist_core.config import PRESETS, TrainConfig
from mnist_core.data import load_mnist
from mnist_core.ml.onnx_export import export_onnx
from mnist_core.ml.predict import predict_proba
from mnist_core.ml.train import train
from mnist_core.serving import OnnxModel

MAX_DIFFERENCE = 1e-4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    data = load_mnist()
    print(f"{'preset':<7} {'same digit':>12} {'max |Δp|':>10} {'export s':>9}  target")
    with tempfile.TemporaryDirectory() as folder:
        for preset in PRESETS:
            config = TrainConfig.preset(preset, epochs=args.epochs, patience=0)
            model = train(config, data).model
            path = Path(folder) / f"{preset}.onnx"
            started = time.perf_counter()
            export_onnx(model, path)
            seconds = time.perf_counter() - started
            expected = predict_proba(model, data.x_test)
            probabilities = OnnxModel(path).predict_proba(data.x_test)
            same = int((probabilities.argmax(axis=1) == expected.argmax(axis=1)).sum())
            difference = float(np.abs(probabilities - expected).max())
            met = same == len(expected) and difference <= MAX_DIFFERENCE
            print(
                f"{preset:<7} {same:>6}/{len(expected):<5} {difference:>10.1e} {seconds:>9.1f}  "
                f"all same, <= {MAX_DIFFERENCE:g} {'ok' if met else 'MISSED'}",
                flush=True,
            )


if __name__ == "__main__":
    main()
