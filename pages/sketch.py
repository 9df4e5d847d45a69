"""Sketch: draw a digit (or upload a photo of one) and see what the model reads, live.

The canvas goes out before anything heavy is imported. This file imports only Streamlit and the
canvas; it sends the title, the tabs and the canvas, and then imports `sketch_view` (numpy,
mnist_core, ONNX Runtime: 0.2-0.3 s on a new server's first visit), which shows the rest,
including the model picker above the tabs (its room is kept until then).
"""

import pages.parts  # noqa: F401 - before all else: see pages/parts/__init__.py

# isort: split
import streamlit as st

from pages.parts import canvas, style


@st.fragment
def drawing_board() -> None:
    """The canvas and its prediction. A fragment: a stroke reruns only this, not the page,
    which keeps predictions fast when many visitors draw at once."""
    canvas_column, result_column = st.columns([1, 2])
    with canvas_column:
        stroke_width = st.slider("Stroke width", 5, 40, 20, key="sketch_stroke_width")
        png = canvas.sketch_canvas(stroke_width)
        from pages.parts import sketch_view  # after the canvas: see the module's docstring

        sketch_view.canvas_controls(png)
    with result_column:
        sketch_view.canvas_prediction()


st.title("Sketch")
st.caption("Draw a digit with the mouse (or a finger); the prediction follows every stroke.")
header = st.container(key=style.SKETCH_HEADER).empty()  # the model picker, filled last
header.space(style.SKETCH_HEADER_HEIGHT)  # its room until then (see style)
draw_tab, upload_tab = st.tabs(["Draw", "Upload a photo"])
with draw_tab:
    drawing_board()

from pages.parts import drawings_view, sketch_view  # noqa: E402 - after the canvas (see above)

with header.container():
    run = sketch_view.model_header()
with upload_tab:
    sketch_view.upload(run)
drawings_view.manage()
