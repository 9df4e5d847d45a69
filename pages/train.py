"""Train: pick a preset, adjust any setting, train with live progress, stop at will."""

from typing import TYPE_CHECKING, Any

import streamlit as st

from mnist_core.config import (
    ARCHITECTURES,
    CONVNETS,
    LIMITS,
    PRESETS,
    DemoLimits,
    TrainConfig,
    describe,
    parse_sizes,
)
from mnist_core.errors import ConfigError
from mnist_core.figures import history_figure
from pages import app_state, drawings_view, share_view

if TYPE_CHECKING:
    from mnist_core.jobs import TrainingJob, TrainingSlot

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
        format_func=lambda name: {
            "mlp": "mlp: the original recipe, annealed",
            "cnn": "cnn: convnet",
            "deep": "deep: most accurate, slowest",
        }[name],
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
        help="Filters of each convolution block (cnn and deep only), comma-separated.",
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


def show_job(slot: "TrainingSlot", follow: bool) -> None:
    """Progress, metrics and curves of the server's training job."""
    job, job_id = slot.job, slot.job_id
    if job is None:
        return
    snapshot = job.snapshot()
    mine = app_state.owns_job(job_id)
    progress = snapshot["progress"]
    if job.running:
        if not mine:
            st.info("Another visitor is training a model; yours can start when it finishes.")
        if progress is None:
            st.progress(0.0, text="Starting: loading TensorFlow and MNIST, building the model…")
        else:
            st.progress(
                progress.fraction,
                text=f"Epoch {progress.epoch}/{progress.epochs} · batch {progress.batch}/"
                f"{progress.batches} · {progress.elapsed:.0f} s elapsed · "
                f"ETA {format_seconds(progress.eta)}",
            )
        if mine:
            stopping = snapshot["stop_requested"]
            if st.button("Stop", key="train_stop", type="secondary", disabled=stopping):
                job.stop()
                stopping = True
            if stopping:  # in the page, not a toast: screen readers get toasts without a name
                st.info("Stopping: the best weights so far are kept.")
    history = snapshot["history"]
    if history["loss"]:
        latest = {key: values[-1] for key, values in history.items() if values}
        cells = st.columns(4)
        for cell, key in zip(cells, ("loss", "accuracy", "val_loss", "val_accuracy"), strict=True):
            if key in latest:
                shown = f"{latest[key]:.2%}" if "accuracy" in key else f"{latest[key]:.4f}"
                cell.metric(key.replace("_", " "), shown)
        st.plotly_chart(history_figure({"this run": history}), key="train_live_chart")
    if job.running:
        return
    if follow:
        st.rerun()  # the job just ended: redraw the whole page (summary, sidebar model)
    if not mine:
        return  # another visitor's run: its outcome is theirs to see
    if snapshot["state"] == "failed":
        st.error(f"Training failed: {snapshot['error']}")
        return
    show_summary(job, snapshot["outcome"], job_id)


def show_summary(job: "TrainingJob", run_id: str, job_id: str) -> None:
    result = job.result
    if st.session_state.get("train_finished_job") != job_id:
        st.session_state["train_finished_job"] = job_id
        if BEFORE not in st.session_state:  # a job followed after a reload: no "before" known
            st.session_state[BEFORE] = None
        app_state.set_active_run(run_id)
    how = (
        "stopped by you"
        if result.stopped
        else ("stopped early (no better validation loss)" if result.stopped_early else "completed")
    )
    st.success(
        f"Run `{run_id}` {how}: **{result.test_accuracy:.2%}** test accuracy, "
        f"{result.epochs_run} epoch{'s' if result.epochs_run != 1 else ''} "
        f"(best: {result.best_epoch}) in "
        f"{result.train_seconds:.0f} s. It is now your active model."
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
slot = app_state.training_slot()
share_view.load_train_again(limits, apply_settings)
config = settings_form(limits)
busy = slot.job is not None and slot.job.running
if st.button("Train", key="train_start", type="primary", disabled=config is None or busy):
    job_id = app_state.start_training(config)
    # What "before" means on the summary: the run fine-tuned, else the model active until now.
    active = app_state.active_run()
    st.session_state[BEFORE] = config.start_from or (active.run_id if active else None)
    if job_id is None:
        st.warning("A training is already running on this server; wait for it to finish.")
    else:
        app_state.remember_job(job_id)
        busy = True


@st.fragment(run_every=0.5 if busy else None)
def live_job(follow: bool) -> None:
    show_job(slot, follow)


live_job(follow=busy)
