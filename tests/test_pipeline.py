"""The library path every front-end shares: surge.inference.pipeline (Upscaler, plan_jobs)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import surge
from surge.errors import SurgeError
from surge.inference.image_io import read_image
from surge.inference.pipeline import FileResult, Job, UpscaleOptions, Upscaler, plan_jobs, resize

BICUBIC = UpscaleOptions(model="bicubic", device="cpu")


def _save(path, h=6, w=8, seed=0, **save_args):
    arr = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **save_args)
    return arr


def _smooth(h=16, w=16, seed=0):
    """A photo-like image (JPEG quality estimation needs real DCT content, not noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(3 * x + 1), np.cos(2 * y), x * y], axis=-1)
    return Image.fromarray(((base * 0.4 + 0.5 + rng.normal(0, 0.03, base.shape)).clip(0, 1) * 255).astype(np.uint8))


# --- process_file ---------------------------------------------------------------------


def test_process_file_writes_the_upscaled_image_with_its_model_name(tmp_path):
    arr = _save(tmp_path / "a.png")
    result = Upscaler(BICUBIC).process_file(tmp_path / "a.png", tmp_path / "out" / "a_x4.png")
    assert isinstance(result, FileResult)
    assert (result.status, result.error, result.model, result.warnings) == ("done", None, "bicubic", [])
    assert result.source == tmp_path / "a.png" and result.target == tmp_path / "out" / "a_x4.png"
    assert result.seconds > 0
    expected = surge.upscale(arr, model="bicubic")
    assert np.array_equal(read_image(result.target)[0], expected)
    assert Image.open(result.target).info["Software"] == f"surge {surge.__version__} (bicubic)"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_x4.png"]  # no temp file left


def test_a_broken_file_fails_with_one_line_naming_it_and_leaves_nothing(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "out").mkdir()
    result = Upscaler(BICUBIC).process_file(tmp_path / "bad.png", tmp_path / "out" / "bad_x4.png")
    assert result.status == "failed" and result.model is None
    assert str(tmp_path / "bad.png") in result.error and "\n" not in result.error
    assert list((tmp_path / "out").iterdir()) == []


def test_an_existing_target_is_skipped_unless_overwrite(tmp_path):
    _save(tmp_path / "a.png")
    target = tmp_path / "a_x4.png"
    target.write_bytes(b"keep me")
    result = Upscaler(BICUBIC).process_file(tmp_path / "a.png", target)
    assert result.status == "skipped" and "exists" in result.error
    assert target.read_bytes() == b"keep me"
    replaced = Upscaler(UpscaleOptions(model="bicubic", device="cpu", overwrite=True)).process_file(tmp_path / "a.png", target)
    assert replaced.status == "done" and Image.open(target).size == (32, 24)


def test_the_input_is_never_the_output_even_with_overwrite(tmp_path):
    _save(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    result = Upscaler(UpscaleOptions(model="bicubic", overwrite=True)).process_file(tmp_path / "a.png", tmp_path / "a.png")
    assert result.status == "failed" and "would overwrite the input" in result.error
    assert (tmp_path / "a.png").read_bytes() == before


def test_an_output_that_appears_while_computing_is_not_replaced(tmp_path, monkeypatch):
    _save(tmp_path / "a.png")
    target = tmp_path / "a_x4.png"
    real = surge.upscale

    def upscale(array, **kwargs):
        result = real(array, **kwargs)
        target.write_bytes(b"written by another run")
        return result

    monkeypatch.setattr(surge, "upscale", upscale)
    result = Upscaler(BICUBIC).process_file(tmp_path / "a.png", target)
    assert result.status == "failed" and "not replaced" in result.error
    assert target.read_bytes() == b"written by another run"


def test_outscale_and_dropped_frames_are_reported(tmp_path):
    frames = [Image.fromarray(np.full((6, 8, 3), v, np.uint8)) for v in (0, 128, 255)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    upscaler = Upscaler(UpscaleOptions(model="bicubic", outscale=2))
    result = upscaler.process_file(tmp_path / "anim.gif", tmp_path / "anim.jpg")
    assert result.status == "done" and Image.open(tmp_path / "anim.jpg").size == (16, 12)
    (warning,) = result.warnings
    assert "anim.gif: has 3 frames/pages; only the first was upscaled" in warning
    animated = upscaler.process_file(tmp_path / "anim.gif", tmp_path / "anim.png")
    assert animated.status == "done" and animated.warnings == []
    assert getattr(Image.open(tmp_path / "anim.png"), "n_frames", 1) == 3


# --- per-file model choice --------------------------------------------------------------


def test_a_compressed_jpeg_goes_to_the_real_world_counterpart_a_png_does_not(tmp_path):
    _smooth().save(tmp_path / "web.jpg", quality=60)
    Image.open(tmp_path / "web.jpg").save(tmp_path / "shot.png")  # the same pixels, no JPEG tables
    upscaler = Upscaler(UpscaleOptions(model="surge-x4-psnr", real_for_jpeg=True, device="cpu", precision="fp32"))
    assert upscaler.for_jpeg_name == "surge-x4-real-psnr"
    jpeg = upscaler.process_file(tmp_path / "web.jpg", tmp_path / "out" / "web.png")
    png = upscaler.process_file(tmp_path / "shot.png", tmp_path / "out" / "shot.png")
    assert (jpeg.status, jpeg.model, jpeg.jpeg_quality) == ("done", "surge-x4-real-psnr", 60)
    assert (png.status, png.model, png.jpeg_quality) == ("done", "surge-x4-psnr", None)
    assert Image.open(jpeg.target).info["Software"] == f"surge {surge.__version__} (surge-x4-real-psnr)"
    counterpart = surge.load_model("surge-x4-real-psnr", device="cpu", precision="fp32")
    assert np.array_equal(read_image(jpeg.target)[0], surge.upscale(read_image(tmp_path / "web.jpg")[0], model=counterpart))


def test_models_load_lazily_once_each(tmp_path, monkeypatch):
    loads = []
    real_load = surge.load_model
    monkeypatch.setattr(surge, "load_model", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k), raising=False)
    _save(tmp_path / "a.png")
    _save(tmp_path / "b.png", seed=1)
    upscaler = Upscaler(UpscaleOptions(model="surge-x4-psnr", real_for_jpeg=True, device="cpu", precision="fp32"))
    assert loads == []
    for name in ("a", "b"):
        assert upscaler.process_file(tmp_path / f"{name}.png", tmp_path / f"{name}_x4.png").status == "done"
    assert loads == ["surge-x4-psnr"]  # no compressed JPEG: the counterpart is never loaded


def test_the_default_real_for_jpeg_follows_the_model_choice():
    assert Upscaler(UpscaleOptions(model="surge-x4-psnr")).real_for_jpeg is False  # a model given: off
    assert Upscaler(UpscaleOptions(model="bicubic", real_for_jpeg=False)).for_jpeg_name is None
    with pytest.raises(SurgeError, match="bicubic has no real-world counterpart"):
        Upscaler(UpscaleOptions(model="bicubic", real_for_jpeg=True)).load()


# --- progress ---------------------------------------------------------------------------


def test_progress_counts_tiles(tmp_path):
    _save(tmp_path / "a.png", h=64, w=96)
    calls = []
    upscaler = Upscaler(UpscaleOptions(model="bicubic", tile=32, overlap=2))  # 32: the smallest tile (MIN_TILE)
    result = upscaler.process_file(tmp_path / "a.png", tmp_path / "a_x4.png", progress=lambda d, t: calls.append((d, t)))
    assert result.status == "done"
    assert calls == [(0, 6), *((i, 6) for i in range(1, 7))]  # 2 x 3 tiles of 32 px, one per batch


def test_progress_counts_tiles_over_all_frames(tmp_path):
    frames = [Image.fromarray(np.full((64, 32, 3), v, np.uint8)) for v in (0, 255)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    calls = []
    upscaler = Upscaler(UpscaleOptions(model="bicubic", tile=32, overlap=2))
    result = upscaler.process_file(tmp_path / "anim.gif", tmp_path / "anim.png", progress=lambda d, t: calls.append((d, t)))
    assert result.status == "done"
    assert calls[-1] == (4, 4) and [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_surge_upscale_takes_a_progress_callable():
    calls = []
    out = surge.upscale(np.zeros((16, 16, 3), np.uint8), model="bicubic", tile=8, overlap=2, batch_size=3,
                        progress=lambda d, t: calls.append((d, t)))
    assert out.shape == (64, 64, 3) and calls == [(0, 4), (3, 4), (4, 4)]


# --- naming and planning ----------------------------------------------------------------


@pytest.mark.parametrize(("options", "source", "name"), [
    (UpscaleOptions(), "a.jpg", "a_x4.png"),
    (UpscaleOptions(outscale=2.5), "a.jpg", "a_x2.5.png"),
    (UpscaleOptions(ext="same"), "a.JPG", "a_x4.jpg"),
    (UpscaleOptions(ext="same"), "a.gif", "a_x4.png"),  # GIF is read, not written
    (UpscaleOptions(ext="webp", suffix=""), "a.png", "a.webp"),
    (UpscaleOptions(suffix="-big"), "a.tif", "a-big.png"),
])
def test_output_path_naming(options, source, name):
    assert Upscaler(options).output_path(Path("in") / source, Path("out")) == Path("out") / name
    assert Upscaler(options).output_path(Path(source), Path("out"), Path("sub")) == Path("out") / "sub" / name


def test_plan_jobs_walks_folders_and_refuses_clashes(tmp_path):
    _save(tmp_path / "in" / "a.png")
    _save(tmp_path / "in" / "sub" / "b.jpg")
    _save(tmp_path / "in" / "sub" / "b.png")
    notes = []
    jobs, errors = plan_jobs([tmp_path / "in", tmp_path / "missing.png"], tmp_path / "out", UpscaleOptions(), True, notes)
    assert jobs == [Job(tmp_path / "in" / "a.png", tmp_path / "out" / "a_x4.png"),
                    Job(tmp_path / "in" / "sub" / "b.jpg", tmp_path / "out" / "sub" / "b_x4.png")]
    assert len(errors) == 2 and "missing.png: no such file" in errors[0] and "is also the output of" in errors[1]
    flat, _ = plan_jobs([tmp_path / "in"], tmp_path / "out", UpscaleOptions())
    assert [job.source.name for job in flat] == ["a.png"]


def test_resize_to_any_size_keeps_dtype():
    arr = np.random.default_rng(0).integers(0, 65535, (6, 8, 3), dtype=np.uint16)
    out = resize(arr, (9, 12))
    assert out.shape == (9, 12, 3) and out.dtype == np.uint16
    assert resize(arr, (6, 8)) is arr


# --- options, and what other front-ends (a server, Ray) rely on -------------------------


@pytest.mark.parametrize(("field", "value", "message"), [
    ("ext", "gif", "ext 'gif' is not an output format"),
    ("quality", 0, "quality must be 1-100"),
    ("outscale", 0, "outscale must be a number > 0"),
    ("tile", -1, "tile must be"),
    ("overlap", -2, "overlap must be"),
    ("batch_size", 0, "batch_size must be"),
    ("max_pixels", 0, "max_pixels must be"),
    ("precision", "fp8", "precision must be one of"),
    ("backend", "tensorrt", "backend must be one of"),
    ("max_output_pixels", 0, "max_output_pixels must be"),
    ("max_memory", "lots", "max_memory must be"),
    ("suffix", "/../../escaped", "suffix '/../../escaped': must not contain"),
])
def test_bad_options_are_refused_up_front(field, value, message):
    with pytest.raises(SurgeError, match=f"UpscaleOptions: {message}"):
        UpscaleOptions(**{field: value})


def test_the_cli_defaults_are_valid_options():
    from surge.cli.main import build_parser
    from surge.cli.upscale_cmd import options_from_args

    args = build_parser().parse_args(["upscale", "a.png", "-o", "out"])
    options = options_from_args(args)
    assert (options.ext, options.tile, options.quality, options.overwrite) == ("png", "auto", 95, False)


def test_options_jobs_and_results_pickle(tmp_path):
    """Ray ships them between processes."""
    import pickle

    options = UpscaleOptions(model="bicubic", ext="webp", outscale=2)
    job = Job(tmp_path / "a.png", tmp_path / "a_x2.webp")
    assert job.format == "WEBP"  # a cached lookup travels too
    result = FileResult(job.source, job.target, "bicubic", "done", warnings=["w"])
    assert pickle.loads(pickle.dumps((options, job, result))) == (options, job, result)


def test_an_exception_from_progress_aborts_the_file_and_leaves_nothing(tmp_path):
    """A server cancels a job by raising from its progress callback."""

    class Cancelled(Exception):
        pass

    def cancel(done, total):
        if done:
            raise Cancelled

    _save(tmp_path / "a.png", h=20, w=20)
    upscaler = Upscaler(UpscaleOptions(model="bicubic", tile=10, overlap=2))
    with pytest.raises(Cancelled):
        upscaler.process_file(tmp_path / "a.png", tmp_path / "out" / "a_x4.png", progress=cancel)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_threads_can_share_one_upscaler(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    for i in range(4):
        _save(tmp_path / f"{i}.png", seed=i)
    upscaler = Upscaler(UpscaleOptions(model="bicubic", tile=4, overlap=2))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: upscaler.process_file(tmp_path / f"{i}.png", tmp_path / "out" / f"{i}.png"), range(4)))
    assert [r.status for r in results] == ["done"] * 4
    for i in range(4):
        expected = surge.upscale(read_image(tmp_path / f"{i}.png")[0], model="bicubic")
        assert np.array_equal(read_image(tmp_path / "out" / f"{i}.png")[0], expected)


def test_tiles_under_the_floor_are_raised_to_it(tmp_path):
    """Issue 22: --tile 1 / --tile 5 were accepted (95 s for a 64x64 image); the same output comes faster."""
    _save(tmp_path / "a.png", h=64, w=64)
    calls = []
    upscaler = Upscaler(UpscaleOptions(model="bicubic", tile=5))
    assert upscaler.tile == 32
    assert upscaler.process_file(tmp_path / "a.png", tmp_path / "a_x4.png", progress=lambda d, t: calls.append((d, t))).status == "done"
    assert calls[-1] == (4, 4)  # 2 x 2 tiles of 32 px, not 13 x 13 of 5
