"""Atomic file output: write to a temp file in the destination folder, then ``os.replace``.

A crash, SIGKILL or full disk mid-write leaves the previous file (or no file) behind, never a
half-written one; the temp file is removed on any failure and gets the permissions a plain
``open()`` would (mkstemp's are 0600).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from surge.errors import SurgeError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, error: type[SurgeError] = SurgeError) -> Iterator[str]:
    """Yield a temp file name next to ``path``; on success it replaces ``path`` atomically.

    OS errors become a one-line ``error(f"{path}: cannot write (...)")``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise error(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        yield tmp
        # After writing: some writers (safetensors) replace the temp file with their own 0600 one.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        raise error(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
