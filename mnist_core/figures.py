"""Interactive plotly figures shared by the command line's HTML report and the dashboard."""

from __future__ import annotations

import base64
import functools
import html
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mnist_core.data import PIXEL_MAX
from mnist_core.sweeps import TrialResult, best, format_value

if TYPE_CHECKING:
    from PIL import Image

_COLOURS = plotly.colors.qualitative.Plotly
WRONG_COLOUR = "#d62728"  # plotly figures
RIGHT_COLOUR = "#2ca02c"
# The HTML pieces sit on Streamlit's light or dark theme: CSS light-dark() picks a colour by the
# page's color-scheme (light where none is set, as in the CLI's report). Each text colour keeps
# WCAG AA's 4.5:1 against its theme's background (white, and #0e1117 to #171614).
WRONG_CSS = "light-dark(#b91c1c, #f87171)"  # red: 6.5:1 on white, 6.8:1 on #0e1117
RIGHT_CSS = "light-dark(#15803d, #4ade80)"  # green: 5.0:1 on white, 10.8:1 on #0e1117
FRAME_CSS = "light-dark(#d4d4d4, #4b4b4b)"  # a right tile's frame, quiet in both themes


def pandas_first(build):
    """Decorates a function that builds a plotly figure: pandas is fully imported first.

    Plotly looks pandas up in `sys.modules` without importing it, so a figure built while
    another thread (another visitor's table) is half-way through importing pandas crashed on
    the half-initialised module; `import pandas` here waits for that import to finish. Not
    imported at module level: Sketch uses this module's pictures, not its figures, and its
    first visit is faster without pandas.
    """

    @functools.wraps(build)
    def built_after_pandas(*args, **kwargs):
        import pandas  # noqa: F401

        return build(*args, **kwargs)

    return built_after_pandas


@pandas_first
def history_figure(
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    best_epochs: Mapping[str, int] | None = None,
) -> go.Figure:
    """Loss and accuracy per epoch for one or more runs.

    `histories` maps a run's label to its history (loss, accuracy, val_loss, val_accuracy per
    epoch). Train is drawn solid, validation dashed, one colour per run; a star marks each
    run's best epoch (the weights it keeps).
    """
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"))
    best_epochs = best_epochs or {}
    for index, (label, history) in enumerate(histories.items()):
        colour = _COLOURS[index % len(_COLOURS)]
        for column, metric in enumerate(("loss", "accuracy"), start=1):
            for prefix, dash, kind in (("", "solid", "train"), ("val_", "dash", "validation")):
                values = list(history.get(prefix + metric, []))
                if not values:
                    continue
                epochs = list(range(1, len(values) + 1))
                figure.add_trace(
                    go.Scatter(
                        x=epochs,
                        y=values,
                        mode="lines+markers",
                        name=f"{label} · {kind}",
                        legendgroup=label,
                        showlegend=column == 1,
                        line={"color": colour, "dash": dash},
                        hovertemplate=f"{label}<br>{kind} {metric}: %{{y:.4f}}<br>epoch %{{x}}"
                        "<extra></extra>",
                    ),
                    row=1,
                    col=column,
                )
            best = best_epochs.get(label)
            watched = list(history.get("val_" + metric) or history.get(metric) or [])
            if best and 0 < best <= len(watched):
                figure.add_trace(
                    go.Scatter(
                        x=[best],
                        y=[watched[best - 1]],
                        mode="markers",
                        marker={"symbol": "star", "size": 14, "color": colour},
                        name=f"{label} · best epoch",
                        legendgroup=label,
                        showlegend=column == 1,
                        hovertemplate=f"{label}<br>best epoch %{{x}}: %{{y:.4f}}<extra></extra>",
                    ),
                    row=1,
                    col=column,
                )
    figure.update_xaxes(title_text="epoch", dtick=1 if _max_epochs(histories) <= 20 else None)
    figure.update_layout(
        height=380,
        margin={"l": 40, "r": 20, "t": 40, "b": 40},
        hovermode="closest",
        legend={"orientation": "h", "y": -0.2},
    )
    return figure


@pandas_first
def gallery_figure(
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    columns: int = 10,
) -> go.Figure:
    """A grid of `(N, 28, 28)` uint8 digits titled "true → predicted (confidence)".

    Wrong predictions get red titles. The original script's static sample gallery, zoomable.
    """
    count = len(images)
    import plotly.express as px  # ~0.07 s, for this figure only

    figure = px.imshow(
        images,
        facet_col=0,
        facet_col_wrap=columns,
        binary_string=True,
        facet_col_spacing=0.01,
        facet_row_spacing=0.06,
    )
    # plotly numbers facets left to right, bottom row first in annotations' order of creation
    for annotation in figure.layout.annotations:
        index = int(annotation.text.split("=")[-1])
        wrong = labels[index] != predicted[index]
        annotation.text = f"{labels[index]} → {predicted[index]} ({confidence[index]:.0%})"
        annotation.font = {"color": WRONG_COLOUR if wrong else RIGHT_COLOUR, "size": 11}
    figure.update_xaxes(showticklabels=False)
    figure.update_yaxes(showticklabels=False)
    rows = -(-count // columns)
    figure.update_layout(height=max(200, 110 * rows), margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return figure


@pandas_first
def confusion_figure(confusion: np.ndarray) -> go.Figure:
    """The (10, 10) confusion matrix as a heatmap; rows true digits, columns predicted.

    Plotly cannot select heatmap cells, so an invisible marker sits on each cell: a click
    anywhere in a cell selects its marker, a point with x = predicted and y = true digit.
    """
    digits = [str(d) for d in range(10)]
    figure = go.Figure(
        [
            go.Heatmap(
                z=np.log1p(confusion),
                x=digits,
                y=digits,
                text=confusion,
                texttemplate="%{text}",
                colorscale="Blues",
                showscale=False,
                hoverinfo="skip",  # the markers below show the same cell's label
            ),
            go.Scatter(
                x=np.tile(digits, 10),  # (100,) row-major over the matrix
                y=np.repeat(digits, 10),
                customdata=confusion.ravel(),
                mode="markers",
                marker={"size": 1, "opacity": 0},
                hovertemplate="true %{y}, predicted %{x}: %{customdata} samples<extra></extra>",
                showlegend=False,
            ),
        ]
    )
    figure.update_layout(
        # Fixed ranges: the markers must not pad the axes, or cells and markers drift apart.
        xaxis={"title": "predicted digit", "side": "top", "type": "category", "range": [-0.5, 9.5]},
        yaxis={"title": "true digit", "type": "category", "range": [9.5, -0.5]},
        hoverdistance=-1,  # the nearest marker, i.e. the cell under the pointer, at any distance
        height=460,
        margin={"l": 50, "r": 10, "t": 60, "b": 10},
    )
    return figure


def probabilities_html(probabilities: np.ndarray) -> str:
    """A bar per digit for `(10,)` probabilities, as plain HTML: the predicted digit's bar is
    highlighted, each bar is labelled with its percentage. All zeros draws the empty axes.

    HTML, not a plotly figure: Sketch redraws it on every stroke, and a plotly figure costs the
    server ~3 ms to build and every visitor's browser a plotly.js layout pass."""
    values = np.clip(np.nan_to_num(np.asarray(probabilities, dtype=np.float64)), 0.0, 1.0)
    best = int(np.argmax(values)) if values.any() else None
    columns = []
    for digit, value in enumerate(values):
        colour = RIGHT_CSS if digit == best else "#9ecae1"
        text = "" if best is None else "&lt;1%" if 0 < value < 0.005 else f"{value:.0%}"
        weight = "700" if digit == best else "400"
        columns.append(
            f'<div class="bar" data-digit="{digit}" data-probability="{value:.4f}" '
            f'title="digit {digit}: {value:.1%}" style="flex:1;display:flex;'
            'flex-direction:column;align-items:center;justify-content:flex-end;height:100%">'
            f'<span style="font-size:0.75rem;font-weight:{weight}">{text}</span>'
            f'<div style="width:70%;height:{value * 100:.1f}%;min-height:1px;'
            f'background:{colour};border-radius:3px 3px 0 0"></div></div>'
        )
    digits = "".join(
        f'<span style="flex:1;text-align:center;font-weight:{"700" if d == best else "400"}">'
        f"{d}</span>"
        for d in range(len(values))
    )
    summary = ", ".join(f"{d}: {v:.0%}" for d, v in enumerate(values))
    return (
        f'<div class="probabilities" role="img" aria-label="Probability per digit: {summary}">'
        '<div style="display:flex;align-items:flex-end;gap:4px;height:190px;'
        'border-bottom:1px solid #999;padding-top:4px">'
        + "".join(columns)
        + '</div><div style="display:flex;gap:4px;margin-top:2px">'
        + digits
        + '</div><div style="text-align:center;font-size:0.75rem;opacity:0.8">digit</div></div>'
    )


def _max_epochs(histories: Mapping[str, Mapping[str, Sequence[float]]]) -> int:
    return max((len(h.get("loss", [])) for h in histories.values()), default=0)


def as_uint8(image: np.ndarray) -> np.ndarray:
    """Pixels as uint8 for a picture: uint8 as they are, floats in [0, 1] scaled to 0-255
    (rounded; NaN as 0, out-of-range values clipped)."""
    pixels = np.asarray(image)
    if pixels.dtype == np.uint8:
        return pixels
    scaled = np.clip(np.nan_to_num(pixels.astype(np.float32)), 0.0, 1.0) * PIXEL_MAX
    return scaled.round().astype(np.uint8)


def digit_png(image: np.ndarray, scale: int = 1) -> bytes:
    """PNG bytes of a `(H, W)` digit (float in [0, 1] or uint8), enlarged with sharp pixels."""
    from PIL import Image  # imported on first use, see preprocess.warm_up

    picture = Image.fromarray(as_uint8(image), mode="L")
    if scale > 1:
        picture = picture.resize(
            (picture.width * scale, picture.height * scale), Image.Resampling.NEAREST
        )
    return png_bytes(picture)


def png_bytes(picture: Image.Image) -> bytes:
    """A PIL picture encoded as PNG."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def gallery_html(
    images: np.ndarray,
    indices: Sequence[int],
    labels: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
) -> str:
    """An HTML grid of test digits `images[indices]` with "true → predicted (confidence)".

    Wrong predictions get a red frame and caption; each tile's tooltip names its test index.
    """
    tiles = []
    for index in indices:
        wrong = labels[index] != predicted[index]
        colour = WRONG_CSS if wrong else RIGHT_CSS
        source = "data:image/png;base64," + base64.b64encode(digit_png(images[index])).decode()
        tiles.append(
            f'<figure class="digit{" wrong" if wrong else ""}" title="test #{index}" '
            f'style="margin:0;text-align:center;border:2px solid {colour if wrong else FRAME_CSS};'
            f'border-radius:6px;padding:4px">'
            f'<img src="{source}" width="64" height="64" alt="test digit {index}" '
            f'style="image-rendering:pixelated;display:block;margin:auto"/>'
            f'<figcaption style="font-size:0.8rem;color:{colour}">'
            f"{labels[index]} → {predicted[index]} ({confidence[index]:.0%})</figcaption></figure>"
        )
    return _grid("digit-gallery", tiles, tile_px=84, gap_px=8)


def drawings_html(drawings: Sequence[Any]) -> str:
    """An HTML grid of the user's kept drawings (`drawings.Drawing`s): each digit as the model
    sees it, captioned with its label; each tile's tooltip names the drawing's id."""
    tiles = []
    for drawing in drawings:
        source = "data:image/png;base64," + base64.b64encode(digit_png(drawing.digit)).decode()
        tiles.append(
            f'<figure class="drawing" title="{html.escape(drawing.drawing_id)}" '
            'style="margin:0;text-align:center">'
            f'<img src="{source}" width="48" height="48" '
            f'alt="your {drawing.label}" style="image-rendering:pixelated"/>'
            f'<figcaption style="font-size:0.8rem">{drawing.label}</figcaption></figure>'
        )
    return _grid("drawings", tiles, tile_px=56, gap_px=6)


def _grid(css_class: str, tiles: list[str], tile_px: int, gap_px: int) -> str:
    """`tiles` (HTML figures) in a grid of as many columns of `tile_px` as the width holds."""
    return (
        f'<div class="{css_class}" style="display:grid;'
        f'grid-template-columns:repeat(auto-fill,minmax({tile_px}px,1fr));gap:{gap_px}px">'
        + "".join(tiles)
        + "</div>"
    )


@pandas_first
def per_class_figure(precision: np.ndarray, recall: np.ndarray) -> go.Figure:
    """Grouped bars of per-digit recall (accuracy on that digit) and precision."""
    digits = [str(d) for d in range(len(recall))]
    figure = go.Figure(
        [
            go.Bar(
                name="recall (accuracy on the digit)",
                x=digits,
                y=recall,
                hovertemplate="digit %{x}: recall %{y:.2%}<extra></extra>",
            ),
            go.Bar(
                name="precision",
                x=digits,
                y=precision,
                hovertemplate="digit %{x}: precision %{y:.2%}<extra></extra>",
            ),
        ]
    )
    low = float(min(np.min(recall), np.min(precision)))
    figure.update_layout(
        barmode="group",
        yaxis={"range": [max(0.0, low - 0.02), 1.0], "tickformat": ".1%"},
        xaxis={"title": "digit", "type": "category"},
        height=300,
        margin={"l": 50, "r": 10, "t": 10, "b": 40},
        legend={"orientation": "h", "y": 1.15},
    )
    return figure


@pandas_first
def replay_figure(answers: np.ndarray, labels: np.ndarray) -> go.Figure:
    """How sure the model was of each panel digit's true class after each epoch.

    `answers` (epochs, P, 10) are the panel's probabilities after each epoch and `labels` (P,)
    its true digits: one row per digit, one column per epoch, coloured by p(true digit).
    """
    epochs, panel = answers.shape[:2]
    truth = answers[:, np.arange(panel), labels].T  # (P, epochs)
    predicted = answers.argmax(axis=2).T
    rows = [f"#{row + 1}: a {label}" for row, label in enumerate(labels)]
    figure = go.Figure(
        go.Heatmap(
            z=truth,
            x=list(range(1, epochs + 1)),
            y=rows,
            zmin=0,
            zmax=1,
            colorscale="RdYlGn",
            customdata=predicted,
            colorbar={"title": "p(true)"},
            hovertemplate=(
                "%{y} after epoch %{x}: p(true) %{z:.1%}, read as %{customdata}<extra></extra>"
            ),
        )
    )
    figure.update_layout(
        xaxis_title="epoch",
        yaxis={"autorange": "reversed", "showticklabels": panel <= 40},
        height=max(260, 14 * panel + 80),
        margin={"l": 10, "r": 10, "t": 10, "b": 40},
    )
    return figure


@pandas_first
def sweep_figure(results: Sequence[TrialResult], settings: Sequence[str]) -> go.Figure:
    """Validation accuracy of a sweep's trials against its first swept setting, one line per
    value of the second (if any); a star marks the best trial, the one `sweeps.best` picks.

    `results` are `sweeps.TrialResult`s, in any order; trials without a validation score are
    left out. The learning rate gets a logarithmic axis; layer sizes, names and switches are
    categories, in their order of size.
    """
    scored = [row for row in results if row.val_accuracy is not None]
    first = settings[0] if settings else None
    second = settings[1] if len(settings) > 1 else None
    numeric = first is not None and all(
        isinstance(row.settings[first], int | float) and not isinstance(row.settings[first], bool)
        for row in scored
    )

    def x_of(row: TrialResult) -> object:
        if first is None:
            return row.label or "the trial"
        value = row.settings[first]
        return value if numeric else format_value(value)

    def order(row: TrialResult, setting: str | None) -> tuple:
        return () if setting is None else (row.settings[setting],)

    groups: dict[str, list[TrialResult]] = {}
    for row in sorted(scored, key=lambda row: (order(row, second), order(row, first))):
        name = "validation accuracy"
        if second is not None:
            name = f"{second}={format_value(row.settings[second])}"
        groups.setdefault(name, []).append(row)
    figure = go.Figure()
    for index, (name, rows) in enumerate(groups.items()):
        figure.add_trace(
            go.Scatter(
                x=[x_of(row) for row in rows],
                y=[row.val_accuracy for row in rows],
                mode="lines+markers",
                name=name,
                line={"color": _COLOURS[index % len(_COLOURS)]},
                customdata=[[row.run_id, row.test_accuracy] for row in rows],
                hovertemplate=f"{name}<br>%{{x}}: validation %{{y:.2%}}"
                "<br>test %{customdata[1]:.2%}<br>run %{customdata[0]}<extra></extra>",
            )
        )
    chosen = best(scored)
    if chosen is not None:
        figure.add_trace(
            go.Scatter(
                x=[x_of(chosen)],
                y=[chosen.val_accuracy],
                mode="markers",
                name=f"best: {chosen.label}",
                marker={"symbol": "star", "size": 16, "color": "#f2b705"},
                hovertemplate=f"best: {chosen.label}<br>validation %{{y:.2%}}<extra></extra>",
            )
        )
    tried = sorted({row.settings[first] for row in scored}) if numeric and first else []
    figure.update_layout(
        xaxis={
            "title": first or "",
            "type": ("log" if first == "learning_rate" else "linear") if numeric else "category",
            # Ticks at the values tried, not at round numbers between them.
            **({"tickvals": tried, "ticktext": [format_value(v) for v in tried]} if tried else {}),
        },
        yaxis={"title": "validation accuracy", "tickformat": ".1%", "range": _padded(scored)},
        height=360,
        margin={"l": 60, "r": 20, "t": 20, "b": 50},
        legend={"orientation": "h", "y": -0.25},
        hovermode="closest",
    )
    return figure


def _padded(scored: Sequence[TrialResult]) -> list[float] | None:
    """A validation-accuracy range around the scores, a little wider than they spread (plotly
    spans 0 to 150 % around a single point); None (automatic) without scores."""
    values = [row.val_accuracy for row in scored if row.val_accuracy is not None]
    if not values:
        return None
    low, high = min(values), max(values)
    pad = max(0.002, 0.15 * (high - low))
    return [max(0.0, low - pad), high + pad]
