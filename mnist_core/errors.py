"""Exceptions raised by mnist_core for problems a user can cause and fix.

Every message says what went wrong and what to do about it, so the command line and the
dashboard can show it as it is, without a traceback.
"""

from __future__ import annotations


def first_line(error: BaseException) -> str:
    """The first line of an error message, shortened: Keras appends whole configs to some."""
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    return line if len(line) <= 200 else line[:199] + "…"


class MnistCoreError(Exception):
    """Base class of every error mnist_core raises on purpose."""


class ConfigError(MnistCoreError, ValueError):
    """A training setting is missing, of the wrong type or outside its allowed range."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message  # the message without the field's name
        super().__init__(f"{field}: {message}")


class DataError(MnistCoreError):
    """MNIST could not be found, read or validated."""


class ImageError(MnistCoreError):
    """An uploaded image or a drawing cannot be turned into a digit."""


class ModelError(MnistCoreError):
    """A saved model or run is missing, corrupt or unsafe to load."""
