"""Reproduce and share, on Results: a run as one bundle to download or import, and "Train
again with this config", which hands the run's settings to the Train page."""

import streamlit as st

from mnist_core.bundles import MAX_BUNDLE_BYTES, bundle_size, export_bundle, import_bundle
from mnist_core.config import DemoLimits
from mnist_core.errors import MnistCoreError
from mnist_core.runs import RunInfo
from pages.parts import app_state, train_form

TRAIN_AGAIN = "train_again"  # session key: {"run_id", "config"} for the Train page to load
IMPORT_OUTCOME = "results_import_outcome"  # session key: the last import's new run id or error


def share_run(run: RunInfo) -> None:
    """The run as a bundle to download, and a button to train it again."""
    left, right = st.columns(2)
    too_large = bundle_size(run) > MAX_BUNDLE_BYTES
    left.download_button(
        "Download run bundle (.zip)",
        lambda: export_bundle(app_state.run_store(), run.run_id),
        f"{run.run_id}.zip",
        "application/zip",
        key="results_bundle",
        disabled=too_large,
        help=(
            f"Too large to share as a bundle (over {MAX_BUNDLE_BYTES / 1e6:g} MB)."
            if too_large
            else "Model, settings, metrics and history in one file, to import elsewhere."
        ),
    )
    if right.button(
        "Train again with this config",
        key="results_train_again",
        help="Opens Train with every setting, seed included, as this run had them.",
    ):
        st.session_state[TRAIN_AGAIN] = {"run_id": run.run_id, "config": run.config}
        st.switch_page(app_state.page_path("train"))


def import_panel() -> None:
    """An uploader for run bundles; an imported run becomes the selected run.

    Call before the run picker is created: the import sets its value.
    """
    with st.expander("Import a run bundle"):
        st.file_uploader(
            "A run bundle (.zip) exported from Results or with `python -m mnist_core export`",
            type=["zip"],
            key="results_import",
            on_change=import_upload,
            help="Checked before it is added: its model is loaded in safe mode, never as code. "
            "Bundles above this server's upload limit import with `python -m mnist_core import`.",
        )
    outcome = st.session_state.pop(IMPORT_OUTCOME, None)
    if isinstance(outcome, MnistCoreError):
        app_state.show_error(outcome)
    elif outcome is not None:
        st.success(f"Imported the bundle as run `{outcome}`; it is selected below.")


def import_upload() -> None:
    """Import the bundle just uploaded (a callback: once per upload, not on every rerun)."""
    upload = st.session_state.get("results_import")
    if upload is None:
        return
    try:
        run_id = import_bundle(app_state.run_store(), upload.getvalue())
    except MnistCoreError as error:
        st.session_state[IMPORT_OUTCOME] = error
        return
    st.session_state[IMPORT_OUTCOME] = run_id
    st.session_state["results_run"] = run_id


def load_train_again(limits: DemoLimits) -> None:
    """If Results asked to train a run again, fill the Train page's widgets with that run's
    settings (lowered to this server's caps) and say so.

    Call before the widgets are created.
    """
    request = st.session_state.pop(TRAIN_AGAIN, None)
    if request is None:
        return
    config = request["config"]
    fitted = limits.fit(config)
    train_form.fill(st.session_state, fitted)
    lowered = "" if fitted == config else ", lowered to this server's caps"
    st.info(
        f"Loaded the settings of run `{request['run_id']}`{lowered}. Press Train to train it "
        "again: the same settings and seed on the same data and machine give the same model.",
        icon=":material/replay:",
    )


def with_current(choices: list, key: str) -> list:
    """`choices` plus the value the widget `key` holds when it is not among them (a run's
    setting loaded by "Train again"), in order, so the widget can show it."""
    value = st.session_state.get(key)
    if value is None or value in choices:
        return choices
    return sorted([*choices, value])
