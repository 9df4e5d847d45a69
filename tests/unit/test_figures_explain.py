"""Tests for mnist_core.figures_explain: the saliency figure, tile grids and raw pictures."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mnist_core.figures_explain import picture_png, saliency_figure, tile_mosaic, tiles_png


def decoded(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.format == "PNG"
        return np.asarray(picture)


def test_saliency_figure_shows_the_input_the_map_and_the_outline() -> None:
    image = np.zeros((28, 28), dtype=np.uint8)
    image[10:18, 12:16] = 255
    values = np.zeros((28, 28), dtype=np.float32)
    values[10:18, 12:16] = 0.02
    values[5, 5] = -0.05

    figure = saliency_figure(image, values, "drop in p(1)")

    digit, heat, outline = figure.data
    assert (digit.type, heat.type, outline.type) == ("heatmap", "heatmap", "contour")
    np.testing.assert_allclose(np.asarray(digit.z), image / 255)  # uint8 shown in [0, 1]
    np.testing.assert_array_equal(np.asarray(heat.z), values)
    # Symmetric around 0 and spanning the largest magnitude, so white means "no effect".
    assert (heat.zmin, heat.zmid, heat.zmax) == pytest.approx((-0.05, 0.0, 0.05))
    assert heat.colorscale[0][1] == "rgb(5,48,97)" and heat.colorscale[-1][1] == "rgb(103,0,31)"
    assert list(heat.colorbar.ticktext) == ["-0.05", "0", "0.05"]
    assert heat.colorbar.title.text == "drop in p(1)"
    assert (outline.contours.start, outline.contours.end) == (0.5, 0.5)
    assert (outline.xaxis, heat.xaxis, digit.xaxis) == ("x2", "x2", "x")
    assert figure.layout.yaxis.autorange == "reversed" and figure.layout.yaxis2.scaleanchor == "x2"


def test_saliency_figure_of_an_all_zero_map_has_a_valid_scale() -> None:
    figure = saliency_figure(np.zeros((28, 28)), np.zeros((28, 28)), "score")

    assert (figure.data[1].zmin, figure.data[1].zmax) == (-1.0, 1.0)


def test_tile_mosaic_places_and_normalises_each_tile() -> None:
    tiles = np.zeros((5, 3, 3), dtype=np.float32)
    tiles[0] = 2.0
    tiles[1, 0, 0], tiles[1, 2, 2] = -4.0, 1.0
    tiles[4, 1, 1] = 0.5  # tile 3 stays all zero

    mosaic = tile_mosaic(tiles, signed=True, columns=3)

    assert mosaic.shape == (2 * 3 + 1, 3 * 3 + 2) and mosaic.dtype == np.float32
    np.testing.assert_array_equal(mosaic[0:3, 0:3], np.ones((3, 3)))  # 2 / 2
    assert (mosaic[0, 4], mosaic[2, 6]) == (-1.0, 0.25)  # -4 / 4 and 1 / 4
    np.testing.assert_array_equal(mosaic[4:7, 0:3], np.zeros((3, 3)))
    assert mosaic[5, 5] == 1.0  # tile 4: second row, second column
    assert np.isnan(mosaic[3]).all() and np.isnan(mosaic[:, 3]).all()  # the gaps
    assert np.isnan(mosaic[4:7, 8:11]).all()  # no sixth tile


def test_tile_mosaic_keeps_at_most_max_tiles_in_a_square_grid() -> None:
    tiles = np.random.default_rng(0).normal(size=(100, 28, 28)).astype(np.float32)

    mosaic = tile_mosaic(tiles, signed=True, max_tiles=64)

    assert mosaic.shape == (8 * 30 - 2, 8 * 30 - 2)  # 8x8 tiles, 2-pixel gaps for 28 pixels
    np.testing.assert_allclose(mosaic[:28, :28], tiles[0] / np.abs(tiles[0]).max(), rtol=1e-6)
    assert np.nanmax(np.abs(mosaic)) == 1.0


def test_unsigned_tiles_are_scaled_by_their_maximum() -> None:
    tiles = np.array([[[0.0, 2.0], [1.0, 4.0]]], dtype=np.float32)

    mosaic = tile_mosaic(tiles, signed=False)

    np.testing.assert_array_equal(mosaic, [[0.0, 0.5], [0.25, 1.0]])


def test_tiles_png_colours_signed_weights_red_white_blue_with_clear_gaps() -> None:
    tiles = np.stack([np.full((5, 5), 1.0), np.full((5, 5), -1.0), np.zeros((5, 5))])

    pixels = decoded(tiles_png(tiles.astype(np.float32), signed=True, columns=3, width=17))

    assert pixels.shape == (5, 17, 4)  # 3 tiles and 2 gaps across, not enlarged (17 // 17)
    assert tuple(pixels[2, 2]) == (103, 0, 31, 255)  # +1: dark red
    assert tuple(pixels[2, 8]) == (5, 48, 97, 255)  # -1: dark blue
    red, green, blue, alpha = pixels[2, 14]
    assert min(red, green, blue) > 240 and alpha == 255  # 0: white
    assert pixels[2, 5, 3] == 0 and pixels[2, 11, 3] == 0  # transparent gaps


def test_tiles_png_enlarges_with_sharp_pixels_and_uses_viridis_for_feature_maps() -> None:
    maps = np.zeros((4, 28, 28), dtype=np.float32)
    maps[0, 0, 0] = 3.0

    pixels = decoded(tiles_png(maps, signed=False, width=280))

    assert pixels.shape == (58 * 4, 58 * 4, 4)  # 2x2 tiles, 2-pixel gap, enlarged 4 times
    assert tuple(pixels[0, 0]) == tuple(pixels[3, 3]) == (253, 231, 37, 255)  # max: yellow
    assert tuple(pixels[4, 4]) == (68, 1, 84, 255)  # zero: dark purple


def test_picture_png_shows_transparency_over_a_checkerboard_and_shrinks() -> None:
    canvas = np.zeros((280, 280, 4), dtype=np.uint8)
    canvas[100:180, 130:150] = (255, 255, 255, 255)  # a white stroke, the rest transparent

    pixels = decoded(picture_png(canvas, max_side=140))

    assert pixels.shape == (140, 140, 3)
    assert tuple(pixels[0, 0]) == (150, 150, 150) and tuple(pixels[0, 8]) == (110, 110, 110)
    assert tuple(pixels[70, 70]) == (255, 255, 255)


def test_picture_png_of_an_opaque_gray_photo_is_unchanged_in_size() -> None:
    photo = np.full((60, 40), 200, dtype=np.uint8)

    pixels = decoded(picture_png(photo))

    assert pixels.shape == (60, 40, 3) and np.all(pixels == 200)
