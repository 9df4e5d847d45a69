"""The command line: `python -m mnist_core
train|sweep|evaluate|predict|runs|export|ensemble|import|logs`.

Exit codes: 0 success; 2 bad arguments or invalid settings; 1 a data, model or image problem,
reported in one line. With `--json` the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mnist_core.config import ENSEMBLE_PRESETS, PRESETS, TrainConfig, parse_sizes
from mnist_core.errors import ConfigError, MnistCoreError, ModelError
from mnist_core.sweeps import (
    TrialResult,
    best,
    describe_settings,
    expand,
    format_value,
    parse_axis,
    sweep_results,
    swept_settings,
)

if TYPE_CHECKING:
    from mnist_core.data import MnistData
    from mnist_core.job_service import JobService, JobStatus
    from mnist_core.ml.train import TrainResult
    from mnist_core.runs import RunInfo, RunStore

SUMMARY_WIDTH = 28


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except MnistCoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_core", description="Train and use handwritten-digit classifiers."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model and save it as a run")
    _add_settings(train)
    train.add_argument("--data", help="MNIST .npz or IDX folder (default: $MNIST_PATH)")
    _add_runs_dir(train)
    train.add_argument("--save", help="also save the model to FILE.keras or FILE.h5")
    train.add_argument("--report", help="write loss curves and a sample gallery as HTML here")
    train.add_argument("--json", action="store_true", help="end with a JSON summary line")
    _add_ray(train)
    train.set_defaults(handler=_train)

    sweep = commands.add_parser(
        "sweep",
        help="train every combination of up to two settings' values as parallel jobs, "
        "ranked by validation accuracy",
    )
    sweep.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="SETTING=V1,V2,...",
        help="a setting and the values to try, e.g. learning_rate=0.001,0.003; give --grid "
        "twice for two settings (layer sizes: hidden_units=128,256+128). The other options "
        "set what every trial shares",
    )
    _add_settings(sweep)
    sweep.add_argument(
        "--data", help="MNIST .npz or IDX folder for the workers (default: $MNIST_PATH)"
    )
    _add_runs_dir(sweep)
    sweep.add_argument(
        "--workers",
        type=_count,
        help="trials that train at once, each in its own process (default: $MNIST_WORKERS or 1)",
    )
    sweep.add_argument("--ray", metavar="ADDRESS", help="run the trials on this Ray cluster")
    sweep.add_argument("--json", action="store_true", help="end with a JSON summary line")
    sweep.set_defaults(handler=_sweep)

    evaluate = commands.add_parser("evaluate", help="score a saved run on the MNIST test set")
    evaluate.add_argument("run", help="run id, 'latest' or 'best'")
    evaluate.add_argument("--data", help="MNIST .npz or IDX folder (default: $MNIST_PATH)")
    _add_runs_dir(evaluate)
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=_evaluate)

    predict = commands.add_parser("predict", help="read the digit in image files")
    predict.add_argument("images", nargs="+", help="PNG or JPEG files")
    predict.add_argument("--run", default="best", help="run id, 'latest' or 'best' (default)")
    _add_runs_dir(predict)
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(handler=_predict)

    runs = commands.add_parser("runs", help="list saved runs, newest first")
    _add_runs_dir(runs)
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(handler=_runs)

    export = commands.add_parser(
        "export", help="write a run as a .zip bundle to share, or its model as .onnx/.keras/.h5"
    )
    export.add_argument("run", help="run id (the pretrained run's too), 'latest' or 'best'")
    export.add_argument(
        "file",
        help="the file to write; its extension chooses: FILE.zip (run bundle), FILE.onnx "
        "(ONNX Runtime), FILE.keras or FILE.h5 (Keras)",
    )
    _add_runs_dir(export)
    export.set_defaults(handler=_export)

    ensemble = commands.add_parser(
        "ensemble", help="save a run that averages the probabilities of saved runs"
    )
    ensemble.add_argument("runs", nargs="+", metavar="RUN", help="the member runs' ids (2 to 10)")
    ensemble.add_argument(
        "--tta",
        action="store_true",
        help="also average each member over copies of the digit moved one pixel up, down, "
        "left and right (test-time augmentation; 5x the prediction cost)",
    )
    ensemble.add_argument("--data", help="MNIST .npz or IDX folder (default: $MNIST_PATH)")
    _add_runs_dir(ensemble)
    ensemble.add_argument("--json", action="store_true", help="end with a JSON summary line")
    ensemble.set_defaults(handler=_ensemble)

    import_ = commands.add_parser(
        "import",
        help="add a run from a bundle (.zip), or a Keras model of MNIST digits (.keras, .h5) "
        "scored on the test set",
    )
    import_.add_argument(
        "file",
        help="a bundle written by `export` (FILE.zip), or a Keras model file (FILE.keras, "
        "FILE.h5) reading (28, 28), (28, 28, 1) or (784,) pixels and giving 10 probabilities "
        "or logits",
    )
    import_.add_argument("--name", help="how the imported model is shown (default: its file name)")
    import_.add_argument(
        "--scale",
        choices=("auto", "1", "255"),
        default="auto",
        help="the pixel scale the model was trained on: 1 for [0, 1], 255 for [0, 255]; auto "
        "(default) tells it from the model or from 1,000 training digits, else takes [0, 1]",
    )
    import_.add_argument("--data", help="MNIST .npz or IDX folder (default: $MNIST_PATH)")
    _add_runs_dir(import_)
    import_.add_argument("--json", action="store_true")
    import_.set_defaults(handler=_import)

    logs = commands.add_parser(
        "logs",
        help="write TensorBoard event files from history.json for runs that have none (saved "
        "before runs had them, or imported)",
    )
    logs.add_argument("runs", nargs="*", metavar="RUN", help="run ids (default: every run)")
    _add_runs_dir(logs)
    logs.set_defaults(handler=_logs)
    return parser


def _add_ray(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="train on this Ray cluster (auto, HOST:PORT of its head node, ray://HOST:10001; "
        "default: $MNIST_RAY_ADDRESS, else on this machine); the run lands in --runs-dir",
    )


def _add_settings(parser: argparse.ArgumentParser) -> None:
    """--preset and an option for every `TrainConfig` field (see `_config`)."""
    parser.add_argument(
        "--preset",
        choices=[*PRESETS, *ENSEMBLE_PRESETS],
        default="mlp",
        help="the settings to start from (default mlp: the original recipe, its learning "
        "rate annealed; add --no-lr-decay for the original exactly); "
        "the options below change single settings. "
        + "; ".join(
            f"{name}: trains {preset.runs_text()} (seeds --seed, --seed + 1, "
            f"...) and saves their ensemble{' with shifted copies' if preset.tta else ''}"
            for name, preset in ENSEMBLE_PRESETS.items()
        ),
    )
    for config_field in dataclasses.fields(TrainConfig):
        option = "--" + config_field.name.replace("_", "-")
        described: dict[str, Any] = {"default": None, "help": config_field.metadata.get("help")}
        annotation = str(config_field.type)  # the annotation's text (postponed annotations)
        if annotation == "bool":
            parser.add_argument(option, action=argparse.BooleanOptionalAction, **described)
        elif annotation.startswith("tuple"):
            parser.add_argument(option, type=_sizes, metavar="N,N,...", **described)
        else:
            kind = {"int": int, "float": float, "str": str}[annotation]
            parser.add_argument(option, type=kind, **described)


def _config(args: argparse.Namespace) -> TrainConfig:
    """The preset with the settings given as options."""
    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name) is not None
    }
    if ensemble := ENSEMBLE_PRESETS.get(args.preset):
        return ensemble.member_config(**overrides)
    return TrainConfig.preset(args.preset, **overrides)


def _add_runs_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", help="run store folder (default: $MNIST_RUNS_DIR or runs/)")


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return parse_sizes("sizes", text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _count(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return number


def _train(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.save and Path(args.save).suffix not in (".keras", ".h5"):
        raise ConfigError("--save", f"needs a .keras or .h5 file name, got {args.save!r}")
    from mnist_core.job_service import ray_address

    address = args.ray or ray_address()
    if args.preset in ENSEMBLE_PRESETS:
        if address:
            raise ConfigError(
                "--ray",
                f"--preset {args.preset} trains on this machine; on a cluster, train its "
                "members with `sweep --ray ... --grid seed=1,2,3` and join them with "
                "`python -m mnist_core ensemble RUN RUN ...`",
            )
        return _train_ensemble(args, config)
    if address:
        return _train_on_cluster(args, config, address)

    from mnist_core.data import load_mnist
    from mnist_core.ml.train import prepare, train
    from mnist_core.runs import RunRecorder, RunStore

    store = RunStore(args.runs_dir)
    # Your drawings (--drawings) and the run to fine-tune (--start-from RUN), if asked for.
    data, initial_weights = prepare(config, load_mnist(args.data), store)
    print(f"Training {args.preset} on {data.source}", file=sys.stderr)
    recorder = RunRecorder(store)  # a killed command still leaves its best model so far
    result = train(
        config,
        data,
        on_progress=_ProgressBar(sys.stderr),
        on_checkpoint=recorder.checkpoint,
        initial_weights=initial_weights,
        log_dir=recorder.reserve_logs(config.architecture),
    )
    run_id = recorder.finish(result)
    run = store.get(run_id)
    if args.save:
        _save_copy(store, run_id, Path(args.save))
    if args.report:
        _write_report(Path(args.report), result, data)

    summary = {
        "run_id": run_id,
        "model_path": str(run.model_path),
        "test_accuracy": result.test_accuracy,
        "test_loss": result.test_loss,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "train_seconds": round(result.train_seconds, 2),
    }
    _print_summary(summary, args.json)
    return 0


def _train_ensemble(args: argparse.Namespace, config: TrainConfig) -> int:
    """`train --preset best`: its members one after another, then their ensemble."""
    from mnist_core.data import load_mnist
    from mnist_core.ml.ensemble import train_ensemble
    from mnist_core.ml.train import prepare
    from mnist_core.runs import RunStore

    preset = ENSEMBLE_PRESETS[args.preset]
    store = RunStore(args.runs_dir)
    data, initial_weights = prepare(config, load_mnist(args.data), store)
    print(
        f"Training {args.preset}: {preset.runs_text()} on {data.source}, then their ensemble",
        file=sys.stderr,
    )
    progress = _ProgressBar(sys.stderr)
    progress.prefix = f"Member 1/{preset.members} · "

    def member_done(number: int, run_id: str) -> None:
        accuracy = store.get(run_id).val_accuracy
        shown = "no validation split" if accuracy is None else f"validation accuracy {accuracy:.2%}"
        print(f"Member {number}/{preset.members}: run {run_id}, {shown}", file=sys.stderr)
        progress.prefix = f"Member {number + 1}/{preset.members} · "

    run_id = train_ensemble(
        preset, config, data, store, progress, member_done, initial_weights=initial_weights
    )
    return _ensemble_summary(args, store.get(run_id))


def _ensemble(args: argparse.Namespace) -> int:
    from mnist_core.data import load_mnist
    from mnist_core.ml.ensemble import check_members, save_ensemble

    store, _ = _resolve_run(args.runs_dir, args.runs[0], with_pretrained=True)
    runs = [store.get(_resolve_run(args.runs_dir, name, True)[1]) for name in args.runs]
    check_members(runs)  # before loading MNIST: a wrong list is told at once
    run_id = save_ensemble(store, [run.run_id for run in runs], load_mnist(args.data), args.tta)
    return _ensemble_summary(args, store.get(run_id))


def _ensemble_summary(args: argparse.Namespace, run: RunInfo) -> int:
    ensemble = run.ensemble
    summary = {
        "run_id": run.run_id,
        "model_path": str(run.model_path),
        "members": [member.run_id for member in ensemble.members] if ensemble else [],
        "tta": bool(ensemble and ensemble.tta),
        "val_accuracy": run.val_accuracy,
        "test_accuracy": run.test_accuracy,
        "test_loss": run.metrics.test_loss,
        "train_seconds": round(run.metrics.train_seconds, 2),
    }
    _print_summary(summary, args.json)
    return 0


def _train_on_cluster(args: argparse.Namespace, config: TrainConfig, address: str) -> int:
    """`train --ray`: the training runs as a job on the cluster; the run lands here."""
    if args.report or args.data:
        flag = "--report" if args.report else "--data"
        raise ConfigError(flag, "is not available with --ray (the cluster reads $MNIST_PATH)")
    import uuid

    from mnist_core.backends import job_service
    from mnist_core.runs import RunStore

    store = RunStore(args.runs_dir)
    service = job_service(store.root, ray=address)
    job_id = service.submit(config, owner=f"cli-{uuid.uuid4().hex[:8]}")
    print(f"Training {args.preset} on the Ray cluster at {address} (job {job_id})", file=sys.stderr)
    status = _follow(service, job_id, sys.stderr)
    if status.state == "failed":
        raise MnistCoreError(status.current.error or "the training failed on the cluster")
    if status.current.run_id is None:
        raise MnistCoreError("the training stopped before it saved a run: nothing to show")
    run = store.get(status.current.run_id)
    if args.save:
        _save_copy(store, run.run_id, Path(args.save))
    metrics = run.metrics
    summary = {
        "run_id": run.run_id,
        "model_path": str(run.model_path),
        "test_accuracy": metrics.test_accuracy,
        "test_loss": metrics.test_loss,
        "epochs_run": metrics.epochs_run,
        "best_epoch": metrics.best_epoch,
        "stopped_early": metrics.stopped_early,
        "train_seconds": round(metrics.train_seconds, 2),
    }
    _print_summary(summary, args.json)
    return 130 if status.state == "stopped" else 0


def _follow(service: JobService, job_id: str, stream: TextIO) -> JobStatus:
    """Wait for a job to end and its run to land, printing its state and each epoch's
    metrics; Ctrl-C stops it (keeping its best epoch). Its final status."""
    from mnist_core.job_service import ordinal

    shown_state, epochs = None, 0
    while True:
        try:
            service.tick()
            status = service.status(job_id)
            if status.state != shown_state:
                where = f" ({ordinal(status.position)} in the queue)" if status.position else ""
                stream.write(f"{status.state}{where}\n")
                shown_state = status.state
            history = status.current.history
            for epoch in range(epochs, len(history["loss"])):
                values = "  ".join(f"{key} {history[key][epoch]:.4f}" for key in history)
                total = status.request.config.epochs
                stream.write(f"Epoch {epoch + 1}/{total}  {values}\n")
            epochs = len(history["loss"])
            stream.flush()
            if not status.active and (status.current.run_id or status.state == "failed"):
                return status
            time.sleep(0.25)
        except KeyboardInterrupt:
            stream.write("stopping (the best epoch so far is kept)...\n")
            service.stop(job_id)


def _save_copy(store: RunStore, run_id: str, target: Path) -> None:
    import shutil

    if target.suffix == ".h5":
        store.export_h5(run_id, target)
    else:
        shutil.copyfile(store.get(run_id).model_path, target)
    print(f"Saved model to {target}", file=sys.stderr)


def _write_report(folder: Path, result: TrainResult, data: MnistData) -> None:
    from mnist_core.figures import gallery_figure, history_figure

    folder.mkdir(parents=True, exist_ok=True)
    evaluation = result.evaluation
    history_figure({"run": result.history}, {"run": result.best_epoch}).write_html(
        folder / "curves.html", include_plotlyjs="directory"
    )
    shown = slice(0, 30)  # like the original script: the first test images
    gallery_figure(
        data.x_test[shown],
        evaluation.labels[shown],
        evaluation.predicted[shown],
        evaluation.confidence[shown],
    ).write_html(folder / "samples.html", include_plotlyjs="directory")
    print(f"Wrote {folder / 'curves.html'} and {folder / 'samples.html'}", file=sys.stderr)


def _job_service(args: argparse.Namespace) -> JobService:
    """The job service that runs the sweep's trials: on the Ray cluster of `--ray ADDRESS`
    (default `$MNIST_RAY_ADDRESS`), else worker processes on this machine; either saves to the
    run store of `--runs-dir`."""
    from mnist_core.backends import job_service
    from mnist_core.job_service import LocalJobs, ray_address
    from mnist_core.runs import RunStore

    root = RunStore(args.runs_dir).root
    address = args.ray or ray_address()
    if address:
        if args.data or args.workers:
            flag = "--data" if args.data else "--workers"
            raise ConfigError(flag, "is not available with --ray (the cluster decides)")
        return job_service(root, ray=address)
    environ = {**os.environ, "MNIST_PATH": args.data} if args.data else None
    return LocalJobs(root, workers=args.workers, environ=environ)


def _sweep(args: argparse.Namespace) -> int:
    from mnist_core.runs import RunStore

    service = _job_service(args)
    configs = expand(_config(args), [parse_axis(item) for item in args.grid])
    sweep_id = service.submit_sweep(configs, owner=f"command line {os.getpid()}")
    print(
        f"Sweep {sweep_id}: {len(configs)} trials of {args.preset}, {service.workers} at a time",
        file=sys.stderr,
    )
    settings = swept_settings(configs)
    try:
        trials = _follow_sweep(service, sweep_id, settings, sys.stderr)
    except KeyboardInterrupt:
        print("Stopping every trial (the runs keep their best epoch so far)…", file=sys.stderr)
        service.stop_sweep(sweep_id)
        _follow_sweep(service, sweep_id, settings, sys.stderr)
        raise
    ranked = sweep_results(trials, RunStore(args.runs_dir))
    chosen = best(ranked)
    _print_ranking(ranked, settings)
    failed = [number for number, trial in enumerate(trials, start=1) if trial.state == "failed"]
    for number in failed:
        trial = trials[number - 1]
        print(
            f"error: trial {_trial_name(trial, number, len(trials), settings)} failed: "
            f"{trial.current.error}",
            file=sys.stderr,
        )
    if chosen is not None:
        print(f"best run (highest validation accuracy): {chosen.run_id}")
    if args.json:
        print(json.dumps(_sweep_summary(sweep_id, trials, ranked, settings, chosen)))
    return 1 if failed or chosen is None else 0


def _follow_sweep(
    service: JobService, sweep_id: str, settings: list[str], stream: TextIO, interval: float = 0.5
) -> list[JobStatus]:
    """Move the queue on until every trial of the sweep has ended, writing a line whenever
    one changes state or finishes an epoch; the trials as they ended."""
    shown: dict[str, tuple[str, int]] = {}
    while True:
        service.tick()
        trials = service.sweep(sweep_id)
        for number, trial in enumerate(trials, start=1):
            epochs = len(trial.current.history["loss"])
            if shown.get(trial.job_id) != (trial.state, epochs):
                shown[trial.job_id] = (trial.state, epochs)
                stream.write(
                    f"trial {_trial_name(trial, number, len(trials), settings)}: "
                    f"{_trial_state(trial)}\n"
                )
                stream.flush()
        if not any(trial.active for trial in trials):
            return trials
        time.sleep(interval)


def _trial_name(trial: JobStatus, number: int, count: int, settings: list[str]) -> str:
    """`2/6 learning_rate=0.001 · dropout_rate=0.4`: the trial's place and swept settings."""
    config = trial.request.config
    swept = describe_settings({name: getattr(config, name) for name in settings})
    return f"{number}/{count} {swept}".rstrip()


def _trial_state(trial: JobStatus) -> str:
    """What a trial is doing, in a few words: `epoch 2/5, val_accuracy 0.9712`."""
    current = trial.current
    history = current.history
    if trial.state == "queued":
        return f"waiting (number {trial.position} in line)"
    if trial.state == "running" and history["loss"]:
        done, planned = len(history["loss"]), trial.request.config.epochs
        scores = (
            f", val_accuracy {history['val_accuracy'][-1]:.4f}" if history["val_accuracy"] else ""
        )
        return f"epoch {done}/{planned}{scores}"
    if trial.state in ("finished", "stopped") and current.run_id:
        return f"{trial.state}, run {current.run_id}"
    if trial.state == "failed":
        return f"failed: {current.error}"
    return trial.state


def _print_ranking(ranked: list[TrialResult], settings: list[str]) -> None:
    """The trials' runs as a table, the highest validation accuracy first."""
    if not ranked:
        print("No trial finished with a run.")
        return
    widths = [max(len(name), 8) for name in settings]
    header = [f"{name:<{width}}" for name, width in zip(settings, widths, strict=True)]
    print("  ".join(["rank", *header, "val_acc", "test_acc", "epochs", "seconds", "run"]))
    for rank, row in enumerate(ranked, start=1):
        values = [
            f"{format_value(row.settings[name]):<{width}}"
            for name, width in zip(settings, widths, strict=True)
        ]
        val = "-" if row.val_accuracy is None else f"{row.val_accuracy:.2%}"
        print(
            "  ".join(
                [f"{rank:<4}", *values, f"{val:>7}", f"{row.test_accuracy:>8.2%}"]
                + [f"{row.epochs_run:>6}", f"{row.train_seconds:>7.1f}", row.run_id]
            )
        )


def _sweep_summary(
    sweep_id: str,
    trials: list[JobStatus],
    ranked: list[TrialResult],
    settings: list[str],
    chosen: TrialResult | None,
) -> dict[str, Any]:
    """The sweep as JSON: its trials ranked (those without a run last, in their order)."""
    results = {row.run_id: row for row in ranked}
    rank = {row.run_id: number for number, row in enumerate(ranked, start=1)}
    ordered = sorted(trials, key=lambda trial: rank.get(trial.current.run_id or "", len(rank) + 1))
    listed = []
    for trial in ordered:
        config = trial.request.config.to_dict()
        entry: dict[str, Any] = {
            "job_id": trial.job_id,
            "settings": {name: config[name] for name in settings},
            "state": trial.state,
            "error": trial.current.error,
        }
        row = results.get(trial.current.run_id or "")
        entry.update(
            run_id=row and row.run_id,
            val_accuracy=row and row.val_accuracy,
            test_accuracy=row and row.test_accuracy,
            epochs_run=row and row.epochs_run,
            train_seconds=row and round(row.train_seconds, 2),
        )
        listed.append(entry)
    return {
        "sweep_id": sweep_id,
        "settings": settings,
        "trials": listed,
        "best_run_id": None if chosen is None else chosen.run_id,
    }


def _evaluate(args: argparse.Namespace) -> int:
    from mnist_core.data import load_mnist
    from mnist_core.evaluate import evaluate

    store, run_id = _resolve_run(args.runs_dir, args.run)
    data = load_mnist(args.data)
    evaluation = evaluate(store.load_model(run_id), data.x_test, data.y_test)
    summary = {
        "run_id": run_id,
        "test_accuracy": evaluation.accuracy,
        "test_loss": evaluation.loss,
        "misclassified": int(len(evaluation.misclassified())),
        "recall": [round(value, 4) for value in evaluation.recall.tolist()],
    }
    _print_summary(summary, args.json)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from mnist_core.errors import ImageError
    from mnist_core.preprocess import load_image, to_mnist
    from mnist_core.serving import predict_digit

    store, run_id = _resolve_run(args.runs_dir, args.run)
    model = store.load_model(run_id)
    answers = []
    for name in args.images:
        try:
            image = to_mnist(load_image(Path(name).read_bytes()))
        except OSError as error:
            raise ImageError(f"cannot read {name!r}: {error.strerror}") from error
        if image is None:
            answers.append({"image": name, "digit": None, "confidence": None})
            continue
        digit, confidence, _ = predict_digit(model, image)
        answers.append({"image": name, "digit": digit, "confidence": round(confidence, 4)})
    if args.json:
        print(json.dumps({"run_id": run_id, "predictions": answers}))
    else:
        for answer in answers:
            shown = (
                "no digit found"
                if answer["digit"] is None
                else (f"{answer['digit']} ({answer['confidence']:.1%})")
            )
            print(f"{answer['image']}: {shown}")
    return 0


def _runs(args: argparse.Namespace) -> int:
    from mnist_core.runs import RunStore, run_rows

    rows = run_rows(RunStore(args.runs_dir).list())
    if args.json:
        print(json.dumps(rows))
    elif not rows:
        print("No runs yet: train one with `python -m mnist_core train`.")
    else:
        print(f"{'run':<32} {'model':<5} {'accuracy':>8} {'epochs':>6}  status")
        for row in rows:
            print(
                f"{row['run_id']:<32} {row['model']:<5} {row['test_accuracy']:>8.2%} "
                f"{row['epochs_run']:>6}  {row['status_text']}"
            )
    return 0


EXPORT_FORMATS = (".zip", ".onnx", ".keras", ".h5")
IMPORT_FORMATS = (".zip", ".keras", ".h5")


def _export(args: argparse.Namespace) -> int:
    target = Path(args.file)
    if target.suffix not in EXPORT_FORMATS:
        raise ConfigError(
            "FILE", f"needs a .zip, .onnx, .keras or .h5 file name, got {args.file!r}"
        )
    store, run_id = _resolve_run(args.runs_dir, args.run, with_pretrained=True)
    data = _exported(store, run_id, target.suffix)
    temp = target.with_name(f".tmp-{target.name}")  # a killed export leaves no half file
    try:
        temp.write_bytes(data)
        os.replace(temp, target)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise ModelError(f"cannot write {args.file!r}: {error.strerror}") from error
    print(f"Exported run {run_id} to {target} ({len(data) / 1e6:.1f} MB)")
    return 0


def _exported(store: RunStore, run_id: str, suffix: str) -> bytes:
    """Run `run_id` as a bundle (.zip) or its model in the format of `suffix`."""
    import tempfile

    run = store.get(run_id)
    if suffix == ".zip":
        from mnist_core.bundles import export_bundle

        return export_bundle(store, run_id)
    if suffix == ".keras":
        return run.model_path.read_bytes()
    if suffix == ".onnx" and run.onnx_path.is_file():
        return run.onnx_path.read_bytes()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"model{suffix}"
        if suffix == ".h5":
            store.export_h5(run_id, path)
        else:  # a run saved before runs had an ONNX file
            from mnist_core.ml.onnx_export import export_onnx

            export_onnx(store.load_model(run_id), path)
        return path.read_bytes()


def _import(args: argparse.Namespace) -> int:
    from mnist_core.runs import RunStore

    store = RunStore(args.runs_dir)
    suffix = Path(args.file).suffix
    if suffix not in IMPORT_FORMATS:
        raise ModelError(
            f"cannot import {args.file!r}: import a run bundle (.zip) or a Keras model file "
            "(.keras, .h5)"
        )
    if suffix == ".zip":
        from mnist_core.bundles import import_bundle, read_bundle_file

        run = store.get(import_bundle(store, read_bundle_file(args.file)))
        summary: dict[str, Any] = {"run_id": run.run_id}
        summary["imported_from"] = run.metrics.imported_from
        summary["architecture"] = run.config.architecture
    else:
        from mnist_core.data import load_mnist
        from mnist_core.ml.model_import import import_model_file

        data = load_mnist(args.data)
        run = store.get(import_model_file(store, args.file, data, args.name, args.scale))
        imported = run.imported
        if imported is None:  # cannot happen: the run was saved as an import just now
            raise ModelError(f"run {run.run_id} is not an imported model")
        print(f"Pixel scale {imported.scale}: {imported.scale_note}.")
        summary = {"run_id": run.run_id, "name": imported.name, "input": imported.input}
        summary.update({"output": imported.output, "scale": imported.scale})
    summary["test_accuracy"] = run.test_accuracy
    summary["model_path"] = str(run.model_path)
    _print_summary(summary, args.json)
    return 0


def _logs(args: argparse.Namespace) -> int:
    from mnist_core.ml.tensorboard_logs import write_run_logs
    from mnist_core.runs import RunStore

    store = RunStore(args.runs_dir)
    runs = [store.get(run_id) for run_id in args.runs] if args.runs else store.list()
    for run in runs:
        if run.log_dir.exists():
            print(f"{run.run_id}: has its event files")
            continue
        epochs = write_run_logs(run)
        print(f"{run.run_id}: " + (f"wrote {epochs} epochs" if epochs else "no epochs to write"))
    print(f"See them with: tensorboard --logdir {store.root}", file=sys.stderr)
    return 0


def _resolve_run(runs_dir: str | None, name: str, with_pretrained: bool = False) -> tuple[Any, str]:
    """The store and id of run `name`: an id, or the "latest" or "best" of the store's runs.
    `with_pretrained` lets an id name the pretrained run too."""
    from mnist_core.runs import PRETRAINED_DIR, RunStore

    store = RunStore(runs_dir)
    if name in ("latest", "best"):
        run = store.latest() if name == "latest" else store.best()
        if run is None:
            raise ModelError(
                f"no runs in {store.root}: train one with `python -m mnist_core train`"
            )
        return store, run.run_id
    if with_pretrained:
        store = RunStore(runs_dir, pretrained=PRETRAINED_DIR)
    return store, store.get(name).run_id


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    for key, value in summary.items():
        shown = f"{value:.4f}" if isinstance(value, float) else value
        print(f"{key:<{SUMMARY_WIDTH}}{shown}")
    if as_json:
        print(json.dumps(summary))


class _ProgressBar:
    """A one-line progress bar per epoch on a terminal; a line per epoch otherwise."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.interactive = stream.isatty()
        self.prefix = ""  # "Member 2/3 · " while `train --preset best` trains its members

    def __call__(self, event: Any) -> None:
        if not (self.interactive or event.epoch_end):
            return
        filled = round(self.width * event.batch / max(1, event.batches))
        bar = "#" * filled + "." * (self.width - filled)
        metrics = "  ".join(f"{key} {value:.4f}" for key, value in event.metrics.items())
        line = (
            f"{self.prefix}Epoch {event.epoch}/{event.epochs} [{bar}] {metrics}  "
            f"ETA {_seconds(event.eta)}"
        )
        if self.interactive:
            self.stream.write("\r" + line + ("\n" if event.epoch_end else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _seconds(value: float) -> str:
    return "?" if value != value else f"{value:.0f}s"  # NaN before the first batch
