"""Digit-recognition dashboard: `streamlit run dashboard.py`.

The entry point: page set-up, navigation over the pages in `pages/`, and the sidebar every
page shares (active model, data source), filled after the page. TensorFlow is imported only by
the pages that need it.
"""

import streamlit as st

from pages.parts import page_path, style

st.set_page_config(
    page_title="Digit recognition dashboard", page_icon=":material/draw:", layout="wide"
)
with st.sidebar:
    # The first element of every page, sent before the pages import numpy and mnist_core (0.1-0.3 s
    # on a server's first visit), so that the browser fetches the components code meanwhile.
    style.apply()

pages = [
    st.Page(page_path("home"), title="Home", icon=":material/home:", default=True),
    st.Page(page_path("train"), title="Train", icon=":material/model_training:", url_path="train"),
    st.Page(
        page_path("results"), title="Results", icon=":material/monitoring:", url_path="results"
    ),
    st.Page(page_path("sketch"), title="Sketch", icon=":material/draw:", url_path="sketch"),
]
page = st.navigation(pages)
model_info = st.sidebar.container()
try:
    # The page first: what the sidebar shows below needs numpy and mnist_core, which Sketch
    # imports only once its canvas is on its way to the browser (see pages/sketch.py).
    page.run()
finally:
    from pages.parts import app_state

    with model_info:
        run = app_state.active_run()
        if run is None:
            st.caption(app_state.NO_MODEL)
        else:
            # The name in the label: a value as long as "STRIDED · 99.55%" is cut at the
            # sidebar's width, and the accuracy is what matters.
            st.metric(f"Active model: {run.title}", f"{run.test_accuracy:.2%}")
            st.caption(f"Run `{run.run_id}`" + (" (pretrained)" if run.pretrained else ""))
        st.caption(f"MNIST: {app_state.data_source()}")
