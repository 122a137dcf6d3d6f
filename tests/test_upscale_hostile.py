"""`surge upscale` under hostile input (issue 22): each case here failed on main at faaa395."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import zlib
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import surge
from cli_helpers import save_noise, upscale
from surge.cli.main import main

SRC = Path(surge.__file__).resolve().parents[1]  # the sources under test, for child processes
ENV = {**os.environ, "PYTHONPATH": str(SRC)}


_save = partial(save_noise, h=12, w=16)
_up = upscale


def _cmd(*args) -> list[str]:
    return [sys.executable, "-m", "surge.cli.main", "upscale", *map(str, args), "--model", "bicubic", "--device", "cpu"]


def _shell(script: str, *args, stdin=b"", stdout=subprocess.PIPE):
    """Run the upscale command under bash with ``script`` around it ("$@" is the command)."""
    return subprocess.run(["bash", "-c", script, "_", *_cmd(*args)], input=stdin, stdout=stdout,
                          stderr=subprocess.PIPE, timeout=120, env=ENV)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# --- 1. closed stdin / stdout ---------------------------------------------------------------


def test_closed_stdout_or_stdin_is_a_one_line_error(tmp_path):
    _save(tmp_path / "a.png")
    run = _shell('exec "$@" >&-', tmp_path / "a.png", "-o", "-")
    err = run.stderr.decode()
    assert run.returncode == 2 and "Traceback" not in err and err.strip() == "surge: error: -o -: stdout is closed", err
    run = _shell('exec "$@" <&-', "-", "-o", tmp_path / "out")
    err = run.stderr.decode()
    assert run.returncode == 2 and "Traceback" not in err and err.strip() == "surge: error: -: stdin is closed", err


# --- 2. success only once the bytes are written ---------------------------------------------


def test_a_full_device_on_stdout_is_a_failure_not_a_success(tmp_path):
    _save(tmp_path / "a.png")
    with open("/dev/full", "wb") as full:
        run = _shell('exec "$@"', tmp_path / "a.png", "-o", "-", stdout=full)
    err = run.stderr.decode()
    assert run.returncode == 1 and "Traceback" not in err, err
    assert "surge: error: <stdout>: cannot write (No space left on device)" in err
    assert err.strip().splitlines()[-1] == "surge: 0 upscaled, 0 skipped, 1 failed -> <stdout>"


def test_a_closed_pipe_on_stdout_is_a_failure_not_a_success(tmp_path):
    _save(tmp_path / "a.png")
    run = _shell('exec "$@" | true', tmp_path / "a.png", "-o", "-")  # the reader exits at once
    err = run.stderr.decode()
    assert "0 failed" not in err and "Traceback" not in err, err


# --- 5. suffixes cannot leave -o --------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["/../../../escaped", "../x", "a/b", "..", "x\\..\\y"])
def test_suffixes_with_separators_or_dotdot_are_refused(tmp_path, capsys, suffix):
    _save(tmp_path / "in" / "a.png")
    assert _up(tmp_path / "in", "-o", tmp_path / "deep" / "er" / "out", "--suffix", suffix) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--suffix" in err
    assert _files(tmp_path) == ["in/a.png"]


# --- 6. -o as a file or a folder --------------------------------------------------------------


def test_trailing_slash_makes_o_a_folder_and_unknown_extensions_are_refused(tmp_path, capsys):
    _save(tmp_path / "a.png")
    assert _up(tmp_path / "a.png", "-o", f"{tmp_path / 'of' / 'slash.png'}/") == 0
    assert _files(tmp_path / "of") == ["slash.png/a_x4.png"]
    assert _up(tmp_path / "a.png", "-o", tmp_path / "of" / "a.xyz") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a.xyz" in err and ".xyz" in err and "/" in err
    assert not (tmp_path / "of" / "a.xyz").exists()
    # An existing folder with a dot in its name is still a folder.
    (tmp_path / "out.v2").mkdir()
    assert _up(tmp_path / "a.png", "-o", tmp_path / "out.v2") == 0
    assert _files(tmp_path / "out.v2") == ["a_x4.png"]


# --- 7. output folder equal to or inside the input folder -------------------------------------


def test_output_folder_over_the_input_folder_says_why_nothing_was_found(tmp_path, capsys):
    _save(tmp_path / "in" / "a.png")
    assert _up(tmp_path / "in", "-o", tmp_path / "in") == 1
    err = capsys.readouterr().err
    assert "no image files found" not in err or "output folder" in err
    assert "output folder" in err and str(tmp_path / "in") in err
    _save(tmp_path / "top" / "sub" / "b.png")
    assert _up(tmp_path / "top" / "sub", "-o", tmp_path / "top", "--recursive") == 1
    assert "output folder" in capsys.readouterr().err


# --- 8. --ext same on stdin -------------------------------------------------------------------


def test_ext_same_on_stdin_uses_the_detected_format(tmp_path):
    _save(tmp_path / "a.jpg", quality=90)
    run = _shell('exec "$@"', "-", "-o", "-", "--ext", "same", stdin=(tmp_path / "a.jpg").read_bytes())
    assert run.returncode == 0, run.stderr
    assert run.stdout[:3] == b"\xff\xd8\xff"  # a JPEG, like the input
    run = _shell('exec "$@"', "-", "-o", tmp_path / "out", "--ext", "same", stdin=(tmp_path / "a.jpg").read_bytes())
    assert run.returncode == 0 and _files(tmp_path / "out") == ["stdin_x4.jpg"]


# --- 9 and 12. outputs and memory are bounded too; checked from the header --------------------


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG that declares ``width`` x ``height`` 8-bit RGB (its data is one zlib'd row)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def test_a_declared_size_bomb_is_refused_before_decoding(tmp_path, capsys):
    bomb = _png_header_only(tmp_path / "bomb.png", 9000, 9000)
    assert bomb.stat().st_size < 200
    assert _up(bomb, "-o", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "bomb.png: the output would be 36000x36000 = 1,296,000,000 pixels" in err and "--max-output-pixels" in err
    assert not (tmp_path / "out").exists() or _files(tmp_path / "out") == []


def test_outscale_cannot_make_an_output_over_the_limit(tmp_path, capsys):
    _save(tmp_path / "a.png", h=12, w=16)
    assert _up(tmp_path / "a.png", "-o", tmp_path / "out", "-s", "1000") == 1
    err = capsys.readouterr().err
    assert "16000x12000 = 192,000,000 pixels, over the limit of 178,956,970" in err
    assert _up(tmp_path / "a.png", "-o", tmp_path / "out", "-s", "10", "--max-output-pixels", "19199") == 1
    assert "over the limit of 19,199" in capsys.readouterr().err
    assert _up(tmp_path / "a.png", "-o", tmp_path / "out", "-s", "10", "--max-output-pixels", "19200") == 0
    assert _up(tmp_path / "a.png", "-o", tmp_path / "mem", "--max-memory", "1K") == 1
    assert "--max-memory" in capsys.readouterr().err


# --- 10. SIGTERM and stale temp files ----------------------------------------------------------


@pytest.mark.parametrize("threads", ["0", "2"])
def test_sigterm_while_writing_an_image_leaves_no_temp_file(tmp_path, threads):
    _save(tmp_path / "a.png")
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        import surge.atomic as atomic
        real = atomic.publish

        def publish(tmp, path, replace=True):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(3)
            real(tmp, path, replace)

        atomic.publish = publish
        from surge.cli.main import main
        sys.exit(main(["upscale", {str(tmp_path / "a.png")!r}, "-o", {str(out)!r}, "--model", "bicubic",
                       "--io-threads", {threads!r}, "-q"]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, proc.stderr[-2000:])
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []


def test_a_later_run_sweeps_stale_temp_files_of_dead_runs_only(tmp_path):
    from surge.atomic import HOST_TAG

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".a_x4.png.{dead.pid}-{HOST_TAG}.0badf00d.tmp"
    live = out / f".a_x4.png.{os.getppid()}-{HOST_TAG}.0badf00d.tmp"
    users = out / ".a_x4.png.tmp"
    for path in (stale, live, users):
        path.write_bytes(b"partial")
    _save(tmp_path / "a.png")
    assert _up(tmp_path / "a.png", "-o", out) == 0
    assert not stale.exists() and live.exists() and users.exists() and (out / "a_x4.png").is_file()


# --- 13. names are escaped in every message -----------------------------------------------------


def test_control_characters_in_names_are_escaped(tmp_path, capsys):
    evil = tmp_path / "in" / "x\x1b[2J\nsurge: 9 upscaled, 0 skipped, 0 failed.png"
    evil.parent.mkdir()
    evil.write_bytes(b"not an image")
    assert main(["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "o\x1b[31m"), "--model", "bicubic"]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b[2J\\nsurge: 9 upscaled" in err
    assert [line for line in err.splitlines() if line.startswith("surge: 9")] == []
    assert err.strip().splitlines()[-1].startswith("surge: 0 upscaled, 0 skipped, 1 failed -> ") and "\\x1b[31m" in err


# --- unclear messages ------------------------------------------------------------------------------


@pytest.mark.parametrize("option,expected", [("--quality", "expected an integer from 1 to 100"),
                                             ("--batch-size", "expected an integer >= 1"),
                                             ("--max-pixels", "expected an integer >= 1")])
def test_zero_and_negative_get_the_same_bound(tmp_path, capsys, option, expected):
    _save(tmp_path / "a.png")
    for value in ("0", "-5"):
        with pytest.raises(SystemExit):
            main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), f"{option}={value}"])
        err = capsys.readouterr().err
        assert f"{expected}, got {value}" in err, err


def test_a_clash_under_ext_same_does_not_advise_ext_same(tmp_path, capsys):
    frames = [Image.new("RGB", (8, 6), c) for c in ("red", "blue")]
    (tmp_path / "in").mkdir()
    frames[0].save(tmp_path / "in" / "a.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    _save(tmp_path / "in" / "a.png", h=6, w=8)
    assert _up(tmp_path / "in", "-o", tmp_path / "out", "--ext", "same") == 1
    err = capsys.readouterr().err
    clash = [line for line in err.splitlines() if "also the output of" in line]
    assert len(clash) == 1 and "--ext same" not in clash[0] and "--suffix" in clash[0]


def test_an_rgb_float32_tiff_is_read(tmp_path):
    import tifffile

    rgb = np.random.default_rng(0).random((6, 8, 3)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", rgb, photometric="rgb")
    assert _up(tmp_path / "f.tif", "-o", tmp_path / "out") == 0
    assert _files(tmp_path / "out") == ["f_x4.png"]
    with Image.open(tmp_path / "out" / "f_x4.png") as img:
        assert img.size == (32, 24)


def test_tiny_tiles_are_raised_to_the_floor_with_a_warning(tmp_path, capsys):
    _save(tmp_path / "a.png")
    assert _up(tmp_path / "a.png", "-o", tmp_path / "out", "--tile", "5") == 0
    err = capsys.readouterr().err
    assert "surge: warning: --tile 5" in err and "32" in err
