"""Home: what the tool does, the active model, the data source and the latest runs."""

import pages.parts  # noqa: F401 - before all else: see pages/parts/__init__.py

# isort: split
import streamlit as st

from mnist_core.runs import run_rows
from pages.parts import app_state, page_path

st.title("Digit recognition dashboard")
st.markdown(
    "Train a handwritten-digit classifier on **MNIST**, watch it learn epoch by epoch, see "
    "which digits it gets wrong and why, and sketch digits for it to read."
)

columns = st.columns(3)
columns[0].page_link(
    page_path("train"), label="**Train** a model", icon=":material/model_training:"
)
columns[0].caption("Pick a preset or tune every setting; live progress, stop at any time.")
columns[1].page_link(
    page_path("results"), label="**Results** of your runs", icon=":material/monitoring:"
)
columns[1].caption("Curves, confusion matrix, a gallery of test digits, run comparison.")
columns[2].page_link(page_path("sketch"), label="**Sketch** a digit", icon=":material/draw:")
columns[2].caption("Draw on a canvas or upload a photo; the prediction updates as you draw.")

runs = app_state.list_runs()
run = app_state.active_run(runs)
st.header("Active model")
if run is None:
    st.info("No model yet. Train one on the Train page.")
else:
    st.write(
        f"**{run.title}** run `{run.run_id}`"
        + (" (pretrained, ships with the app)" if run.pretrained else "")
        + f": {run.test_accuracy:.2%} test accuracy after {run.metrics.epochs_run} epochs."
    )
st.caption(f"MNIST data: {app_state.data_source()}")

st.header("Latest runs")
if runs:
    st.dataframe(
        [
            {
                "run": row["run_id"],
                "model": row["model"],
                "test accuracy": f"{row['test_accuracy']:.2%}",
                "epochs": row["epochs_run"],
                "status": row["status_text"] + (" (pretrained)" if row["pretrained"] else ""),
                "created": (row["created"] or "")[:19].replace("T", " "),
            }
            for row in run_rows(runs[:10])
        ],
        hide_index=True,
        key="home_runs",
    )
else:
    st.caption("No runs yet.")
