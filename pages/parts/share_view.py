"""Reproduce and share: on Results, a run as one bundle to download, importing a bundle or a
Keras model file, "Train again with this config", which hands the run's settings to the Train
page, and links to the run and to its settings; on Train, a link to the form's settings (and
sweep), and opening such links.

Links (`mnist_core.links`, `/train?preset=cnn&learning_rate=0.003`, `/results?run=ID`) are
applied once, when a page is opened with one: later reruns keep the visitor's changes. The
browser's address stays as it was opened rather than following the form: Streamlit writes a
changed query with `history.pushState`, so every setting moved would add a history entry (Back
would change the address, not the form), and Train's address also carries the visitor's job and
sweep, which are not to be shared. "Copy link" gives the address of the settings alone.
"""

import re
from collections.abc import Sequence
from urllib.parse import urlencode

import streamlit as st

from mnist_core.bundles import MAX_BUNDLE_BYTES, bundle_size, export_bundle
from mnist_core.config import DemoLimits, TrainConfig
from mnist_core.errors import MnistCoreError
from mnist_core.import_jobs import SCALES, ImportJob
from mnist_core.links import link_query, parse_link
from mnist_core.runs import RunInfo
from mnist_core.sweeps import Axis
from pages.parts import app_state, page_path, sweep_view, train_form

TRAIN_AGAIN = "train_again"  # session key: {"run_id", "config"} for the Train page to load
IMPORT_JOB = "results_import_job"  # session key: the running `ImportJob`
IMPORT_OUTCOME = "results_import_outcome"  # session key: the last import's summary or error
IMPORTED_RUN = "results_imported_run"  # session key: a run to select in the picker, once
SCALE_LABELS = {"auto": "Auto", "1": "0–1", "255": "0–255"}
# Markdown that a link's text could use to show a link or formula of its own in a message.
_MARKDOWN = re.compile(r"([\\`\[\]$])")


def share_run(run: RunInfo) -> None:
    """The run as a bundle to download, a button to train it again, and its links."""
    left, right, links = st.columns(3)
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
        disabled=run.imported is not None,
        help="Opens Train with every setting, seed included, as this run had them."
        if run.imported is None
        else "An imported model was not trained here: it has no training settings to load.",
    ):
        st.session_state[TRAIN_AGAIN] = {"run_id": run.run_id, "config": run.config}
        st.switch_page(page_path("train"))
    with links.popover("Copy link", icon=":material/link:", key="results_link"):
        st.caption("This run, on Results:")
        run_query = urlencode({app_state.RUN_QUERY_PARAM: run.run_id})
        _address(app_state.page_url("results", run_query, here="results"))
        if run.imported is None:  # an imported model has no settings of this tool's
            st.caption("Its settings, seed included, on Train (as Train again, but to share):")
            _address(app_state.page_url("train", link_query(run.config), here="results"))


def open_run_link(runs: list[RunInfo]) -> None:
    """If Results is opened with a run's link (`?run=ID`), select that run once, or say that
    it is not on this server. Call before the run picker is created."""
    wanted = st.query_params.get(app_state.RUN_QUERY_PARAM)

    def select() -> list[app_state.Notice]:
        if wanted in {run.run_id for run in runs}:
            st.session_state["results_run"] = wanted
            return []
        return [
            (
                "warning",
                f"This link's run {_plain(wanted)} is not on this server: it was deleted, or "
                "the link comes from another server. Showing another run.",
            )
        ]

    app_state.open_link("results", {app_state.RUN_QUERY_PARAM: [wanted]} if wanted else {}, select)


def import_panel() -> None:
    """Import a Keras model file or a run bundle; the imported run becomes the selected run.

    The import runs in a subprocess (`ImportJob`: TensorFlow loads and scores the model there)
    and this panel polls it. Call before the run picker is created: a finished import sets it.
    """
    selected = st.session_state.pop(IMPORTED_RUN, None)
    if selected is not None:
        st.session_state["results_run"] = selected
    busy = st.session_state.get(IMPORT_JOB) is not None
    outcome = st.session_state.pop(IMPORT_OUTCOME, None)  # shown once, below
    with st.expander("Import a model or run bundle", expanded=busy or outcome is not None):
        st.caption(
            "A Keras model of MNIST digits saved with `model.save(...)` (.keras or .h5: "
            "inputs (28, 28), (28, 28, 1) or (784,), outputs 10 probabilities or logits) is "
            "scored on MNIST's test set and added as a run; a run bundle (.zip) exported from "
            "Results is added as it was. Models are loaded in Keras' safe mode, never as code."
        )
        left, right = st.columns(2)
        left.radio(
            "Pixels the model was trained on",
            SCALES,
            format_func=SCALE_LABELS.get,
            key="results_import_scale",
            horizontal=True,
            disabled=busy,
            help="Auto tells it from the model (a Rescaling layer) or from 1,000 training "
            "digits, and takes 0–1 when it cannot. Model files only.",
        )
        right.text_input(
            "Name (optional)",
            key="results_import_name",
            max_chars=60,
            disabled=busy,
            placeholder="the file's name",
            help="How the imported model is listed. Model files only.",
        )
        st.file_uploader(
            "Model (.keras, .h5) or run bundle (.zip)",
            type=["keras", "h5", "zip"],
            key="results_import",
            on_change=import_upload,
            disabled=busy,
            help="Files above this server's upload limit import with "
            "`python -m mnist_core import FILE`.",
        )
        if busy:
            st.fragment(run_every=1.0)(import_progress)()
        if isinstance(outcome, MnistCoreError):
            app_state.show_error(outcome)
        elif outcome is not None:
            st.success(imported_text(outcome), icon=":material/check_circle:")


def import_progress() -> None:
    """The running import's progress (a fragment polling it each second); when it ends, the
    whole page again, which shows the outcome."""
    job = st.session_state[IMPORT_JOB]
    try:
        summary = job.result()
    except MnistCoreError as error:
        summary = error
    if summary is None:
        st.info(
            f"Importing {job.file_name}: loading it safely and scoring it on MNIST's test "
            f"digits… {job.seconds:.0f} s",
            icon=":material/hourglass_top:",
        )
        if st.button("Cancel import", key="results_import_cancel"):
            job.cancel()
            del st.session_state[IMPORT_JOB]
            st.rerun()
        return
    del st.session_state[IMPORT_JOB]
    st.session_state[IMPORT_OUTCOME] = summary
    if isinstance(summary, dict):
        st.session_state[IMPORTED_RUN] = summary["run_id"]
    st.rerun()  # the whole page: the new run in the picker, the uploader enabled again


def imported_text(summary: dict) -> str:
    """What an import's summary says, in a sentence."""
    if "input" not in summary:  # a run bundle
        return f"Imported the bundle as run `{summary['run_id']}`; it is selected below."
    return (
        f"Imported {summary['name']} as run `{summary['run_id']}`: "
        f"{summary['test_accuracy']:.2%} on MNIST's test set. It reads "
        f"{summary['input']} inputs with pixels in {summary['scale']} and gives "
        f"{summary['output']}; it is selected below."
    )


def import_upload() -> None:
    """Start importing the file just uploaded (a callback: once per upload, not every rerun)."""
    upload = st.session_state.get("results_import")
    if upload is None or st.session_state.get(IMPORT_JOB) is not None:
        return
    st.session_state.pop(IMPORT_OUTCOME, None)
    st.session_state[IMPORT_JOB] = ImportJob(
        upload.getvalue(),
        upload.name,
        app_state.run_store().root,
        name=st.session_state.get("results_import_name", ""),
        scale=st.session_state.get("results_import_scale", "auto"),
    )


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


def open_settings_link(limits: DemoLimits) -> None:
    """If Train is opened with a settings link, fill the form (and the sweep's) with it once,
    lowered to this server's caps; say what it set and warn about what it could not use.

    Call before the widgets are created.
    """
    params = {
        name: st.query_params.get_all(name)
        for name in st.query_params
        if name not in app_state.APP_QUERY_PARAMS
    }

    def fill() -> list[app_state.Notice]:
        runs = {run.run_id for run in app_state.list_runs()}
        link = parse_link(params, limits, run_ids=runs)
        train_form.fill(st.session_state, link.config, preset=False)
        st.session_state[train_form.PRESET] = link.preset
        sweep_view.fill(link.axes)
        swept = " × ".join(axis.setting for axis in link.axes)
        sweep = f", and a sweep of {swept} under Try several settings" if swept else ""
        notices = [("info", f"Loaded this link's settings: {link.summary()}{sweep}.")]
        if link.problems:
            notices.append(
                (
                    "warning",
                    "Some of this link's settings were not used:\n"
                    + "".join(f"\n- {_plain(problem)}" for problem in link.problems),
                )
            )
        return notices

    app_state.open_link("train", params, fill)


def settings_link(
    config: TrainConfig | None, key: str, axes: Sequence[Axis] = (), label: str = "Copy link"
) -> None:
    """A popover with the address that opens Train with `config` (and a sweep of `axes` on
    top of it), to copy; disabled while the form is invalid (`config` None)."""
    with st.popover(
        label,
        icon=":material/link:",
        key=key,
        disabled=config is None,
        help="Fix the settings first." if config is None else None,
    ):
        if config is not None:
            _address(app_state.page_url("train", link_query(config, axes), here="train"))
            st.caption(
                "Opens Train with these settings: the preset and what differs from it."
                if not axes
                else "Opens Train with these settings and this sweep's settings and values."
            )


def _address(url: str) -> None:
    """An address to copy: Streamlit has no clipboard call, but a code block has a copy button."""
    st.code(url, language=None, wrap_lines=True)


def _plain(text: str) -> str:
    """`text` from a link shown as it is in markdown, never as a link or formula of its own."""
    return _MARKDOWN.sub(r"\\\1", text)


def with_current(choices: list, key: str) -> list:
    """`choices` plus the value the widget `key` holds when it is not among them (a run's
    setting loaded by "Train again", or a link's), in order, so the widget can show it."""
    value = st.session_state.get(key)
    if value is None or value in choices:
        return choices
    return sorted([*choices, value])
