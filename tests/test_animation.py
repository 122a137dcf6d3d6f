"""Animated GIF/PNG/WebP: every frame read as shown, written as animated PNG/WebP, and
`surge upscale` upscaling them frame by frame."""

import io

import numpy as np
import pytest
from PIL import Image

import surge
from surge.cli.main import main
from surge.errors import ImageReadError, ImageWriteError
from surge.inference.image_io import ImageMeta, read_frames, read_image, write_animation


def _frames(h=8, w=12, n=3, seed=0):
    """Frames with few colours (a GIF palette holds them exactly) that differ in part only,
    so Pillow's writers store sub-rectangles and the reader must composite them."""
    rng = np.random.default_rng(seed)
    base = (rng.integers(0, 4, (h, w, 3)) * 80).astype(np.uint8)
    frames = [base]
    for i in range(1, n):
        f = frames[-1].copy()
        f[i : i + 3, 2 * i : 2 * i + 4] = [255, 255 - 60 * i, 30 * i]
        frames.append(f)
    return frames


def _save_animation(path, frames, **options):
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], **options)


def _smooth_frames(n=3):
    """Smooth frames for lossy WebP, where exact values are not kept."""
    y, x = np.mgrid[0:24, 0:32]
    return [np.stack([x * 6 + 20 * i, y * 10, np.full_like(x, 60 * i)], -1).astype(np.uint8) for i in range(n)]


@pytest.mark.parametrize("ext, options", [(".gif", {}), (".png", {}), (".webp", {"lossless": True})])
def test_read_frames_gives_every_full_frame_and_its_timing(tmp_path, ext, options):
    frames = _frames()
    _save_animation(tmp_path / f"a{ext}", frames, duration=[40, 80, 120], loop=0, **options)
    got, meta = read_frames(tmp_path / f"a{ext}")
    assert len(got) == meta.frames == 3
    for g, f in zip(got, frames):
        assert g.shape == f.shape and np.array_equal(g, f)
    assert meta.durations == (40, 80, 120) and meta.loop == 0 and meta.mode == "RGB"
    # read_image still gives the first frame only (Pillow opens animated WebP as RGBA).
    first, still_meta = read_image(tmp_path / f"a{ext}")
    assert np.array_equal(first[..., :3], frames[0]) and still_meta.frames == 3 and still_meta.durations is None


def test_read_frames_keeps_transparency_and_a_missing_loop(tmp_path):
    frames = _frames()
    rgba = [np.dstack([f, np.full(f.shape[:2], 255, np.uint8)]) for f in frames]
    rgba[1][0, 0, 3] = 0
    _save_animation(tmp_path / "a.png", rgba, duration=50)  # no loop given: Pillow writes 0 for APNG
    got, meta = read_frames(tmp_path / "a.png")
    assert meta.mode == "RGBA" and all(g.shape == (8, 12, 4) for g in got)
    assert got[1][0, 0, 3] == 0 and got[0][0, 0, 3] == 255
    # A GIF without a NETSCAPE loop block plays once: no loop count.
    _save_animation(tmp_path / "once.gif", frames, duration=60)
    assert read_frames(tmp_path / "once.gif")[1].loop is None


def test_read_frames_of_a_still_or_multipage_file_is_read_image(tmp_path):
    arr = _frames(n=1)[0]
    Image.fromarray(arr).save(tmp_path / "still.png")
    got, meta = read_frames(tmp_path / "still.png")
    assert len(got) == 1 and np.array_equal(got[0], arr) and meta.durations is None
    _save_animation(tmp_path / "pages.tif", _frames())
    got, meta = read_frames(tmp_path / "pages.tif")
    assert len(got) == 1 and meta.frames == 3 and meta.durations is None  # pages, not an animation


def test_read_frames_counts_all_frames_against_max_pixels(tmp_path):
    _save_animation(tmp_path / "a.gif", _frames(), duration=50)
    assert len(read_frames(tmp_path / "a.gif", max_pixels=3 * 8 * 12)[0]) == 3
    with pytest.raises(ImageReadError, match=r"a\.gif: 3 frames of 12x8 = 288 pixels exceeds the limit of 287"):
        read_frames(tmp_path / "a.gif", max_pixels=287)


def test_read_frames_names_the_file_and_frame_of_truncated_data(tmp_path):
    y, x = np.mgrid[0:40, 0:40]
    frames = [np.stack([(x * 6 + 37 * i) % 256, (y * 6 * (i + 1)) % 256, (x * y + i) % 256], -1).astype(np.uint8) for i in range(3)]
    buf = io.BytesIO()
    images = [Image.fromarray(f) for f in frames]
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=50)
    data = buf.getvalue()
    # Cut inside the last frame, and inside the second (where Pillow fails while counting frames).
    for cut, message in ((300, r"cut\.gif: frame 3 of 3: truncated or corrupt"), (1500, r"cut\.gif: truncated or corrupt")):
        (tmp_path / "cut.gif").write_bytes(data[: len(data) - cut])
        with pytest.raises(ImageReadError, match=message):
            read_frames(tmp_path / "cut.gif")


@pytest.mark.parametrize("ext", [".png", ".webp"])
def test_write_animation_round_trips_frames_timing_and_loop(tmp_path, ext):
    frames = _smooth_frames() if ext == ".webp" else _frames()
    meta = ImageMeta(format="GIF", mode="RGB", frames=3, durations=(30, 60, 90), loop=2)
    write_animation(frames, tmp_path / f"out{ext}", meta, quality=100)
    got, back = read_frames(tmp_path / f"out{ext}")
    assert back.durations == (30, 60, 90) and back.loop == 2 and len(got) == 3
    tolerance = 0 if ext == ".png" else 24  # lossy WebP (4:2:0 chroma)
    for g, f in zip(got, frames):
        assert np.abs(g.astype(int) - f).max() <= tolerance
    # No loop count in the source (plays once) -> plays once, not forever.
    write_animation(frames, tmp_path / f"once{ext}", ImageMeta(frames=3, durations=(30, 60, 90)))
    assert read_frames(tmp_path / f"once{ext}")[1].loop == 1


def test_write_animation_refuses_formats_without_frames_and_bad_timing(tmp_path):
    frames = _frames()
    meta = ImageMeta(frames=3, durations=(30, 60, 90))
    with pytest.raises(ImageWriteError, match=r"out\.jpg: JPEG cannot hold an animation"):
        write_animation(frames, tmp_path / "out.jpg", meta)
    with pytest.raises(ValueError, match="one duration per frame"):
        write_animation(frames, tmp_path / "out.png", ImageMeta(frames=3, durations=(30, 60)))
    assert list(tmp_path.iterdir()) == []


# --- surge upscale ----------------------------------------------------------------


def _up(*args):
    return main(["upscale", *map(str, args), "--model", "bicubic", "--device", "cpu", "--quiet"])


def _warnings(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("surge: warning:")]


@pytest.mark.parametrize("source", ["anim.gif", "anim.webp"])
def test_upscale_cli_upscales_every_frame_into_an_animated_png(tmp_path, capsys, source):
    frames = _frames()
    options = {"lossless": True} if source.endswith(".webp") else {}
    _save_animation(tmp_path / source, frames, duration=[40, 80, 120], loop=0, **options)
    assert _up(tmp_path / source, "-o", tmp_path / "out") == 0
    assert _warnings(capsys) == []
    got, meta = read_frames(tmp_path / "out" / "anim_x4.png")
    assert meta.durations == (40, 80, 120) and meta.loop == 0 and len(got) == 3
    for g, f in zip(got, frames):
        assert np.array_equal(g, surge.upscale(f, model="bicubic", device="cpu"))


def test_upscale_cli_animated_webp_output_and_outscale(tmp_path):
    frames = _smooth_frames()
    _save_animation(tmp_path / "a.gif", frames, duration=70)
    assert _up(tmp_path / "a.gif", "-o", tmp_path / "out.webp", "-s", "2") == 0
    got, meta = read_frames(tmp_path / "out.webp")
    assert len(got) == 3 and got[0].shape == (48, 64, 3) and meta.durations == (70, 70, 70) and meta.loop == 1


def test_upscale_cli_single_frame_formats_keep_the_first_frame_with_a_hint(tmp_path, capsys):
    frames = _frames()
    _save_animation(tmp_path / "a.gif", frames, duration=50)
    assert _up(tmp_path / "a.gif", "-o", tmp_path / "out", "--ext", "jpg") == 0
    warnings = _warnings(capsys)
    assert len(warnings) == 1
    assert "3 frames/pages; only the first was upscaled (JPEG holds one frame; --ext png or webp keeps them all)" in warnings[0]
    assert Image.open(tmp_path / "out" / "a_x4.jpg").size == (48, 32)


def test_upscale_cli_too_many_frame_pixels_fails_that_file_only(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    _save_animation(tmp_path / "in" / "a.gif", _frames(), duration=50)
    Image.fromarray(_frames(n=1)[0]).save(tmp_path / "in" / "b.png")
    assert _up(tmp_path / "in", "-o", tmp_path / "out", "--max-pixels", "200") == 1
    err = capsys.readouterr().err
    assert "a.gif: 3 frames of 12x8 = 288 pixels exceeds the limit of 200" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b_x4.png"]
