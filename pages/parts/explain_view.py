"""What the model sees, on Sketch and Results: the preprocessing stages of a drawing, which
pixels an answer rests on (saliency) and what the model's first layer looks for."""

import numpy as np
import streamlit as st

from mnist_core import explain
from mnist_core.errors import MnistCoreError
from mnist_core.evaluate import Evaluation
from mnist_core.figures import digit_png
from mnist_core.figures_explain import MAX_TILES, picture_png, saliency_figure, tiles_png
from mnist_core.preprocess import PreprocessSteps
from pages.parts import app_state

GRADIENT = "gradient × input"
OCCLUSION = "occlusion"
PREDICTED = "predicted"
METHOD_HELP = (
    f"**{OCCLUSION}**: how much the digit's probability drops when a 4×4 patch around each "
    "pixel is blanked; asks the model up to 225 times, in milliseconds. "
    f"**{GRADIENT}**: how much each pixel's ink adds to the digit's score (its logit), to first "
    "order; pixels without ink are 0 by construction. Gradients need TensorFlow, which the "
    "server loads the first time someone asks (a few seconds)."
)


def preprocessing_steps(image: np.ndarray, steps: PreprocessSteps, source: str) -> None:
    """The "Preprocessing steps" expander: the image as it came, then every stage of to_mnist.

    Drawn only while open: six pictures on every stroke would slow everyone's predictions.
    """
    section = st.expander("Preprocessing steps", key=f"sketch_steps_{source}", on_change="rerun")
    with section:
        if not section.open:
            return
        stages = [("ink", steps.ink), ("cropped to the ink", steps.cropped)]
        if steps.widened is not steps.cropped:
            stages.append(("thin strokes widened", steps.widened))
        stages += [("scaled into 20×20", steps.scaled), ("centred by mass in 28×28", steps.centred)]
        cells = st.columns(len(stages) + 1)
        raw = "as drawn" if source == "canvas" else "as uploaded"
        cells[0].image(picture_png(image, max_side=140), caption=raw, alt=f"The digit {raw}")
        for cell, (caption, stage) in zip(cells[1:], stages, strict=True):
            scale = max(1, 140 // max(stage.shape))
            cell.image(digit_png(stage, scale=scale), caption=caption, alt=f"The digit, {caption}")


def sketch_section(run, model, image: np.ndarray, predicted: int, source: str) -> None:
    """The Sketch page's "What the model sees" expander for the centred `(28, 28)` input.

    Computed only while the expander is open, so drawing stays fast when it is closed.
    """
    key = f"sketch_explain_{source}"
    section = st.expander(
        "What the model sees", key=key, on_change="rerun", icon=":material/visibility:"
    )
    with section:
        if section.open:
            what_the_model_sees(run, model, image, predicted, key)


def results_section(run, images: np.ndarray, evaluation: Evaluation, shown: list[int]) -> None:
    """An expander on Results explaining one of the gallery's `shown` test digits.

    The Results page works from saved probabilities; the model is loaded only once this
    expander is opened.
    """
    key = "results_explain"
    section = st.expander("What the model sees in one of these digits", key=key, on_change="rerun")
    with section:
        if not section.open:
            return
        if not shown:
            st.info("No test digits are shown: change the filters above.")
            return
        labels, predicted = evaluation.labels, evaluation.predicted
        confidence = evaluation.confidence
        index = st.selectbox(
            "Test digit (from the gallery page above; type to search)",
            shown,
            format_func=lambda i: f"#{i}: {labels[i]} → {predicted[i]} ({confidence[i]:.0%})",
            key=f"{key}_index",
        )
        model = app_state.prediction_model(run)
        if model is not None:
            what_the_model_sees(run, model, images[index], int(predicted[index]), key)


def what_the_model_sees(run, model, image: np.ndarray, predicted: int, key: str) -> None:
    """Saliency over one `(28, 28)` input and the model's first layer; widget keys start
    with `key`. `model` predicts (ONNX Runtime); gradients need the run's Keras model."""
    method_column, digit_column = st.columns(2)
    method = method_column.radio(
        "Saliency method",
        [OCCLUSION, GRADIENT],
        horizontal=True,
        help=METHOD_HELP,
        key=f"{key}_method",
    )
    choice = digit_column.selectbox(
        "Explain the score of",
        [PREDICTED, *range(10)],
        # Fixed labels: a label naming the predicted digit would go stale in the browser.
        format_func=lambda c: "the predicted digit" if c == PREDICTED else f"digit {c}",
        key=f"{key}_digit",
    )
    digit = predicted if choice == PREDICTED else choice
    try:
        if method == GRADIENT:
            with st.spinner("Loading TensorFlow for gradients: a few seconds, the first time."):
                values = explain.saliency(app_state.keras_model(run), image, digit)
            score = f"gradient × input, score of {digit}"
        else:
            values = explain.occlusion(model, image, digit)
            score = f"drop in p({digit})"
        layer = explain.first_layer(model)
        maps = explain.activations(model, image)
    except MnistCoreError as error:
        app_state.show_error(error)
        return

    st.plotly_chart(saliency_figure(image, values, score), key=f"{key}_saliency")
    if method == GRADIENT:
        st.caption(
            f"Red ink pushes the model towards {digit}, blue ink away from it; scaled so the "
            "strongest pixel is ±1. Empty pixels are white: gradient × input only sees ink."
        )
    else:
        st.caption(
            f"Blanking a 4×4 patch over red pixels lowers the probability of {digit} (by the "
            "amount on the colour bar at most); over blue ones it raises it."
        )

    shown = f" (the first {MAX_TILES} shown)" if len(layer.images) > MAX_TILES else ""
    if layer.kind == "dense":
        st.image(
            tiles_png(layer.images, signed=True, width=480),
            caption=f"First layer, {layer.title}{shown}",
            alt="A grid of tiles, one per unit: the input weights of each, red positive, blue "
            "negative",
        )
        st.caption(
            "Each tile is the pattern one unit of the first layer looks for, in the 28×28 "
            "frame: ink on red pixels excites the unit, ink on blue ones inhibits it. Each tile "
            "has its own scale."
        )
        return
    filters_column, maps_column = st.columns(2)
    filters_column.image(
        tiles_png(layer.images, signed=True),
        caption=f"First layer, {layer.title}{shown}",
        alt="A grid of the first layer's filters, red weights positive, blue negative",
    )
    maps_column.image(
        tiles_png(maps, signed=False),
        caption=f"What they find in this digit: {layer.layer_name}'s output{shown}",
        alt="A grid of feature maps, one per filter, bright where the filter matched",
    )
    st.caption(
        "Each filter is slid over the image: red weights reward ink, blue ones punish it. "
        "Its output (same position in the right grid) is bright where the filter matched. "
        "Each tile has its own scale."
    )
