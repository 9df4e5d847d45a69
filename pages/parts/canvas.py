"""The drawing canvas (`st_canvas`), without pandas on a cold server.

Streamlit's components code asks `is_dataframe_like` of each value a component is given, to
send data frames as Arrow; for the canvas's starting drawing (a plain dict) that question
imports pandas and pyarrow, 0.22 s on a 2-core AMD EPYC, paid by the first visitor of a freshly
started server on the way to their first prediction. Streamlit's answer for a plain list is
always no, and for a plain dict no unless its first value is a pandas Series, which cannot
exist before pandas is imported: `is_dataframe_like` here gives those answers itself and asks
Streamlit for everything else, so what is sent does not change. If Streamlit moves the
function, nothing is patched and the canvas works as before (`PANDAS_FREE` says which).
"""

from __future__ import annotations

import sys
from typing import Any


def _patch() -> bool:
    """Put ours in front of Streamlit's `is_dataframe_like`; False where it was not found."""
    try:
        from streamlit.components.v2.bidi_component import serialization
    except ImportError:
        return False
    original = getattr(serialization, "is_dataframe_like", None)
    if original is None:
        return False
    if getattr(original, "__module__", None) == __name__:  # patched already (a reload)
        return True

    def is_dataframe_like(value: object) -> bool:
        if type(value) is list or (type(value) is dict and "pandas" not in sys.modules):
            return False
        return bool(original(value))

    serialization.is_dataframe_like = is_dataframe_like
    return True


PANDAS_FREE = _patch()


def st_canvas(**settings: Any) -> Any:
    """streamlit-drawable-canvas's `st_canvas` with `settings` (imported here: the component
    registers itself on import, which works only inside a running app)."""
    from streamlit_drawable_canvas import st_canvas as canvas

    return canvas(**settings)
