"""Tests for mnist_core.figures: the traces, captions and colours of every figure."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mnist_core.figures import (
    FRAME_CSS,
    RIGHT_COLOUR,
    RIGHT_CSS,
    WRONG_COLOUR,
    WRONG_CSS,
    confusion_figure,
    gallery_figure,
    gallery_html,
    history_figure,
    probabilities_html,
    replay_figure,
    sweep_figure,
)
from mnist_core.sweeps import TrialResult
from tests.fresh import report_of

HISTORIES = {
    "a": {
        "loss": [0.9, 0.5, 0.4],
        "accuracy": [0.7, 0.8, 0.85],
        "val_loss": [0.8, 0.45, 0.5],
        "val_accuracy": [0.72, 0.86, 0.84],
    },
    "b": {
        "loss": [1.0, 0.6],
        "accuracy": [0.6, 0.75],
        "val_loss": [0.9, 0.7],
        "val_accuracy": [0.65, 0.7],
    },
}


def test_history_figure_traces_for_two_runs() -> None:
    figure = history_figure(HISTORIES, {"a": 2, "b": 2})

    names = [trace.name for trace in figure.data]
    # Per run: train and validation lines, then the best-epoch star, in each of two panels.
    per_panel = ["{} · train", "{} · validation", "{} · best epoch"]
    assert names == [name.format(run) for run in "ab" for _ in range(2) for name in per_panel]
    assert len(figure.data) == 12

    lines = {(trace.name, trace.xaxis): trace for trace in figure.data}
    a_val_loss = lines[("a · validation", "x")]
    assert list(a_val_loss.x) == [1, 2, 3]
    assert list(a_val_loss.y) == [0.8, 0.45, 0.5]
    assert a_val_loss.line.dash == "dash"
    assert lines[("a · train", "x2")].line.dash == "solid"
    assert list(lines[("b · train", "x2")].y) == [0.6, 0.75]
    # One colour per run, and each run in the legend once.
    assert lines[("a · train", "x")].line.color != lines[("b · train", "x")].line.color
    assert [trace.showlegend for trace in figure.data if trace.xaxis == "x2"] == [False] * 6


def test_best_epoch_markers_sit_on_the_validation_curves() -> None:
    figure = history_figure(HISTORIES, {"a": 2, "b": 2})

    stars = {
        (trace.name, trace.xaxis): (list(trace.x), list(trace.y))
        for trace in figure.data
        if trace.marker.symbol == "star"
    }
    assert stars == {
        ("a · best epoch", "x"): ([2], [0.45]),
        ("a · best epoch", "x2"): ([2], [0.86]),
        ("b · best epoch", "x"): ([2], [0.7]),
        ("b · best epoch", "x2"): ([2], [0.7]),
    }


def test_history_figure_without_best_epochs_or_validation() -> None:
    figure = history_figure({"solo": {"loss": [1.0, 0.5], "accuracy": [0.5, 0.7]}}, {"solo": 9})

    assert [trace.name for trace in figure.data] == ["solo · train", "solo · train"]
    assert history_figure({}).data == ()


def test_gallery_titles_and_colours() -> None:
    images = np.random.default_rng(0).integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2], dtype=np.uint8)
    predicted = labels.copy()
    predicted[[3, 11]] = [8, 7]
    confidence = (0.5 + 0.04 * np.arange(12)).astype(np.float32)  # 50 %, 54 %, ... 94 %

    figure = gallery_figure(images, labels, predicted, confidence, columns=5)

    captions = {annotation.text: annotation.font.color for annotation in figure.layout.annotations}
    assert len(captions) == 12
    assert captions["3 → 8 (62%)"] == WRONG_COLOUR
    assert captions["2 → 7 (94%)"] == WRONG_COLOUR
    assert captions["0 → 0 (50%)"] == RIGHT_COLOUR
    expected = {
        f"{t} → {p} ({c:.0%})" for t, p, c in zip(labels, predicted, confidence, strict=True)
    }
    assert set(captions) == expected
    assert list(captions.values()).count(WRONG_COLOUR) == 2
    assert len(figure.data) == 12
    assert figure.layout.height == 330  # 3 rows of 5


def test_gallery_html_captions_and_colours_for_light_and_dark() -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 4], dtype=np.uint8)
    predicted = np.array([0, 7, 2, 3, 9], dtype=np.uint8)
    confidence = np.array([0.9, 0.6, 0.99, 0.5, 0.71], dtype=np.float32)

    html = gallery_html(images, [4, 1, 0], labels, predicted, confidence)

    tiles = re.findall(
        r'<figure class="digit( wrong)?" title="test #(\d)".*?border:2px solid ([^;]+);.*?'
        r'<figcaption style="font-size:0.8rem;color:([^"]+)">([^<]+)</figcaption>',
        html,
    )
    assert [(t[1], t[4]) for t in tiles] == [
        ("4", "4 → 9 (71%)"),
        ("1", "1 → 7 (60%)"),
        ("0", "0 → 0 (90%)"),
    ]
    assert [(bool(t[0]), t[2], t[3]) for t in tiles] == [
        (True, WRONG_CSS, WRONG_CSS),
        (True, WRONG_CSS, WRONG_CSS),
        (False, FRAME_CSS, RIGHT_CSS),
    ]
    # One colour for a light page and one for a dark page: AA contrast (4.5:1) needs both.
    for css in (WRONG_CSS, RIGHT_CSS):
        assert re.fullmatch(r"light-dark\(#[0-9a-f]{6}, #[0-9a-f]{6}\)", css)
    assert html.count("<img") == 3 and 'alt="test digit 4"' in html


def test_confusion_figure() -> None:
    confusion = np.zeros((10, 10), dtype=np.int64)
    confusion[np.arange(10), np.arange(10)] = 100
    confusion[4, 9] = 7

    heatmap, cells = confusion_figure(confusion).data

    np.testing.assert_allclose(heatmap.z, np.log1p(confusion))
    np.testing.assert_array_equal(heatmap.text, confusion)
    assert heatmap.text[4][9] == 7
    assert list(heatmap.x) == list(heatmap.y) == [str(d) for d in range(10)]
    # One clickable marker per cell, carrying that cell's count (true 4, predicted 9: 7).
    assert len(cells.x) == len(cells.y) == len(cells.customdata) == 100
    marker = next(i for i in range(100) if (cells.y[i], cells.x[i]) == ("4", "9"))
    assert cells.customdata[marker] == 7


def bars(html: str) -> list[tuple[int, float, str]]:
    """(digit, probability, bar colour) for each bar of `probabilities_html`."""
    found = re.findall(r'data-digit="(\d)" data-probability="([\d.]+)".*?background:([^;"]+)', html)
    return [(int(d), float(p), colour) for d, p, colour in found]


def test_probabilities_html_highlights_the_argmax() -> None:
    probabilities = np.full(10, 0.02, dtype=np.float32)
    probabilities[6] = 0.82

    html = probabilities_html(probabilities)

    found = bars(html)
    assert [d for d, _, _ in found] == list(range(10))
    np.testing.assert_allclose([p for _, p, _ in found], probabilities, atol=1e-4)
    colours = [c for _, _, c in found]
    assert colours[6] == RIGHT_CSS
    assert len(set(colours[:6] + colours[7:])) == 1 and colours[0] != RIGHT_CSS
    assert "height:82.0%" in html and "height:2.0%" in html
    assert ">82%</span>" in html and ">2%</span>" in html
    assert 'aria-label="Probability per digit: 0: 2%, 1: 2%' in html


@pytest.mark.parametrize("best", [0, 4])
def test_probabilities_html_follows_the_prediction(best: int) -> None:
    found = bars(probabilities_html(np.eye(10, dtype=np.float32)[best]))
    assert [d for d, _, colour in found if colour == RIGHT_CSS] == [best]


def test_probabilities_html_of_nothing_draws_empty_axes() -> None:
    html = probabilities_html(np.zeros(10))
    assert all(p == 0 and colour != RIGHT_CSS for _, p, colour in bars(html))
    assert "%</span>" not in html  # no percentages over empty bars


def test_probabilities_html_marks_tiny_but_nonzero_chances() -> None:
    probabilities = np.zeros(10)
    probabilities[[3, 8]] = [0.998, 0.002]
    html = probabilities_html(probabilities)
    assert "&lt;1%</span>" in html
    assert [p for _, p, _ in bars(html)][8] == pytest.approx(0.002)


def test_replay_figure_colours_each_digit_by_its_true_class_probability() -> None:
    answers = np.zeros((3, 2, 10), dtype=np.float32)
    answers[:, 0, 7] = [0.2, 0.6, 0.9]  # a 7 learned over three epochs
    answers[:, 0, 1] = [0.8, 0.4, 0.1]
    answers[:, 1, 4] = 1.0  # a 2, always read as 4
    figure = replay_figure(answers, np.array([7, 2]))
    (heatmap,) = figure.data
    np.testing.assert_allclose(np.asarray(heatmap.z), [[0.2, 0.6, 0.9], [0.0, 0.0, 0.0]])
    assert list(heatmap.x) == [1, 2, 3]
    assert list(heatmap.y) == ["#1: a 7", "#2: a 2"]
    assert np.asarray(heatmap.customdata).tolist() == [[1, 7, 7], [4, 4, 4]]


def test_sketch_code_leaves_pandas_scipy_and_pillow_out_until_they_are_needed() -> None:
    """Sketch's first visit skips pandas' import (≈ 0.2 s); a plotly figure imports it first,
    so plotly never sees another thread's half-imported pandas. SciPy's image code and Pillow
    come with `preprocess.warm_up`, after the canvas is sent, or with the first picture."""
    code = (
        "import json, sys, numpy as np\n"
        "import mnist_core.figures as f, mnist_core.figures_explain, mnist_core.preprocess as p\n"
        "import mnist_core.serving\n"
        "names = ('pandas', 'scipy.ndimage', 'PIL.Image')\n"
        "loaded = lambda: [name for name in names if name in sys.modules]\n"
        "before = loaded()\n"
        "f.digit_png(np.zeros((28, 28)))\n"
        "pictured = loaded()\n"
        "p.warm_up()\n"
        "warm = loaded()\n"
        "f.confusion_figure(np.eye(10, dtype=int))\n"
        "print(json.dumps([before, pictured, warm, loaded()]))\n"
    )
    before, pictured, warm, after_figure = report_of(code)
    assert before == []
    assert pictured == ["PIL.Image"]
    assert warm == ["scipy.ndimage", "PIL.Image"]
    assert after_figure == ["pandas", "scipy.ndimage", "PIL.Image"]


def trial(rate: float, units: tuple[int, ...], val: float | None, test: float) -> TrialResult:
    settings = {"hidden_units": units, "learning_rate": rate}
    return TrialResult(f"run-{rate}-{units}", settings, val, test, 1, 2.0, "completed")


def test_sweep_figure_one_line_per_value_of_the_second_setting_and_a_star_on_the_best() -> None:
    results = [  # ranked by validation accuracy, as sweeps.results gives them
        trial(0.003, (256, 128), 0.982, 0.970),
        trial(0.001, (256, 128), 0.975, 0.995),  # the best test accuracy: no star
        trial(0.003, (64,), 0.960, 0.960),
        trial(0.001, (64,), 0.950, 0.950),
        trial(0.01, (64,), None, 0.940),  # no validation score: not plotted
    ]

    figure = sweep_figure(results, ["hidden_units", "learning_rate"])

    lines = {t.name: t for t in figure.data}
    assert list(lines) == [
        "learning_rate=0.001",
        "learning_rate=0.003",
        "best: hidden_units=256+128 · learning_rate=0.003",
    ]
    # Layer sizes are categories, in order of their sizes.
    assert list(lines["learning_rate=0.001"].x) == ["64", "256+128"]
    assert list(lines["learning_rate=0.001"].y) == [0.950, 0.975]
    assert list(lines["learning_rate=0.003"].y) == [0.960, 0.982]
    star = lines["best: hidden_units=256+128 · learning_rate=0.003"]
    assert (list(star.x), list(star.y), star.marker.symbol) == (["256+128"], [0.982], "star")
    assert figure.layout.xaxis.type == "category"
    assert figure.layout.xaxis.title.text == "hidden_units"
    assert figure.layout.yaxis.title.text == "validation accuracy"
    # From 0.95 to 0.982, padded by 15 % of that spread on each side.
    assert list(figure.layout.yaxis.range) == pytest.approx([0.9452, 0.9868])


def test_sweep_figure_of_a_learning_rate_has_a_log_axis_ticked_at_the_values_tried() -> None:
    results = [trial(rate, (64,), val, 0.9) for rate, val in ((0.003, 0.97), (0.0005, 0.95))]

    figure = sweep_figure(results, ["learning_rate"])

    line, star = figure.data
    assert (line.name, list(line.x), list(line.y)) == (
        "validation accuracy",
        [0.0005, 0.003],
        [0.95, 0.97],
    )
    assert (list(star.x), list(star.y)) == ([0.003], [0.97])
    axis = figure.layout.xaxis
    assert axis.type == "log"
    assert (list(axis.tickvals), list(axis.ticktext)) == ([0.0005, 0.003], ["0.0005", "0.003"])
    alone = sweep_figure(results[:1], ["learning_rate"])  # one score: still a readable range
    assert list(alone.layout.yaxis.range) == pytest.approx([0.968, 0.972])
