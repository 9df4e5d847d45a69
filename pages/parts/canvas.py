"""The Sketch page's drawing canvas: a Streamlit component of our own, 80 lines of JavaScript.

A plain HTML canvas, drawn on with pointer events (a mouse, a pen or a finger: the page does
not scroll under a finger that draws), sends the drawing to Python as a PNG the moment a
stroke ends. Python hands the last drawing back when the canvas is mounted again (a visitor
returning from another page finds it still there). White ink on black, as in MNIST.

It replaced streamlit-drawable-canvas, whose fabric.js script (413 kB) was loaded after the
page's other elements and which waited 200 ms after every stroke before sending it. Its
settings are numbers and strings, which Streamlit sends as JSON without importing pandas.

Importing this module imports neither numpy nor the image code (`decode` does, on first use):
the Sketch page sends the canvas before those imports (see pages/sketch.py).
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

import streamlit as st

from mnist_core.errors import ImageError

if TYPE_CHECKING:
    import numpy as np

SIZE = 280  # CSS pixels, and the pixels of the PNG it sends: 10x MNIST's 28
PNG_PREFIX = "data:image/png;base64,"
MAX_PNG_BYTES = 1_000_000  # a 280x280 RGBA PNG is at most ~310 kB; a drawing is ~5 kB

_HTML = (
    f'<canvas class="digit-canvas" width="{SIZE}" height="{SIZE}" role="img" '
    'aria-label="Drawing area: draw one digit with the mouse, a pen or a finger"></canvas>'
)
_CSS = f"""
.digit-canvas {{
    display: block; width: {SIZE}px; height: {SIZE}px; background: #000;
    border-radius: 0.5rem; cursor: crosshair;
    touch-action: none; user-select: none; -webkit-user-select: none;
    box-shadow: 0 0 0 1px var(--st-border-color, rgba(128, 128, 128, 0.4));
}}
"""
# One function per render: it sets the canvas up on the first call and takes new settings on
# later ones. The backing store has the screen's pixel density (sharp lines on phones); what is
# sent is drawn down to SIZE x SIZE. A drawing handed back is painted once, and only onto a
# canvas that has not been drawn on since it was mounted.
_JS = f"""
const SIZE = {SIZE};
const boards = new WeakMap();

function setUp(canvas) {{
    const ratio = Math.max(1, Math.round(window.devicePixelRatio || 1));
    canvas.width = canvas.height = SIZE * ratio;
    const ink = canvas.getContext("2d");
    ink.scale(ratio, ratio);
    ink.fillStyle = "#000";
    ink.fillRect(0, 0, SIZE, SIZE);
    const board = {{ ink, width: 20, drawn: false, restored: false, last: null, pointer: null,
                     setState: null }};
    const at = (event) => {{
        const box = canvas.getBoundingClientRect();
        return [(event.clientX - box.left) * SIZE / box.width,
                (event.clientY - box.top) * SIZE / box.height];
    }};
    const line = (from, to) => {{
        ink.strokeStyle = "#fff";
        ink.lineWidth = board.width;
        ink.lineCap = ink.lineJoin = "round";
        ink.beginPath();
        ink.moveTo(from[0], from[1]);
        ink.lineTo(to[0], to[1]);
        ink.stroke();
    }};
    const sendDrawing = () => {{
        const small = document.createElement("canvas");
        small.width = small.height = SIZE;
        small.getContext("2d").drawImage(canvas, 0, 0, SIZE, SIZE);
        board.setState("png", small.toDataURL("image/png"));
    }};
    canvas.addEventListener("pointerdown", (event) => {{
        if (board.pointer !== null || event.button > 0) return;
        event.preventDefault();
        canvas.setPointerCapture(event.pointerId);
        board.pointer = event.pointerId;
        board.drawn = true;
        board.last = at(event);
        line(board.last, board.last);
    }});
    canvas.addEventListener("pointermove", (event) => {{
        if (event.pointerId !== board.pointer) return;
        const moves = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
        for (const move of moves.length ? moves : [event]) {{
            const point = at(move);
            line(board.last, point);
            board.last = point;
        }}
    }});
    const end = (event) => {{
        if (event.pointerId !== board.pointer) return;
        board.pointer = null;
        sendDrawing();
    }};
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    return board;
}}

export default function (component) {{
    const {{ data, parentElement, setStateValue }} = component;
    const canvas = parentElement.querySelector("canvas");
    let board = boards.get(canvas);
    if (!board) {{
        board = setUp(canvas);
        boards.set(canvas, board);
    }}
    board.setState = setStateValue;  // the latest render's, should Streamlit hand out a new one
    board.width = data.stroke_width;
    if (data.png && !board.drawn && !board.restored) {{
        board.restored = true;
        const picture = new Image();
        picture.onload = () => board.drawn || board.ink.drawImage(picture, 0, 0, SIZE, SIZE);
        picture.src = data.png;
    }}
}}
"""

_COMPONENT = st.components.v2.component("digit_canvas", html=_HTML, css=_CSS, js=_JS)

# The Sketch page's canvas in session state: its latest drawing as an RGBA array (tests inject
# one here), the same drawing as the browser sent it (a PNG data URL), and a number that is part
# of the canvas's key (a new number is a new, blank canvas).
DRAWING = "sketch_drawing"
DRAWING_PNG = "sketch_drawing_png"
VERSION = "sketch_canvas_version"


def sketch_canvas(stroke_width: int) -> str | None:
    """The Sketch page's canvas, holding the drawing it last sent; see `drawing_canvas`."""
    return drawing_canvas(
        stroke_width=stroke_width,
        key=f"sketch_canvas_{st.session_state.get(VERSION, 0)}",
        drawing=st.session_state.get(DRAWING_PNG),
    )


def clear_sketch() -> None:
    """A blank Sketch canvas, its drawing forgotten."""
    st.session_state[VERSION] = st.session_state.get(VERSION, 0) + 1
    st.session_state.pop(DRAWING, None)
    st.session_state.pop(DRAWING_PNG, None)


def drawing_canvas(*, stroke_width: int, key: str, drawing: str | None = None) -> str | None:
    """Show the canvas; the drawing it holds as a PNG data URL, or None while it is empty.

    `drawing` (such a URL) is painted onto the canvas when it is mounted empty.
    """
    result = _COMPONENT(
        data={"stroke_width": int(stroke_width), "png": drawing},
        default={"png": None},
        on_png_change=lambda: None,
        key=key,
        width="content",
        height="content",
    )
    png = result.get("png")
    return png if isinstance(png, str) else None


def decode(png: str) -> np.ndarray:
    """The canvas's PNG data URL as an RGBA array, (SIZE, SIZE, 4) uint8 for a real drawing.

    Raises:
        ImageError: the value is not a PNG data URL of an image (it came from the browser).
    """
    import numpy as np  # here, not at the top: see the module's docstring

    from mnist_core.preprocess import load_image

    again = "Clear the canvas and draw the digit again."
    if not png.startswith(PNG_PREFIX):
        raise ImageError(f"The drawing did not arrive as a PNG image. {again}")
    try:
        data = base64.b64decode(png[len(PNG_PREFIX) :], validate=True)
    except binascii.Error:
        raise ImageError(f"The drawing arrived damaged. {again}") from None
    image = load_image(data, max_bytes=MAX_PNG_BYTES, max_pixels=4 * SIZE * SIZE)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] == 3:
        image = np.dstack([image, np.full(image.shape[:2], 255, dtype=np.uint8)])
    return image
