"""Image files in and out: modes, 16-bit, EXIF orientation, ICC/EXIF kept, atomic writes."""

import errno
import io
import os
import warnings
from pathlib import Path

import numpy as np
import png
import pytest
from PIL import ExifTags, Image, ImageCms, ImageOps

from surge.atomic import atomic_output
from surge.errors import ImageReadError, ImageWriteError, OutputExistsError, SurgeError
from surge.inference import image_io
from surge.inference.image_io import ImageMeta, orient_array, read_image, write_image

ORIENTATION = ExifTags.Base.Orientation


def _rgb(h=12, w=20, seed=0, channels=3, dtype=np.uint8):
    top = np.iinfo(dtype).max
    return (np.random.default_rng(seed).random((h, w, channels)) * top).round().astype(dtype)


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif(orientation=1, make="surge-test") -> Image.Exif:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[ExifTags.Base.Make] = make
    return exif


def _no_temp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


# --- reading -------------------------------------------------------------------------


def test_rgb_png_round_trip(tmp_path):
    arr = _rgb()
    Image.fromarray(arr).save(tmp_path / "a.png")
    got, meta = read_image(tmp_path / "a.png")
    assert got.dtype == np.uint8 and (got == arr).all()
    assert meta.format == "PNG" and meta.mode == "RGB"
    write_image(got, tmp_path / "b.png", meta)
    assert (np.asarray(Image.open(tmp_path / "b.png")) == arr).all()


@pytest.mark.parametrize(
    ("mode", "shape", "want_mode"),
    [("L", (12, 20), "L"), ("LA", (12, 20, 2), "LA"), ("RGBA", (12, 20, 4), "RGBA"), ("1", (12, 20), "L")],
)
def test_read_modes(tmp_path, mode, shape, want_mode):
    Image.fromarray(_rgb(channels=4), "RGBA").convert(mode).save(tmp_path / "m.png")
    arr, meta = read_image(tmp_path / "m.png")
    assert arr.shape == shape and arr.dtype == np.uint8 and meta.mode == want_mode


def test_palette_with_transparency_becomes_rgba(tmp_path):
    img = Image.fromarray(_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    img.info["transparency"] = 0
    img.save(tmp_path / "p.png", transparency=0)
    arr, meta = read_image(tmp_path / "p.png")
    assert arr.shape == (12, 20, 4) and meta.mode == "RGBA"
    assert (arr[..., 3] == 0).any() and (arr[..., 3] == 255).any()


def test_palette_without_transparency_becomes_rgb(tmp_path):
    Image.fromarray(_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(tmp_path / "p.png")
    arr, _ = read_image(tmp_path / "p.png")
    assert arr.shape == (12, 20, 3)


def test_cmyk_jpeg_becomes_rgb_without_its_cmyk_profile(tmp_path):
    Image.fromarray(_rgb()).convert("CMYK").save(tmp_path / "c.jpg")
    arr, meta = read_image(tmp_path / "c.jpg")
    assert arr.shape == (12, 20, 3) and meta.mode == "RGB" and meta.icc_profile is None


def test_16bit_grey_png(tmp_path):
    grey = _rgb(channels=1, dtype=np.uint16)[..., 0]
    Image.fromarray(grey).save(tmp_path / "g16.png")
    arr, meta = read_image(tmp_path / "g16.png")
    assert arr.dtype == np.uint16 and (arr == grey).all() and meta.mode == "I;16"
    write_image(arr, tmp_path / "out.png", meta)
    back = Image.open(tmp_path / "out.png")
    assert back.mode == "I;16" and (np.asarray(back) == grey).all()


@pytest.mark.parametrize("channels", [2, 3, 4])
@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_colour_round_trip(tmp_path, channels, ext):
    """Pillow would silently read these as 8-bit; pypng/tifffile keep all 16 bits."""
    arr = _rgb(channels=channels, dtype=np.uint16)
    assert (arr % 257 != 0).any()  # not representable in 8 bits
    write_image(arr, tmp_path / f"c16{ext}")
    got, meta = read_image(tmp_path / f"c16{ext}")
    if ext == ".tif" and channels == 2:  # stored as RGBA: few readers open grey+alpha TIFF
        arr = arr[..., [0, 0, 0, 1]]
    assert got.dtype == np.uint16 and (got == arr).all()
    assert meta.mode.endswith(";16")
    if ext == ".png":
        *_, info = png.Reader(filename=str(tmp_path / "c16.png")).read()
        assert info["bitdepth"] == 16 and info["planes"] == channels


def test_16bit_to_8bit_formats_round(tmp_path):
    arr = np.array([[[0, 128, 65535]]], dtype=np.uint16).repeat(4, 0).repeat(4, 1)
    write_image(arr, tmp_path / "x.bmp")
    assert (np.asarray(Image.open(tmp_path / "x.bmp"))[0, 0] == [0, 0, 255]).all()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_array_matches_pillow(orientation):
    img = Image.fromarray(_rgb(5, 7))
    img.getexif()[ORIENTATION] = orientation
    exif = img.getexif()
    exif[ORIENTATION] = orientation
    buf = io.BytesIO()
    img.save(buf, format="PNG", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
    assert np.array_equal(orient_array(np.asarray(img), orientation), expected)


def test_exif_orientation_applied_and_reset(tmp_path):
    yy, xx = np.mgrid[0:10, 0:16]
    arr = np.stack([yy * 25, xx * 15, 255 - xx * 15], axis=-1).astype(np.uint8)  # smooth: JPEG-friendly
    Image.fromarray(arr).save(tmp_path / "o.jpg", exif=_exif(orientation=6), quality=100)
    got, meta = read_image(tmp_path / "o.jpg")
    assert got.shape == (16, 10, 3)  # orientation 6: stored image is shown rotated 90 degrees clockwise
    assert np.abs(got.astype(int) - np.rot90(arr, -1)).mean() < 3  # JPEG loss only
    assert np.abs(got.astype(int) - np.rot90(arr, 1)).mean() > 30  # and not the other way round
    exif = Image.Exif()
    exif.load(meta.exif)
    assert exif[ORIENTATION] == 1 and exif[ExifTags.Base.Make] == "surge-test"


def test_exif_orientation_applied_to_16bit_png(tmp_path):
    arr = _rgb(4, 6, dtype=np.uint16)
    write_image(arr, tmp_path / "o16.png", ImageMeta(exif=_exif(orientation=8).tobytes()))
    got, _ = read_image(tmp_path / "o16.png")
    assert np.array_equal(got, np.rot90(arr, 1))


def test_icc_profile_kept(tmp_path):
    icc = _srgb_icc()
    Image.fromarray(_rgb()).save(tmp_path / "icc.png", icc_profile=icc)
    arr, meta = read_image(tmp_path / "icc.png")
    assert meta.icc_profile == icc
    for ext in (".png", ".jpg", ".webp", ".tif"):
        write_image(arr, tmp_path / f"out{ext}", meta)
        assert Image.open(tmp_path / f"out{ext}").info.get("icc_profile") == icc, ext
    write_image(_rgb(dtype=np.uint16), tmp_path / "out16.png", meta)
    assert Image.open(tmp_path / "out16.png").info.get("icc_profile") == icc


def test_rgb_profile_not_attached_to_grey_output(tmp_path):
    meta = ImageMeta(icc_profile=_srgb_icc())
    write_image(_rgb()[..., 0], tmp_path / "g.png", meta)
    assert "icc_profile" not in Image.open(tmp_path / "g.png").info


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp"])
def test_exif_kept_in_output(tmp_path, ext):
    meta = ImageMeta(exif=_exif(orientation=1, make="camera-x").tobytes())
    write_image(_rgb(), tmp_path / f"e{ext}", meta)
    exif = Image.open(tmp_path / f"e{ext}").getexif()
    assert exif[ExifTags.Base.Make] == "camera-x" and exif.get(ORIENTATION, 1) == 1


def test_jpeg_quality_and_alpha_flattened_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent
    write_image(rgba, tmp_path / "t.jpg")
    img = Image.open(tmp_path / "t.jpg")
    assert img.mode == "RGB" and (np.asarray(img) > 245).all()  # white, not red


def test_grey_alpha_to_webp_and_bmp(tmp_path):
    la = _rgb(channels=2)
    write_image(la, tmp_path / "la.webp")
    assert Image.open(tmp_path / "la.webp").mode == "RGBA"
    write_image(la, tmp_path / "la.bmp")  # BMP alpha is ignored by readers: flattened to grey
    assert Image.open(tmp_path / "la.bmp").mode == "L"


# --- read errors ---------------------------------------------------------------------


def test_missing_and_empty_and_directory(tmp_path):
    with pytest.raises(ImageReadError, match=r"nothere\.png: no such file"):
        read_image(tmp_path / "nothere.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png: empty file \(0 bytes\)"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match="not a file"):
        read_image(tmp_path)


def test_text_file_named_png(tmp_path):
    (tmp_path / "notes.png").write_text("not an image\n")
    with pytest.raises(ImageReadError, match=r"notes\.png: not a recognised image file"):
        read_image(tmp_path / "notes.png")


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_truncated_files(tmp_path, ext):
    Image.fromarray(_rgb(64, 64)).save(tmp_path / f"full{ext}")
    data = (tmp_path / f"full{ext}").read_bytes()
    (tmp_path / f"cut{ext}").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=rf"cut\{ext}: truncated or corrupt"):
        read_image(tmp_path / f"cut{ext}")


def test_truncated_16bit_png(tmp_path):
    write_image(_rgb(64, 64, dtype=np.uint16), tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.png: truncated or corrupt"):
        read_image(tmp_path / "cut.png")


def test_max_pixels(tmp_path):
    Image.fromarray(_rgb(10, 20)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match=r"big\.png: 20x10 = 200 pixels exceeds the limit of 199"):
        read_image(tmp_path / "big.png", max_pixels=199)
    assert read_image(tmp_path / "big.png", max_pixels=200)[0].shape == (10, 20, 3)


def test_own_limit_replaces_pillows_bomb_check(tmp_path, monkeypatch):
    """Pillow's global limit would warn (or refuse); read_image's max_pixels decides."""
    Image.fromarray(_rgb(10, 20)).save(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(tmp_path / "a.png", max_pixels=None)[0].shape == (10, 20, 3)
    assert Image.MAX_IMAGE_PIXELS == 50  # restored


# --- write errors --------------------------------------------------------------------


def test_unsupported_extension(tmp_path):
    with pytest.raises(ImageWriteError, match=r"out\.gif: unsupported output extension"):
        write_image(_rgb(), tmp_path / "out.gif")


def test_output_folder_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageWriteError, match=r"file/sub: cannot create output folder"):
        write_image(_rgb(), tmp_path / "file" / "sub" / "o.png")
    with pytest.raises(ImageWriteError, match="cannot create output folder"):
        image_io.check_writable_dir(tmp_path / "file" / "sub")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_output_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ImageWriteError, match=r"ro: output folder is not writable"):
            write_image(_rgb(), folder / "o.png")
    finally:
        folder.chmod(0o700)


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "o.png"
    target.write_bytes(b"previous")

    def broken_save(self, fp, format=None, **params):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(ImageWriteError, match=r"o\.png: cannot write PNG \(disk full\)"):
        write_image(_rgb(), target)
    assert target.read_bytes() == b"previous"
    assert _no_temp_files(tmp_path)


def test_written_file_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_image(_rgb(), tmp_path / "p.png")
    finally:
        os.umask(old)
    assert (tmp_path / "p.png").stat().st_mode & 0o777 == 0o644
    assert _no_temp_files(tmp_path)


# --- TIFF metadata, pixel ranges, frames ----------------------------------------------


def _x4(arr: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(arr, 4, axis=0), 4, axis=1)


def _tiff_source(path, kind):
    if kind == "rgb8":
        arr = _rgb(6, 10)
        Image.fromarray(arr).save(path)
    elif kind == "gray16":
        arr = _rgb(6, 10, channels=1, dtype=np.uint16)[..., 0]
        Image.fromarray(arr).save(path)
    else:  # two pages: only the first is read
        arr = _rgb(6, 10)
        Image.fromarray(arr).save(path, save_all=True, append_images=[Image.fromarray(255 - arr)])
    return arr


@pytest.mark.parametrize("kind", ["rgb8", "gray16", "multipage"])
def test_tiff_to_tiff_output_is_valid(tmp_path, kind):
    arr = _tiff_source(tmp_path / "in.tif", kind)
    got, meta = read_image(tmp_path / "in.tif")
    assert np.array_equal(got, arr)
    assert meta.frames == (2 if kind == "multipage" else 1)
    write_image(_x4(got), tmp_path / "out.tif", meta)
    with Image.open(tmp_path / "out.tif") as out:
        assert out.size == (40, 24)
        assert np.array_equal(np.asarray(out), _x4(arr))
    assert not image_io.metadata._LAYOUT_TAGS.intersection(_loaded_exif(meta.exif))


def _loaded_exif(data: bytes | None) -> Image.Exif:
    exif = Image.Exif()
    if data:
        exif.load(data)
    return exif


def test_jpeg_exif_with_layout_tags_gives_valid_tiff(tmp_path):
    exif = _exif(make="camera-y")
    exif[ExifTags.Base.ImageWidth] = 7
    exif[ExifTags.Base.ImageLength] = 5
    exif[ExifTags.Base.BitsPerSample] = (8, 8, 8)
    exif[ExifTags.Base.StripOffsets] = 8
    arr = np.full((6, 10, 3), 120, np.uint8)
    Image.fromarray(arr).save(tmp_path / "in.jpg", exif=exif, quality=100)
    got, meta = read_image(tmp_path / "in.jpg")
    for ext in (".tif", ".png"):
        write_image(_x4(got), tmp_path / f"out{ext}", meta)
        with Image.open(tmp_path / f"out{ext}") as out:
            assert out.size == (40, 24), ext
            assert np.array_equal(np.asarray(out), _x4(got)), ext
            out_exif = out.getexif()
            assert out_exif[ExifTags.Base.Make] == "camera-y"
            if ext == ".png":  # a TIFF's IFD0 necessarily has its own (correct) layout tags
                assert ExifTags.Base.ImageWidth not in out_exif and ExifTags.Base.StripOffsets not in out_exif


def test_tiff_orientation_applied_and_output_upright(tmp_path):
    arr = _rgb(6, 10)
    Image.fromarray(arr).save(tmp_path / "in.tif", exif=_exif(orientation=6, make="scanner"))
    got, meta = read_image(tmp_path / "in.tif")
    assert np.array_equal(got, np.rot90(arr, -1))
    write_image(_x4(got), tmp_path / "out.tif", meta)
    with Image.open(tmp_path / "out.tif") as out:
        assert out.size == (24, 40)
        assert out.getexif().get(ORIENTATION, 1) == 1 and out.getexif()[ExifTags.Base.Make] == "scanner"
        assert np.array_equal(np.asarray(ImageOps.exif_transpose(out)), _x4(got))


def test_float_tiff_in_unit_range_is_read_as_is(tmp_path):
    arr = np.random.default_rng(0).random((6, 10)).astype(np.float32)
    Image.fromarray(arr).save(tmp_path / "f.tif")
    got, meta = read_image(tmp_path / "f.tif")
    assert got.dtype == np.float32 and np.array_equal(got, arr) and meta.mode == "F"


@pytest.mark.parametrize(
    "value, message",
    [(np.nan, r"f\.tif: 1 float pixel value\(s\) are NaN or infinite"),
     (np.inf, r"f\.tif: 1 float pixel value\(s\) are NaN or infinite"),
     (1.5, r"f\.tif: float pixels span .*\.\.1\.5, outside \[0, 1\]"),
     (-0.25, r"f\.tif: float pixels span -0\.25\.\..*, outside \[0, 1\]")],
)
def test_float_tiff_out_of_range_or_not_finite_is_refused(tmp_path, value, message):
    arr = np.random.default_rng(0).random((6, 10)).astype(np.float32)
    arr[2, 3] = value
    Image.fromarray(arr).save(tmp_path / "f.tif")
    with pytest.raises(ImageReadError, match=message) as exc:
        read_image(tmp_path / "f.tif")
    assert "\n" not in str(exc.value)


def test_int32_tiff_read_as_16bit_or_refused(tmp_path):
    arr = _rgb(6, 10, channels=1, dtype=np.uint16)[..., 0].astype(np.int32)
    Image.fromarray(arr).save(tmp_path / "ok.tif")
    got, meta = read_image(tmp_path / "ok.tif")
    assert got.dtype == np.uint16 and np.array_equal(got, arr)
    arr[0, 0] = 70000
    Image.fromarray(arr).save(tmp_path / "big.tif")
    with pytest.raises(ImageReadError, match=r"big\.tif: 32-bit integer pixels span \d+\.\.70000, outside 0\.\.65535"):
        read_image(tmp_path / "big.tif")


@pytest.mark.parametrize("ext", [".gif", ".png"])
def test_animated_file_reports_its_frames(tmp_path, ext):
    arr = _rgb(6, 10)
    frames = [Image.fromarray(arr), Image.fromarray(255 - arr), Image.fromarray(arr // 2)]
    frames[0].save(tmp_path / f"anim{ext}", save_all=True, append_images=frames[1:])
    got, meta = read_image(tmp_path / f"anim{ext}")
    assert meta.frames == 3 and got.shape == (6, 10, 3)
    Image.fromarray(arr).save(tmp_path / "still.png")
    assert read_image(tmp_path / "still.png")[1].frames == 1


# --- publishing without replacing -------------------------------------------------------


def _appearing_target(monkeypatch, target):
    """Make the encoder create ``target`` first, as another process could meanwhile."""
    real = image_io.writing._write_pil

    def write(*args, **kwargs):
        target.write_bytes(b"someone else's")
        return real(*args, **kwargs)

    monkeypatch.setattr(image_io.writing, "_write_pil", write)


def test_no_overwrite_keeps_a_file_that_appeared_while_writing(tmp_path, monkeypatch):
    target = tmp_path / "o.png"
    _appearing_target(monkeypatch, target)
    with pytest.raises(OutputExistsError, match=r"o\.png: exists now .*not replaced"):
        write_image(_rgb(), target, overwrite=False)
    assert target.read_bytes() == b"someone else's"
    assert _no_temp_files(tmp_path)
    write_image(_rgb(), target)  # the default replaces
    assert np.array_equal(read_image(target)[0], _rgb())


def test_no_overwrite_without_hard_links_falls_back_to_exclusive_create(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    write_image(_rgb(), tmp_path / "new.png", overwrite=False)
    assert np.array_equal(read_image(tmp_path / "new.png")[0], _rgb())
    target = tmp_path / "o.png"
    _appearing_target(monkeypatch, target)
    with pytest.raises(OutputExistsError):
        write_image(_rgb(), target, overwrite=False)
    assert target.read_bytes() == b"someone else's"
    assert _no_temp_files(tmp_path)


def test_atomic_output_replace_false(tmp_path):
    target = tmp_path / "f.bin"
    with pytest.raises(SurgeError, match=r"f\.bin: already exists .*not replaced"):
        with atomic_output(target, replace=False) as tmp:
            Path(tmp).write_bytes(b"new")
            target.write_bytes(b"theirs")
    assert target.read_bytes() == b"theirs" and _no_temp_files(tmp_path)
    with atomic_output(tmp_path / "g.bin", replace=False) as tmp:
        Path(tmp).write_bytes(b"new")
    assert (tmp_path / "g.bin").read_bytes() == b"new" and _no_temp_files(tmp_path)


def test_quality_is_validated(tmp_path):
    for bad in (0, 101):
        with pytest.raises(ImageWriteError, match=r"o\.jpg: quality must be 1-100"):
            write_image(_rgb(), tmp_path / "o.jpg", quality=bad)
    write_image(_rgb(), tmp_path / "lo.jpg", quality=5)
    write_image(_rgb(), tmp_path / "hi.jpg", quality=100)
    assert (tmp_path / "lo.jpg").stat().st_size < (tmp_path / "hi.jpg").stat().st_size


def test_16_bit_tiff_keeps_the_descriptive_tags_and_software(tmp_path):
    import tifffile

    exif = _exif(orientation=1, make="surge-cam")
    exif[ExifTags.Base.Model] = "M1"
    exif[ExifTags.Base.DateTime] = "2024:01:02 03:04:05"
    exif[ExifTags.Base.Software] = "firmware"
    meta = ImageMeta(exif=exif.tobytes(), software="surge test")
    write_image(_rgb(dtype=np.uint16), tmp_path / "a.tif", meta)
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        tags = {t.name: t.value for t in tif.pages[0].tags.values()}
    assert tif.pages[0].dtype == np.uint16
    assert (tags["Make"], tags["Model"], tags["DateTime"], tags["Software"]) == ("surge-cam", "M1", "2024:01:02 03:04:05", "surge test")


def test_software_tag_without_source_exif_and_16_bit_png_text(tmp_path):
    write_image(_rgb(dtype=np.uint16), tmp_path / "a.png", ImageMeta(software="surge test"))
    with Image.open(tmp_path / "a.png") as img:
        assert img.info["Software"] == "surge test" and img.getexif()[ExifTags.Base.Software] == "surge test"
    write_image(_rgb(), tmp_path / "b.png", ImageMeta())
    with Image.open(tmp_path / "b.png") as img:
        assert "Software" not in img.info and len(img.getexif()) == 0
