"""Ensembles: a run whose probabilities are the mean of its members' (saved runs).

`ensemble_model` wires the members' inference graphs (training-only layers left out) into one
Keras model that averages their probabilities, and with `tta` each member's over copies of the
input moved by `serving.TTA_SHIFTS`, built from Keras' own padding and cropping layers. The
ensemble is then an ordinary run: one `model.keras` (every member's weights inside it), its ONNX
file, scores on the test set, and `metrics.ensemble` listing its members (their ids,
settings and scores), so it stays whole when a member run is deleted. It trains nothing, so
it has no epochs and no TensorBoard event files; its members have theirs.

The ensemble's validation accuracy is measured on the members' shared validation split: members
must have held out the same digits (`validation_split`) from the same data.

This module needs TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np

from mnist_core.config import EnsemblePreset, TrainConfig
from mnist_core.data import IMAGE_SHAPE, MnistData
from mnist_core.errors import ConfigError
from mnist_core.evaluate import Evaluation, evaluate
from mnist_core.ml.model_files import load_model_file
from mnist_core.ml.onnx_export import inference_model
from mnist_core.ml.train import ProgressHook, TrainResult, train
from mnist_core.progress import HISTORY_KEYS
from mnist_core.run_record import Ensemble, EnsembleMember
from mnist_core.runs import RunInfo, RunRecorder, RunStore
from mnist_core.serving import TTA_SHIFTS

MIN_MEMBERS = 2
MAX_MEMBERS = 10  # each member's weights live in the ensemble's model file


def ensemble_model(
    members: Sequence[keras.Model], tta: bool = False, name: str = "mnist_ensemble"
) -> keras.Model:
    """One model averaging `members`' probabilities (with `tta`, each over shifted copies)."""
    inputs = keras.Input(shape=IMAGE_SHAPE, name="pixels")
    views = [inputs]
    if tta:
        image = keras.layers.Reshape((*IMAGE_SHAPE, 1), name="as_image")(inputs)
        padded = keras.layers.ZeroPadding2D(1, name="pad")(image)
        views = []
        for dy, dx in TTA_SHIFTS:  # output[y, x] = input[y - dy, x - dx]; black moves in
            label = f"{dy:+d}_{dx:+d}".replace("+", "p").replace("-", "m")
            moved = keras.layers.Cropping2D(
                ((1 - dy, 1 + dy), (1 - dx, 1 + dx)), name=f"shift_{label}"
            )(padded)
            views.append(keras.layers.Reshape(IMAGE_SHAPE, name=f"view_{label}")(moved))
    answers = []
    for number, member in enumerate(members, start=1):
        inference = inference_model(member)
        wrapped = keras.Model(inference.inputs[0], inference.outputs[0], name=f"member{number}")
        answers += [wrapped(view) for view in views]
    outputs = (
        keras.layers.Average(name="probabilities")(answers) if len(answers) > 1 else answers[0]
    )
    return keras.Model(inputs, outputs, name=name)


def check_members(runs: Sequence[RunInfo]) -> None:
    """Raise ConfigError unless `runs` can form an ensemble: 2 to MAX_MEMBERS distinct runs,
    none an ensemble itself, all with the same validation split of the same data."""
    ids = [run.run_id for run in runs]
    if len(set(ids)) != len(ids):
        raise ConfigError("members", "a run is listed twice; list each member once")
    if not MIN_MEMBERS <= len(runs) <= MAX_MEMBERS:
        raise ConfigError(
            "members", f"an ensemble takes {MIN_MEMBERS} to {MAX_MEMBERS} runs, got {len(runs)}"
        )
    for run in runs:
        if run.ensemble is not None:
            raise ConfigError(
                "members", f"run {run.run_id} is an ensemble itself; list its members instead"
            )
    splits = {run.config.validation_split for run in runs}
    if len(splits) > 1:
        raise ConfigError(
            "members",
            f"the runs held out different validation splits ({sorted(splits)}), so the "
            "ensemble could not be judged on digits none of them trained on; pick runs "
            "trained with the same split",
        )
    sources = {run.metrics.data_fingerprint for run in runs}
    if len(sources) > 1:
        raise ConfigError(
            "members",
            "the runs were trained on different data (your drawings mixed in, or another "
            "copy of MNIST); pick runs trained on the same data",
        )


def build_ensemble(runs: Sequence[RunInfo], data: MnistData, tta: bool = False) -> TrainResult:
    """The ensemble of saved `runs` as a result `RunStore.save` accepts, scored on `data`'s
    test set and, for `metrics.val_accuracy`, on the members' validation split."""
    check_members(runs)
    model = ensemble_model([load_model_file(run.model_path) for run in runs], tta=tta)
    split = runs[0].config.validation_split
    n_val = int(round(len(data.x_train) * split))
    val_accuracy = None
    if n_val:
        validation = evaluate(model, data.x_train[-n_val:], data.y_train[-n_val:])
        val_accuracy = validation.accuracy
    evaluation: Evaluation = evaluate(model, data.x_test, data.y_test)
    members = tuple(map(_member, runs))
    return TrainResult(
        model=model,
        config=runs[0].config,
        history={key: [] for key in HISTORY_KEYS},  # no epochs of its own
        evaluation=evaluation,
        epochs_run=0,
        best_epoch=0,
        stopped=False,
        stopped_early=False,
        train_seconds=sum(run.metrics.train_seconds for run in runs),
        data_source=runs[0].metrics.data_source,
        data_fingerprint=runs[0].metrics.data_fingerprint,
        kind="ensemble",
        extra_metrics={
            "val_accuracy": val_accuracy,
            "ensemble": Ensemble(tta=tta, shifts=TTA_SHIFTS if tta else (), members=members),
        },
    )


def save_ensemble(
    store: RunStore, run_ids: Sequence[str], data: MnistData, tta: bool = False
) -> str:
    """Build the ensemble of the runs `run_ids` in `store`, save it there; its run id."""
    runs = [store.get(run_id) for run_id in run_ids]
    return store.save(build_ensemble(runs, data, tta=tta))


def _member(run: RunInfo) -> EnsembleMember:
    return EnsembleMember(
        run_id=run.run_id,
        config=run.config.to_dict(),
        test_accuracy=run.test_accuracy,
        val_accuracy=run.val_accuracy,
        epochs_run=run.metrics.epochs_run,
        train_seconds=run.metrics.train_seconds,
        seed=run.config.seed,
    )


def train_ensemble(
    preset: EnsemblePreset,
    config: TrainConfig,
    data: MnistData,
    store: RunStore,
    on_progress: ProgressHook | None = None,
    on_member: Callable[[int, str], None] | None = None,
    initial_weights: list[np.ndarray] | None = None,
) -> str:
    """Train `preset.members` runs of `config` (seeds `config.seed`, `+ 1`, ...), each saved in
    `store` as it finishes, then save their ensemble there; its run id.

    `on_member(number, run_id)` is called as each member (numbered from 1) is saved.
    """
    members = []
    for number in range(1, preset.members + 1):
        member = config.replace(seed=(config.seed + number - 1) % (2**31))
        recorder = RunRecorder(store)  # a killed training still leaves its best model so far
        result = train(
            member,
            data,
            on_progress=on_progress,
            on_checkpoint=recorder.checkpoint,
            initial_weights=initial_weights,
            log_dir=recorder.reserve_logs(member.architecture),
        )
        members.append(recorder.finish(result))
        if on_member is not None:
            on_member(number, members[-1])
    return save_ensemble(store, members, data, tta=preset.tta)
