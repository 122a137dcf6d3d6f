"""JPEG quality estimate from the quantisation tables, and `surge upscale`'s note for compressed
input given to a model trained on clean LR."""

import io

import numpy as np
import pytest
from PIL import Image

from surge.cli.main import main
from surge.inference.image_io import jpeg_quality, read_image
from surge.models import GENERATOR_PRESETS, SuRGeGenerator
from surge.models.files import save_model


def _jpeg(quality, size=(24, 16), seed=0):
    arr = (np.random.default_rng(seed).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf)


@pytest.mark.parametrize("quality", [1, 10, 30, 49, 50, 51, 75, 85, 90, 95, 100])
def test_quality_of_a_pillow_jpeg_is_exact(quality):
    assert jpeg_quality(_jpeg(quality)) == quality


def test_quality_is_none_for_other_formats_and_read_image_reports_it(tmp_path):
    _jpeg(60).save(tmp_path / "a.jpg", quality=60)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.jpg")[1].jpeg_quality == 60
    assert read_image(tmp_path / "a.png")[1].jpeg_quality is None
    with Image.open(tmp_path / "a.png") as img:
        assert jpeg_quality(img) is None


def test_a_non_ijg_table_gets_the_nearest_ijg_quality():
    img = _jpeg(70)
    tables = {k: list(v) for k, v in img.quantization.items()}
    tables[0][0] += 1  # a camera's own table, one step off libjpeg's
    buf = io.BytesIO()
    img.save(buf, format="JPEG", qtables=tables)
    buf.seek(0)
    assert jpeg_quality(Image.open(buf)) == 70


def _model(path, degradation):
    torch_model = SuRGeGenerator(GENERATOR_PRESETS["surge-tiny"])
    save_model(torch_model, path, provenance={"stage": "psnr", "steps": 1, "degradation": degradation})
    return path


def _note_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("surge: note:")]


def test_upscale_notes_compressed_jpegs_for_a_model_trained_on_clean_lr(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for name, quality in (("a.jpg", 60), ("b.jpg", 95), ("c.jpg", 80)):
        _jpeg(quality).save(tmp_path / "in" / name, quality=quality)
    clean = _model(tmp_path / "clean.safetensors", None)
    real = _model(tmp_path / "real.safetensors", {"clean_prob": 0.2})
    args = ["upscale", str(tmp_path / "in"), "--device", "cpu"]
    assert main([*args, "-o", str(tmp_path / "out1"), "--model", str(clean)]) == 0
    notes = _note_lines(capsys)
    assert len(notes) == 1
    assert "a.jpg (JPEG quality ~60) and 1 more" in notes[0] and "--model surge-x4-real-psnr" in notes[0]
    # A model trained on degraded LR, the built-in bicubic, or --quiet: no note.
    assert main([*args, "-o", str(tmp_path / "out2"), "--model", str(real)]) == 0
    assert main([*args, "-o", str(tmp_path / "out3"), "--model", "bicubic"]) == 0
    assert main([*args, "-o", str(tmp_path / "out4"), "--model", str(clean), "--quiet"]) == 0
    assert _note_lines(capsys) == []
    # Only high-quality JPEGs: no note.
    assert main(["upscale", str(tmp_path / "in" / "b.jpg"), "-o", str(tmp_path / "out5"), "--device", "cpu",
                 "--model", str(clean)]) == 0
    assert _note_lines(capsys) == []


def test_real_for_jpeg_sends_compressed_jpegs_to_the_counterpart_file_by_file(tmp_path, capsys):
    import surge
    from surge.inference.image_io import write_image

    folder = tmp_path / "in"
    folder.mkdir()
    _jpeg(60).save(folder / "web.jpg", quality=60)
    _jpeg(95, seed=1).save(folder / "camera.jpg", quality=95)
    write_image(read_image(folder / "web.jpg")[0], folder / "shot.png")
    args = ["upscale", str(folder), "-o", str(tmp_path / "out"), "--device", "cpu", "--precision", "fp32",
            "--model", "surge-x4-psnr", "--real-for-jpeg"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "surge: 1 JPEG(s) of quality <= 85 upscaled with surge-x4-real-psnr" in err and "note:" not in err
    for name, model in (("web", "surge-x4-real-psnr"), ("camera", "surge-x4-psnr"), ("shot", "surge-x4-psnr")):
        source = next(folder.glob(f"{name}.*"))
        expected = surge.upscale(read_image(source)[0], model=surge.load_model(model, device="cpu", precision="fp32"))
        assert np.array_equal(read_image(tmp_path / "out" / f"{name}_x4.png")[0], expected), name
    # The same pixels as a PNG went to the clean model: the choice is by the file's JPEG tables.
    assert not np.array_equal(read_image(tmp_path / "out" / "web_x4.png")[0], read_image(tmp_path / "out" / "shot_x4.png")[0])


def test_real_for_jpeg_needs_a_model_with_a_counterpart_and_the_note_names_the_flag(tmp_path, capsys):
    _jpeg(60).save(tmp_path / "a.jpg", quality=60)
    base = ["upscale", str(tmp_path / "a.jpg"), "--device", "cpu"]
    assert main([*base, "-o", str(tmp_path / "o1"), "--model", "bicubic", "--real-for-jpeg"]) == 2
    err = capsys.readouterr().err
    assert "--real-for-jpeg: bicubic has no real-world counterpart" in err
    assert not (tmp_path / "o1").exists() or list((tmp_path / "o1").iterdir()) == []
    assert main([*base, "-o", str(tmp_path / "o2"), "--model", "surge-x4"]) == 0
    notes = _note_lines(capsys)
    assert len(notes) == 1 and "--real-for-jpeg upscales them with surge-x4-real" in notes[0]


def test_the_default_model_hands_compressed_jpegs_to_its_counterpart_unless_told_not_to(tmp_path, capsys):
    import surge

    _jpeg(60).save(tmp_path / "a.jpg", quality=60)
    base = ["upscale", str(tmp_path / "a.jpg"), "--device", "cpu", "--precision", "fp32"]
    assert main([*base, "-o", str(tmp_path / "default")]) == 0
    assert "upscaled with surge-x4-real" in capsys.readouterr().err
    expected = surge.upscale(read_image(tmp_path / "a.jpg")[0], model=surge.load_model("surge-x4-real", device="cpu", precision="fp32"))
    assert np.array_equal(read_image(tmp_path / "default" / "a_x4.png")[0], expected)
    with Image.open(tmp_path / "default" / "a_x4.png") as out:
        assert out.info["Software"] == f"surge {surge.__version__} (surge-x4-real)"
    assert main([*base, "-o", str(tmp_path / "off"), "--no-real-for-jpeg"]) == 0
    notes = _note_lines(capsys)
    assert len(notes) == 1 and "--real-for-jpeg upscales them with surge-x4-real" in notes[0]
    expected = surge.upscale(read_image(tmp_path / "a.jpg")[0], model=surge.load_model("surge-x4", device="cpu", precision="fp32"))
    assert np.array_equal(read_image(tmp_path / "off" / "a_x4.png")[0], expected)
    # A model named explicitly is used as named (here the default's own name): the note, no switch.
    assert main([*base, "-o", str(tmp_path / "named"), "--model", "surge-x4"]) == 0
    assert len(_note_lines(capsys)) == 1
    assert np.array_equal(read_image(tmp_path / "named" / "a_x4.png")[0], expected)
