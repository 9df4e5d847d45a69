"""Results: curves, confusion matrix, a gallery of test digits and run comparison."""

import pages.parts  # noqa: F401 - before all else: see pages/parts/__init__.py

# isort: split
import json

import streamlit as st

from mnist_core import serving
from mnist_core.errors import MnistCoreError
from mnist_core.evaluate import Evaluation
from mnist_core.figures import confusion_figure, gallery_html, history_figure, per_class_figure
from mnist_core.run_record import INTERRUPTED, ImportedModel
from pages.parts import (
    app_state,
    drawings_view,
    explain_view,
    page_path,
    replay_view,
    share_view,
)

PAGE_SIZE = 40
ANY = "any"
ORDERS = {
    "test-set order": None,
    "least confident first": "ascending",
    "most confident first": "descending",
}


def run_evaluation(run, data) -> Evaluation:
    """The run's answers on the test set: stored with the run, or computed by its model."""
    evaluation = run.evaluation(data.y_test)
    if evaluation is not None:
        return evaluation
    model = app_state.prediction_model(run)
    if model is None:
        st.stop()  # said why; the page reruns once the model is ready
    return Evaluation(labels=data.y_test, probabilities=serving.probabilities(model, data.x_test))


def select_cell() -> None:
    """A click on the confusion matrix filters the gallery to that (true, predicted) cell."""
    points = st.session_state["results_confusion"].selection.points
    if points:
        st.session_state["results_true"] = int(points[0]["y"])
        st.session_state["results_predicted"] = int(points[0]["x"])
        st.session_state["results_show"] = "all"
        st.session_state["results_page"] = 1


def reset_page() -> None:
    st.session_state["results_page"] = 1


def gallery(evaluation: Evaluation, images) -> list[int]:
    left, middle, right, order_column = st.columns(4)
    show = left.radio("Show", ["all", "misclassified"], key="results_show", on_change=reset_page)
    digit_choices = [ANY, *range(10)]
    true_digit = middle.selectbox(
        "True digit", digit_choices, key="results_true", on_change=reset_page
    )
    predicted_digit = right.selectbox(
        "Predicted digit", digit_choices, key="results_predicted", on_change=reset_page
    )
    order = order_column.selectbox("Sort", list(ORDERS), key="results_order", on_change=reset_page)
    indices = evaluation.select(
        true_digit=None if true_digit == ANY else true_digit,
        predicted_digit=None if predicted_digit == ANY else predicted_digit,
        wrong_only=show == "misclassified",
        order=ORDERS[order],
    )
    if len(indices) == 0:
        st.info("No test digits match these filters.")
        return []
    pages = -(-len(indices) // PAGE_SIZE)
    page = min(st.session_state.get("results_page", 1), pages)
    st.caption(
        f"{len(indices)} test digits match · page {page} of {pages} · "
        "caption: true → predicted (confidence); red frames are mistakes"
    )
    shown = indices[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    st.html(
        gallery_html(images, shown, evaluation.labels, evaluation.predicted, evaluation.confidence)
    )
    if pages > 1:
        st.number_input("Page", 1, pages, value=page, key="results_page")
    return [int(index) for index in shown]


def downloads(run) -> None:
    def h5_bytes() -> bytes:  # in a subprocess: TensorFlow stays out of the web process
        return serving.exported_model(run.run_id, app_state.run_store().root, ".h5")

    cells = st.columns(5)
    cells[0].download_button(
        "Model (.keras)", run.model_path.read_bytes, f"{run.run_id}.keras", key="results_keras"
    )
    onnx_ready = app_state.conversion_state(run) == "ready"
    cells[2].download_button(
        "Model (.onnx)",
        run.onnx_path.read_bytes if onnx_ready else b"",
        f"{run.run_id}.onnx",
        key="results_onnx",
        disabled=not onnx_ready,
        help="For ONNX Runtime and other inference engines: inputs (N, 28, 28) floats in "
        "[0, 1], outputs (N, 10) probabilities."
        if onnx_ready
        else "Not available for this model: see the message above.",
    )
    cells[1].download_button(
        "Model (.h5)",
        h5_bytes,
        f"{run.run_id}.h5",
        key="results_h5",
        help="The original script's format (mnist_model.h5).",
    )
    cells[3].download_button(
        "History (.csv)",
        run.history_csv(),
        f"{run.run_id}-history.csv",
        "text/csv",
        key="results_history",
    )
    cells[4].download_button(
        "Config (.json)",
        json.dumps(run.config.to_dict(), indent=2),
        f"{run.run_id}-config.json",
        "application/json",
        key="results_config",
        disabled=run.imported is not None,
        help=None if run.imported is None else "Imported: it has no training settings.",
    )


def imported_caption(imported: ImportedModel) -> str:
    """Where an imported model came from, and how its pixel scale was decided."""
    size = f", {imported.bytes / 1e6:.1f} MB" if imported.bytes is not None else ""
    digest = f", SHA-256 {imported.sha256[:12]}…" if imported.sha256 else ""
    parameters = f"{imported.parameters:,} weights; " if imported.parameters is not None else ""
    return (
        f"Imported from `{imported.file}`{size}{digest}: {parameters}pixel scale "
        f"{imported.scale or '?'}, {imported.scale_note or 'not recorded'}. "
        + ("Its logits go through a softmax here. " if imported.output == "logits" else "")
        + "Not trained here: no learning curves."
    )


st.title("Results")
share_view.import_panel()
runs = app_state.list_runs()
share_view.open_run_link(runs)
app_state.forget_vanished_run("results_run", runs)
if not runs:
    st.info("No runs yet: train a model first.")
    st.page_link(page_path("train"), label="Go to Train", icon=":material/model_training:")
    st.stop()

labels = {run.run_id: run.label for run in runs}
run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="results_run")
run = next(r for r in runs if r.run_id == run_id)
others = st.multiselect(
    "Compare with",
    [r for r in labels if r != run_id],
    format_func=labels.get,
    key="results_compare",
)

metrics = run.metrics
# Each figure as wide as its value, wrapping to a second line in a narrow window ("stopped by
# user" and "(28, 28, 1)" do not fit a fifth of it).
row = st.container(horizontal=True, gap="medium")
figures = [("Test accuracy", f"{run.test_accuracy:.2%}"), ("Test loss", f"{metrics.test_loss:.4f}")]
if run.imported is not None:
    imported = run.imported
    figures += [
        ("Input", imported.input),
        ("Output", "softmax" if imported.output == "probabilities" else "logits"),
        ("Pixels", imported.scale or "?"),
    ]
else:
    figures += [
        ("Epochs", f"{metrics.epochs_run} (best {metrics.best_epoch})"),
        ("Training time", f"{metrics.train_seconds:.0f} s"),
        ("Status", run.status_text),
    ]
for label, value in figures:
    row.metric(label, value, width="content")
if run.imported is not None:
    st.caption(imported_caption(run.imported))
if run.status == INTERRUPTED:
    st.caption(
        f"Training of this run ended abruptly (the server stopped) after epoch "
        f"{metrics.epochs_run}; it holds the best model saved up to then."
    )
share_view.share_run(run)

chosen = [run] + [r for r in runs if r.run_id in others]
if any(r.history.get("loss") for r in chosen):  # imported models and ensembles have none
    st.header("Learning curves")
    st.plotly_chart(
        history_figure(
            {r.run_id: r.history for r in chosen},
            {r.run_id: r.metrics.best_epoch for r in chosen},
        ),
        key="results_curves",
    )

try:
    data = app_state.load_data()
    evaluation = run_evaluation(run, data)
except MnistCoreError as error:
    app_state.show_error(error)
    st.stop()

matrix_column, class_column = st.columns([3, 2])
with matrix_column:
    st.header("Confusion matrix")
    st.caption("Click a cell to show exactly those test digits in the gallery below.")
    st.plotly_chart(
        confusion_figure(evaluation.confusion),
        key="results_confusion",
        on_select=select_cell,
        selection_mode="points",
    )
with class_column:
    st.header("Per digit")
    st.plotly_chart(per_class_figure(evaluation.precision, evaluation.recall), key="results_class")

st.header("Test digits")
shown = gallery(evaluation, data.x_test)
explain_view.results_section(run, data.x_test, evaluation, shown)

replay_view.learning_replay(run, data.x_test, data.y_test)

drawings_view.scores_table(runs)

st.header("Downloads")
downloads(run)
