"""Train: pick a preset, adjust any setting, train with live progress, stop at will."""

import pages.parts  # noqa: F401 - before all else: see pages/parts/__init__.py

# isort: split
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st

from mnist_core.config import (
    ARCHITECTURES,
    CONVNETS,
    LIMITS,
    OPTIMIZERS,
    PRESET_LABELS,
    PRESETS,
    DemoLimits,
    TrainConfig,
    setting_help,
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
from pages.parts import app_state, drawings_view, page_path, share_view, sweep_view, train_form

BEFORE = "train_before_run"  # the run to compare the new one with
LEARNING_RATES = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0]
BATCH_SIZES = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096]


def batch_sizes(limits: DemoLimits) -> list[int]:
    """The batch-size choices up to this server's cap, the cap itself included."""
    cap = limits.maximum("batch_size")
    return sorted({size for size in BATCH_SIZES if size <= cap} | {cap})


def apply_preset(limits: DemoLimits) -> None:
    """Fill every widget with the chosen preset's values, lowered to this server's caps."""
    train_form.fill(
        st.session_state, limits.fit(PRESETS[st.session_state[train_form.PRESET]]), preset=False
    )


@dataclass(frozen=True)
class Setting:
    """One widget of the settings form: the `TrainConfig` field it sets, where and how."""

    field: str
    label: str
    column: int  # 0, 1, 2: left, middle, right
    widget: str  # the Streamlit element: "radio", "text_input", "slider", ...
    options: Callable[[DemoLimits], list] | None = None  # choices, for this server's caps
    bounds: Callable[[DemoLimits], tuple[float, float]] | None = None  # a slider's ends
    step: float | None = None
    help: str | None = None  # else the field's own description
    format_func: Callable[[Any], str] | None = None


def _up_to_limit(name: str) -> Callable[[DemoLimits], tuple[float, float]]:
    """The field's whole allowed range (`LIMITS`), whatever the server's caps."""
    return lambda _: LIMITS[name]


SETTINGS = [
    Setting("architecture", "Architecture", 0, "radio", options=lambda _: list(ARCHITECTURES)),
    Setting(
        "hidden_units",
        "Dense layers (units)",
        0,
        "text_input",
        help="Units of each hidden dense layer, comma-separated; empty for none.",
    ),
    Setting(
        "conv_filters",
        "Convolution filters",
        0,
        "text_input",
        help="Filters of each convolution block (convnets only: not mlp), comma-separated.",
    ),
    Setting(
        "dropout_rate", "Dropout rate", 0, "slider", bounds=_up_to_limit("dropout_rate"), step=0.05
    ),
    Setting("optimizer", "Optimizer", 1, "selectbox", options=lambda _: list(OPTIMIZERS)),
    Setting(
        "learning_rate",
        "Learning rate",
        1,
        "select_slider",
        options=lambda _: share_view.with_current(LEARNING_RATES, train_form.key("learning_rate")),
        format_func=lambda value: f"{value:g}",
    ),
    Setting("lr_decay", "Cosine learning-rate decay", 1, "toggle"),
    Setting(
        "batch_size",
        "Batch size",
        1,
        "select_slider",
        options=lambda limits: share_view.with_current(
            batch_sizes(limits), train_form.key("batch_size")
        ),
    ),
    Setting("augment", "Augment (shift, rotate, zoom)", 1, "toggle"),
    Setting("shift", "Random shift", 1, "slider", bounds=_up_to_limit("shift"), step=0.01),
    Setting(
        "elastic",
        "Elastic distortion",
        1,
        "toggle",
        help="Bends and wobbles the strokes of each training digit, as another hand would.",
    ),
    Setting("epochs", "Epochs", 2, "slider"),  # its ends: `_element`
    Setting(
        "patience",
        "Early-stopping patience",
        2,
        "slider",
        bounds=_up_to_limit("patience"),
        help="Epochs without a better validation loss before stopping; 0 = off.",
    ),
    Setting(
        "validation_split",
        "Validation split",
        2,
        "slider",
        bounds=_up_to_limit("validation_split"),
        step=0.05,
    ),
    Setting("seed", "Seed", 2, "number_input", bounds=_up_to_limit("seed"), step=1),
    Setting(
        "restore_best",
        "Keep the best epoch",
        2,
        "toggle",
        help="On: end with the epoch of lowest validation loss. Off: with the last epoch, "
        "which a cosine-decay schedule is designed to reach.",
    ),
]


def _element(setting: Setting, limits: DemoLimits) -> tuple[str, dict[str, Any]]:
    """The Streamlit element that shows `setting` and its arguments on this server."""
    kwargs: dict[str, Any] = {
        "key": train_form.key(setting.field),
        "help": setting.help or setting_help(setting.field),
    }
    widget = setting.widget
    if setting.field == "epochs":  # up to this server's cap
        most = limits.maximum("epochs")
        if most > 1:
            kwargs.update(min_value=1, max_value=most)
        else:  # a slider needs two different ends
            widget, kwargs["options"] = "select_slider", [1]
    if setting.field == "conv_filters":
        kwargs["disabled"] = st.session_state[train_form.key("architecture")] not in CONVNETS
    if setting.options is not None:
        kwargs["options"] = setting.options(limits)
    if setting.bounds is not None:
        kwargs["min_value"], kwargs["max_value"] = setting.bounds(limits)
    if setting.step is not None:
        kwargs["step"] = setting.step
    if setting.format_func is not None:
        kwargs["format_func"] = setting.format_func
    return widget, kwargs


def settings_form(limits: DemoLimits) -> TrainConfig | None:
    """The settings widgets; the config they describe, or None after showing why it is invalid
    (or above this server's caps)."""
    st.selectbox(
        "Preset",
        list(PRESETS),
        key=train_form.PRESET,
        on_change=apply_preset,
        args=(limits,),
        format_func=PRESET_LABELS.get,
        help="Fills in every setting below; change any of them afterwards.",
    )
    if train_form.key("architecture") not in st.session_state:
        apply_preset(limits)
    columns = st.columns(3)
    for setting in SETTINGS:
        widget, kwargs = _element(setting, limits)
        getattr(columns[setting.column], widget)(setting.label, **kwargs)
    drawings_view.training_options()
    try:
        config = train_form.from_state(st.session_state)
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
    epochs = metrics.epochs_run
    st.success(
        f"Run `{run_id}` {metrics.ending}: **{run.test_accuracy:.2%}** test accuracy, "
        f"{epochs} epoch{'s' if epochs != 1 else ''} (best: {metrics.best_epoch}) in "
        f"{metrics.train_seconds:.0f} s. It is now your active model."
    )
    drawings_view.before_after(st.session_state.get(BEFORE), run_id)
    st.page_link(page_path("results"), label="See its results", icon=":material/monitoring:")


def format_seconds(seconds: float) -> str:
    if seconds != seconds:  # NaN before the first batch
        return "…"
    return f"{seconds / 60:.0f} min {seconds % 60:.0f} s" if seconds >= 60 else f"{seconds:.0f} s"


st.title("Train")
limits = app_state.demo_limits()
if limits.caption():
    st.caption(limits.caption(), help="Caps set by whoever runs this server, for its memory.")
service = app_state.job_service()
share_view.load_train_again(limits)
share_view.open_settings_link(limits)
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
actions = st.container(horizontal=True)
if actions.button(
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
with actions:
    share_view.settings_link(config, key="train_link")


with st.expander("Try several settings", icon=":material/tune:"):
    axes = sweep_view.sweep_form(config, limits, service, disabled=busy or sweeping)
    share_view.settings_link(
        config if axes else None,
        key="train_sweep_link",
        axes=axes or (),
        label="Copy link to this sweep",
    )


@st.fragment(run_every=0.5 if busy or others_training else None)
def live_job(follow: bool) -> None:
    show_job(job_id, follow)


@st.fragment(run_every=0.5 if sweeping else None)
def live_sweep(follow: bool) -> None:
    sweep_view.show_sweep(service, my_sweep, follow)


live_job(follow=busy)
if my_sweep:
    live_sweep(follow=sweeping)
