"""CSS the whole app needs, added by a Streamlit component holding only that CSS.

Why a component and not `st.html("<style>…")`: the dashboard mounts it before anything else on
every page, so the browser fetches Streamlit's code for components (about 200 kB) first. On
Sketch that code draws the canvas; as the page's first component it was fetched only after the
scripts of the page's other widgets (some 35 files, six at a time), and a first visitor saw the
canvas about 0.3 s after the rest of the page.
"""

from __future__ import annotations

import streamlit as st

# Streamlit writes a primary button's label in white: 2.5:1 on the dark theme's light-blue
# accent, where WCAG AA asks 4.5:1. Dark text there is 7.4:1; the light theme keeps white on its
# darker blue (5.2:1). light-dark() follows the theme's color-scheme.
# The component's own element is hidden, so it adds no gap where it is mounted.
KEY = "dashboard_style"
# Sketch's model picker, filled after the canvas (see pages/sketch.py): the room it takes (a select
# box and a switch, measured in Chromium) is kept by a space inside its container until it comes,
# and by the container's least height while the space gives way and its widgets' scripts load,
# so that the tabs and the canvas below do not move. Your drawings' score line adds a line.
SKETCH_HEADER = "sketch_header"
SKETCH_HEADER_HEIGHT = 108  # px
CSS = f"""
[data-testid='stBaseButton-primary'] {{
    color: light-dark(#ffffff, #0e1117);
}}
.st-key-{KEY} {{
    display: none;
}}
.st-key-{SKETCH_HEADER} {{
    min-height: {SKETCH_HEADER_HEIGHT}px;
}}
"""

_STYLE = st.components.v2.component(KEY, css=CSS, isolate_styles=False)


def apply() -> None:
    """Add the app's CSS (an element that takes no room)."""
    _STYLE(key=KEY, height=0)
