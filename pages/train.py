"""Train: pick a preset, adjust any setting, train with live progress, stop at will."""

from typing import Any

import streamlit as st

from mnist_core.config import (
    ARCHITECTURES,
    CONVNETS,
    LIMITS,
    PRESET_LABELS,
    PRESETS,
    DemoLimits,
    TrainConfig,
    describe,
    parse_sizes,
)
from mnist_core.errors import ConfigError, MnistCoreError
from mnist_core.figures import history_figure
from mnist_core.job_service import (
    ACTIVE,
    JobError,
    JobStatus,
    ordinal,
    seconds_left,
    wait_seconds,
)
from pages import app_state, drawings_view, share_view, sweep_view

BEFORE = "train_before_run"  # the run to compare the new one with
LEARNING_RATES = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0]
BATCH_SIZES = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096]


def batch_sizes(limits: DemoLimits) -> list[int]:
    """The batch-size choices up to this server's cap, the cap itself included."""
    cap = limits.maximum("batch_size")
    return sorted({size for size in BATCH_SIZES if size <= cap} | {cap})


def apply_preset(limits: DemoLimits) -> None:
    """Fill every widget with the chosen preset's values, lowered to this server's caps."""
    apply_settings(limits.fit(PRESETS[st.session_state["train_preset"]]))


def apply_settings(preset: TrainConfig) -> None:
    """Fill every widget with the values of `preset`: a preset, or a run's config."""
    st.session_state.update(
        {
            **app_state.architecture_widgets(preset),
            "train_dropout_rate": preset.dropout_rate,
            "train_optimizer": preset.optimizer,
            "train_learning_rate": preset.learning_rate,
            "train_lr_decay": preset.lr_decay,
            "train_batch_size": preset.batch_size,
            "train_epochs": preset.epochs,
            "train_patience": preset.patience,
            "train_restore_best": preset.restore_best,
            "train_validation_split": preset.validation_split,
            "train_seed": preset.seed,
            "train_augment": preset.augment,
            "train_shift": preset.shift,
            "train_elastic": preset.elastic,
            "train_drawings": preset.drawings,
            "train_start_from": preset.start_from,
        }
    )


def fraction_slider(column: Any, label: str, name: str, step: float) -> None:
    """A slider from 0 to the `LIMITS` maximum of the `TrainConfig` field `name`, bound to the
    widget key `train_<name>` and described by the field's help."""
    column.slider(label, 0.0, LIMITS[name][1], step=step, key=f"train_{name}", help=describe(name))


def settings_form(limits: DemoLimits) -> TrainConfig | None:
    """The settings widgets; the config they describe, or None after showing why it is invalid
    (or above this server's caps)."""
    st.selectbox(
        "Preset",
        list(PRESETS),
        key="train_preset",
        on_change=apply_preset,
        args=(limits,),
        format_func=PRESET_LABELS.get,
        help="Fills in every setting below; change any of them afterwards.",
    )
    if "train_architecture" not in st.session_state:
        apply_preset(limits)
    left, middle, right = st.columns(3)
    architecture = left.radio(
        "Architecture", ARCHITECTURES, key="train_architecture", help=describe("architecture")
    )
    left.text_input(
        "Dense layers (units)",
        key="train_hidden_units",
        help="Units of each hidden dense layer, comma-separated; empty for none.",
    )
    left.text_input(
        "Convolution filters",
        key="train_conv_filters",
        disabled=architecture not in CONVNETS,
        help="Filters of each convolution block (cnn, vgg and deep only), comma-separated.",
    )
    fraction_slider(left, "Dropout rate", "dropout_rate", step=0.05)
    middle.selectbox(
        "Optimizer", ["adam", "sgd", "rmsprop"], key="train_optimizer", help=describe("optimizer")
    )
    middle.select_slider(
        "Learning rate",
        share_view.with_current(LEARNING_RATES, "train_learning_rate"),
        key="train_learning_rate",
        format_func=lambda v: f"{v:g}",
        help=describe("learning_rate"),
    )
    middle.toggle("Cosine learning-rate decay", key="train_lr_decay", help=describe("lr_decay"))
    middle.select_slider(
        "Batch size",
        share_view.with_current(batch_sizes(limits), "train_batch_size"),
        key="train_batch_size",
        help=describe("batch_size"),
    )
    middle.toggle("Augment (shift, rotate, zoom)", key="train_augment", help=describe("augment"))
    fraction_slider(middle, "Random shift", "shift", step=0.01)
    middle.toggle(
        "Elastic distortion",
        key="train_elastic",
        help="Bends and wobbles the strokes of each training digit, as another hand would.",
    )
    max_epochs = limits.maximum("epochs")
    if max_epochs > 1:
        right.slider("Epochs", 1, max_epochs, key="train_epochs", help=describe("epochs"))
    else:  # a slider needs two different ends
        right.select_slider("Epochs", [1], key="train_epochs", help=describe("epochs"))
    right.slider(
        "Early-stopping patience",
        0,
        int(LIMITS["patience"][1]),
        key="train_patience",
        help="Epochs without a better validation loss before stopping; 0 = off.",
    )
    fraction_slider(right, "Validation split", "validation_split", step=0.05)
    right.number_input(
        "Seed", 0, int(LIMITS["seed"][1]), step=1, key="train_seed", help=describe("seed")
    )
    right.toggle(
        "Keep the best epoch",
        key="train_restore_best",
        help="On: end with the epoch of lowest validation loss. Off: with the last epoch, "
        "which a cosine-decay schedule is designed to reach.",
    )
    drawings_view.training_options()
    try:
        config = TrainConfig.preset(
            st.session_state["train_preset"],
            architecture=architecture,
            hidden_units=parse_sizes("hidden_units", st.session_state["train_hidden_units"]),
            conv_filters=parse_sizes("conv_filters", st.session_state["train_conv_filters"]),
            dropout_rate=float(st.session_state["train_dropout_rate"]),
            optimizer=st.session_state["train_optimizer"],
            learning_rate=float(st.session_state["train_learning_rate"]),
            lr_decay=st.session_state["train_lr_decay"],
            batch_size=int(st.session_state["train_batch_size"]),
            epochs=int(st.session_state["train_epochs"]),
            patience=int(st.session_state["train_patience"]),
            restore_best=st.session_state["train_restore_best"],
            validation_split=round(float(st.session_state["train_validation_split"]), 4),
            seed=int(st.session_state["train_seed"]),
            augment=st.session_state["train_augment"],
            shift=round(float(st.session_state["train_shift"]), 4),
            elastic=st.session_state["train_elastic"],
            drawings=st.session_state["train_drawings"],
            start_from=st.session_state["train_start_from"],
        )
        limits.check(config)
        return config
    except ConfigError as error:
        app_state.show_error(error)
        return None


def show_queue(statuses: list[JobStatus], mine: str | None, runs: list) -> None:
    """Every training running or waiting on this server, anonymous: what, how far, how long.
    `mine` is this visitor's job; the trials of their sweep are theirs too."""
    active = [status for status in statuses if status.active]
    if not active:
        return
    rows = []
    for status in active:
        progress = status.current.progress
        rows.append(
            {
                "": "yours" if status.job_id == mine or mine_in_sweep(status) else "",
                "model": status.request.config.architecture,
                "state": f"waiting ({ordinal(status.position)})"
                if status.state == "queued"
                else status.state,
                "progress": 0.0 if progress is None else progress.fraction,
                "time left": format_seconds(seconds_left(status, runs)),
            }
        )
    st.caption(f"Trainings {service.place} ({len(active)}), at most {service.workers} at once")
    st.dataframe(
        rows,
        hide_index=True,
        key="train_queue",
        column_config={"progress": st.column_config.ProgressColumn(min_value=0, max_value=1)},
    )


def mine_in_sweep(status: JobStatus) -> bool:
    """Whether the job is a trial of this visitor's sweep."""
    return my_sweep is not None and status.request.sweep_id == my_sweep


def show_job(job_id: str | None, follow: bool) -> None:
    """This visitor's training: its place in the queue, or its progress, metrics and curves,
    then how it ended; and the server's queue."""
    try:
        statuses = service.jobs()
    except JobError as error:  # the training cluster went away
        app_state.show_error(error)
        return
    # The saved runs give the pace of a job that has not reported an ETA yet; this runs twice
    # a second while anything trains, so the store is read only when such a job exists.
    unmeasured = any(
        s.active
        and (s.current.progress is None or s.current.progress.eta != s.current.progress.eta)
        for s in statuses
    )
    runs = app_state.list_runs() if unmeasured else []
    status = next((s for s in statuses if s.job_id == job_id), None)
    if status is not None and status.state == "queued":
        wait = wait_seconds(statuses, status.job_id, service.workers, runs)
        st.info(
            f"Your training is {ordinal(status.position)} in line — about "
            f"{format_seconds(wait)} until it starts.",
            icon=":material/hourglass_top:",
        )
        if st.button("Cancel", key="train_cancel", icon=":material/close:"):
            service.cancel(status.job_id)
    elif status is not None and status.state in ACTIVE:
        progress = status.current.progress
        if progress is None:
            st.progress(0.0, text="Starting: loading TensorFlow and MNIST, building the model…")
        else:
            st.progress(
                progress.fraction,
                text=f"Epoch {progress.epoch}/{progress.epochs} · batch {progress.batch}/"
                f"{progress.batches} · {progress.elapsed:.0f} s elapsed · "
                f"ETA {format_seconds(progress.eta)}",
            )
        stopping = status.stop_requested
        if st.button("Stop", key="train_stop", type="secondary", disabled=stopping):
            service.stop(status.job_id)
            stopping = True
        if stopping:  # in the page, not a toast: screen readers get toasts without a name
            st.info("Stopping: the best weights so far are kept.")
    show_queue(statuses, job_id, runs)
    if status is None:
        return
    history = status.current.history
    if history["loss"]:
        latest = {key: values[-1] for key, values in history.items() if values}
        cells = st.columns(4)
        for cell, key in zip(cells, ("loss", "accuracy", "val_loss", "val_accuracy"), strict=True):
            if key in latest:
                shown = f"{latest[key]:.2%}" if "accuracy" in key else f"{latest[key]:.4f}"
                cell.metric(key.replace("_", " "), shown)
        st.plotly_chart(history_figure({"this run": history}), key="train_live_chart")
    if status.active:
        return
    if follow:
        st.rerun()  # the job just ended: redraw the whole page (summary, sidebar model)
    if status.state == "failed":
        st.error(f"Training failed: {status.current.error}")
    elif status.current.run_id is None:
        st.info("Training cancelled before it started.")
    else:
        show_summary(status.current.run_id, status.job_id)


def show_summary(run_id: str, job_id: str) -> None:
    try:
        run = app_state.run_store().get(run_id)
    except MnistCoreError as error:  # deleted meanwhile
        app_state.show_error(error)
        return
    if st.session_state.get("train_finished_job") != job_id:
        st.session_state["train_finished_job"] = job_id
        if BEFORE not in st.session_state:  # a job followed after a reload: no "before" known
            st.session_state[BEFORE] = None
        app_state.set_active_run(run_id)
    metrics = run.metrics
    how = (
        "stopped by you"
        if metrics["stopped"]
        else (
            "stopped early (no better validation loss)" if metrics["stopped_early"] else "completed"
        )
    )
    epochs = metrics["epochs_run"]
    st.success(
        f"Run `{run_id}` {how}: **{run.test_accuracy:.2%}** test accuracy, "
        f"{epochs} epoch{'s' if epochs != 1 else ''} (best: {metrics['best_epoch']}) in "
        f"{metrics['train_seconds']:.0f} s. It is now your active model."
    )
    drawings_view.before_after(st.session_state.get(BEFORE), run_id)
    st.page_link(
        app_state.page_path("results"), label="See its results", icon=":material/monitoring:"
    )


def format_seconds(seconds: float) -> str:
    if seconds != seconds:  # NaN before the first batch
        return "…"
    return f"{seconds / 60:.0f} min {seconds % 60:.0f} s" if seconds >= 60 else f"{seconds:.0f} s"


st.title("Train")
limits = app_state.demo_limits()
if limits.describe():
    st.caption(limits.describe(), help="Caps set by whoever runs this server, for its memory.")
service = app_state.job_service()
share_view.load_train_again(limits, apply_settings)
config = settings_form(limits)
job_id = app_state.my_job_id()
my_sweep = app_state.my_sweep_id()
try:
    statuses = service.jobs()
except JobError:  # said where the queue would be (`show_job`); the settings stay
    statuses = []
busy = any(status.active and status.job_id == job_id for status in statuses)
sweeping = any(status.active and mine_in_sweep(status) for status in statuses)
others_training = any(status.active for status in statuses)
if st.button(
    "Train", key="train_start", type="primary", disabled=config is None or busy or sweeping
):
    # What "before" means on the summary: the run fine-tuned, else the model active until now.
    active = app_state.active_run()
    st.session_state[BEFORE] = config.start_from or (active.run_id if active else None)
    try:
        job_id = service.submit(config, owner=app_state.visitor_id())
    except JobError as error:
        app_state.show_error(error)
    else:
        app_state.remember_job(job_id)
        st.rerun()  # the page again, the Train button disabled while this job is on


with st.expander("Try several settings", icon=":material/tune:"):
    sweep_view.sweep_form(config, limits, service, disabled=busy or sweeping)


@st.fragment(run_every=0.5 if busy or others_training else None)
def live_job(follow: bool) -> None:
    show_job(job_id, follow)


@st.fragment(run_every=0.5 if sweeping else None)
def live_sweep(follow: bool) -> None:
    sweep_view.show_sweep(service, my_sweep, follow)


live_job(follow=busy)
if my_sweep:
    live_sweep(follow=sweeping)
