"""`surge upscale` publishing, frames, folder walking, -s/--outscale, --quality, -o FILE, ONNX files."""

import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import surge
from cli_helpers import save_noise, upscale
from surge.cli.main import build_parser, main
from surge.imaging.bicubic import imresize
from surge.inference.image_io import quantise, read_frames, read_image


_save = partial(save_noise, h=6, w=8)
_up = upscale


def _lines(err: str, kind: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"surge: {kind}:")]


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# --- never replace an output that appeared meanwhile (no --overwrite) -----------------


def _output_appears_during_compute(monkeypatch, target):
    real = surge.upscale

    def upscale(array, **kwargs):
        result = real(array, **kwargs)
        if not target.exists():
            target.write_bytes(b"written by another run")
        return result

    monkeypatch.setattr(surge, "upscale", upscale)


def test_output_created_while_computing_survives_and_is_reported(tmp_path, capsys, monkeypatch):
    _save(tmp_path / "in" / "a.png")
    _save(tmp_path / "in" / "b.png", seed=1)
    target = tmp_path / "out" / "a_x4.png"
    _output_appears_during_compute(monkeypatch, target)
    assert _up(tmp_path / "in", "-o", tmp_path / "out") == 1
    assert target.read_bytes() == b"written by another run"
    errors = _lines(capsys.readouterr().err, "error")
    assert len(errors) == 1 and "a_x4.png" in errors[0] and "not replaced" in errors[0] and "--overwrite" in errors[0]
    assert Image.open(tmp_path / "out" / "b_x4.png").size == (32, 24)  # the rest of the batch goes on
    assert _files(tmp_path / "out") == ["a_x4.png", "b_x4.png"]  # no temp file left


def test_overwrite_replaces_an_output_that_appeared(tmp_path, monkeypatch):
    _save(tmp_path / "a.png")
    target = tmp_path / "out" / "a_x4.png"
    _output_appears_during_compute(monkeypatch, target)
    assert _up(tmp_path / "a.png", "-o", tmp_path / "out", "--overwrite") == 0
    assert Image.open(target).size == (32, 24)


# --- animated and multi-page files ---------------------------------------------------


def _animated(path, **save_args):
    arr = _save(path.with_name("frame.bmp"))
    path.with_name("frame.bmp").unlink()
    frames = [Image.fromarray(arr), Image.fromarray(255 - arr)]
    frames[0].save(path, save_all=True, append_images=frames[1:], **save_args)
    return arr


@pytest.mark.parametrize("mode", ["by name", "folder"])
def test_animated_gif_becomes_animated_png_and_multipage_tiff_its_first_page(tmp_path, capsys, mode):
    gif_first = _animated(tmp_path / "in" / "anim.gif")
    first = _animated(tmp_path / "in" / "pages.tif")
    inputs = [tmp_path / "in"] if mode == "folder" else [tmp_path / "in" / "anim.gif", tmp_path / "in" / "pages.tif"]
    assert _up(*inputs, "-o", tmp_path / "out", "--ext", "same") == 0
    assert _files(tmp_path / "out") == ["anim_x4.png", "pages_x4.tif"]  # GIF is read, never written
    warnings = _lines(capsys.readouterr().err, "warning")
    assert len(warnings) == 1 and "pages.tif: has 2 frames/pages; only the first was upscaled" in warnings[0]
    got, _ = read_image(tmp_path / "out" / "pages_x4.tif")
    assert np.array_equal(got, surge.upscale(first, model="bicubic", device="cpu"))
    frames, meta = read_frames(tmp_path / "out" / "anim_x4.png")  # every frame (tests/test_animation.py)
    assert len(frames) == meta.frames == 2
    assert np.array_equal(frames[0], surge.upscale(gif_first, model="bicubic", device="cpu"))


def test_still_image_has_no_frame_warning(tmp_path, capsys):
    _save(tmp_path / "a.png")
    assert _up(tmp_path / "a.png", "-o", tmp_path / "out") == 0
    assert _lines(capsys.readouterr().err, "warning") == []


# --- walking folders -----------------------------------------------------------------


def test_recursive_follows_symlinked_folders_once(tmp_path, capsys):
    _save(tmp_path / "elsewhere" / "linked.png")
    _save(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere" / "loop").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert _up(tmp_path / "in", "-o", tmp_path / "out", "--recursive") == 0
    assert _files(tmp_path / "out") == ["a_x4.png", "link/linked_x4.png"]
    notes = _lines(capsys.readouterr().err, "warning")
    assert len(notes) == 1 and "loop" in notes[0] and "walked once" in notes[0]


class _Listing:
    """What os.scandir returns (context manager + iterator), over entries in a chosen order."""

    def __init__(self, entries):
        self._entries = iter(entries)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._entries)


@pytest.mark.parametrize("order", ["names", "reversed names"])
def test_a_real_folder_keeps_its_own_name_whatever_the_listing_order(tmp_path, capsys, monkeypatch, order):
    # in/a is a real folder, in/b a link to it: the outputs of a's images belong in out/a,
    # whether the file system lists a or b first (os.walk follows its listing order).
    _save(tmp_path / "in" / "a" / "x.png")
    (tmp_path / "in" / "b").symlink_to(tmp_path / "in" / "a", target_is_directory=True)
    real = os.scandir

    def scandir(path="."):
        with real(path) as listing:
            entries = sorted(listing, key=lambda e: e.name, reverse=order == "reversed names")
        return _Listing(entries)

    monkeypatch.setattr(os, "scandir", scandir)
    assert _up(tmp_path / "in", "-o", tmp_path / "out", "--recursive") == 0
    assert _files(tmp_path / "out") == ["a/x_x4.png"]
    notes = _lines(capsys.readouterr().err, "warning")
    assert notes == [f"surge: warning: {tmp_path / 'in' / 'b'}: same folder as {tmp_path / 'in' / 'a'} (symbolic link), walked once"]


def test_unreadable_folder_is_an_error(tmp_path, capsys, monkeypatch):
    _save(tmp_path / "in" / "a.png")
    _save(tmp_path / "in" / "locked" / "b.png")
    locked = str(tmp_path / "in" / "locked")
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path) == locked:  # what a folder without read permission gives a non-root user
            raise PermissionError(13, "Permission denied", locked)
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert _up(tmp_path / "in", "-o", tmp_path / "out", "--recursive") == 1
    errors = _lines(capsys.readouterr().err, "error")
    assert errors == [f"surge: error: {locked}: cannot read folder (Permission denied)"]
    assert _files(tmp_path / "out") == ["a_x4.png"]


def test_an_unreadable_input_folder_is_one_error_line(tmp_path, capsys, monkeypatch):
    _save(tmp_path / "in" / "a.png")
    folder = str(tmp_path / "in")
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path) == folder:
            raise PermissionError(13, "Permission denied", folder)
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert _up(tmp_path / "in", "-o", tmp_path / "out") == 1
    # Not also "no image files found": the folder may well hold some.
    assert _lines(capsys.readouterr().err, "error") == [f"surge: error: {folder}: cannot read folder (Permission denied)"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder; see the simulated case")
def test_unreadable_folder_is_an_error_for_real(tmp_path, capsys):
    _save(tmp_path / "in" / "a.png")
    _save(tmp_path / "in" / "locked" / "b.png")
    (tmp_path / "in" / "locked").chmod(0)
    try:
        assert _up(tmp_path / "in", "-o", tmp_path / "out", "--recursive") == 1
    finally:
        (tmp_path / "in" / "locked").chmod(0o700)
    assert "locked: cannot read folder" in capsys.readouterr().err


# --- -s/--outscale, --quality, -o FILE ------------------------------------------------


def test_outscale_resizes_the_model_output_with_matlab_bicubic(tmp_path):
    arr = _save(tmp_path / "a.png", h=10, w=14)
    assert _up(tmp_path / "a.png", "-o", tmp_path / "out", "-s", "2") == 0
    got, _ = read_image(tmp_path / "out" / "a_x2.png")
    sr = surge.upscale(arr, model="bicubic", device="cpu").astype(np.float32) / 255
    planes = torch.from_numpy(np.moveaxis(sr, -1, 0))
    from surge.imaging.bicubic import imresize_torch

    expected = quantise(np.moveaxis(imresize_torch(planes, out_size=(20, 28)).numpy(), 0, -1), np.uint8)
    assert got.shape == (20, 28, 3) and np.array_equal(got, expected)
    # x4 bicubic then /2 is close to a direct x2 bicubic: the content is the image, not noise.
    assert np.abs(got.astype(int) - imresize(arr, 2.0).astype(int)).mean() < 3


def test_outscale_4_is_the_plain_model_output_and_odd_scales_round(tmp_path):
    _save(tmp_path / "a.png", h=10, w=14)
    assert _up(tmp_path / "a.png", "-o", tmp_path / "plain") == 0
    assert _up(tmp_path / "a.png", "-o", tmp_path / "s4", "-s", "4") == 0
    assert (tmp_path / "plain" / "a_x4.png").read_bytes() == (tmp_path / "s4" / "a_x4.png").read_bytes()
    assert _up(tmp_path / "a.png", "-o", tmp_path / "s15", "--outscale", "1.5") == 0
    assert Image.open(tmp_path / "s15" / "a_x1.5.png").size == (21, 15)


@pytest.mark.parametrize("option", [["-s", "0"], ["-s", "-2"], ["-s", "two"], ["--quality", "0"], ["--quality", "101"]])
def test_bad_outscale_or_quality_is_a_usage_error(tmp_path, capsys, option):
    with pytest.raises(SystemExit) as exc:
        main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), *option])
    assert exc.value.code == 2


def test_quality_reaches_jpeg_and_webp(tmp_path):
    _save(tmp_path / "a.png", h=16, w=16)
    sizes = {}
    for quality in ("10", "100"):
        assert _up(tmp_path / "a.png", "-o", tmp_path / quality, "--ext", "jpg", "--quality", quality) == 0
        assert _up(tmp_path / "a.png", "-o", tmp_path / quality, "--ext", "webp", "--quality", quality) == 0
        sizes[quality] = [(tmp_path / quality / f"a_x4.{ext}").stat().st_size for ext in ("jpg", "webp")]
    assert all(lo < hi for lo, hi in zip(sizes["10"], sizes["100"]))


def test_output_file_for_a_single_input(tmp_path):
    arr = _save(tmp_path / "a.png")
    assert _up(tmp_path / "a.png", "-o", tmp_path / "result" / "big.jpg", "--quality", "100") == 0
    assert _files(tmp_path / "result") == ["big.jpg"]
    with Image.open(tmp_path / "result" / "big.jpg") as out:
        assert out.format == "JPEG" and out.size == (32, 24)
    expected = surge.upscale(arr, model="bicubic", device="cpu").astype(int)
    assert np.abs(np.asarray(Image.open(tmp_path / "result" / "big.jpg")).astype(int) - expected).mean() < 3


@pytest.mark.parametrize("inputs", ["two files", "a folder"])
def test_output_file_with_several_inputs_is_a_clear_error(tmp_path, capsys, inputs):
    _save(tmp_path / "in" / "a.png")
    _save(tmp_path / "in" / "b.png")
    given = [tmp_path / "in" / "a.png", tmp_path / "in" / "b.png"] if inputs == "two files" else [tmp_path / "in"]
    assert _up(*given, "-o", tmp_path / "out.png") == 2
    errors = _lines(capsys.readouterr().err, "error")
    assert len(errors) == 1 and "out.png: -o names a file" in errors[0]
    assert not (tmp_path / "out.png").exists()


def test_output_file_refuses_its_own_input_and_unknown_formats(tmp_path, capsys):
    _save(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    assert _up(tmp_path / "a.png", "-o", tmp_path / "a.png", "--overwrite") == 1
    assert (tmp_path / "a.png").read_bytes() == before
    assert _up(tmp_path / "a.png", "-o", tmp_path / "a.gif") == 2
    assert "unsupported output extension" in capsys.readouterr().err


# --- TIFF and float input through the CLI ---------------------------------------------


def test_tiff_in_tiff_out_is_valid_16bit(tmp_path):
    grey = (np.random.default_rng(0).random((6, 8)) * 65535).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "g.tif")
    assert _up(tmp_path / "g.tif", "-o", tmp_path / "out", "--ext", "same") == 0
    with Image.open(tmp_path / "out" / "g_x4.tif") as out:
        assert out.size == (32, 24) and out.mode.startswith("I;16")
        assert np.array_equal(np.asarray(out), surge.upscale(grey, model="bicubic", device="cpu"))


def test_float_tiff_with_nan_is_one_error_line(tmp_path, capsys):
    values = np.random.default_rng(0).random((6, 8)).astype(np.float32)
    values[1, 1] = np.nan
    Image.fromarray(values).save(tmp_path / "nan.tif")
    _save(tmp_path / "ok.png")
    assert _up(tmp_path / "nan.tif", tmp_path / "ok.png", "-o", tmp_path / "out") == 1
    errors = _lines(capsys.readouterr().err, "error")
    assert len(errors) == 1 and "nan.tif" in errors[0] and "NaN" in errors[0]
    assert _files(tmp_path / "out") == ["ok_x4.png"]


# --- ONNX files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from surge.inference.onnx_backend import export_onnx
    from surge.inference.optimize import optimize_for_inference
    from surge.models.config import GENERATOR_PRESETS
    from surge.models.generator import SuRGeGenerator

    torch.manual_seed(0)
    network, _ = optimize_for_inference(SuRGeGenerator(GENERATOR_PRESETS["surge-tiny"]).eval())
    return export_onnx(network, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def _direct(path, arr: np.ndarray) -> np.ndarray:
    """The graph run once on the whole image, quantised: the reference for tiled runs."""
    from surge.inference.onnx_backend import OnnxSession

    x = torch.from_numpy(np.moveaxis(arr.astype(np.float32) / 255, -1, 0)[None].copy())
    return quantise(np.moveaxis(OnnxSession(path)(x)[0].numpy(), 0, -1), np.uint8)


def test_onnx_file_runs_tiled_with_its_recorded_radius(tmp_path, onnx_file):
    arr = _save(tmp_path / "a.png", h=11, w=13)
    assert _up(tmp_path / "a.png", "-o", tmp_path / "out", "--backend", "onnxruntime", "--tile", "4", model=onnx_file) == 0
    got, _ = read_image(tmp_path / "out" / "a_x4.png")
    assert np.abs(got.astype(int) - _direct(onnx_file, arr)).max() <= 1
    # The backend follows from the file when not given.
    assert _up(tmp_path / "a.png", "-o", tmp_path / "auto", model=onnx_file) == 0
    assert np.abs(read_image(tmp_path / "auto" / "a_x4.png")[0].astype(int) - got).max() <= 1


@pytest.mark.parametrize("option, message", [(["--backend", "torch"], "runs with --backend onnxruntime"),
                                             (["--precision", "bf16"], "fp32 only")])
def test_onnx_file_with_torch_backend_or_bf16_is_refused(tmp_path, capsys, onnx_file, option, message):
    _save(tmp_path / "a.png")
    assert _up(tmp_path / "a.png", "-o", tmp_path / "out", *option, model=onnx_file) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "a_x4.png").exists()


def test_foreign_onnx_file_without_metadata(tmp_path, capsys, onnx_file):
    import onnx

    graph = onnx.load(onnx_file)
    del graph.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(graph, foreign)
    arr = _save(tmp_path / "a.png", h=9, w=10)
    assert _up(tmp_path / "a.png", "-o", tmp_path / "out", "--tile", "4", model=foreign) == 2
    assert "pass --overlap N" in capsys.readouterr().err
    assert _up(tmp_path / "a.png", "-o", tmp_path / "out", "--tile", "0", model=foreign) == 0  # scale measured
    assert np.abs(read_image(tmp_path / "out" / "a_x4.png")[0].astype(int) - _direct(foreign, arr)).max() <= 1


# --- README examples ---------------------------------------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_commands(program: str) -> list[list[str]]:
    """The words of each ``surge PROGRAM`` line in the README's shell blocks."""
    commands, fence = [], None
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            fence = None if fence is not None else line[3:].strip()
        elif fence in ("", "sh", "bash"):
            words = line.split("#")[0].split()
            if words[:2] == ["surge", program]:
                commands.append(words)
    return commands


def test_readme_upscale_examples_are_valid_and_do_not_collide():
    commands = _readme_commands("upscale")
    assert len(commands) >= 3
    outputs = [words[words.index("-o") + 1].rstrip("/") for words in commands]
    assert len(set(outputs)) == len(outputs), outputs  # running them in turn must not skip or clash
    parser = build_parser(["upscale"])
    for words in commands:
        parser.parse_args(words[1:])  # every option shown exists (SystemExit otherwise)


def test_readme_tells_how_to_run_surge_after_make_demo_and_compare_writes_a_fresh_folder():
    setup = README.read_text().split("## Models")[0]
    assert ". .venv/bin/activate" in setup and ".venv/bin/surge" in setup
    (compare,) = _readme_commands("compare")
    out = compare[compare.index("--out") + 1]
    assert not out.startswith("docs"), out  # a tracked folder would be overwritten by a reader's run


# --- reading ahead and writing behind the model ------------------------------------------


def _mixed_folder(folder):
    _save(folder / "a.png", h=10, w=12, seed=1)
    _save(folder / "b.jpg", h=8, w=8, seed=2, quality=60)
    (folder / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken" * 10)  # fails to read, mid-batch
    _animated(folder / "d.gif")
    _save(folder / "e.webp", h=6, w=14, seed=3)


@pytest.mark.parametrize("threads", ["2", "4"])
def test_io_threads_give_the_same_files_and_report_as_one_after_another(tmp_path, capsys, threads):
    _mixed_folder(tmp_path / "in")
    assert _up(tmp_path / "in", "-o", tmp_path / "seq", "--io-threads", "0") == 1
    seq_err = capsys.readouterr().err
    assert _up(tmp_path / "in", "-o", tmp_path / "par", "--io-threads", threads) == 1
    par_err = capsys.readouterr().err
    assert _files(tmp_path / "seq") == _files(tmp_path / "par") == ["a_x4.png", "b_x4.png", "d_x4.png", "e_x4.png"]
    for name in _files(tmp_path / "seq"):
        assert (tmp_path / "seq" / name).read_bytes() == (tmp_path / "par" / name).read_bytes(), name
    assert _lines(seq_err, "error") == _lines(par_err, "error") and len(_lines(par_err, "error")) == 1
    assert "c.png" in _lines(par_err, "error")[0]


def _watch_writes(monkeypatch, delay):
    """Slow writes down and record how many were unfinished each time a computation started."""
    import threading
    import time

    from surge.cli import upscale_cmd

    lock, unfinished, seen = threading.Lock(), [0], []
    real_write, real_compute = upscale_cmd._write_job, upscale_cmd._compute

    def slow_write(*args):
        with lock:
            unfinished[0] += 1
        time.sleep(delay)
        try:
            return real_write(*args)
        finally:
            with lock:
                unfinished[0] -= 1

    def compute(*args, **kwargs):
        with lock:
            seen.append(unfinished[0])
        return real_compute(*args, **kwargs)

    monkeypatch.setattr(upscale_cmd, "_write_job", slow_write)
    monkeypatch.setattr(upscale_cmd, "_compute", compute)
    return seen


def test_writes_overlap_computation_but_stay_bounded(tmp_path, monkeypatch):
    for i in range(6):
        _save(tmp_path / "in" / f"{i}.png", seed=i)
    seen = _watch_writes(monkeypatch, delay=0.3)
    assert _up(tmp_path / "in", "-o", tmp_path / "out", "--io-threads", "2") == 0
    assert len(_files(tmp_path / "out")) == 6
    assert max(seen) == 2  # the model went on while two outputs were being written, never more


def test_outputs_over_the_byte_bound_are_written_before_the_next_file(tmp_path, monkeypatch):
    from surge.cli import upscale_cmd

    for i in range(3):
        _save(tmp_path / "in" / f"{i}.png", seed=i)
    monkeypatch.setattr(upscale_cmd, "PENDING_OUTPUT_BYTES", 1)
    seen = _watch_writes(monkeypatch, delay=0.1)
    assert _up(tmp_path / "in", "-o", tmp_path / "out", "--io-threads", "2") == 0
    assert seen == [0, 0, 0] and len(_files(tmp_path / "out")) == 3


def test_interrupt_finishes_the_writes_under_way_and_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    from surge.cli import upscale_cmd

    for i in range(3):
        _save(tmp_path / "in" / f"{i}.png", seed=i)
    _watch_writes(monkeypatch, delay=0.3)
    calls = []
    real_compute = upscale_cmd._compute

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_compute(*args, **kwargs)

    monkeypatch.setattr(upscale_cmd, "_compute", interrupted)
    assert _up(tmp_path / "in", "-o", tmp_path / "out", "--io-threads", "2") == 130
    assert _files(tmp_path / "out") == ["0_x4.png"]  # the first output, written whole; no temp files
    assert read_image(tmp_path / "out" / "0_x4.png")[0].shape == (24, 32, 3)


def test_outputs_name_the_model_that_made_them(tmp_path):
    from PIL import ExifTags

    exif = Image.Exif()
    exif[ExifTags.Base.Software] = "camera firmware 1.0"
    exif[ExifTags.Base.Make] = "surge-test"
    _save(tmp_path / "in" / "a.jpg", quality=95, exif=exif)
    _save(tmp_path / "in" / "b.png")
    for ext in ("png", "jpg", "webp", "tif"):
        assert _up(tmp_path / "in", "-o", tmp_path / ext, "--ext", ext) == 0
        for name in ("a", "b"):
            with Image.open(tmp_path / ext / f"{name}_x4.{ext}") as out:
                tags = out.getexif()
                assert tags[ExifTags.Base.Software] == f"surge {surge.__version__} (bicubic)", (ext, name)
                assert tags.get(ExifTags.Base.Make) == ("surge-test" if name == "a" else None)
                if ext == "png":
                    assert out.info["Software"] == f"surge {surge.__version__} (bicubic)"


# --- stdin and stdout ------------------------------------------------------------------


def _piped(*args, stdin=b""):
    cmd = [sys.executable, "-m", "surge.cli.main", "upscale", *map(str, args), "--model", "bicubic", "--device", "cpu"]
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=120)


def test_stdin_to_stdout_gives_the_file_to_file_bytes(tmp_path):
    _save(tmp_path / "a.jpg", h=10, w=12, quality=90)
    assert _up(tmp_path / "a.jpg", "-o", tmp_path / "a_x4.png") == 0
    run = _piped("-", "-o", "-", stdin=(tmp_path / "a.jpg").read_bytes())
    assert run.returncode == 0, run.stderr
    assert run.stdout == (tmp_path / "a_x4.png").read_bytes()
    assert run.stderr.decode().strip() == "surge: 1 upscaled, 0 skipped, 0 failed -> <stdout>"
    # One file to stdout in another format, and stdin into a folder.
    run = _piped(tmp_path / "a.jpg", "-o", "-", "--ext", "webp")
    assert run.returncode == 0 and run.stdout[8:12] == b"WEBP"
    run = _piped("-", "-o", tmp_path / "out", stdin=(tmp_path / "a.jpg").read_bytes())
    assert run.returncode == 0 and _files(tmp_path / "out") == ["stdin_x4.png"]


def test_bad_stdin_and_bad_combinations_are_one_line_errors_with_nothing_on_stdout(tmp_path):
    run = _piped("-", "-o", "-", stdin=b"not an image")
    assert run.returncode == 1 and run.stdout == b""
    assert "surge: error: <stdin>: not a recognised image file" in run.stderr.decode()
    _save(tmp_path / "a.png")
    run = _piped("-", tmp_path / "a.png", "-o", tmp_path / "out")
    assert run.returncode == 2 and b"stdin is read as the only input" in run.stderr
    run = _piped(tmp_path / "a.png", tmp_path / "a.png", "-o", "-")
    assert run.returncode == 2 and b"stdout takes exactly one image" in run.stderr and run.stdout == b""


def test_a_terminal_on_stdin_is_refused_instead_of_waiting(tmp_path):
    import pty

    master, slave = pty.openpty()
    try:
        cmd = [sys.executable, "-m", "surge.cli.main", "upscale", "-", "-o", str(tmp_path / "out"), "--model", "bicubic"]
        run = subprocess.run(cmd, stdin=slave, capture_output=True, timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert run.returncode == 2 and b"-: stdin is a terminal" in run.stderr
