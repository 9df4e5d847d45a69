"""The Sketch canvas's Python side (`pages/parts/canvas.py`): what it hands Streamlit goes out
as JSON without pandas on a cold server, and what the browser sends back is read as an image
or refused with a message."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from mnist_core.errors import ImageError
from pages.parts.canvas import MAX_PNG_BYTES, PNG_PREFIX, SIZE, decode
from tests.fresh import report_of

# The canvas's settings as the page hands them over, then what the first visitor's server
# does with them, in a fresh process.
COLD_SERVER = """
import json, sys
from streamlit.components.v2.bidi_component.serialization import serialize_mixed_data
from streamlit.proto.BidiComponent_pb2 import BidiComponent

data = {"stroke_width": 20, "png": "data:image/png;base64,iVBORw0KGgo="}
proto = BidiComponent()
serialize_mixed_data(data, proto)
print(json.dumps({
    "sent": json.loads(proto.json) == data,
    "pandas": "pandas" in sys.modules,
    "pyarrow": "pyarrow" in sys.modules,
}))
"""


def test_the_canvas_settings_go_out_as_json_without_importing_pandas() -> None:
    assert report_of(COLD_SERVER) == {"sent": True, "pandas": False, "pyarrow": False}


def data_url(image: Image.Image, image_format: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return PNG_PREFIX + base64.b64encode(buffer.getvalue()).decode()


def drawing(mode: str = "RGBA") -> tuple[Image.Image, np.ndarray]:
    """A canvas-sized picture with a white bar on black, in `mode`, and its RGBA pixels."""
    pixels = np.zeros((SIZE, SIZE, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    pixels[100:180, 130:150, :3] = 255
    image = Image.fromarray(pixels, "RGBA").convert(mode)
    return image, pixels


@pytest.mark.parametrize("mode", ["RGBA", "RGB", "L"])
def test_a_drawing_comes_back_as_the_rgba_pixels_the_canvas_held(mode: str) -> None:
    image, pixels = drawing(mode)
    decoded = decode(data_url(image))
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, pixels)


BROKEN = {
    "not a data URL": ("hello", "did not arrive as a PNG"),
    "a JPEG's data URL": ("data:image/jpeg;base64,/9j/4AAQ", "did not arrive as a PNG"),
    "damaged base64": (PNG_PREFIX + "iVBORw0KGgo!!", "arrived damaged"),
    "bytes that are no image": (PNG_PREFIX + base64.b64encode(b"x" * 100).decode(), "PNG"),
    "an empty PNG": (PNG_PREFIX, "empty"),
}


@pytest.mark.parametrize("value, message", list(BROKEN.values()), ids=list(BROKEN))
def test_what_is_not_a_drawing_is_refused_with_a_message(value: str, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        decode(value)


def test_a_picture_far_larger_than_the_canvas_is_refused_before_decoding() -> None:
    huge = Image.new("L", (4 * SIZE, 4 * SIZE))  # 16x the canvas's pixels, a few kB as PNG
    url = data_url(huge)
    assert len(url) < MAX_PNG_BYTES
    with pytest.raises(ImageError, match="too many pixels|megapixels"):
        decode(url)
