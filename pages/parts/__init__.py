"""The parts the pages share: session state and cached resources (`app_state`), the Train
form's state (`train_form`), and the sections of pages (`*_view`: sweeps, drawings,
explanations, learning replay, sharing). `pages/` itself holds only the four pages.

Importing this package leaves Streamlit's pages-folder mode. With a `pages/` folder beside the
entry point, Streamlit serves a server's first visit in its old one-file-per-page mode until some
run calls st.navigation: a first visitor opening /train would get pages/train.py alone (no
sidebar, every file in pages/ listed as a page). The first such run switches that mode off here
and starts again through dashboard.py, which then shows the page the visitor asked for. Every
page imports this package before anything else, so that first run imports nothing more than
Streamlit: the imports the page needs come in the run that shows it, after the sidebar's first
element (see `style`) is on its way to the browser.
"""

from pathlib import Path

import streamlit as st
from streamlit import delta_generator, runtime
from streamlit.runtime.pages_manager import PagesManager

# At a process's first element Streamlit checks whether it runs in a Python REPL, to warn that an
# app needs `streamlit run`: `inspect.stack()` reads the source of every frame, 40-65 ms of a new
# server's first visit (measured; the one first element there is the `st.rerun` below). Under
# `streamlit run` (and AppTest) a runtime exists and the warning cannot apply, so the check is
# marked done; `python dashboard.py` still gets Streamlit's warning.
if runtime.exists():
    delta_generator._use_warning_has_been_displayed = True


def page_path(name: str) -> Path:
    """The file of the page `name` ("home", "train", ...) in `pages/`."""
    return Path(__file__).resolve().parents[1] / f"{name}.py"


if PagesManager.uses_pages_directory:
    PagesManager.uses_pages_directory = False
    st.rerun()
