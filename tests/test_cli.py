"""`surge upscale`, `surge info`, `surge models` end to end (in-process, tiny models)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image, ImageCms

import surge
from surge.cli.main import main
from surge.inference.image_io import read_image, write_image


def _save(path, channels=3, h=6, w=8, seed=0, mode=None, **save_args):
    arr = (np.random.default_rng(seed).random((h, w, channels)) * 255).astype(np.uint8)
    img = Image.fromarray(arr[..., 0] if channels == 1 else arr)
    if mode:
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **save_args)
    return path


def _up(*args):
    return main(["upscale", *map(str, args), "--model", "bicubic", "--device", "cpu", "--quiet"])


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_help_subprocess():
    result = subprocess.run([sys.executable, "-m", "surge", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for command in ("upscale", "info", "models"):
        assert command in result.stdout


def test_upscale_help_lists_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["upscale", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--recursive", "--suffix", "--ext", "--overwrite", "--tile", "--overlap", "--precision",
                   "--device", "--max-pixels", "--backend", "--quiet"):
        assert option in out


def test_folder_structure_kept_and_output_matches_api(tmp_path):
    src = tmp_path / "in"
    _save(src / "a.png")
    _save(src / "sub" / "b.jpg", seed=1)
    (src / "notes.txt").write_text("ignored")
    assert _up(src, "-o", tmp_path / "out", "--recursive") == 0
    assert _files(tmp_path / "out") == ["a_x4.png", "sub/b_x4.png"]
    got, _ = read_image(tmp_path / "out" / "a_x4.png")
    expected = surge.upscale(read_image(src / "a.png")[0], model="bicubic", device="cpu")
    assert np.array_equal(got, expected)


def test_non_recursive_ignores_subfolders(tmp_path):
    _save(tmp_path / "in" / "a.png")
    _save(tmp_path / "in" / "sub" / "b.png")
    assert _up(tmp_path / "in", "-o", tmp_path / "out") == 0
    assert _files(tmp_path / "out") == ["a_x4.png"]


def test_output_folder_inside_input_is_not_reprocessed(tmp_path):
    src = tmp_path / "in"
    _save(src / "a.png")
    for _ in range(2):
        assert _up(src, "-o", src / "x4", "--recursive", "--overwrite") == 0
    assert _files(src / "x4") == ["a_x4.png"]


def test_suffix_and_ext(tmp_path):
    _save(tmp_path / "a.png")
    _save(tmp_path / "b.webp")
    assert _up(tmp_path / "a.png", tmp_path / "b.webp", "-o", tmp_path / "o1", "--ext", "jpg", "--suffix=-big") == 0
    assert _files(tmp_path / "o1") == ["a-big.jpg", "b-big.jpg"]
    assert Image.open(tmp_path / "o1" / "a-big.jpg").format == "JPEG"
    assert _up(tmp_path / "a.png", tmp_path / "b.webp", "-o", tmp_path / "o2", "--ext", "same") == 0
    assert _files(tmp_path / "o2") == ["a_x4.png", "b_x4.webp"]


def test_existing_output_skipped_unless_overwrite(tmp_path, capsys):
    _save(tmp_path / "a.png")
    out = tmp_path / "out" / "a_x4.png"
    out.parent.mkdir()
    out.write_bytes(b"keep me")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", "bicubic"]) == 0
    assert out.read_bytes() == b"keep me"
    assert "skipping" in capsys.readouterr().err
    assert _up(tmp_path / "a.png", "-o", tmp_path / "out", "--overwrite") == 0
    assert Image.open(out).size == (32, 24)


def test_two_inputs_one_output_refused(tmp_path, capsys):
    _save(tmp_path / "in" / "a.png")
    _save(tmp_path / "in" / "a.jpg")
    assert _up(tmp_path / "in", "-o", tmp_path / "out") == 1
    assert "is also the output of" in capsys.readouterr().err
    assert _files(tmp_path / "out") == ["a_x4.png"]


def test_model_loaded_and_prepared_once(tmp_path, monkeypatch):
    from surge.inference import _engine

    for i in range(3):
        _save(tmp_path / "in" / f"{i}.png", seed=i)
    loads, builds = [], []
    real_load, real_optimize = surge.load_model, _engine.optimize_for_inference
    monkeypatch.setattr(surge, "load_model", lambda *a, **k: loads.append(a) or real_load(*a, **k), raising=False)
    monkeypatch.setattr(_engine, "optimize_for_inference", lambda net, **k: builds.append(net) or real_optimize(net, **k))
    assert _up(tmp_path / "in", "-o", tmp_path / "out") == 0
    assert len(loads) == 1 and len(builds) == 1 and len(_files(tmp_path / "out")) == 3


@pytest.mark.parametrize("tile", ["0", "6", "auto"])
def test_tile_options_same_result(tmp_path, tile):
    _save(tmp_path / "a.png", h=10, w=12)
    args = ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / tile), "--model", "surge-tiny",
            "--precision", "fp32", "--tile", tile, "--quiet", "--allow-untrained"]
    torch.manual_seed(0)  # the preset is randomly initialised: same seed, same weights
    assert main(args) == 0
    torch.manual_seed(0)
    reference = surge.upscale(read_image(tmp_path / "a.png")[0], model="surge-tiny", precision="fp32", tile=None)
    assert np.array_equal(read_image(tmp_path / tile / "a_x4.png")[0], reference)


# --- modes through the CLI -----------------------------------------------------------


def test_rgba_keeps_alpha_and_l_stays_l(tmp_path):
    _save(tmp_path / "rgba.png", channels=4)
    _save(tmp_path / "grey.png", channels=1)
    assert _up(tmp_path / "rgba.png", tmp_path / "grey.png", "-o", tmp_path / "out") == 0
    assert Image.open(tmp_path / "out" / "rgba_x4.png").mode == "RGBA"
    assert Image.open(tmp_path / "out" / "grey_x4.png").mode == "L"


def test_16bit_pngs_stay_16bit(tmp_path):
    rng = np.random.default_rng(0)
    grey = (rng.random((5, 7)) * 65535).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    write_image((rng.random((5, 7, 3)) * 65535).astype(np.uint16), tmp_path / "c16.png")
    assert _up(tmp_path / "g16.png", tmp_path / "c16.png", "-o", tmp_path / "out") == 0
    assert Image.open(tmp_path / "out" / "g16_x4.png").mode == "I;16"
    colour, meta = read_image(tmp_path / "out" / "c16_x4.png")
    assert colour.dtype == np.uint16 and colour.shape == (20, 28, 3) and meta.mode == "RGB;16"
    assert (colour % 257 != 0).any()


def test_palette_and_cmyk_become_rgb(tmp_path):
    _save(tmp_path / "p.png", mode="P")
    _save(tmp_path / "c.jpg", mode="CMYK")
    assert _up(tmp_path / "p.png", tmp_path / "c.jpg", "-o", tmp_path / "out") == 0
    assert Image.open(tmp_path / "out" / "p_x4.png").mode == "RGB"
    assert Image.open(tmp_path / "out" / "c_x4.png").mode == "RGB"


def test_exif_orientation_applied_and_icc_kept(tmp_path):
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    _save(tmp_path / "photo.jpg", h=6, w=8, exif=exif, icc_profile=icc)
    assert _up(tmp_path / "photo.jpg", "-o", tmp_path / "out", "--ext", "jpg") == 0
    out = Image.open(tmp_path / "out" / "photo_x4.jpg")
    assert out.size == (24, 32)  # upright: 6x8 stored sideways -> 8 high, 6 wide, x4
    assert out.getexif().get(ExifTags.Base.Orientation, 1) == 1
    assert out.info.get("icc_profile") == icc


# --- info / models -------------------------------------------------------------------


def test_info_text_and_json(capsys):
    assert main(["info", "surge-tiny"]) == 0
    text = capsys.readouterr().out
    for field in ("architecture", "SuRGeGenerator", "parameters", "MFLOPs per LR pixel", "receptive radius",
                  "precisions", "source", "config", "learned mixing weights", "F0 (mu*I0, nu*C0)",
                  "channels:", "3 in, 3 out", "input size (LR):", "at least 1 px"):
        assert field in text
    assert "trained:" in text and "no (random initial weights" in text
    assert main(["info", "bicubic", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["scale"] == 4 and info["parameters"] == 0 and info["receptive_radius_lr_px"] == 2
    assert info["trained"] is True and info["description"].startswith("MATLAB-compatible bicubic")


def test_info_unknown_model_exits_2(capsys):
    assert main(["info", "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_models_table_marks_default(capsys, monkeypatch):
    monkeypatch.setattr("surge.cli.models_cmd.default_model_name", lambda: "surge-tiny")
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    default_rows = [line for line in lines if line.startswith("*") and "surge-tiny" in line]
    assert len(default_rows) == 1
    assert any(line.split()[0] == "bicubic" for line in lines)
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows if r["default"]] == ["surge-tiny"]


def test_upscale_unknown_model_exits_2(tmp_path, capsys):
    _save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", "nope"]) == 2
    assert "nope: unknown model" in capsys.readouterr().err


def test_bad_tile_is_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["upscale", "x.png", "-o", str(tmp_path), "--tile", "-3"])
    assert exc.value.code == 2


def test_onnxruntime_backend(tmp_path, capsys):
    from surge.models.files import save_model

    pytest.importorskip("onnxruntime")
    _save(tmp_path / "a.png")
    weights = save_model(surge.load_model("surge-tiny", device="cpu").network, tmp_path / "tiny.safetensors")
    args = ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", str(weights), "--quiet"]
    assert main([*args, "--backend", "onnxruntime"]) == 0
    ort = read_image(tmp_path / "out" / "a_x4.png")[0].astype(int)
    assert main([*args, "--precision", "fp32", "--overwrite"]) == 0
    assert np.abs(ort - read_image(tmp_path / "out" / "a_x4.png")[0]).max() <= 1
    # A precision the backend cannot run is a usage error before any file is touched.
    assert main([*args, "--backend", "onnxruntime", "--precision", "bf16", "-o", str(tmp_path / "o2")]) == 2
    assert "fp32 only" in capsys.readouterr().err and not (tmp_path / "o2" / "a_x4.png").exists()


def test_float_image_outside_unit_range_fails_that_file_only(tmp_path, capsys):
    Image.fromarray(np.full((5, 6), 200.0, dtype=np.float32)).save(tmp_path / "f.tif")
    _save(tmp_path / "ok.png")
    assert _up(tmp_path / "f.tif", tmp_path / "ok.png", "-o", tmp_path / "out") == 1
    err = capsys.readouterr().err
    (line,) = err.splitlines()
    assert "f.tif: " in line and "[0, 1]" in line and "200" in line
    assert "Traceback" not in err and _files(tmp_path / "out") == ["ok_x4.png"]


def test_top_level_help_does_not_import_torch():
    # `surge --help` should answer at once; each subcommand module imports torch (~1-2 s).
    code = ("import sys\nfrom surge.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "upscale" in out and "export" in out  # every subcommand is still listed
    assert out.strip().endswith("False")


def test_a_closed_pipe_ends_quietly_with_status_141():
    code = ("import surge.cli.models_cmd as c, surge.cli.main as m, sys\n"
            "c.run = lambda args: print('row\\n' * 200000)\n"  # more than a pipe holds: the write must fail
            "sys.exit(m.main(['models']))\n")
    proc = subprocess.run(["bash", "-c", f'"{sys.executable}" -c "$0" | head -c 10 >/dev/null; echo "${{PIPESTATUS[0]}}"', code],
                          capture_output=True, text=True, timeout=60)
    assert proc.stderr == "" and proc.stdout.strip() == "141"
