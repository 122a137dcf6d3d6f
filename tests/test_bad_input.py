"""`surge upscale` on bad input: one clear line naming the file, non-zero exit, nothing lost.

Every case checks the same four things: the exit code, a single error line that names
the offending file, the input's bytes unchanged, and no partial or temporary output.
"""

import os

import numpy as np
import pytest
from PIL import Image

from surge.cli.main import main


def _png(path, h=16, w=16, seed=0):
    arr = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _truncated(path, fmt):
    full = path.with_name("full." + fmt.lower())
    Image.fromarray((np.random.default_rng(1).random((48, 48, 3)) * 255).astype(np.uint8)).save(full, format=fmt)
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: len(data) // 2])
    return path


def _run(*args):
    return main(["upscale", *map(str, args), "--model", "bicubic", "--device", "cpu", "--quiet"])


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("surge: error:")]


def _leftovers(folder):
    """Files in the output folder (temp files included, they are hidden dot-files)."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _make_empty(path):
    path.write_bytes(b"")
    return path


def _make_text(path):
    path.write_text("this is not an image\n")
    return path


CASES = {
    "empty.png": (_make_empty, "empty file (0 bytes)"),
    "cut.png": (lambda p: _truncated(p, "PNG"), "truncated or corrupt"),
    "cut.jpg": (lambda p: _truncated(p, "JPEG"), "truncated or corrupt"),
    "text.png": (_make_text, "not a recognised image file"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_unreadable_input(tmp_path, capsys, name):
    make, reason = CASES[name]
    bad = make(tmp_path / name)
    before = bad.read_bytes()
    out = tmp_path / "out"
    assert _run(bad, "-o", out) == 1
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"{bad}: {reason}" in line
    assert bad.read_bytes() == before
    assert _leftovers(out) == []


def test_image_over_max_pixels(tmp_path, capsys):
    big = _png(tmp_path / "big.png", h=20, w=30)
    before = big.read_bytes()
    assert _run(big, "-o", tmp_path / "out", "--max-pixels", "599") == 1
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"{big}: 30x20 = 600 pixels exceeds the limit of 599" in line
    assert big.read_bytes() == before and _leftovers(tmp_path / "out") == []
    assert _run(big, "-o", tmp_path / "out", "--max-pixels", "600") == 0


def test_folder_with_one_bad_file(tmp_path, capsys):
    src = tmp_path / "in"
    _png(src / "a.png")
    _png(src / "c.png", seed=2)
    _truncated(src / "b.png", "PNG")
    assert _run(src, "-o", tmp_path / "out") == 1
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"{src / 'b.png'}: truncated or corrupt" in line
    assert _leftovers(tmp_path / "out") == ["a_x4.png", "c_x4.png"]


def test_output_equal_to_input_refused_even_with_overwrite(tmp_path, capsys):
    src = _png(tmp_path / "a.png")
    before = src.read_bytes()
    assert _run(src, "-o", tmp_path, "--suffix", "", "--overwrite") == 1
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"{src}: output {src} would overwrite input" in line
    assert src.read_bytes() == before
    assert _leftovers(tmp_path) == ["a.png"]


def test_output_equal_to_other_input_refused(tmp_path, capsys):
    """a.png -> a_x4.png would replace the input a_x4.png given in the same run."""
    a, a_x4 = _png(tmp_path / "a.png"), _png(tmp_path / "a_x4.png", seed=3)
    before = a_x4.read_bytes()
    assert _run(a, a_x4, "-o", tmp_path, "--overwrite") == 1
    assert "would overwrite input" in capsys.readouterr().err
    assert a_x4.read_bytes() == before


def test_output_folder_under_a_regular_file(tmp_path, capsys):
    src = _png(tmp_path / "a.png")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    assert _run(src, "-o", blocker / "out") == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"{blocker / 'out'}: cannot create output folder" in line
    assert blocker.read_text() == "a file, not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a 0o500 folder; covered by the regular-file case")
def test_read_only_output_folder(tmp_path, capsys):
    src = _png(tmp_path / "a.png")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert _run(src, "-o", out) == 2
        (line,) = _error_lines(capsys.readouterr().err)
        assert f"{out}: output folder is not writable" in line
        assert _leftovers(out) == []
    finally:
        out.chmod(0o700)


def test_missing_input(tmp_path, capsys):
    good = _png(tmp_path / "a.png")
    assert _run(tmp_path / "nope.png", good, "-o", tmp_path / "out") == 1
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"{tmp_path / 'nope.png'}: no such file or folder" in line
    assert _leftovers(tmp_path / "out") == ["a_x4.png"]


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _run(tmp_path / "empty", "-o", tmp_path / "out") == 1
    assert f"{tmp_path / 'empty'}: no image files found" in capsys.readouterr().err


def test_permission_denied_output_folder_simulated(tmp_path, capsys, monkeypatch):
    """The EACCES path of the read-only case, also when tests run as root."""
    from surge.inference.image_io import writing

    def deny(path, mode="r", *args, **kwargs):
        if "x" in mode:
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(writing, "open", deny, raising=False)
    src = _png(tmp_path / "a.png")
    before = src.read_bytes()
    assert _run(src, "-o", tmp_path / "out") == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"{tmp_path / 'out'}: output folder is not writable (Permission denied)" in line
    assert src.read_bytes() == before and _leftovers(tmp_path / "out") == []
