"""Sketch: draw a digit (or upload a photo of one) and see what the model reads, live."""

import pages.parts  # noqa: F401 - before all else: see pages/parts/__init__.py

# isort: split
import time

import numpy as np
import streamlit as st

from mnist_core import preprocess
from mnist_core.errors import ImageError
from mnist_core.figures import digit_png, probabilities_html
from mnist_core.preprocess import load_image, to_mnist_steps
from mnist_core.serving import TTA_SHIFTS, predict_digit
from pages.parts import app_state, drawings_view, explain_view
from pages.parts.canvas import decode, drawing_canvas

DRAWING = "sketch_drawing"  # the latest canvas image, (280, 280, 4) uint8; tests inject it here
DRAWING_PNG = "sketch_drawing_png"  # the same drawing as the canvas sent it, a PNG data URL
CANVAS_VERSION = "sketch_canvas_version"  # changing the canvas key clears it


def clear_canvas() -> None:
    st.session_state[CANVAS_VERSION] = st.session_state.get(CANVAS_VERSION, 0) + 1
    st.session_state.pop(DRAWING, None)
    st.session_state.pop(DRAWING_PNG, None)


def pick_model():
    """The model picker (default: the session's active model); the run, or None."""
    runs = app_state.list_runs()
    app_state.forget_vanished_run("sketch_model", runs)
    if not runs:
        st.info("No model yet: train one on the Train page.")
        return None
    active = app_state.active_run(runs)
    labels = {run.run_id: run.label for run in runs}
    run_id = st.selectbox(
        "Model",
        list(labels),
        index=list(labels).index(active.run_id),
        format_func=labels.get,
        key="sketch_model",
    )
    return next(run for run in runs if run.run_id == run_id)


def show_prediction(run, image: np.ndarray | None, source: str) -> None:
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
        on_added=clear_canvas if source == "canvas" else None,
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


TTA = "sketch_tta"


def tta_switch(run) -> None:
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


def use_tta(run) -> bool:
    """Whether the switch asks for test-time augmentation for `run`."""
    ensemble_does_it = run.ensemble is not None and run.ensemble.tta
    return bool(st.session_state.get(TTA)) and not ensemble_does_it


@st.fragment
def drawing_board(run) -> None:
    """The canvas and its prediction. A fragment: a stroke reruns only this, not the page,
    which keeps predictions fast when many visitors draw at once."""
    if drawings_view.changed():  # a drawing was kept: the page's list must show it
        st.rerun()
    canvas_column, result_column = st.columns([1, 2])
    with canvas_column:
        stroke_width = st.slider("Stroke width", 5, 40, 20, key="sketch_stroke_width")
        png = drawing_canvas(
            stroke_width=stroke_width,
            key=f"sketch_canvas_{st.session_state.get(CANVAS_VERSION, 0)}",
            drawing=st.session_state.get(DRAWING_PNG),
        )
        if png is not None and png != st.session_state.get(DRAWING_PNG):
            take_drawing(png)
        st.button("Clear", key="sketch_clear", on_click=clear_canvas, icon=":material/ink_eraser:")
    with result_column:
        show_prediction(run, st.session_state.get(DRAWING), "canvas")


st.title("Sketch")
st.caption("Draw a digit with the mouse (or a finger); the prediction follows every stroke.")
max_upload_bytes = app_state.demo_limits().upload_bytes
run = pick_model()
if run is not None:
    drawings_view.active_accuracy_line(run)
    tta_switch(run)
    draw_tab, upload_tab = st.tabs(["Draw", "Upload a photo"])
    with draw_tab:
        drawing_board(run)

    with upload_tab:
        upload = st.file_uploader(
            f"A photo or scan of one digit (PNG or JPEG, up to {max_upload_bytes / 1e6:g} MB)",
            type=["png", "jpg", "jpeg", "gif", "bmp", "webp"],
            key="sketch_upload",
        )
        if upload is not None:
            try:
                image = load_image(upload.getvalue(), max_bytes=max_upload_bytes)
            except ImageError as error:
                app_state.show_error(error)
            else:
                show_prediction(run, image, "upload")

drawings_view.manage()
