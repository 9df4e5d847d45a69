"""The documentation names tests that exist: docs/reliability.md cites, for every bad input and
fault, the test that proves what happens."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITED = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(?:\[[^\]`]*\])?`")


def defined_tests(path: Path) -> set[str]:
    """Names of the test functions defined at the top level of the test file `path`."""
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_every_test_named_in_the_reliability_table_exists() -> None:
    text = (ROOT / "docs" / "reliability.md").read_text()
    cited = CITED.findall(text)
    assert len(cited) > 100  # the table cites a test on each of its rows

    missing = [
        f"{file}::{name}"
        for file, name in cited
        if not (ROOT / file).is_file() or name not in defined_tests(ROOT / file)
    ]

    assert missing == []


def test_a_misspelt_test_name_is_found(tmp_path: Path) -> None:
    test_file = tmp_path / "test_x.py"
    test_file.write_text("def test_real() -> None:\n    pass\n\n\nhelper = 1\n")
    assert defined_tests(test_file) == {"test_real"}
    assert CITED.findall("`tests/unit/test_x.py::test_real[a-b]`, `tests/app/y.py::other`") == [
        ("tests/unit/test_x.py", "test_real"),
        ("tests/app/y.py", "other"),
    ]
