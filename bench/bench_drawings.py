"""Drawings benchmark: runs scored on MNIST's test set and on a set of drawings side by side,
as Results' "MNIST test set vs your drawings" table does, with each run's training options.

    python bench/bench_drawings.py [--drawings DIR] [RUN ...]

`DIR` is a drawings folder (default `MNIST_DRAWINGS_DIR`, else `data/drawings`), e.g. the one
`bench/make_drawings.py` fills; runs come from `MNIST_RUNS_DIR` and the pretrained run (all of
them when none is named).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mnist_core.drawings import DrawingSet
from mnist_core.evaluate import evaluate
from mnist_core.runs import PRETRAINED_DIR, RunStore


def options(config) -> str:
    chosen = [name for name in ("augment", "elastic", "drawings") if getattr(config, name)]
    if config.shift:
        chosen.append(f"shift {config.shift:g}")
    return ", ".join(chosen) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="run ids (default: every run)")
    parser.add_argument("--drawings", type=Path, default=None, help="the drawings folder")
    args = parser.parse_args()

    images, labels = DrawingSet(args.drawings).arrays()
    if len(images) == 0:
        sys.exit("no drawings: keep some on the Sketch page or run bench/make_drawings.py")
    store = RunStore(pretrained=PRETRAINED_DIR)
    runs = [store.get(run_id) for run_id in args.runs] if args.runs else store.list()
    print(f"{len(images)} drawings, {np.bincount(labels, minlength=10).tolist()} per digit")
    print(f"{'run':<30} {'augmentation':<16} {'MNIST test':>10} {'drawings':>9} {'gap':>7}")
    for run in runs:
        mine = evaluate(store.load_model(run.run_id), images, labels)
        wrong = [f"{t}→{p}" for t, p in zip(labels, mine.predicted, strict=True) if t != p]
        print(
            f"{run.run_id:<30} {options(run.config):<16} {run.test_accuracy:>10.2%} "
            f"{mine.accuracy:>9.1%} {(mine.accuracy - run.test_accuracy) * 100:>+7.1f}"
            f"  misread: {' '.join(wrong) or '-'}"
        )


if __name__ == "__main__":
    main()
