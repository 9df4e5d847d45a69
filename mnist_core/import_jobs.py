"""Imports the web process starts and does not wait for: `python -m mnist_core import FILE`
in a subprocess, so TensorFlow (needed to load and score a model) stays out of the web process
and a page can poll the import while its visitor clicks around.

An `ImportJob` writes the uploaded bytes to a private temporary folder under a cleaned version
of their file name, starts the command, and answers `result()`: None while it runs, the
command's JSON summary when it succeeded; ModelError with its one-line reason when it failed or
took longer than `timeout`. The folder is removed when the import ends either way.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from mnist_core.errors import ModelError
from mnist_core.serving import last_line, python_command

Scale = Literal["auto", "1", "255"]  # the pixel scale a model expects: auto, [0, 1], [0, 255]
SCALES: tuple[Scale, ...] = ("auto", "1", "255")
IMPORT_TIMEOUT = 600.0  # seconds: a large convnet scored on 10,000 digits on a slow server
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_name(name: str) -> str:
    """`name` without folders and with only letters, digits, '.', '_' and '-' ("my model.h5"
    -> "my_model.h5"), at most 100 characters, its suffix kept."""
    base = _UNSAFE.sub("_", Path(name).name).strip("._") or "upload"
    suffix = Path(base).suffix
    return base if len(base) <= 100 else base[: 100 - len(suffix)] + suffix


class ImportJob:
    """One upload being imported into the run store at `runs_dir` by a subprocess."""

    def __init__(
        self,
        data: bytes,
        file_name: str,
        runs_dir: str | Path,
        name: str = "",
        scale: Scale = "auto",
        timeout: float = IMPORT_TIMEOUT,
    ) -> None:
        self.file_name = safe_file_name(file_name)
        self.timeout = timeout
        self._folder = Path(tempfile.mkdtemp(prefix="mnist-import-"))
        self._done: dict[str, Any] | ModelError | None = None
        path = self._folder / self.file_name
        path.write_bytes(data)
        arguments = ["import", str(path), "--json", "--runs-dir", str(runs_dir)]
        if Path(self.file_name).suffix != ".zip":
            arguments += ["--scale", scale] + (["--name", name.strip()] if name.strip() else [])
        self._stdout = (self._folder / "stdout").open("w+b")
        self._stderr = (self._folder / "stderr").open("w+b")
        self._process = subprocess.Popen(
            **python_command("mnist_core", *arguments), stdout=self._stdout, stderr=self._stderr
        )
        self.started = time.monotonic()

    @property
    def seconds(self) -> float:
        """Seconds since the import started."""
        return time.monotonic() - self.started

    def result(self) -> dict[str, Any] | None:
        """None while the import runs; then its summary (`run_id`, `test_accuracy`, ...).

        Raises ModelError (every call after the end too) when it failed or timed out."""
        if self._done is None:
            code = self._process.poll()
            if code is None and self.seconds <= self.timeout:
                return None
            self._done = self._finish(code)
        if isinstance(self._done, ModelError):
            raise self._done
        return self._done

    def cancel(self) -> None:
        """Stop the import (nothing is saved) and remove its files."""
        if self._done is None:
            self._end_process()
            self._done = ModelError("the import was cancelled")
            self._clean()

    def _finish(self, code: int | None) -> dict[str, Any] | ModelError:
        try:
            if code is None:
                self._end_process()
                return ModelError(
                    f"importing {self.file_name} took over {self.timeout:.0f} s and was stopped; "
                    "try again when the server is idle, or use `python -m mnist_core import`"
                )
            if code != 0:
                return ModelError(last_line(self._stderr, "the file could not be imported"))
            self._stdout.seek(0)
            lines = self._stdout.read().decode(errors="replace").strip().splitlines()
            try:
                summary = json.loads(lines[-1])
            except (IndexError, ValueError):
                return ModelError("the import ended without a summary; try again")
            return summary if isinstance(summary, dict) else ModelError("no summary")
        finally:
            self._clean()

    def _end_process(self) -> None:
        self._process.kill()
        self._process.wait()

    def _clean(self) -> None:
        self._stdout.close()
        self._stderr.close()
        shutil.rmtree(self._folder, ignore_errors=True)
