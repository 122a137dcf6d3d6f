"""Atomic file output: write to a temp file in the destination folder, then ``os.replace``.

A crash, SIGKILL or full disk mid-write leaves the previous file (or no file) behind, never a
half-written one; the temp file is removed on any failure and gets the permissions a plain
``open()`` would (mkstemp's are 0600).

Temp names carry the writing process's id and a tag of its host (:func:`temp_name`), so a
later run can remove the temp files of runs that were killed (:func:`sweep_stale_temps`)
without ever touching a file that is not one of ours, or one a live process is writing.
:func:`handle_sigterm` makes SIGTERM (``timeout``, ``docker stop``, systemd) unwind like
Ctrl-C, so the cleanup above runs then too.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import signal
import socket
import tempfile
import threading
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
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
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


def check_writable(path: str | os.PathLike, error: type[SurgeError] = SurgeError) -> None:
    """Prove, before any work, that :func:`atomic_output` will be able to write ``path``: its
    folder can be created and a file made in it (permissions, read-only mounts, a file where a
    folder should be). Creates the folder; leaves no file behind."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise error(f"{path}: cannot write ({exc.strerror or exc})") from None


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
    """True if ``path`` is a temp file :func:`atomic_output` made for one of the file names ``targets``
    (with or without the owner tag: files from versions before it count too)."""
    return any(re.fullmatch(re.escape(f".{name}.") + r"(\d+-[0-9a-f]{4}\.)?[a-z0-9_]+\.tmp", path.name) for name in targets)


# --- temp names and stale temp files --------------------------------------------------------

# Which machine wrote a temp file: a pid means nothing on another host sharing the folder (NFS).
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:4]
# ".<target name>.<pid>-<host tag>.<random>.tmp": what temp_name and atomic_output create.
_OWNED_TEMP = re.compile(r"\.(?P<target>.+)\.(?P<pid>[1-9]\d{0,9})-(?P<host>[0-9a-f]{4})\.[a-z0-9_]{6,32}\.tmp")


def temp_prefix(name: str) -> str:
    """The start of a temp file name for the target file ``name``: hidden, with owner tag."""
    return f".{name}.{os.getpid()}-{HOST_TAG}."


def temp_name(name: str) -> str:
    """A hidden, unique temp file name for the target file ``name`` in the same folder."""
    return f"{temp_prefix(name)}{secrets.token_hex(4)}.tmp"


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, another user's
        return False
    return False


def stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Temp files in ``folder`` left by killed surge processes: named exactly as :func:`temp_name`
    names them, written on this host, by a process that no longer exists. Plain files only."""
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return found
    for entry in entries:
        match = _OWNED_TEMP.fullmatch(entry.name)
        if match is None or match["host"] != HOST_TAG:
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or not _process_gone(pid):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                found.append(Path(entry.path))
        except OSError:
            continue
    return sorted(found)


def sweep_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove :func:`stale_temp_files` of ``folder``; returns what was removed."""
    removed = []
    for path in stale_temp_files(folder):
        try:
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


# --- SIGTERM ------------------------------------------------------------------------------


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be, so the same cleanup runs."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def handle_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) in the main
    thread: ``finally`` clauses remove temp files and writes under way finish or vanish, as on
    Ctrl-C. Nothing changes outside the main thread or where a handler is already installed."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


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
