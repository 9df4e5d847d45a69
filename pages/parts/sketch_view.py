"""The Sketch page but its canvas: the model picker, the prediction of a drawing or a photo, and
what the canvas's buttons do. Imported by pages/sketch.py once the canvas is sent."""

from __future__ import annotations

import time

import numpy as np
import streamlit as st

from mnist_core import preprocess
from mnist_core.errors import ImageError
from mnist_core.figures import digit_png, probabilities_html
from mnist_core.preprocess import load_image, to_mnist_steps
from mnist_core.runs import RunInfo
from mnist_core.serving import TTA_SHIFTS, predict_digit
from pages.parts import app_state, drawings_view, explain_view
from pages.parts.canvas import DRAWING, DRAWING_PNG, clear_sketch, decode

MODEL = "sketch_model"  # the model picker's key: the run id Sketch reads with
TTA = "sketch_tta"


def model_header() -> RunInfo | None:
    """The model picker (default: the session's active model), how that model reads your
    drawings, and the test-time augmentation switch; the run, or None."""
    runs = app_state.list_runs()
    app_state.forget_vanished_run(MODEL, runs)
    if not runs:
        st.info(app_state.NO_MODEL)
        return None
    active = app_state.active_run(runs)
    labels = {run.run_id: run.label for run in runs}
    run_id = st.selectbox(
        "Model",
        list(labels),
        index=list(labels).index(active.run_id),
        format_func=labels.get,
        key=MODEL,
    )
    run = next(run for run in runs if run.run_id == run_id)
    drawings_view.active_accuracy_line(run)
    tta_switch(run)
    return run


def chosen_run() -> RunInfo | None:
    """The run the model picker holds (the canvas's fragment runs before the picker is drawn),
    else the session's active one."""
    runs = app_state.list_runs()
    chosen = st.session_state.get(MODEL)
    return next((run for run in runs if run.run_id == chosen), None) or app_state.active_run(runs)


def canvas_controls(png: str | None) -> None:
    """Under the canvas: take the drawing it sent (`png`), and the Clear button."""
    if drawings_view.changed():  # a drawing was kept: the page's list must show it
        st.rerun()
    if png is not None and png != st.session_state.get(DRAWING_PNG):
        take_drawing(png)
    st.button("Clear", key="sketch_clear", on_click=clear_sketch, icon=":material/ink_eraser:")


def canvas_prediction() -> None:
    """Beside the canvas: what the chosen model reads in the drawing."""
    run = chosen_run()
    if run is not None:
        show_prediction(run, st.session_state.get(DRAWING), "canvas")


def upload(run: RunInfo | None) -> None:
    """The "Upload a photo" tab."""
    if run is None:
        st.info(app_state.NO_MODEL)
        return
    max_upload_bytes = app_state.demo_limits().upload_bytes
    photo = st.file_uploader(
        f"A photo or scan of one digit (PNG or JPEG, up to {max_upload_bytes / 1e6:g} MB)",
        type=["png", "jpg", "jpeg", "gif", "bmp", "webp"],
        key="sketch_upload",
    )
    if photo is not None:
        try:
            image = load_image(photo.getvalue(), max_bytes=max_upload_bytes)
        except ImageError as error:
            app_state.show_error(error)
        else:
            show_prediction(run, image, "upload")


def show_prediction(run: RunInfo, image: np.ndarray | None, source: str) -> None:
    """The prediction panel for a drawn or uploaded `image` (any size, RGBA/RGB/gray)."""
    steps = to_mnist_steps(image) if image is not None else None
    if steps is None and source == "canvas":
        st.info("Draw a digit", icon=":material/draw:")
        st.html(probabilities_html(np.zeros(10)))  # the empty axes: a stroke fills them in
        # The canvas is on screen already: the model and the image code load while the
        # visitor draws, so the first stroke does not wait for them.
        app_state.prediction_model(run)
        preprocess.warm_up()
        return
    if steps is None:
        st.warning("No digit found in this image: use a photo of one dark or light digit.")
        return
    model = app_state.prediction_model(run)
    if model is None:
        return
    tta = use_tta(run)
    start = time.perf_counter()
    digit, confidence, probabilities = predict_digit(model, steps.centred, tta=tta)
    milliseconds = (time.perf_counter() - start) * 1000
    left, right = st.columns([1, 2])
    left.metric("Prediction", str(digit))
    left.metric("Confidence", f"{confidence:.1%}")
    left.image(
        digit_png(steps.centred, scale=5),
        caption="What the model sees (28×28)",
        alt=f"The digit as the model sees it, read as a {digit}",
    )
    right.html(probabilities_html(probabilities))
    copies = f"{len(TTA_SHIFTS)} shifted copies" if tta else "the digit"
    right.caption(f"Read {copies} in {milliseconds:.1f} ms.")
    drawings_view.offer_to_keep(
        steps.centred,
        digit,
        image,
        key=f"sketch_{source}",
        on_added=clear_sketch if source == "canvas" else None,
    )
    explain_view.preprocessing_steps(image, steps, source)
    explain_view.sketch_section(run, model, steps.centred, digit, source)


def take_drawing(png: str) -> None:
    """Keep the canvas's new drawing; one that cannot be read is said so, the last kept."""
    try:
        st.session_state[DRAWING] = decode(png)
    except ImageError as error:
        app_state.show_error(error)
    else:
        st.session_state[DRAWING_PNG] = png


def tta_switch(run: RunInfo) -> None:
    """The test-time augmentation switch (off by default), or why a run does not need it."""
    if run.ensemble is not None and run.ensemble.tta:
        st.caption("This ensemble averages shifted copies of every digit itself.")
        return
    st.toggle(
        "Average over shifted copies",
        key=TTA,
        help=f"Test-time augmentation: the model also reads {len(TTA_SHIFTS) - 1} copies of "
        "the digit moved one pixel up, down, left and right, and the answers are averaged. "
        f"Steadier on strokes that sit off-centre; {len(TTA_SHIFTS)}× the work (the time is "
        "shown under the prediction).",
    )


def use_tta(run: RunInfo) -> bool:
    """Whether the switch asks for test-time augmentation for `run`."""
    ensemble_does_it = run.ensemble is not None and run.ensemble.tta
    return bool(st.session_state.get(TTA)) and not ensemble_does_it
