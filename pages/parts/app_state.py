"""Streamlit glue the pages share: session keys, cached resources and the job service.

Nothing here imports TensorFlow: pages predict with ONNX Runtime (`predictor`); only
`keras_model`, for gradients, loads it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st
from streamlit.runtime.scriptrunner import script_runner

from mnist_core.backends import job_service as jobs_backend
from mnist_core.config import DemoLimits
from mnist_core.data import TestDigits, describe_source, load_test_digits
from mnist_core.drawings import DrawingSet
from mnist_core.errors import MnistCoreError, ModelError
from mnist_core.job_service import JobError, JobService, UnavailableJobs
from mnist_core.runs import PRETRAINED_DIR, RunInfo, RunStore
from mnist_core.serving import Classifier, Conversions, OnnxModel, accuracy_on

if TYPE_CHECKING:
    import keras

# After every script run Streamlit calls `keras.backend.clear_session()` (for scripts that build
# a new model on each run). This app keeps its models across runs, and clearing costs ~200 ms of
# each Sketch rerun (a full gc.collect) and empties TensorFlow's kernel cache under a training
# running in another thread. Switched off for this process.
script_runner._clean_problem_modules = lambda: None

# Session-state keys shared by more than one page.
ACTIVE_RUN = "active_run"  # run id of the model this session uses by default
JOB_ID = "train_job_id"  # id of the training job this session started
JOB_QUERY_PARAM = "job"  # the same id in the URL, so a reload still owns the job
SWEEP_ID = "train_sweep_id"  # id of the sweep this session started
SWEEP_QUERY_PARAM = "sweep"  # the same id in the URL, so a reload still shows the sweep
VISITOR = "visitor_id"  # an id of this browser session, the owner of its training jobs
RUN_QUERY_PARAM = "run"  # Results' link to a run: /results?run=ID
# The app's own query parameters; a settings link (`mnist_core.links`) leaves them alone.
APP_QUERY_PARAMS = (JOB_QUERY_PARAM, SWEEP_QUERY_PARAM, RUN_QUERY_PARAM)
LINKS_OPENED = "links_opened"  # page name -> (the link it last opened, that link's notices)
Notice = tuple[str, str]  # what opening a link says: ("info" or "warning", its markdown)
NO_MODEL = "No model yet: train one on the Train page."  # where a page needs a run


def run_store() -> RunStore:
    """The run store (`MNIST_RUNS_DIR`, default `runs/`), and the pretrained run it ships with."""
    return RunStore(pretrained=PRETRAINED_DIR)


def list_runs() -> list[RunInfo]:
    """Every saved run, newest first. Read from disk only when a run was saved or deleted
    since the last call of any session (`RunStore.signature`); whether a checkpoint's
    training process is still alive is checked on every call."""
    store = run_store()
    runs = _runs(str(store.root), str(store.pretrained), store.signature())
    return [run for run in runs if not run.training]


@st.cache_resource(max_entries=2, show_spinner=False)
def _runs(root: str, pretrained: str, signature: tuple) -> tuple[RunInfo, ...]:
    return tuple(RunStore(root, pretrained=pretrained).list(include_training=True))


def active_run(runs: list[RunInfo] | None = None) -> RunInfo | None:
    """The session's active run: the one it picked or trained, else the newest one."""
    runs = list_runs() if runs is None else runs
    chosen = st.session_state.get(ACTIVE_RUN)
    for run in runs:
        if run.run_id == chosen:
            return run
    return runs[0] if runs else None


def set_active_run(run_id: str) -> None:
    st.session_state[ACTIVE_RUN] = run_id


def data_source() -> str:
    return describe_source()


def load_data() -> TestDigits:
    """MNIST's test digits, loaded once per process and data file; raises DataError. Training
    happens in workers: this process never needs the training digits."""
    return _test_digits(describe_source())


@st.cache_resource(max_entries=1, show_spinner="Loading MNIST's test digits…")
def _test_digits(source: str) -> TestDigits:
    return load_test_digits()


@st.cache_resource(show_spinner=False)
def _conversions() -> Conversions:
    return Conversions()


@st.cache_resource(max_entries=8, show_spinner=False)
def _load_onnx(path: str, modified: float) -> OnnxModel:
    return OnnxModel(path)


@st.cache_resource(max_entries=4, show_spinner="Loading TensorFlow and the model…")
def _load_keras(model_path: str, modified: float) -> keras.Model:
    from mnist_core.ml.model_files import load_model_file

    return load_model_file(model_path)


def _modified(run: RunInfo, path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError as error:
        raise ModelError(f"run {run.run_id!r} was deleted; pick another model") from error


def keras_model(run: RunInfo) -> keras.Model:
    """The run's Keras model, shared by every session. It needs TensorFlow (seconds and
    hundreds of megabytes): only for what ONNX Runtime cannot do, gradients."""
    return _load_keras(str(run.model_path), _modified(run, run.model_path))


def conversion_state(run: RunInfo) -> str:
    """Whether the run's ONNX file is "ready", "converting" (started now if it was missing)
    or "failed" (it cannot be written; the run predicts with Keras)."""
    return _conversions().state(run.path)


def predictor(run: RunInfo) -> Classifier | None:
    """The model that predicts for `run` in this process, shared by every session: its ONNX
    file in ONNX Runtime. None while that file is being written (a run saved before runs had
    one; the conversion starts now, in the background); the Keras model when the file cannot
    be written (its export disagreed with Keras). Raises ModelError."""
    state = conversion_state(run)
    if state == "converting":
        return None
    if state == "failed":
        return keras_model(run)
    return _load_onnx(str(run.onnx_path), _modified(run, run.onnx_path))


def prediction_model(run: RunInfo) -> Classifier | None:
    """`predictor(run)` for a page: None after saying why (a conversion under way, which
    reruns the page once done, or an error)."""
    try:
        model = predictor(run)
    except MnistCoreError as error:
        show_error(error)
        return None
    if model is None:
        st.info(
            "Preparing this model for fast predictions: a one-time conversion that takes "
            "about ten seconds. The page updates by itself.",
            icon=":material/hourglass_top:",
        )
        _rerun_when_converted(str(run.path))
    elif not isinstance(model, OnnxModel):
        st.caption(
            f"This model predicts with TensorFlow here, which is slower: "
            f"{_conversions().error(run.path)}."
        )
    return model


@st.fragment(run_every=1.0)
def _rerun_when_converted(folder: str) -> None:
    if _conversions().state(Path(folder)) != "converting":
        st.rerun()


def drawings_accuracy(run: RunInfo, drawings: DrawingSet) -> float | None:
    """`run`'s accuracy on `drawings`, shared by every session until the model or the
    drawings change; None when there are none, or while its model is being prepared."""
    fingerprint = drawings.fingerprint()
    if not fingerprint:  # no drawings: no need to load the model for it
        return None
    model = predictor(run)
    if model is None:
        return None
    path = run.onnx_path if isinstance(model, OnnxModel) else run.model_path
    return _drawings_accuracy(
        model, str(drawings.root), fingerprint, str(path), _modified(run, path)
    )


@st.cache_resource(max_entries=64, show_spinner=False)
def _drawings_accuracy(
    _model: Classifier, root: str, fingerprint: str, model_path: str, modified: float
) -> float | None:
    return accuracy_on(_model, DrawingSet(root))


def show_error(error: MnistCoreError) -> None:
    st.error(str(error), icon=":material/error:")


def job_service() -> JobService:
    """The queue of trainings of this run store (shared by every session): worker processes
    here, or the Ray cluster at `MNIST_RAY_ADDRESS`; it ticks in a background thread of this
    server. A cluster that cannot be reached gives an `UnavailableJobs` whose calls raise the
    JobError saying so (the next page run tries again)."""
    try:
        return _job_service(str(run_store().root))
    except JobError as error:
        return UnavailableJobs(error)


@st.cache_resource(show_spinner="Connecting to the training cluster…")
def _job_service(runs_dir: str) -> JobService:
    return jobs_backend(runs_dir).start()


def visitor_id() -> str:
    """An id of this browser session, to tell its training jobs from other visitors'."""
    if VISITOR not in st.session_state:
        st.session_state[VISITOR] = uuid.uuid4().hex
    return st.session_state[VISITOR]


def my_job_id() -> str | None:
    """The training job this session started (also after a reload of the page), if any."""
    return st.session_state.get(JOB_ID) or st.query_params.get(JOB_QUERY_PARAM)


def remember_job(job_id: str) -> None:
    st.session_state[JOB_ID] = job_id
    st.query_params[JOB_QUERY_PARAM] = job_id


def my_sweep_id() -> str | None:
    """The sweep this session started (also after a reload of the page), if any."""
    return st.session_state.get(SWEEP_ID) or st.query_params.get(SWEEP_QUERY_PARAM)


def remember_sweep(sweep_id: str) -> None:
    st.session_state[SWEEP_ID] = sweep_id
    st.query_params[SWEEP_QUERY_PARAM] = sweep_id


def demo_limits() -> DemoLimits:
    """The caps a hosted demo sets through the environment (MNIST_MAX_EPOCHS, ...).

    Invalid settings are ignored, never fatal: each is shown as a warning on the page.
    """
    limits = DemoLimits.from_env()
    for problem in limits.problems:
        st.warning(problem, icon=":material/warning:")
    return limits


def forget_vanished_run(key: str, runs: list[RunInfo]) -> None:
    """If the run picked in the widget `key` no longer exists (another session deleted it),
    say so and let the widget fall back to another run."""
    chosen = st.session_state.get(key)
    if chosen is not None and chosen not in {run.run_id for run in runs}:
        st.warning(
            f"Run `{chosen}` no longer exists: it was deleted, perhaps in another window. "
            "Showing another run.",
            icon=":material/warning:",
        )
        del st.session_state[key]


def open_link(page: str, params: dict[str, list[str]], apply: Callable[[], list[Notice]]) -> None:
    """Open the link `params` (the query parameters of the page `page`) once, and say what it
    did while the address holds it.

    `apply` sets the page's widgets from the link and returns its notices; it runs when the
    page is opened with a link it has not applied yet, not on reruns nor on a return to the
    page with the same link, so the visitor's changes since are kept. Its notices are shown on
    every run while the address holds that link: notices gone at the first click would make
    the page jump under the pointer.
    """
    opened = st.session_state.setdefault(LINKS_OPENED, {})
    if page not in opened or opened[page][0] != params:
        opened[page] = (params, apply() if params else [])
    for kind, text in opened[page][1]:
        if kind == "info":
            st.info(text, icon=":material/link:")
        else:
            st.warning(text, icon=":material/warning:")


def page_url(name: str, query: str, here: str) -> str:
    """The address of the page `name` ("train", ...) with `query`, to copy and share.

    Absolute when the browser has said where the app is (`st.context.url`, the address of the
    page `here` that is running); otherwise relative to that page.
    """
    url = st.context.url
    base = url.removesuffix("/").removesuffix(f"/{here}") + "/" if url else ""
    return f"{base}{name}?{query}" if query else f"{base}{name}"
