"""Temp files of killed runs (issue 22, point 10): SIGTERM unwinds like Ctrl-C, and a later run
removes only temp files that are exactly ours and whose process is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import surge

SRC = Path(surge.__file__).resolve().parents[1]  # the sources under test, for the child process


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_only_our_stale_temp_files(tmp_path):
    from surge.atomic import HOST_TAG, stale_temp_files, sweep_stale_temps, temp_name

    dead = _dead_pid()
    other_host = "0000" if HOST_TAG != "0000" else "ffff"
    stale = tmp_path / f".a_x4.png.{dead}-{HOST_TAG}.1a2b3c4d.tmp"
    stale_mkstemp = tmp_path / f".last.pt.{dead}-{HOST_TAG}.k_9xq2zz.tmp"
    kept = [
        tmp_path / f".a_x4.png.{os.getppid()}-{HOST_TAG}.1a2b3c4d.tmp",  # its process is alive
        tmp_path / f".a_x4.png.{dead}-{other_host}.1a2b3c4d.tmp",  # another machine's (shared folder)
        tmp_path / ".a_x4.png.1a2b3c4d.tmp",  # no owner tag: could be anyone's
        tmp_path / f".a_x4.png.{dead}-{HOST_TAG}.1a2b3c4d.tmp.bak",  # not exactly our pattern
        tmp_path / f"a_x4.png.{dead}-{HOST_TAG}.1a2b3c4d.tmp",  # not hidden
        tmp_path / "notes.tmp",
        tmp_path / "a_x4.png",
    ]
    for path in [stale, stale_mkstemp, *kept]:
        path.write_bytes(b"x")
    folder_named_like_ours = tmp_path / f".b.png.{dead}-{HOST_TAG}.1a2b3c4d.tmp"
    folder_named_like_ours.mkdir()
    link = tmp_path / f".c.png.{dead}-{HOST_TAG}.1a2b3c4d.tmp"
    link.symlink_to(tmp_path / "a_x4.png")
    assert stale_temp_files(tmp_path) == sorted([stale, stale_mkstemp])
    assert sorted(sweep_stale_temps(tmp_path)) == sorted([stale, stale_mkstemp])
    assert not stale.exists() and not stale_mkstemp.exists()
    assert all(p.exists() for p in kept) and folder_named_like_ours.is_dir() and link.is_symlink()
    # What we create matches the pattern, with this process as the owner (alive: never swept).
    own = tmp_path / temp_name("z.png")
    own.write_bytes(b"x")
    assert own.name.startswith(f".z.png.{os.getpid()}-{HOST_TAG}.") and not sweep_stale_temps(tmp_path)


def test_sigterm_while_writing_leaves_no_temp_file(tmp_path):
    """Before: SIGTERM killed the process mid-write and left the hidden temp file behind."""
    from surge.models import GENERATOR_PRESETS, SuRGeGenerator
    from surge.models.files import save_model

    torch.manual_seed(0)
    a = save_model(SuRGeGenerator(GENERATOR_PRESETS["surge-tiny"]), tmp_path / "a.safetensors")
    b = save_model(SuRGeGenerator(GENERATOR_PRESETS["surge-tiny"]), tmp_path / "b.safetensors")
    out = tmp_path / "out" / "blend.safetensors"
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        import surge.atomic as atomic

        def publish(tmp, path, replace=True):  # the temp file is complete: terminate now
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)

        atomic.publish = publish
        from surge.cli.main import main
        sys.exit(main(["interpolate", {str(a)!r}, {str(b)!r}, "--alpha", "0.5", "-o", {str(out)!r}]))
    """)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, proc.stderr[-2000:])
    assert proc.stderr.strip().splitlines()[-1] == "surge: terminated"
    assert out.parent.is_dir() and list(out.parent.iterdir()) == []


@pytest.mark.parametrize("thread", [False, True])
def test_handle_sigterm_changes_nothing_outside_the_main_thread_or_over_a_handler(thread):
    import threading

    from surge.atomic import handle_sigterm

    seen = []

    def body():
        with handle_sigterm():
            seen.append(signal.getsignal(signal.SIGTERM))

    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        if thread:
            t = threading.Thread(target=body)
            t.start()
            t.join()
        else:
            body()
        assert seen == [signal.SIG_IGN] and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)
