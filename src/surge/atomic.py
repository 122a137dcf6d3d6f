"""Atomic file output: write to a temp file in the destination folder, then ``os.replace``.

A crash, SIGKILL or full disk mid-write leaves the previous file (or no file) behind, never a
half-written one; the temp file is removed on any failure and gets the permissions a plain
``open()`` would (mkstemp's are 0600).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from surge.errors import SurgeError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, error: type[SurgeError] = SurgeError, replace: bool = True) -> Iterator[str]:
    """Yield a temp file name next to ``path``; on success it replaces ``path`` atomically.

    ``replace=False``: never replace a file at ``path``, even one created while the caller
    was writing (see :func:`publish`); that is reported as ``error(f"{path}: already exists ...")``.

    OS errors and failed writes reported by torch.save or safetensors (a full disk) become a
    one-line ``error(f"{path}: cannot write (...)")``; the previous ``path`` stays intact.
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
        try:
            publish(tmp, path, replace)
        except FileExistsError:
            raise error(f"{path}: already exists (created while this file was being written); not replaced") from None
    except Exception as exc:
        reason = _write_failure(exc)
        if reason is None:
            raise
        raise error(f"{path}: cannot write ({reason})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


# How torch.save reports a failed write (ENOSPC included): a RuntimeError from its C++ zip
# writer, e.g. "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534".
_TORCH_WRITE_FAILURE = re.compile(r"unexpected pos|file write failed|PytorchStreamWriter failed|No space left|iostream error")


def _write_failure(exc: Exception) -> str | None:
    """A one-line reason if ``exc`` is a failed write (disk full, I/O error), else None (a bug)."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    line = (str(exc).strip().splitlines() or [""])[0][:200]
    if type(exc).__name__ == "SafetensorError":  # safetensors' own I/O errors (not an OSError)
        return line.removeprefix("Error while serializing: ")
    if isinstance(exc, RuntimeError) and _TORCH_WRITE_FAILURE.search(line):
        return f"write failed, disk full? {line}"
    return None


def is_temp_file_of(path: Path, targets) -> bool:
    """True if ``path`` is a temp file :func:`atomic_output` made for one of the file names ``targets``."""
    return any(re.fullmatch(re.escape(f".{name}.") + r"[a-z0-9_]+\.tmp", path.name) for name in targets)


# Link errors meaning "this file system has no hard links", as opposed to a real failure.
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}


def publish(tmp: str | os.PathLike, path: str | os.PathLike, replace: bool = True) -> None:
    """Give the finished temp file ``tmp`` the name ``path`` (same folder) in one step.

    ``replace=False`` raises FileExistsError if ``path`` exists, even if it appeared a moment
    ago: checking first and renaming after would replace a file another process (or a second
    run into the same folder) published in between. ``link`` creates the name only if it is
    free; where hard links are unsupported, an ``O_EXCL`` create reserves the name (an empty
    file, briefly) and the rename then replaces only that reservation.
    """
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        try:
            os.replace(tmp, path)
        except OSError:
            os.unlink(path)  # our empty reservation, not someone's file
            raise
        return
    os.unlink(tmp)
