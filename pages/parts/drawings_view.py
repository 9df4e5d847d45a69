"""Your drawings: keep a sketch with its right label, list, delete and export them, and score
models on them (Sketch, Train and Results use these)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import streamlit as st

from mnist_core.drawings import DrawingSet
from mnist_core.errors import MnistCoreError
from mnist_core.figures import drawings_html
from mnist_core.runs import RunInfo
from pages.parts import app_state, train_form

ADDED = "drawings_added"  # the message after adding, shown once on the next run
ERROR = "drawings_error"  # a failed add or delete, shown once on the next run
CHANGED = "drawings_changed"  # set when a drawing was added from inside a fragment


def drawing_set() -> DrawingSet:
    """The drawings folder: `MNIST_DRAWINGS_DIR`, else `data/drawings`."""
    return DrawingSet()


def offer_to_keep(
    digit: np.ndarray,
    predicted: int,
    canvas: np.ndarray | None,
    key: str,
    on_added: Callable[[], None] | None = None,
) -> None:
    """Under a prediction: confirm or correct its label and add the drawing to your set;
    `on_added()` runs after a drawing was added (e.g. to clear the canvas for the next)."""
    label = st.segmented_control(
        "Right label",
        list(range(10)),
        default=predicted,
        key=f"{key}_label_{predicted}",  # a new prediction proposes its own digit again
        help="Pick the digit you meant if the model got it wrong, then add it to your drawings.",
    )
    st.button(
        "Add to my drawings",
        key=f"{key}_keep",
        icon=":material/add_circle:",
        disabled=label is None,
        on_click=_keep,
        args=(digit, label, canvas, on_added),
    )


def _keep(
    digit: np.ndarray,
    label: int,
    canvas: np.ndarray | None,
    on_added: Callable[[], None] | None,
) -> None:
    drawings = drawing_set()
    try:
        drawings.add(digit, int(label), canvas)
    except MnistCoreError as error:
        st.session_state[ERROR] = str(error)
        return
    count = len(drawings)
    st.session_state[ADDED] = (
        f"Added as a {label}: you have {count} drawing{'s' if count != 1 else ''}."
    )
    st.session_state[CHANGED] = True
    if on_added is not None:
        on_added()


def changed() -> bool:
    """Whether a drawing was added since the last call (then the whole page should rerun)."""
    return bool(st.session_state.pop(CHANGED, False))


def manage() -> None:
    """The "My drawings" panel: counts, thumbnails, delete one, download all as .npz."""
    drawings = drawing_set()
    saved = drawings.list()
    if message := st.session_state.pop(ADDED, None):
        st.success(message, icon=":material/check_circle:")  # not a toast: see pages/train.py
    if error := st.session_state.pop(ERROR, None):
        st.error(error)
    with st.expander(f"My drawings ({len(saved)})", icon=":material/collections:"):
        if not saved:
            st.caption(
                "None yet. Draw a digit, check its label and press **Add to my drawings**: "
                "Results then scores every model on your handwriting, and Train can learn it."
            )
            return
        counts = Counter(d.label for d in saved)
        st.caption(
            "Per digit: "
            + ", ".join(f"{digit}: {counts.get(digit, 0)}" for digit in range(10))
            + f" · stored in {drawings.root}"
        )
        st.html(drawings_html(saved))
        left, right = st.columns([3, 1])
        chosen = left.selectbox(
            "Drawing",
            [d.drawing_id for d in saved],
            format_func=lambda i: f"{i} · a {next(d.label for d in saved if d.drawing_id == i)}",
            key="drawings_pick",
        )
        right.button(
            "Delete",
            key="drawings_delete",
            icon=":material/delete:",
            on_click=_delete,
            args=(chosen,),
        )
        st.download_button(
            "Download all (.npz)",
            drawings.export_npz,
            "my-drawings.npz",
            "application/octet-stream",
            key="drawings_download",
            help="x: (N, 28, 28) uint8 like MNIST, y: labels, ids.",
        )


def _delete(drawing_id: str) -> None:
    try:
        drawing_set().delete(drawing_id)
    except MnistCoreError as error:
        st.session_state[ERROR] = str(error)


def accuracy(run: RunInfo) -> float | None:
    """`run`'s accuracy on your drawings; None when there are none, or while its model is
    being prepared (`app_state.predictor`)."""
    return app_state.drawings_accuracy(run, drawing_set())


def scores_table(runs: list) -> None:
    """Every run scored on MNIST's test set and on your drawings, side by side."""
    count = len(drawing_set())
    st.header("MNIST test set vs your drawings")
    if count == 0:
        st.caption(
            "Add drawings on the Sketch page to see how each model reads your own handwriting."
        )
        return
    rows = []
    for run in runs:
        row = _scores(run, count)
        mine = row[f"your drawings ({count})"]
        row["gap (points)"] = None if mine is None else mine - row["MNIST test"]
        row["trained on your drawings"] = bool(run.config.drawings)
        rows.append(row)
    _show(rows, count, "results_drawings_scores", {"gap (points)": "%+.1f"})
    st.caption(
        "A model trained on your drawings has seen them: its score on them is no longer a "
        "fair test, only a measure of what it learned."
    )


def active_accuracy_line(run) -> None:
    """One line on Sketch: how the chosen model does on your drawings."""
    try:
        mine = accuracy(run)
    except (MnistCoreError, OSError):
        return
    if mine is not None:
        count = len(drawing_set())
        st.caption(
            f"This model reads {mine:.0%} of your {count} drawing{'s' if count != 1 else ''} right "
            f"({run.test_accuracy:.2%} of MNIST's test set)."
        )


def training_options() -> None:
    """Train page: mix your drawings into training, and start from an existing run."""
    count = len(drawing_set())
    runs = app_state.list_runs()
    # Ensembles and imported models have no settings of this form to fine-tune them with.
    labels = {"": "new random weights"}
    labels.update({run.run_id: run.label for run in runs if run.trained_here})
    start_from = train_form.key("start_from")
    if st.session_state.get(start_from) not in labels:  # deleted meanwhile
        st.session_state[start_from] = ""
    left, right = st.columns(2)
    left.toggle(
        f"Mix in my drawings ({count})",
        key=train_form.key("drawings"),
        disabled=count == 0 and not st.session_state.get(train_form.key("drawings")),
        help="Adds your labelled drawings (Sketch page) to the training set, repeated so they "
        "make up about 2 % of it. Add some on the Sketch page first.",
    )
    right.selectbox(
        "Start from",
        list(labels),
        format_func=labels.get,
        key=start_from,
        on_change=_take_architecture,
        args=(runs,),
        help="Fine-tune a trained run (its architecture is used) instead of random weights.",
    )


def _take_architecture(runs: list) -> None:
    """Fine-tuning keeps the run's architecture: copy it into the settings."""
    chosen = st.session_state[train_form.key("start_from")]
    run = next((run for run in runs if run.run_id == chosen), None)
    if run is not None:
        train_form.fill_network(st.session_state, run.config)


def before_after(before_id: str | None, after_id: str) -> None:
    """Train page, after a run: the model before and after, on MNIST and on your drawings."""
    runs = {run.run_id: run for run in app_state.list_runs()}
    rows = []
    count = len(drawing_set())
    for name, run_id in (("before", before_id), ("after", after_id)):
        run = runs.get(run_id) if run_id else None
        if run is None:
            continue
        rows.append({"": name, **_scores(run, count)})
    if len(rows) < 2 and count == 0:
        return
    _show(rows, count, "train_before_after")


def _scores(run, count: int) -> dict:
    """A table row: the run, its MNIST test accuracy and its accuracy on your drawings (%)."""
    try:
        mine = accuracy(run)
    except (MnistCoreError, OSError):
        mine = None
    return {
        "run": run.label,
        "MNIST test": run.test_accuracy * 100,
        f"your drawings ({count})": None if mine is None else mine * 100,
    }


def _show(rows: list[dict], count: int, key: str, formats: dict | None = None) -> None:
    import pandas as pd  # only for tables: Sketch's first visit does without its ~0.2 s import

    formats = {"MNIST test": "%.2f %%", f"your drawings ({count})": "%.1f %%", **(formats or {})}
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        column_config={
            column: st.column_config.NumberColumn(format=fmt) for column, fmt in formats.items()
        },
        key=key,
    )
