"""Try several settings, on Train: up to two settings and their values on top of the form's
settings, trained as parallel jobs; each trial's progress, then their runs ranked by
validation accuracy, a plot of it against the swept settings, and the best run to use."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from mnist_core.config import DemoLimits, TrainConfig
from mnist_core.errors import ConfigError
from mnist_core.figures import sweep_figure
from mnist_core.job_service import JobError, JobService, JobStatus, ordinal
from mnist_core.links import values_text
from mnist_core.sweeps import (
    SWEEPABLE,
    Axis,
    TrialResult,
    best,
    describe_settings,
    expand,
    format_value,
    max_sweep,
    parse_values,
    sweep_results,
    swept_settings,
)
from pages.parts import app_state

# The settings a visitor may vary (`SWEEPABLE`), named as the form above names them.
LABELS = {
    "learning_rate": "Learning rate",
    "dropout_rate": "Dropout rate",
    "batch_size": "Batch size",
    "epochs": "Epochs",
    "hidden_units": "Dense layers (units)",
    "conv_filters": "Convolution filters",
    "optimizer": "Optimizer",
    "lr_decay": "Cosine learning-rate decay",
    "patience": "Early-stopping patience",
    "shift": "Random shift",
    "augment": "Augment",
    "elastic": "Elastic distortion",
    "architecture": "Architecture",
    "seed": "Seed",
}
NONE = ""  # the second setting's choice of none
SLOTS = (1, 2)
PERCENT = "%.2f%%"  # accuracies in tables, given in percent


def percent(fraction: float | None) -> float | None:
    return None if fraction is None else round(100 * fraction, 4)


def setting_key(slot: int) -> str:
    return f"train_sweep_setting_{slot}"


def values_key(slot: int) -> str:
    return f"train_sweep_values_{slot}"


def suggest_values(slot: int) -> None:
    """Fill a setting's values with an example when the setting changes."""
    setting = st.session_state[setting_key(slot)]
    st.session_state[values_key(slot)] = SWEEPABLE[setting].replace(",", ", ") if setting else ""


def fill(axes: Sequence[Axis]) -> None:
    """Show a sweep's grid (a link's) in the form: its settings and their values.

    Call before the form is created; no axes leave the form as it is.
    """
    if not axes:
        return
    for slot in SLOTS:
        axis = axes[slot - 1] if slot <= len(axes) else None
        st.session_state[setting_key(slot)] = axis.setting if axis else NONE
        st.session_state[values_key(slot)] = values_text(axis).replace(",", ", ") if axis else ""


def sweep_form(
    base: TrainConfig | None, limits: DemoLimits, service: JobService, disabled: bool
) -> list[Axis] | None:
    """Two settings and their values; the trials they make, and a button that queues them.

    `base` is the config the form above describes (None while it is invalid); `disabled` while
    this visitor has a training or a sweep on. Returns the grid, or None while it is invalid.
    """
    st.caption(
        "Every combination of the values below trains as its own run, on top of the settings "
        "above. The trials are ranked by validation accuracy; the test set is never used to "
        "choose."
    )
    if setting_key(1) not in st.session_state:
        st.session_state[setting_key(1)], st.session_state[setting_key(2)] = "learning_rate", NONE
        suggest_values(1)
        suggest_values(2)
    chosen = []  # (setting, its values as typed)
    for slot, column in zip(SLOTS, st.columns(2), strict=True):
        setting = column.selectbox(
            f"Setting {slot}",
            list(SWEEPABLE) if slot == 1 else [NONE, *SWEEPABLE],
            key=setting_key(slot),
            format_func=lambda name: LABELS.get(name, name) if name else "(none)",
            on_change=suggest_values,
            args=(slot,),
        )
        if setting:
            text = column.text_input(
                f"Values of {LABELS.get(setting, setting).lower()}",
                key=values_key(slot),
                help="Separated by commas. Layer sizes join their layers with +, like 256+128; "
                "switches are true or false.",
            )
            chosen.append((setting, text))
    configs = None
    try:
        axes = [parse_values(setting, text) for setting, text in chosen]
        if base is not None:  # else the form above says what to fix
            configs = expand(base, axes)
            for config in configs:
                limits.check(config)
    except ConfigError as error:
        app_state.show_error(error)
        configs = None
    if configs is not None:
        st.caption(
            f"**{len(configs)} trial{'s' if len(configs) != 1 else ''}** (this server takes at "
            f"most {max_sweep()} per sweep); {service.workers} train at once, the others wait "
            "in the queue."
        )
    if st.button(
        "Start sweep",
        key="train_sweep_start",
        type="primary",
        disabled=configs is None or disabled,
        icon=":material/tune:",
    ):
        try:
            sweep_id = service.submit_sweep(configs, owner=app_state.visitor_id())
        except JobError as error:
            app_state.show_error(error)
        else:
            app_state.remember_sweep(sweep_id)
            st.rerun()  # the page again, its buttons disabled while the sweep is on
    return None if configs is None else axes


def show_sweep(service: JobService, sweep_id: str, follow: bool) -> None:
    """This visitor's sweep: each trial's state and progress; once all have ended, their runs
    ranked by validation accuracy, the plot, and the best run to use."""
    try:
        trials = service.sweep(sweep_id)
    except JobError as error:
        app_state.show_error(error)
        return
    settings = swept_settings([trial.request.config for trial in trials])
    st.subheader("Your sweep")
    ended = sum(1 for trial in trials if not trial.active)
    st.caption(f"{ended} of {len(trials)} trials ended")
    for number, trial in enumerate(trials, start=1):
        if trial.state == "failed":
            swept = describe_settings(
                {name: getattr(trial.request.config, name) for name in settings}
            )
            which = f"Trial {number} ({swept})" if swept else f"Trial {number}"
            st.error(f"{which} failed: {trial.current.error}")
    if ended < len(trials):
        trials_table(trials, settings)
        stopping = all(trial.stop_requested for trial in trials if trial.active)
        if st.button("Stop sweep", key="train_sweep_stop", disabled=stopping):
            service.stop_sweep(sweep_id)
            stopping = True
        if stopping:
            st.info("Stopping every trial: the ones training keep their best weights so far.")
        return
    if follow:
        st.rerun()  # the sweep just ended: redraw the whole page (its buttons)
    ranked = sweep_results(trials, app_state.run_store())
    if not ranked:
        st.warning("No trial of this sweep ended with a run to compare.")
        return
    if len(ranked) < len(trials):
        st.caption(f"{len(ranked)} of the {len(trials)} trials ended with a run to compare.")
    results_table(ranked, settings)
    st.plotly_chart(sweep_figure(ranked, settings), key="train_sweep_chart")
    use_best(best(ranked))


def trials_table(trials: list[JobStatus], settings: list[str]) -> None:
    """Every trial: its settings, where it is, how far it got."""
    rows = []
    for number, trial in enumerate(trials, start=1):
        progress, history = trial.current.progress, trial.current.history
        state = trial.state
        if state == "queued":
            state = f"waiting ({ordinal(trial.position)})"
        rows.append(
            {
                "trial": number,
                **{name: format_value(getattr(trial.request.config, name)) for name in settings},
                "state": state,
                "progress": 1.0
                if state == "finished"
                else (0.0 if progress is None else progress.fraction),
                "validation accuracy": percent(history["val_accuracy"][-1])
                if history["val_accuracy"]
                else None,
            }
        )
    st.dataframe(
        rows,
        hide_index=True,
        key="train_sweep_trials",
        column_config={
            "progress": st.column_config.ProgressColumn(min_value=0, max_value=1),
            "validation accuracy": st.column_config.NumberColumn(
                "validation accuracy (last epoch)", format=PERCENT
            ),
        },
    )


def results_table(ranked: list[TrialResult], settings: list[str]) -> None:
    """The trials' runs, the highest validation accuracy first."""
    st.dataframe(
        [
            {
                "rank": rank,
                **{name: format_value(row.settings[name]) for name in settings},
                "validation accuracy": percent(row.val_accuracy),
                "test accuracy": percent(row.test_accuracy),
                "epochs": row.epochs_run,
                "seconds": round(row.train_seconds, 1),
                "run": row.run_id,
                "status": row.status,
            }
            for rank, row in enumerate(ranked, start=1)
        ],
        hide_index=True,
        key="train_sweep_results",
        column_config={
            "validation accuracy": st.column_config.NumberColumn(
                help="At the epoch the run keeps: what the trials are ranked by.",
                format=PERCENT,
            ),
            "test accuracy": st.column_config.NumberColumn(
                help="Shown for reference, never used to rank or choose.", format=PERCENT
            ),
        },
    )


def use_best(chosen: TrialResult | None) -> None:
    """The best trial's run, and a button that makes it this session's active model."""
    if chosen is None:
        st.info("No trial has a validation accuracy to rank it by.")
        return
    summary = (
        f"Best trial: {f'**{chosen.label}**, ' if chosen.label else ''}run `{chosen.run_id}`, "
        f"{chosen.val_accuracy:.2%} validation accuracy ({chosen.test_accuracy:.2%} on the "
        "test set)."
    )
    if st.session_state.get(app_state.ACTIVE_RUN) == chosen.run_id:
        st.success(f"{summary} It is your active model.")
        return
    st.markdown(summary)
    st.button(
        "Use the best trial",
        key="train_sweep_use_best",
        icon=":material/check_circle:",
        on_click=app_state.set_active_run,  # before the sidebar is drawn again
        args=(chosen.run_id,),
        help="Makes this run your active model on Sketch and Results.",
    )
