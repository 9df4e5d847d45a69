"""Tests for mnist_core.preprocess: drawings and photos to MNIST-style 28x28, safe uploads."""

from __future__ import annotations

import io
import itertools
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageDraw
from scipy import ndimage

from mnist_core import preprocess
from mnist_core.errors import ImageError
from mnist_core.preprocess import load_image, to_mnist, to_mnist_steps

CANVAS = 280  # side of the dashboard's drawing canvas, pixels

Point = tuple[float, float]
# Digits as pen strokes in a unit square, (x, y) with y down, drawn like a person would.
SEVEN: list[list[Point]] = [[(0.1, 0.05), (0.9, 0.05), (0.35, 0.95)]]
FOUR: list[list[Point]] = [[(0.65, 0.95), (0.65, 0.05), (0.05, 0.65), (0.95, 0.65)]]
ZERO: list[list[Point]] = [
    [
        (0.5 + 0.3 * np.sin(angle), 0.5 - 0.45 * np.cos(angle))
        for angle in np.linspace(0.0, 2 * np.pi, 33)
    ]
]
DIGITS = {"seven": SEVEN, "four": FOUR, "zero": ZERO}


def draw(strokes: Sequence[Sequence[Point]], size: int, pen: int) -> np.ndarray:
    """(size, size) uint8 ink mask, 255 where the pen went, with anti-aliased edges.

    Drawn at four times the size and shrunk, as a browser canvas anti-aliases its strokes.
    """
    scale = 4
    image = Image.new("L", (size * scale, size * scale))
    pen_draw = ImageDraw.Draw(image)
    width = pen * scale
    margin = width / 2  # keeps round pen ends inside the square
    for stroke in strokes:
        points = [
            (margin + x * (size * scale - width), margin + y * (size * scale - width))
            for x, y in stroke
        ]
        pen_draw.line(points, fill=255, width=width, joint="curve")
        for x, y in (points[0], points[-1]):
            pen_draw.ellipse((x - margin, y - margin, x + margin, y + margin), fill=255)
    return np.asarray(image.reduce(scale))


def on_canvas(mask: np.ndarray, top: int, left: int, canvas: int = CANVAS) -> np.ndarray:
    """(canvas, canvas) uint8 ink mask with `mask` pasted at (top, left)."""
    full = np.zeros((canvas, canvas), dtype=np.uint8)
    full[top : top + mask.shape[0], left : left + mask.shape[1]] = mask
    return full


def white_on_transparent(ink: np.ndarray) -> np.ndarray:
    return np.dstack([np.full_like(ink, 255)] * 3 + [ink])


def black_on_transparent(ink: np.ndarray) -> np.ndarray:
    return np.dstack([np.zeros_like(ink)] * 3 + [ink])


def red_on_transparent(ink: np.ndarray) -> np.ndarray:
    return np.dstack([np.full_like(ink, 255), np.zeros_like(ink), np.zeros_like(ink), ink])


def black_on_white(ink: np.ndarray) -> np.ndarray:
    return np.dstack([255 - ink] * 3)


def white_on_black_gray(ink: np.ndarray) -> np.ndarray:
    return ink.copy()


def black_on_white_opaque_rgba(ink: np.ndarray) -> np.ndarray:
    return np.dstack([255 - ink] * 3 + [np.full_like(ink, 255)])


def white_on_black_opaque_rgba(ink: np.ndarray) -> np.ndarray:
    """The dashboard's canvas: a black background colour makes every pixel opaque."""
    return np.dstack([ink] * 3 + [np.full_like(ink, 255)])


SCHEMES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "white on transparent": white_on_transparent,
    "black on transparent": black_on_transparent,
    "red on transparent": red_on_transparent,
    "black on white RGB": black_on_white,
    "white on black gray": white_on_black_gray,
    "black on white opaque RGBA": black_on_white_opaque_rgba,
    "white on black opaque RGBA": white_on_black_opaque_rgba,
}


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def similarity(reference: np.ndarray, image: np.ndarray) -> float:
    """Correlation of two 28x28 digits, blind to the sub-pixel offsets of centring.

    Centring moves digits by whole pixels, as MNIST did, so two renderings of one digit can
    land up to a pixel apart. `image` is first moved by at most one pixel to match best, and
    both are blurred by one pixel. One digit drawn twice scores above 0.96, two different
    digits below 0.6, and a digit against itself moved by 3 pixels 0.7.
    """
    moves = (
        np.roll(image, shift, axis=(0, 1)) for shift in itertools.product((-1, 0, 1), repeat=2)
    )
    best = max(moves, key=lambda moved: correlation(reference, moved))
    return correlation(ndimage.gaussian_filter(reference, 1.0), ndimage.gaussian_filter(best, 1.0))


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(image.shape)
    total = image.sum()
    return float((rows * image).sum() / total), float((cols * image).sum() / total)


def ink_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the nonzero pixels, bottom and right exclusive."""
    rows = np.flatnonzero(image.any(axis=1))
    cols = np.flatnonzero(image.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def assert_mnist_like(output: np.ndarray | None) -> None:
    assert output is not None
    assert output.shape == (28, 28)
    assert output.dtype == np.float32
    assert output.min() >= 0.0
    assert output.max() == 1.0


def seven_canvas(size: int = 200, top: int = 40, left: int = 40, pen: int = 20) -> np.ndarray:
    return on_canvas(draw(SEVEN, size, pen), top, left)


# --- to_mnist: outputs ------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_colour_scheme_gives_the_same_digit(scheme: str) -> None:
    ink = seven_canvas()
    reference = to_mnist(white_on_transparent(ink))
    output = to_mnist(SCHEMES[scheme](ink))
    assert_mnist_like(output)
    np.testing.assert_allclose(output, reference, atol=1e-3)


def test_transparent_corners_on_an_opaque_background_are_not_ink() -> None:
    # A screenshot with rounded, transparent corners: the background is still the white paper.
    ink = seven_canvas()
    image = black_on_white_opaque_rgba(ink)
    image[:10, :10, 3] = 0
    image[-10:, -10:] = 0  # transparent black, as many encoders store it
    np.testing.assert_allclose(to_mnist(image), to_mnist(black_on_white(ink)), atol=1e-3)


def test_output_is_white_on_black_with_saturated_strokes() -> None:
    output = to_mnist(black_on_white(seven_canvas()))
    assert_mnist_like(output)
    # Corners are background; like MNIST, a good share of the strokes is nearly full white
    # (at least 27 pixels above 0.9 in 95 % of MNIST digits).
    assert output[:3, :3].max() == 0.0 and output[-3:, -3:].max() == 0.0
    assert np.count_nonzero(output > 0.9) >= 30


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((CANVAS, CANVAS, 4), dtype=np.uint8),
        np.full((CANVAS, CANVAS, 3), 255, dtype=np.uint8),
        np.zeros((CANVAS, CANVAS), dtype=np.uint8),
        np.full((CANVAS, CANVAS), 128, dtype=np.uint8),
        np.full((CANVAS, CANVAS, 4), 255, dtype=np.uint8),  # fully inked, opaque white
        np.zeros((CANVAS, CANVAS), dtype=np.float64),
    ],
    ids=["transparent", "white RGB", "black gray", "mid gray", "opaque white RGBA", "float"],
)
def test_no_ink_gives_none(image: np.ndarray) -> None:
    assert to_mnist(image) is None
    assert to_mnist_steps(image) is None


@pytest.mark.parametrize(
    ("colour", "contrast"),
    [((255, 0, 0), 0.701), ((0, 255, 0), 0.413), ((0, 0, 255), 0.886), ((128, 128, 128), 0.498)],
)
def test_coloured_ink_on_paper_counts_by_luminance(
    colour: tuple[int, int, int], contrast: float
) -> None:
    paper = np.full((50, 50, 3), 255, dtype=np.uint8)
    paper[10:40, 20:30] = colour
    steps = to_mnist_steps(paper)
    assert steps is not None
    assert steps.ink[25, 25] == pytest.approx(contrast, abs=1e-3)
    assert steps.ink[5, 5] == 0.0


def test_faint_noise_is_not_ink() -> None:
    # JPEG-like noise of a few levels around a light background.
    noise = np.random.default_rng(0).normal(0.0, 4.0, (CANVAS, CANVAS, 3))
    photo = np.clip(230.0 + noise, 0, 255).astype(np.uint8)
    assert to_mnist(photo) is None


def test_noise_around_a_digit_is_ignored() -> None:
    ink = seven_canvas()
    clean = to_mnist(black_on_white(ink))
    noise = np.random.default_rng(1).normal(0.0, 5.0, (CANVAS, CANVAS, 3))
    noisy = np.clip(black_on_white(ink) - 25.0 + noise, 0, 255).astype(np.uint8)
    output = to_mnist(noisy)
    assert_mnist_like(output)
    assert np.abs(output - clean).mean() < 0.01


@pytest.mark.parametrize("digit", DIGITS)
@pytest.mark.parametrize("size", [60, 150, 260])
def test_digit_is_centred_by_mass_and_fitted_into_20_pixels(digit: str, size: int) -> None:
    pen = max(3, size // 10)
    output = to_mnist(white_on_transparent(on_canvas(draw(DIGITS[digit], size, pen), 10, 10)))
    assert_mnist_like(output)
    row, col = centre_of_mass(output)
    assert abs(row - 14.0) <= 1.0 and abs(col - 14.0) <= 1.0
    top, left, bottom, right = ink_box(output)
    assert max(bottom - top, right - left) in (20, 21)  # Lanczos may spill one faint pixel
    assert top >= 0 and left >= 0 and bottom <= 28 and right <= 28


def test_symmetric_digit_sits_in_the_central_20_by_20() -> None:
    output = to_mnist(white_on_transparent(on_canvas(draw(ZERO, 200, 20), 40, 40)))
    top, left, bottom, right = ink_box(output)
    assert 3 <= top <= 5 and 23 <= bottom <= 25
    assert left >= 3 and right <= 25


@pytest.mark.parametrize(
    ("top", "left"), [(0, 0), (0, CANVAS - 100), (CANVAS - 100, 0), (CANVAS - 100, CANVAS - 100)]
)
def test_position_on_the_canvas_does_not_matter(top: int, left: int) -> None:
    mask = draw(FOUR, 100, 10)
    reference = to_mnist(white_on_transparent(on_canvas(mask, 90, 90)))
    output = to_mnist(white_on_transparent(on_canvas(mask, top, left)))
    np.testing.assert_array_equal(output, reference)


@pytest.mark.parametrize("digit", DIGITS)
def test_drawing_size_hardly_matters(digit: str) -> None:
    large = to_mnist(black_on_white(on_canvas(draw(DIGITS[digit], 260, 26), 10, 10)))
    small = to_mnist(black_on_white(on_canvas(draw(DIGITS[digit], 60, 6), 200, 10)))
    assert similarity(large, small) > 0.95


def test_steps_show_each_stage() -> None:
    ink = on_canvas(draw(SEVEN, 120, 12), 30, 50)
    steps = to_mnist_steps(black_on_white(ink))
    assert steps is not None
    assert steps.ink.shape == (CANVAS, CANVAS) and steps.ink.dtype == np.float32
    top, left, bottom, right = steps.bbox
    assert steps.bbox == ink_box(ink) == (35, 60, 145, 159)
    expected = ink[top:bottom, left:right] / 255
    expected[expected < 0.2] = 0.0  # the faintest anti-aliasing is below the noise floor
    np.testing.assert_allclose(steps.cropped, expected, atol=1e-3)
    assert steps.widened is steps.cropped  # 12-px strokes are wide enough already
    assert steps.scaled.shape == (20, 18) and steps.scaled.max() == 1.0
    assert steps.centred.shape == (28, 28)
    np.testing.assert_array_equal(steps.centred, to_mnist(black_on_white(ink)))


@pytest.mark.parametrize("width", [22, 25, 28])
def test_width_scales_exactly_with_the_height(width: int) -> None:
    # A 200-pixel bar shrinks by 10: 2.2, 2.5 and 2.8 pixels wide, not rounded to 2 or 3.
    bar = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
    bar[40:240, 100 : 100 + width] = 255
    steps = to_mnist_steps(bar)
    assert steps is not None
    assert steps.scaled.shape == (20, 3)
    row = steps.scaled[10]
    assert row[0] == pytest.approx(row[2], abs=0.02)  # centred in its 3 pixels
    # Lanczos softens the edges, so the mass is the width less about 0.2 pixels.
    assert row.sum() == pytest.approx(width / 10 - 0.22, abs=0.06)


def test_binary_drawing_comes_out_anti_aliased() -> None:
    output = to_mnist(seven_canvas() > 127)
    inked = output > 0.05
    partial = inked & (output < 0.95)
    assert np.count_nonzero(partial) >= 0.5 * np.count_nonzero(inked)


def test_tall_thin_digit_keeps_its_aspect_ratio() -> None:
    one = on_canvas(draw([[(0.5, 0.0), (0.5, 1.0)]], 200, 20)[:, 90:110], 40, 130)
    steps = to_mnist_steps(one)
    assert steps is not None
    assert steps.scaled.shape == (20, 2)


# --- to_mnist: thin strokes and odd inputs ----------------------------------------------------


def test_one_pixel_pen_is_widened_to_mnist_strokes() -> None:
    thin = seven_canvas(pen=1)
    thick = seven_canvas(pen=20)
    steps = to_mnist_steps(white_on_transparent(thin))
    assert steps is not None
    assert max(steps.widened.shape) < max(steps.cropped.shape)  # shrunk before dilating
    output = steps.centred
    assert_mnist_like(output)
    # Unwidened, the 1-px line would shrink to a tenth of a pixel: 13 pixels above 0.5 after
    # normalising, where 95 % of MNIST digits have more than 50.
    assert np.count_nonzero(output > 0.5) >= 50
    reference = to_mnist(white_on_transparent(thick))
    assert similarity(reference, output) > 0.95


@pytest.mark.parametrize("gap", [49, 50, 51])
def test_parallel_one_pixel_lines_both_survive(gap: int) -> None:
    eleven = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
    eleven[40:240, [100, 100 + gap]] = 255
    for image in (eleven, eleven.T):
        output = to_mnist(image)
        assert_mnist_like(output)
        profile = output.sum(axis=0) if image is eleven else output.sum(axis=1)
        inked = np.flatnonzero(profile > 5)  # columns (or rows) crossed by a bar
        assert len(inked) >= 4 and np.any(np.diff(inked) > 1)  # two bars with a gap


def test_single_dot_fills_the_box() -> None:
    dot = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
    dot[100, 200] = 255
    output = to_mnist(dot)
    assert_mnist_like(output)
    assert ink_box(output) == (4, 4, 24, 24)
    assert centre_of_mass(output) == pytest.approx((13.5, 13.5))


@pytest.mark.parametrize("offset", [0, 1, 2])
def test_one_pixel_lines_become_strokes(offset: int) -> None:
    across = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
    across[140 + offset, 40:240] = 255
    down = across.T.copy()
    for line, long_axis in ((across, 1), (down, 0)):
        output = to_mnist(line)
        assert_mnist_like(output)
        top, left, bottom, right = ink_box(output)
        length, width = (right - left, bottom - top) if long_axis else (bottom - top, right - left)
        assert length in (20, 21) and 2 <= width <= 4


@pytest.mark.parametrize(
    "shape", [(1, 1), (1, 1, 4), (2, 3), (28, 28), (4000, 30), (30, 4000), (5, 5, 3)]
)
def test_odd_sizes_work(shape: tuple[int, ...]) -> None:
    image = np.zeros(shape, dtype=np.uint8)
    assert to_mnist(image) is None
    if shape[0] >= 3 and shape[1] >= 3:
        image[shape[0] // 2, 1 : shape[1] - 1] = 255  # a line away from the border
        if image.ndim == 3:
            image[..., -1] = np.where(image[..., 0] > 0, 255, 0)
        assert_mnist_like(to_mnist(image))


def test_processing_twice_changes_almost_nothing() -> None:
    digit = to_mnist(seven_canvas())
    again = to_mnist((digit * 255).astype(np.uint8))
    assert correlation(again, digit) > 0.99


@pytest.mark.parametrize(
    "convert",
    [
        lambda ink: ink.astype(np.uint16) * 257,
        lambda ink: ink.astype(np.float32) / 255,
        lambda ink: ink.astype(np.float64),
        lambda ink: ink.astype(np.int16),
        lambda ink: ink.astype(np.int64),
        lambda ink: ink.astype(np.float16) / 255,
    ],
    ids=["uint16", "float32 [0, 1]", "float64 [0, 255]", "int16", "int64", "float16"],
)
def test_every_common_dtype_gives_the_same_digit(convert: Callable) -> None:
    ink = seven_canvas()
    steps = to_mnist_steps(convert(ink))
    assert steps is not None
    assert steps.ink.max() == pytest.approx(1.0, abs=1e-3)  # full intensity stays 1
    np.testing.assert_allclose(steps.centred, to_mnist(ink), atol=2e-3)


def test_bool_image_is_a_binary_drawing() -> None:
    ink = seven_canvas()
    output = to_mnist(ink > 127)
    assert_mnist_like(output)
    reference = to_mnist(ink)
    assert similarity(reference, output) > 0.97


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_count_as_no_ink(bad: float) -> None:
    ink = seven_canvas().astype(np.float64) / 255
    spoiled = ink.copy()
    spoiled[:20] = bad
    spoiled[100, 100:105] = bad
    clean = ink.copy()
    clean[:20] = 0.0
    clean[100, 100:105] = 0.0
    np.testing.assert_array_equal(to_mnist(spoiled), to_mnist(clean))
    assert to_mnist(np.full((10, 10, 4), bad)) is None


def test_values_outside_the_range_are_clipped() -> None:
    ink = seven_canvas().astype(np.float64)
    boosted = np.where(ink > 0, ink * 3, -50.0)  # [0, 255] scale, overshooting both ways
    np.testing.assert_allclose(to_mnist(boosted), to_mnist(np.clip(boosted, 0, 255)), atol=1e-6)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((2, 3, 4, 5), dtype=np.uint8), "shape"),
        (np.zeros((10, 10, 5), dtype=np.uint8), "shape"),
        (np.zeros(10, dtype=np.uint8), "shape"),
        (np.zeros((0, 10), dtype=np.uint8), "empty"),
        (np.zeros((10, 10), dtype=np.complex64), "dtype"),
        (np.full((10, 10), "x"), "dtype"),
        (np.array([[object()]]), "dtype"),
        (np.broadcast_to(np.uint8(0), (4001, 4000)), "resize"),
    ],
    ids=["4-D", "5 channels", "1-D", "empty", "complex", "strings", "objects", "huge"],
)
def test_non_images_raise_image_error(image: np.ndarray, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        to_mnist(image)


def test_a_4000_by_4000_photo_is_still_accepted() -> None:
    assert to_mnist(np.broadcast_to(np.uint8(0), (4000, 4000))) is None


# --- to_mnist: properties ---------------------------------------------------------------------

image_dtypes = st.sampled_from(
    [np.uint8, np.uint16, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64, bool]
)
# Sides from 0 and up to 5 channels: empty and 5-channel arrays must raise ImageError.
image_shapes = st.one_of(
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=30),
    st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(1, 5)),
)


@settings(max_examples=300, deadline=None)
@given(hnp.arrays(dtype=image_dtypes, shape=image_shapes))
def test_any_array_gives_mnist_output_none_or_image_error(image: np.ndarray) -> None:
    try:
        output = to_mnist(image)
    except ImageError:
        return
    if output is not None:
        assert_mnist_like(output)
        assert np.isfinite(output).all()


unit_points = st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0))
strokes = st.lists(st.lists(unit_points, min_size=2, max_size=5), min_size=1, max_size=3)


def spread(drawing: list[list[Point]]) -> float:
    """How far the points reach across the unit square, along the wider axis."""
    xs, ys = zip(*(point for stroke in drawing for point in stroke), strict=True)
    return max(max(xs) - min(xs), max(ys) - min(ys))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    drawing=strokes,
    first=st.tuples(st.integers(0, CANVAS - 120), st.integers(0, CANVAS - 120)),
    second=st.tuples(st.integers(0, CANVAS - 120), st.integers(0, CANVAS - 120)),
    scheme=st.sampled_from(["white on transparent", "black on white RGB"]),
)
def test_moving_a_drawing_changes_nothing(
    drawing: list[list[Point]], first: tuple[int, int], second: tuple[int, int], scheme: str
) -> None:
    mask = draw(drawing, 120, 12)
    convert = SCHEMES[scheme]
    here = to_mnist(convert(on_canvas(mask, *first)))
    there = to_mnist(convert(on_canvas(mask, *second)))
    assert here is not None and there is not None
    np.testing.assert_allclose(here, there, atol=1e-6)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawing=strokes, sizes=st.tuples(st.integers(100, 270), st.integers(100, 270)))
def test_resizing_a_drawing_changes_little(
    drawing: list[list[Point]], sizes: tuple[int, int]
) -> None:
    assume(spread(drawing) >= 0.5)
    first, second = (
        to_mnist(white_on_transparent(on_canvas(draw(drawing, size, size // 10), 0, 0)))
        for size in sizes
    )
    assert similarity(first, second) > 0.95


# --- to_mnist: real MNIST digits --------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_digits(mnist_path: Path) -> np.ndarray:
    """(5, 28, 28) uint8, the first MNIST test digits (skips without $MNIST_PATH)."""
    with np.load(mnist_path) as data:
        return data["x_test"][:5]


def enlarged(digit: np.ndarray, size: int, top: int, left: int) -> np.ndarray:
    """(280, 280) uint8 canvas with the 28x28 digit scaled to size x size at (top, left)."""
    scaled = Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR)
    return on_canvas(np.asarray(scaled), top, left)


@pytest.mark.parametrize(
    ("size", "top", "left"), [(60, 0, 0), (60, 220, 220), (140, 70, 70), (260, 20, 0)]
)
@pytest.mark.parametrize("scheme", list(SCHEMES)[:5])
def test_redrawn_mnist_digits_come_back_as_they_were(
    mnist_digits: np.ndarray, size: int, top: int, left: int, scheme: str
) -> None:
    for digit in mnist_digits:
        output = to_mnist(SCHEMES[scheme](enlarged(digit, size, top, left)))
        assert_mnist_like(output)
        assert similarity(digit / 255, output) > 0.95


def test_mnist_digits_pass_through_almost_unchanged(mnist_digits: np.ndarray) -> None:
    for digit in mnist_digits:
        output = to_mnist(digit)
        assert correlation(output, digit / 255) > 0.99
        assert centre_of_mass(output) == pytest.approx(centre_of_mass(digit / 255), abs=1.0)


# --- load_image -------------------------------------------------------------------------------


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose valid header claims width x height and whose pixel data is garbage."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit gray
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"not zlib data")
        + chunk(b"IEND", b"")
    )


GRADIENT = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10) * 2
NOISE = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_png_round_trip_is_exact(mode: str) -> None:
    pixels = {"L": GRADIENT, "RGB": NOISE, "RGBA": np.dstack([NOISE, NOISE[..., 0]])}[mode]
    loaded = load_image(encode(Image.fromarray(pixels), "PNG"))
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, pixels)


@pytest.mark.parametrize("image_format", ["JPEG", "WEBP", "BMP", "GIF"])
def test_other_formats_load(image_format: str) -> None:
    smooth = np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, :], 32, axis=0)
    loaded = load_image(encode(Image.fromarray(np.dstack([smooth] * 3)), image_format))
    assert loaded.shape in ((32, 64), (32, 64, 3))
    gray = loaded if loaded.ndim == 2 else loaded.mean(axis=2)
    assert np.abs(gray - smooth).mean() < 3.0


def test_uploaded_drawing_gives_the_same_digit_as_the_canvas() -> None:
    photo = black_on_white(seven_canvas())
    loaded = load_image(encode(Image.fromarray(photo), "JPEG", quality=90))
    assert correlation(to_mnist(loaded), to_mnist(photo)) > 0.99


def test_16_bit_png_is_scaled_to_8_bit_gray() -> None:
    deep = np.array([[0, 257, 32896], [65535, 1000, 128]], dtype=np.uint16)
    loaded = load_image(encode(Image.fromarray(deep), "PNG"))
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, [[0, 1, 128], [255, 4, 0]])


def test_cmyk_jpeg_becomes_rgb() -> None:
    cyan = Image.new("CMYK", (8, 6), (255, 0, 0, 0))
    loaded = load_image(encode(cyan, "JPEG", quality=95))
    assert loaded.shape == (6, 8, 3)
    np.testing.assert_allclose(loaded[3, 4], [0, 255, 255], atol=3)


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("L", (10, 10), shade) for shade in (200, 30, 90)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    loaded = load_image(data)
    assert loaded.shape[:2] == (10, 10)
    assert np.all(loaded == 200)


def test_transparency_becomes_rgba() -> None:
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.putpixel((0, 0), 0)
    loaded = load_image(encode(palette, "PNG", transparency=0))
    assert loaded.shape == (4, 4, 4)
    np.testing.assert_array_equal(loaded[0, 0], [0, 0, 0, 0])
    np.testing.assert_array_equal(loaded[1, 1], [255, 0, 0, 255])

    gray_alpha = load_image(encode(Image.new("LA", (3, 2), (100, 50)), "PNG"))
    np.testing.assert_array_equal(gray_alpha[0, 0], [100, 100, 100, 50])

    gray = Image.new("L", (3, 2), 0)
    gray.putpixel((1, 1), 200)
    gray_key = load_image(encode(gray, "PNG", transparency=0))  # black means transparent
    np.testing.assert_array_equal(gray_key[0, 0], [0, 0, 0, 0])
    np.testing.assert_array_equal(gray_key[1, 1], [200, 200, 200, 255])


def test_bilevel_image_becomes_gray() -> None:
    loaded = load_image(encode(Image.new("1", (4, 3), 1), "PNG"))
    assert loaded.shape == (3, 4) and loaded.dtype == np.uint8
    assert np.all(loaded == 255)


def test_exif_orientation_is_applied() -> None:
    # Dark left half, stored sideways with orientation 6: "rotate 90 degrees clockwise".
    stored = np.full((20, 40), 255, dtype=np.uint8)
    stored[:, :20] = 0
    exif = Image.Exif()
    exif[0x0112] = 6
    loaded = load_image(encode(Image.fromarray(stored), "JPEG", exif=exif.tobytes()))
    assert loaded.shape == (40, 20)
    assert loaded[:20].mean() < 10 and loaded[20:].mean() > 245  # dark half now on top


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, I am a text file", "not a PNG"),
        (b"\x89PNG\r\n\x1a\n", "not a PNG"),
        (encode(Image.fromarray(NOISE), "PNG")[:20_000], "truncated"),
        (encode(Image.fromarray(NOISE), "JPEG")[:5_000], "truncated"),
        (encode(Image.fromarray(GRADIENT), "TIFF"), "not a PNG"),
        ("a string, not bytes", "bytes"),
    ],
    ids=["empty", "text", "signature only", "truncated PNG", "truncated JPEG", "TIFF", "str"],
)
def test_bad_uploads_raise_image_error_that_says_what_to_do(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message) as raised:
        load_image(data)
    assert "Upload a PNG or JPEG under 5 MB and 4 megapixels." in str(raised.value)


def test_too_many_bytes_are_rejected_before_decoding() -> None:
    with pytest.raises(ImageError, match="too large.*under 0.001 MB"):
        load_image(b"\x00" * 1001, max_bytes=1000)


@pytest.mark.parametrize(
    ("width", "height", "cause"),
    [
        (30_000, 30_000, Image.DecompressionBombError),  # Pillow's own hard limit
        (12_000, 10_000, type(None)),  # Pillow's warning zone: our own limit refuses it
        (3_000, 3_000, type(None)),  # only above max_pixels
    ],
)
def test_decompression_bombs_are_rejected_from_the_header(
    width: int, height: int, cause: type
) -> None:
    # The pixel data is not even zlib: decoding it would fail with a different message.
    started = time.perf_counter()
    with pytest.raises(ImageError, match="pixels") as raised:
        load_image(png_header_only(width, height))
    assert time.perf_counter() - started < 0.5
    assert "decoded" not in str(raised.value)
    assert isinstance(raised.value.__cause__, cause)


def test_max_pixels_is_respected() -> None:
    data = encode(Image.fromarray(GRADIENT), "PNG")
    assert load_image(data, max_pixels=120).shape == (12, 10)
    with pytest.raises(ImageError, match="10x12 pixels"):
        load_image(data, max_pixels=119)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2_000), st.integers(0, 255)), min_size=1, max_size=8),
    st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "WEBP"]),
)
def test_corrupted_files_raise_only_image_error(
    damage: list[tuple[int, int]], image_format: str
) -> None:
    data = bytearray(encode(Image.fromarray(NOISE[:20, :20]), image_format))
    for position, value in damage:
        data[position % len(data)] = value
    try:
        loaded = load_image(bytes(data))
    except ImageError:
        return
    assert loaded.dtype == np.uint8 and loaded.ndim in (2, 3)


def test_the_byte_test_for_a_clear_canvas_agrees_with_the_float_median_on_every_pair() -> None:
    """A drawing's alpha border is judged on its bytes: for each pair of middle values the
    answer must be the float32 median's, which `_ink` uses for other images."""
    pairs = np.array(list(itertools.product(range(256), repeat=2)), dtype=np.uint8)
    by_floats = np.median(preprocess._unit(pairs, 255.0), axis=1) < 0.5
    by_bytes = np.array([preprocess._mostly_transparent(pair) for pair in pairs])
    assert by_bytes.sum() == 32640  # the pairs summing to 254 or less
    np.testing.assert_array_equal(by_bytes, by_floats)


@settings(max_examples=300, deadline=None)
@given(hnp.arrays(np.uint8, st.integers(1, 600).map(lambda half: 2 * half)))
def test_the_byte_test_for_a_clear_canvas_agrees_with_the_float_median(alpha) -> None:
    by_floats = bool(np.median(preprocess._unit(alpha, 255.0)) < 0.5)
    assert preprocess._mostly_transparent(alpha) is by_floats


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    alpha=hnp.arrays(np.uint8, st.tuples(st.integers(3, 40), st.integers(3, 40))),
    channels=st.sampled_from([2, 4]),
    strength=st.floats(0.0, 1.0),
    strided=st.booleans(),
)
def test_a_clear_canvas_is_cropped_on_its_bytes_to_the_same_ink_as_any_image(
    alpha: np.ndarray, channels: int, strength: float, strided: bool
) -> None:
    """`_cropped_alpha` (drawings: uint8 with a clear border) must give exactly what the
    general path gives, `_ink` on the whole image and then the box around what is left."""
    alpha = (alpha * strength).astype(np.uint8)
    alpha[[0, -1]] = 0  # a clear canvas: its border is transparent
    alpha[:, [0, -1]] = 0
    pixels = np.zeros((*alpha.shape, channels), dtype=np.uint8)
    pixels[..., :-1] = 255 - alpha[..., None]  # the colour must not matter
    pixels[..., -1] = alpha
    if strided:  # not contiguous: every other row of a canvas twice as tall
        taller = np.repeat(pixels, 2, axis=0)
        taller[1::2] = 77
        pixels = taller[::2]
    fast = preprocess._cropped_alpha(pixels)
    ink = preprocess._ink(pixels)
    if ink is None:
        assert fast is None
        return
    assert fast is not None
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    assert fast[0] == (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
    top, left, bottom, right = fast[0]
    assert fast[1].dtype == np.float32
    np.testing.assert_array_equal(fast[1], ink[top:bottom, left:right])
    steps = to_mnist_steps(pixels)
    np.testing.assert_array_equal(steps.ink, ink)
    np.testing.assert_array_equal(to_mnist(pixels), steps.centred)
