"""Sketch latency: from a 280x280 RGBA canvas to ten probabilities, one image at a time.

    MNIST_PATH=../shared/data/mnist.npz python bench/bench_latency.py [--calls 500]

For the newest saved run of each architecture (`MNIST_RUNS_DIR`, then the pretrained run):
`to_mnist` alone, then `to_mnist` + the run's ONNX model in ONNX Runtime (what the web process
does, one thread), beside the Keras paths on the same inputs: `predict_proba` (a traced
function) and `model.predict`. Target for the `cnn` preset, canvas to probabilities through
ONNX Runtime: p50 <= 0.5 ms, p99 <= 2 ms.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image

from mnist_core.config import PRESETS
from mnist_core.data import load_mnist
from mnist_core.ml.predict import predict_proba
from mnist_core.preprocess import to_mnist
from mnist_core.runs import PRETRAINED_DIR, RunStore
from mnist_core.serving import OnnxModel

# p50, p99 ms of canvas -> probabilities through ONNX Runtime, for the `cnn` preset's network
# (keyed by its architecture, which the runs record: "strided" since the preset changed).
TARGETS = {PRESETS["cnn"].architecture: (0.5, 2.0)}


def canvases(data, count: int) -> list[np.ndarray]:
    """Test digits drawn white-on-transparent at 200 px, like strokes on the Sketch canvas."""
    result = []
    for digit in data.x_test[:count]:
        canvas = np.zeros((280, 280, 4), dtype=np.uint8)
        canvas[40:240, 40:240, :3] = 255
        canvas[40:240, 40:240, 3] = np.asarray(Image.fromarray(digit).resize((200, 200)))
        result.append(canvas)
    return result


def percentiles(seconds: list[float]) -> tuple[float, float]:
    milliseconds = np.asarray(seconds) * 1000
    return float(np.percentile(milliseconds, 50)), float(np.percentile(milliseconds, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    data = load_mnist()
    inputs = canvases(data, 50)
    store = RunStore(pretrained=PRETRAINED_DIR)
    newest = {}
    for run in store.list():
        newest.setdefault(run.config.architecture, run)

    print(f"{'model':<8} {'path':<30} {'p50 ms':>8} {'p99 ms':>8}  target")
    for architecture, run in sorted(newest.items()):
        model = store.load_model(run.run_id)
        onnx = OnnxModel(run.onnx_path)
        for name, predict in (
            ("to_mnist alone", lambda image: image),
            ("to_mnist + ONNX Runtime", onnx.predict_proba),
            ("to_mnist + Keras predict_proba", lambda image, m=model: predict_proba(m, image)),
            (
                "to_mnist + Keras model.predict",
                lambda image, m=model: m.predict(image[None], verbose=0),
            ),
        ):
            for canvas in inputs[:5]:  # warm-up: tracing and caches
                predict(to_mnist(canvas))
            seconds = []
            for call in range(args.calls):
                canvas = inputs[call % len(inputs)]
                start = time.perf_counter()
                predict(to_mnist(canvas))
                seconds.append(time.perf_counter() - start)
            p50, p99 = percentiles(seconds)
            target = ""
            if "ONNX" in name and architecture in TARGETS:
                wanted = TARGETS[architecture]
                met = p50 <= wanted[0] and p99 <= wanted[1]
                target = f"p50 <= {wanted[0]}, p99 <= {wanted[1]} {'ok' if met else 'MISSED'}"
            print(f"{architecture:<8} {name:<30} {p50:>8.3f} {p99:>8.3f}  {target}")


if __name__ == "__main__":
    main()
