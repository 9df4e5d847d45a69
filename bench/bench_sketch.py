"""Sketch benchmark: are digits drawn small, large, thick, thin or off-centre read as well as
the MNIST test set itself?

MNIST test digits are re-drawn onto 280x280 transparent canvases (like the Sketch page's) in
several ways, then read through `to_mnist` (crop, fit 20x20, centre by mass) and, as the
baseline, through a plain resize of the whole canvas to 28x28. Both go through the same model.

    MNIST_PATH=../shared/data/mnist.npz python bench/bench_sketch.py [--run best] [--samples N]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from PIL import Image
from scipy import ndimage

from mnist_core.data import load_mnist
from mnist_core.ml.predict import predict_proba
from mnist_core.preprocess import to_mnist
from mnist_core.runs import PRETRAINED_DIR, RunStore

CANVAS = 280

# name: (digit height in canvas pixels, stroke change (+ dilate / - erode, in canvas px), where)
VARIANTS = {
    "medium, centred": (180, 0, "centre"),
    "small (60 px), centred": (60, 0, "centre"),
    "large (270 px)": (270, 0, "centre"),
    "thick strokes": (180, 8, "centre"),
    "thin strokes": (180, -5, "centre"),
    "small, top-left corner": (70, 0, "corner"),
    "medium, random place": (140, 0, "random"),
}


def draw(digit: np.ndarray, height: int, stroke: int, where: str, rng) -> np.ndarray:
    """A (280, 280, 4) RGBA canvas with `digit` drawn in white ink on transparency."""
    big = np.asarray(
        Image.fromarray(digit).resize((height, height), Image.Resampling.BICUBIC), dtype=np.float32
    )
    if stroke:
        radius = abs(stroke)
        disk = np.hypot(*np.mgrid[-radius : radius + 1, -radius : radius + 1]) <= radius
        morph = ndimage.grey_dilation if stroke > 0 else ndimage.grey_erosion
        big = morph(big, footprint=disk)
    ink = np.clip(big, 0, 255).astype(np.uint8)
    if where == "centre":
        top = left = (CANVAS - height) // 2
    elif where == "corner":
        top = left = 5
    else:
        top, left = rng.integers(0, CANVAS - height + 1, size=2)
    canvas = np.zeros((CANVAS, CANVAS, 4), dtype=np.uint8)
    canvas[top : top + height, left : left + height, :3] = 255
    canvas[top : top + height, left : left + height, 3] = ink
    return canvas


def plain_resize(canvas: np.ndarray) -> np.ndarray:
    """The naive baseline: the whole canvas's ink shrunk to 28x28."""
    alpha = Image.fromarray(canvas[..., 3])
    return np.asarray(alpha.resize((28, 28), Image.Resampling.BOX), dtype=np.float32) / 255.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="best", help="run id or 'best' (default)")
    parser.add_argument("--samples", type=int, default=2000, help="test digits per variant")
    args = parser.parse_args()

    data = load_mnist()
    store = RunStore(pretrained=PRETRAINED_DIR)
    run = store.best() if args.run == "best" else store.get(args.run)
    if run is None:
        sys.exit("no trained run found: train one with `python -m mnist_core train` first")
    model = store.load_model(run.run_id)
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(data.x_test), size=args.samples, replace=False)
    labels = data.y_test[chosen]
    reference = float(np.mean(predict_proba(model, data.x_test[chosen]).argmax(1) == labels))

    print(f"model: {run.label}; {args.samples} MNIST test digits per variant")
    print(f"{'variant':<26} {'to_mnist':>9} {'plain resize':>13} {'vs MNIST':>9}  ms/canvas")
    print(f"{'MNIST test set as is':<26} {reference:>9.2%} {'':>13} {1.0:>9.3f}")
    for name, (height, stroke, where) in VARIANTS.items():
        canvases = [draw(data.x_test[i], height, stroke, where, rng) for i in chosen]
        start = time.perf_counter()
        prepared = np.stack([to_mnist(canvas) for canvas in canvases])
        milliseconds = (time.perf_counter() - start) * 1000 / len(canvases)
        ours = float(np.mean(predict_proba(model, prepared).argmax(1) == labels))
        naive_input = np.stack([plain_resize(canvas) for canvas in canvases])
        naive = float(np.mean(predict_proba(model, naive_input).argmax(1) == labels))
        print(
            f"{name:<26} {ours:>9.2%} {naive:>13.2%} {ours / reference:>9.3f}  {milliseconds:.2f}"
        )


if __name__ == "__main__":
    main()
