"""AVIF and HEIC (phone camera) files in and out: pixels, depth, rotation, ICC/EXIF, animation,
and a clear error naming the package when the decoder is not installed."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms

from surge.cli.main import main
from surge.errors import ImageReadError, ImageWriteError
from surge.inference import image_io
from surge.inference.image_io import ImageMeta, read_frames, read_image, write_image

pillow_heif = pytest.importorskip("pillow_heif", reason="HEIC needs pillow-heif (the 'heif' extra; `make test` installs it)")
if not image_io.avif_available():
    pytest.skip("this Pillow has no AVIF support (wheels of Pillow >= 11.3 have it)", allow_module_level=True)

ORIENTATION = ExifTags.Base.Orientation
FORMATS = {"avif": "AVIF", "heic": "HEIF"}


def _smooth(h=32, w=48, channels=3):
    """A gradient: lossy codecs at high quality keep it within a few levels."""
    y, x = np.mgrid[0:h, 0:w]
    planes = [x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (h + w - 2), 255 - x * 200 // (w - 1)]
    return np.stack(planes[:channels], axis=-1).astype(np.uint8)


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse) if mse else float("inf")


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("channels", [3, 4])
def test_round_trip_keeps_pixels_icc_and_exif(tmp_path, ext, channels):
    arr = _smooth(channels=channels)
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "surge-test"
    meta = ImageMeta(icc_profile=_srgb_icc(), exif=exif.tobytes())
    write_image(arr, tmp_path / f"a.{ext}", meta)
    back, got = read_image(tmp_path / f"a.{ext}")
    assert got.format == FORMATS[ext] and back.shape == arr.shape and back.dtype == np.uint8
    assert _psnr(back, arr) > 38
    assert got.icc_profile == meta.icc_profile
    loaded = Image.Exif()
    loaded.load(got.exif)
    assert loaded[ExifTags.Base.Make] == "surge-test"


@pytest.mark.parametrize("ext", FORMATS)
def test_grey_and_grey_alpha(tmp_path, ext):
    grey = _smooth(channels=1)[..., 0]
    write_image(grey, tmp_path / f"g.{ext}")
    back, meta = read_image(tmp_path / f"g.{ext}")
    assert meta.mode == "L" and back.shape == grey.shape and _psnr(back, grey) > 38
    grey_alpha = np.stack([grey, 255 - grey], axis=-1)
    write_image(grey_alpha, tmp_path / f"ga.{ext}")
    back, meta = read_image(tmp_path / f"ga.{ext}")
    # Both encoders store grey + alpha as colour + alpha.
    assert meta.mode == "RGBA" and back.shape == (*grey.shape, 4)
    assert _psnr(back[..., 1], grey) > 38 and _psnr(back[..., 3], 255 - grey) > 38


@pytest.mark.parametrize("ext", FORMATS)
def test_quality_changes_the_file(tmp_path, ext):
    arr = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    sizes = [write_image(arr, tmp_path / f"q{q}.{ext}", quality=q).stat().st_size for q in (10, 95)]
    assert sizes[0] < sizes[1]


@pytest.mark.parametrize("ext", FORMATS)
def test_rotation_is_applied_once_and_reset(tmp_path, ext):
    """A portrait photo from a phone: stored landscape with a rotation (EXIF 6 here; both
    encoders turn it into the container's irot box). Read upright, orientation 1 after."""
    arr = _smooth(h=20, w=30)
    arr[:5, :8] = (255, 0, 0)  # a red mark top-left as stored
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(arr).save(tmp_path / f"r.{ext}", format=FORMATS[ext], exif=exif.tobytes(), quality=95)
    back, meta = read_image(tmp_path / f"r.{ext}")
    assert back.shape == (30, 20, 3)
    upright, wrong_way = np.rot90(arr, -1), np.rot90(arr, 1)
    assert _psnr(back, upright) > 25 and _psnr(back, upright) > _psnr(back, wrong_way) + 10
    assert back[0, -1, 0] > 200 and back[0, -1, 1] < 60  # the mark is top-right after a clockwise turn
    written = Image.Exif()
    if meta.exif:
        written.load(meta.exif)
    assert written.get(ORIENTATION, 1) == 1


def test_10_bit_heic_is_read_at_16_bits(tmp_path):
    y, x = np.mgrid[0:32, 0:48]
    ten = np.stack([x * 1023 // 47, y * 1023 // 31, np.full_like(x, 1023)], axis=-1).astype(np.uint16)
    heif = pillow_heif.from_bytes(mode="RGB;16", size=(48, 32), data=(ten << 6).astype(np.uint16).tobytes())
    heif.save(tmp_path / "hdr.heic", quality=100, chroma=444)
    back, meta = read_image(tmp_path / "hdr.heic")
    assert back.dtype == np.uint16 and meta.mode == "RGB;16"
    expected = ten.astype(np.float64) * 65535 / 1023
    assert np.abs(back - expected).mean() < 65535 / 1023 * 2  # within ~2 of 1023 levels, lossy codec
    # White reaches the top of the 16-bit scale (pillow-heif's samples in the high bits stop at 65472).
    assert back[..., 2].max() == 65535 and back[..., 2].mean() > 65535 - 65535 / 1023 * 4
    # The 8-bit path of the same file would have lost the low two bits: it really is deeper.
    assert len(np.unique(back[..., 0])) > 256


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16_bit_pixels_are_written_as_10_bit_heic(tmp_path, channels):
    y, x = np.mgrid[0:32, 0:48]
    planes = [x * 65535 // 47, y * 65535 // 31, np.full_like(x, 65535), 65535 - x * 30000 // 47]
    arr = np.stack(planes[:channels], axis=-1).astype(np.uint16)
    arr = arr[..., 0] if channels == 1 else arr
    icc = _srgb_icc()  # once: the profile's header holds its creation time
    write_image(arr, tmp_path / "deep.heic", ImageMeta(icc_profile=icc))
    with Image.open(tmp_path / "deep.heic") as img:
        assert img.info["bit_depth"] == 10
    back, meta = read_image(tmp_path / "deep.heic")
    assert back.dtype == np.uint16 and meta.icc_profile == icc
    expected = arr if channels > 1 else np.stack([arr] * 3, axis=-1)  # grey is stored as colour
    assert back.shape == expected.shape
    assert np.abs(back.astype(np.int64) - expected).mean() < 65535 / 1023 * 2
    assert np.mean(back % 257 != 0) > 0.5  # more than 8 bits survived (8-bit values scale to multiples of 257)


def test_animated_avif_is_read_frame_by_frame(tmp_path):
    rng = np.random.default_rng(1)
    frames = [Image.fromarray((rng.random((16, 24, 3)) * 255).astype(np.uint8)) for _ in range(3)]
    frames[0].save(tmp_path / "anim.avif", save_all=True, append_images=frames[1:], duration=[40, 60, 80], quality=100,
                   subsampling="4:4:4")
    got, meta = read_frames(tmp_path / "anim.avif")
    assert len(got) == 3 and meta.frames == 3 and meta.durations == (40, 60, 80) and meta.loop == 0
    assert all(_psnr(a, np.asarray(f)) > 30 for a, f in zip(got, frames))


def test_upscale_cli_reads_phone_formats_in_folders_and_writes_them(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(_smooth(12, 16)).save(photos / "iphone.heic", format="HEIF", quality=95)
    Image.fromarray(_smooth(12, 16)).save(photos / "web.avif", quality=95)
    base = ["upscale", str(photos), "--model", "bicubic", "--device", "cpu", "--quiet"]
    assert main([*base, "-o", str(tmp_path / "png")]) == 0
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["iphone_x4.png", "web_x4.png"]
    assert main([*base, "-o", str(tmp_path / "same"), "--ext", "same"]) == 0
    assert sorted(p.name for p in (tmp_path / "same").iterdir()) == ["iphone_x4.heic", "web_x4.avif"]
    for name, fmt in (("iphone_x4.heic", "HEIF"), ("web_x4.avif", "AVIF")):
        arr, meta = read_image(tmp_path / "same" / name)
        assert meta.format == fmt and arr.shape == (48, 64, 3)
    assert main([*base, "-o", str(tmp_path / "avif"), "--ext", "avif"]) == 0
    assert sorted(p.name for p in (tmp_path / "avif").iterdir()) == ["iphone_x4.avif", "web_x4.avif"]


def test_an_animated_avif_becomes_an_animated_png(tmp_path):
    frames = [Image.fromarray(_smooth(8, 8) // (i + 1)) for i in range(2)]
    frames[0].save(tmp_path / "a.avif", save_all=True, append_images=frames[1:], duration=[50, 70])
    assert main(["upscale", str(tmp_path / "a.avif"), "-o", str(tmp_path / "out"), "--model", "bicubic", "--quiet"]) == 0
    with Image.open(tmp_path / "out" / "a_x4.png") as out:
        assert out.n_frames == 2 and out.size == (32, 32)


@pytest.mark.parametrize("ext", FORMATS)
def test_a_truncated_file_is_named_as_such(tmp_path, ext):
    write_image(_smooth(), tmp_path / f"full.{ext}")
    (tmp_path / f"cut.{ext}").write_bytes((tmp_path / f"full.{ext}").read_bytes()[:200])
    kind = "HEIC/HEIF" if ext == "heic" else "AVIF"
    with pytest.raises(ImageReadError, match=rf"cut\.{ext}: truncated or corrupt {kind} image"):
        read_image(tmp_path / f"cut.{ext}")


def test_non_image_iso_bmff_is_not_claimed_as_a_phone_format(tmp_path):
    fake = tmp_path / "clip.heic"
    fake.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(64))  # an MP4 header
    with pytest.raises(ImageReadError, match="clip.heic: not a recognised image file"):
        read_image(fake)


# Run in a fresh interpreter: pillow-heif registers itself with Pillow for the whole process.
_WITHOUT = {
    "heif": "import sys; sys.modules['pillow_heif'] = None\n",
    "avif": "import PIL.features, PIL.AvifImagePlugin as A; A.SUPPORTED = False\n"
            "PIL.features.check = lambda name: False if name == 'avif' else True\n",
}


@pytest.mark.parametrize("missing, ext, fmt, needs", [
    ("heif", "heic", "HEIF", "needs the optional pillow-heif package (pip install 'surge-sr[heif]')"),
    ("avif", "avif", "AVIF", "needs Pillow built with AVIF (the wheels of Pillow >= 11.3 are)"),
])
def test_missing_decoder_is_named_on_read_write_and_cli(tmp_path, missing, ext, fmt, needs):
    Image.fromarray(_smooth(8, 8)).save(tmp_path / f"p.{ext}", format=fmt)
    code = _WITHOUT[missing] + (
        "import sys\n"
        "from surge.errors import SurgeError\n"
        "from surge.inference.image_io import read_image, output_format\n"
        f"for call in (lambda: read_image(r'{tmp_path / f'p.{ext}'}'), lambda: output_format('out.{ext}')):\n"
        "    try:\n"
        "        call(); print('no error')\n"
        "    except SurgeError as exc:\n"
        "        print(exc)\n"
        "from surge.cli.main import main\n"
        f"rc = main(['upscale', r'{tmp_path / f'p.{ext}'}', '-o', r'{tmp_path / 'out'}', '--ext', '{ext}', '--model', 'bicubic'])\n"
        "print('rc', rc)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = run.stdout.splitlines()
    assert lines[0] == f"{tmp_path / f'p.{ext}'}: {'HEIC/HEIF' if ext == 'heic' else 'AVIF'} image {needs}", run.stderr
    assert lines[1].startswith(f"out.{ext}: writing ") and lines[1].endswith(needs)
    assert lines[2] == "rc 2"  # refused before any work: --ext names a format this install cannot write
    assert run.stderr.strip() == f"surge: error: {tmp_path / 'out' / f'p_x4.{ext}'}: writing {lines[1].split(': writing ')[1]}"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_heic_write_error_names_the_output(tmp_path, monkeypatch):
    monkeypatch.setattr(image_io.heif, "heif_available", lambda: False)
    with pytest.raises(ImageWriteError, match=r"x\.heic: writing HEIC/HEIF needs the optional pillow-heif"):
        write_image(_smooth(), tmp_path / "x.heic")
    assert list(tmp_path.iterdir()) == []
