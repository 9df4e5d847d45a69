"""The Sketch canvas on a cold server (`pages/parts/canvas.py`): handing the canvas its
settings imports neither pandas nor pyarrow, and every value still gets the answer Streamlit
itself gives to "is this a data frame?"."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from streamlit import dataframe_util
from streamlit.components.v2.bidi_component import serialization

from pages.parts import canvas
from tests.fresh import report_of

# What `st_canvas` hands Streamlit for Sketch's canvas (streamlit-drawable-canvas 0.13), then
# what the page's first visitor's server does with it, in a fresh process.
COLD_SERVER = """
import json, sys
from pages.parts.canvas import PANDAS_FREE
from streamlit.components.v2.bidi_component.serialization import serialize_mixed_data
from streamlit.proto.BidiComponent_pb2 import BidiComponent

data = {
    "fillColor": "#eee", "strokeWidth": 20, "strokeColor": "#FFFFFF",
    "backgroundColor": "#000000", "backgroundImageURL": None,
    "realtimeUpdateStreamlit": True, "canvasWidth": 280, "canvasHeight": 280,
    "drawingMode": "freedraw", "initialDrawing": {"objects": [], "background": "#000000"},
    "displayRadius": 3, "returnImageData": True, "disabled": False,
    "backgroundImageFit": "contain", "maxDisplayHeight": None, "fontSize": 20, "label": None,
}
proto = BidiComponent()
serialize_mixed_data(data, proto)
print(json.dumps({
    "patched": PANDAS_FREE,
    "sent": json.loads(proto.json) == data,
    "pandas": "pandas" in sys.modules,
    "pyarrow": "pyarrow" in sys.modules,
}))
"""


def test_the_canvas_settings_go_out_as_json_without_importing_pandas() -> None:
    # `patched` fails first when a Streamlit upgrade moves the function: look for its new home.
    assert report_of(COLD_SERVER) == {
        "patched": True,
        "sent": True,
        "pandas": False,
        "pyarrow": False,
    }


VALUES = {
    "the canvas's starting drawing": {"objects": [], "background": "#000000"},
    "a list of strokes": [{"type": "path"}, {"type": "path"}],
    "an empty list": [],
    "a column mapping": {"digit": [1, 2, 3]},
    "a mapping of pandas columns": {"digit": pd.Series([1, 2, 3])},
    "a data frame": pd.DataFrame({"digit": [1, 2]}),
    "a numpy array": np.zeros((2, 2)),
    "a string": "#eee",
    "a number": 20,
    "nothing": None,
}


@pytest.mark.parametrize("value", list(VALUES.values()), ids=list(VALUES))
def test_every_value_gets_streamlits_own_answer(value: object) -> None:
    assert canvas.PANDAS_FREE
    # Streamlit's own function, in its home module, is the one the components code asked before.
    assert serialization.is_dataframe_like(value) == dataframe_util.is_dataframe_like(value)


def test_a_mapping_of_pandas_columns_is_still_sent_as_a_data_frame() -> None:
    """The one plain dict Streamlit sends as Arrow, so the shortcut must not swallow it."""
    assert serialization.is_dataframe_like({"digit": pd.Series([1, 2, 3])})
    assert not serialization.is_dataframe_like({"objects": [], "background": "#000000"})
