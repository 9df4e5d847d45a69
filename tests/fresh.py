"""Python snippets run in a fresh interpreter, for what a test's own process has imported
already (pandas, TensorFlow) or must not be left holding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def report_of(script: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    """Run `script` with the repository as its working directory (and `env` added to this
    process's environment); the JSON its last line of output holds. Fails the test, with the
    end of its stderr, when it does not exit cleanly."""
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])
