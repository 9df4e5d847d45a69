"""Pictures of what a model sees: a saliency map over the input digit (plotly), grids of
first-layer weights or feature maps (PNG), and the raw drawing or upload (PNG).

Signed values use a diverging scale centred on white at zero (red: positive, blue: negative),
unsigned ones a perceptually even one; both read the same on a light or a dark page, because
the pictures' own pixels, not the page, carry every colour.
"""

from __future__ import annotations

import functools

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mnist_core.data import to_float
from mnist_core.figures import as_uint8, pandas_first, png_bytes

DIVERGING = "RdBu_r"  # red: raises the score / excites the unit; blue: the opposite
SEQUENTIAL = "Viridis"  # for feature maps, which are >= 0 after ReLU
OUTLINE_COLOUR = "rgba(60, 60, 60, 0.8)"  # the digit's outline: dark on white, red and blue
MAX_TILES = 64


@pandas_first
def saliency_figure(image: np.ndarray, values: np.ndarray, score_name: str) -> go.Figure:
    """The `(28, 28)` input beside its `(28, 28)` signed saliency, outlined by the digit.

    `image` is float in [0, 1] or uint8. The colour scale is symmetric around 0 and spans the
    largest absolute value, which the colour bar names, so a faint map (an occlusion that
    barely moves a confident prediction) still shows its shape; the hover text gives each
    pixel's value. `score_name` says what the values measure, e.g. "drop in p(7)".
    """
    pixels = np.asarray(image)
    pixels = to_float(pixels) if pixels.dtype == np.uint8 else pixels.astype(np.float32)
    values = np.asarray(values, dtype=np.float32)
    largest = float(np.abs(values).max()) or 1.0
    figure = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("the 28×28 input", "saliency: red for the digit, blue against"),
        horizontal_spacing=0.08,
    )
    figure.add_trace(
        go.Heatmap(
            z=pixels,
            colorscale="gray",
            zmin=0,
            zmax=1,
            showscale=False,
            hovertemplate="row %{y}, column %{x}: ink %{z:.2f}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    figure.add_trace(
        go.Heatmap(
            z=values,
            colorscale=DIVERGING,
            zmin=-largest,
            zmax=largest,
            zmid=0,
            colorbar={
                "title": {"text": score_name, "side": "right"},
                "tickvals": [-largest, 0, largest],
                "ticktext": [f"{-largest:.2g}", "0", f"{largest:.2g}"],
                "len": 0.9,
                "thickness": 12,
            },
            hovertemplate=f"row %{{y}}, column %{{x}}: %{{z:.3g}} ({score_name})<extra></extra>",
        ),
        row=1,
        col=2,
    )
    figure.add_trace(
        go.Contour(
            z=pixels,
            contours={"start": 0.5, "end": 0.5, "coloring": "lines"},
            line={"color": OUTLINE_COLOUR, "width": 1.5},
            colorscale=[[0, OUTLINE_COLOUR], [1, OUTLINE_COLOUR]],
            showscale=False,
            hoverinfo="skip",
            name="digit outline",
        ),
        row=1,
        col=2,
    )
    for column in (1, 2):
        figure.update_xaxes(visible=False, constrain="domain", col=column)
        figure.update_yaxes(
            visible=False,
            autorange="reversed",
            scaleanchor=f"x{column if column > 1 else ''}",
            constrain="domain",
            col=column,
        )
    figure.update_layout(height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure


def tile_mosaic(
    tiles: np.ndarray, signed: bool, columns: int | None = None, max_tiles: int = MAX_TILES
) -> np.ndarray:
    """Up to `max_tiles` of `(K, h, w)` tiles laid out in a grid, each normalised on its own.

    Signed tiles are divided by their largest absolute value (into [-1, 1]), unsigned ones by
    their maximum (into [0, 1]); an all-zero tile stays zero. Tiles fill `columns` columns
    (default: a near-square grid) row by row, one NaN pixel apart (more for big tiles).

    Returns:
        (H, W) float32, NaN between tiles and after the last one.
    """
    tiles = np.asarray(tiles, dtype=np.float32)[:max_tiles]
    count, height, width = tiles.shape
    columns = columns or max(1, int(np.ceil(np.sqrt(count))))
    rows = -(-count // columns)
    gap = max(1, height // 10)
    scale = np.abs(tiles) if signed else np.maximum(tiles, 0.0)
    largest = scale.reshape(count, -1).max(axis=1)
    normalised = tiles / np.where(largest > 0, largest, 1.0)[:, np.newaxis, np.newaxis]
    mosaic = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap), np.nan)
    for number, tile in enumerate(normalised):
        top, left = (number // columns) * (height + gap), (number % columns) * (width + gap)
        mosaic[top : top + height, left : left + width] = tile
    return mosaic.astype(np.float32)


def tiles_png(
    tiles: np.ndarray,
    signed: bool,
    columns: int | None = None,
    max_tiles: int = MAX_TILES,
    width: int = 280,
) -> bytes:
    """PNG bytes of a grid of `(K, h, w)` weights or feature maps, each tile normalised on its own.

    Signed tiles (weights) are coloured on the diverging scale, red positive, blue negative,
    white zero; unsigned ones (ReLU feature maps) on the sequential one. Only the first
    `max_tiles` are drawn, in order, row by row. The gaps between tiles are transparent, so
    the page's own background shows through. Pixels are enlarged by a whole factor, sharp,
    to about `width` pixels across.

    A PNG rather than a plotly heatmap: 64 tiles of 28x28 pixels are 50,000 values, too many
    to send to the browser on every stroke of a sketch; the PNG is a few kilobytes.
    """
    from PIL import Image  # imported on first use, see preprocess.warm_up

    mosaic = tile_mosaic(tiles, signed, columns, max_tiles)
    lookup = _colour_table(DIVERGING if signed else SEQUENTIAL)  # (256, 3) uint8
    low = -1.0 if signed else 0.0
    levels = np.round((np.nan_to_num(mosaic, nan=low) - low) / (1.0 - low) * 255).astype(np.uint8)
    rgba = np.empty((*mosaic.shape, 4), dtype=np.uint8)
    rgba[..., :3] = lookup[levels]
    rgba[..., 3] = np.where(np.isnan(mosaic), 0, 255)
    scale = max(1, width // mosaic.shape[1])
    picture = Image.fromarray(rgba).resize(
        (mosaic.shape[1] * scale, mosaic.shape[0] * scale), Image.Resampling.NEAREST
    )
    return png_bytes(picture)


@functools.cache
def _colour_table(colourscale: str) -> np.ndarray:
    """(256, 3) uint8 colours of a named plotly colour scale, from its low to its high end."""
    colours = plotly.colors.sample_colorscale(
        plotly.colors.get_colorscale(colourscale), list(np.linspace(0.0, 1.0, 256))
    )
    return np.array([plotly.colors.unlabel_rgb(colour) for colour in colours]).astype(np.uint8)


def picture_png(image: np.ndarray, max_side: int = 140) -> bytes:
    """PNG bytes of an uploaded or drawn image as it came, at most `max_side` pixels a side.

    Takes uint8 (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA. Transparent parts are shown over
    a grey checkerboard, as image editors do, so light and dark ink both stay visible.
    """
    from PIL import Image  # imported on first use, see preprocess.warm_up

    pixels = as_uint8(image)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    picture = Image.fromarray(pixels).convert("RGBA")
    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    rows, columns = np.indices((picture.height, picture.width)) // 8
    checker = np.where((rows + columns)[..., np.newaxis] % 2 == 0, 150, 110).astype(np.uint8)
    background = Image.fromarray(np.repeat(checker, 3, axis=2)).convert("RGBA")
    composed = Image.alpha_composite(background, picture).convert("RGB")
    return png_bytes(composed)
