"""Every line the CLI prints about files goes through :func:`surge.safetext.printable`
(control and bidi characters escaped, so a name cannot drive the terminal or forge a line);
:func:`error`, :func:`warn` and :func:`emit` print such lines to stderr without breaking a progress bar.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

from surge.safetext import printable, printable_lines

__all__ = ["emit", "error", "printable", "printable_lines", "warn"]


def emit(message: object, file=None) -> None:
    """Print one escaped line to stderr (or ``file``) without breaking a progress bar."""
    tqdm.write(printable(message), file=file if file is not None else sys.stderr)


def error(message: object) -> None:
    emit(f"surge: error: {message}")


def warn(message: object) -> None:
    emit(f"surge: warning: {message}")
