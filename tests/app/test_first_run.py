"""A server's first visitor: the app's first element goes out before its imports, so the browser
fetches Streamlit's components code while the server imports numpy and mnist_core, and without
Streamlit's REPL check (see `pages/parts/__init__.py` and `pages/parts/style.py`)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fresh import report_of

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "pages").glob("*.py"))

# The dashboard run in a fresh process, as a new server's first run is: what the app had
# imported when it sent its first element (the style), and what it imports in all.
FIRST_RUN = """
import json, sys
from streamlit.testing.v1 import AppTest
from pages.parts import style

def app_modules():
    return sorted(name for name in sys.modules if name.split(".")[0] in ("numpy", "mnist_core"))

at_style = []
apply = style.apply
style.apply = lambda: (at_style.append(app_modules()), apply())
at = AppTest.from_file("dashboard.py", default_timeout=60).run()
print(json.dumps({
    "at_style": at_style[:1],
    "after_run": [name for name in ("numpy", "mnist_core") if name in sys.modules],
    "exceptions": [e.message for e in at.exception],
    "sidebar": [c.value for c in at.sidebar.caption][-1:],
}))
"""


def test_the_first_element_goes_out_before_numpy_and_mnist_core_are_imported(
    tmp_path: Path,
) -> None:
    report = report_of(FIRST_RUN, env={"MNIST_RUNS_DIR": str(tmp_path / "runs")})
    assert report["exceptions"] == []
    assert report["at_style"] == [[]], report
    # ... and the run then imports them and shows the sidebar as usual.
    assert report["after_run"] == ["numpy", "mnist_core"]
    assert report["sidebar"][0].startswith("MNIST: "), report


# A first visit to /sketch in a fresh process: what the app had imported when it sent the canvas
# (see pages/sketch.py), and what the page showed once its run had ended. Nothing of the app is
# imported before the run, as in a server (importing pages.parts here would keep the first run in
# Streamlit's pages-folder mode): the canvas is wrapped as its module is first imported.
SKETCH_FIRST_RUN = """
import importlib.util, json, sys
from streamlit.testing.v1 import AppTest

def app_modules():
    return sorted(
        name for name in sys.modules
        if name.split(".")[0] in ("numpy", "mnist_core", "onnxruntime")
    )

at_canvas = []

class WrapTheCanvas:
    def find_spec(self, name, path, target=None):
        if name != "pages.parts.canvas":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            draw = module.sketch_canvas
            module.sketch_canvas = lambda *args: (at_canvas.append(app_modules()), draw(*args))[1]

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, WrapTheCanvas())
at = AppTest.from_file("dashboard.py", default_timeout=60).switch_page("pages/sketch.py").run()
print(json.dumps({
    "at_canvas": at_canvas,
    "after_run": [name for name in ("numpy", "onnxruntime") if name in sys.modules],
    "exceptions": [e.message for e in at.exception],
    "pickers": [box.label for box in at.selectbox],
    "tabs": [tab.label for tab in at.tabs],
    "sidebar": [c.value for c in at.sidebar.caption][-1:],
}))
"""


def test_sketchs_canvas_goes_out_before_numpy_and_the_model_are_imported(tmp_path: Path) -> None:
    report = report_of(SKETCH_FIRST_RUN, env={"MNIST_RUNS_DIR": str(tmp_path / "runs")})
    assert report["exceptions"] == []
    # Only the canvas's own error type of mnist_core when the canvas was sent ...
    assert report["at_canvas"] == [["mnist_core", "mnist_core.errors"]], report
    # ... then the rest of the page: the model (the shipped pretrained run) loaded to predict,
    # its picker above the tabs, the sidebar.
    assert report["after_run"] == ["numpy", "onnxruntime"]
    assert report["pickers"] == ["Model"]
    assert report["tabs"] == ["Draw", "Upload a photo"]
    assert report["sidebar"][0].startswith("MNIST: "), report


# The same first run, nothing of the app imported before it (as in a server): how often
# inspect.stack() is called, which Streamlit's REPL check does at the process's first element.
STACK_WALKS = """
import inspect, json
from streamlit.testing.v1 import AppTest

calls = []
stack = inspect.stack
inspect.stack = lambda *args: (calls.append(1), stack(*args))[1]
at = AppTest.from_file("dashboard.py", default_timeout=60).run()
print(json.dumps({"calls": len(calls), "exceptions": [e.message for e in at.exception]}))
"""


def test_the_first_run_skips_streamlits_repl_check(tmp_path: Path) -> None:
    report = report_of(STACK_WALKS, env={"MNIST_RUNS_DIR": str(tmp_path / "runs")})
    assert report == {"calls": 0, "exceptions": []}


def test_run_without_streamlit_the_dashboard_still_says_how_to_start_it(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "dashboard.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MNIST_RUNS_DIR": str(tmp_path / "runs")},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "to view this Streamlit app on a browser, run it with" in completed.stderr


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.stem)
def test_every_page_imports_pages_parts_before_anything_else(page: Path) -> None:
    """A new server's first run executes the requested page file on its own (Streamlit's
    pages-folder mode): importing `pages.parts` first ends that run before the page's other
    imports, which the run through dashboard.py then makes after its first element."""
    body = ast.parse(page.read_text()).body
    first = body[1] if isinstance(body[0], ast.Expr) else body[0]  # after the docstring
    assert isinstance(first, ast.Import), ast.dump(first)
    assert [alias.name for alias in first.names] == ["pages.parts"]
