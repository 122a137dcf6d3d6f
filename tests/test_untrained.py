"""Architecture presets have random weights: `surge upscale` and `surge eval` refuse them unless told."""

import numpy as np
import pytest
from PIL import Image

import surge
from surge.cli.main import main
from surge.imaging.bicubic import imresize


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(path)
    return path


def test_presets_are_marked_untrained_and_files_trained(tmp_path):
    from surge.models.files import save_model

    preset = surge.load_model("surge-tiny", device="cpu")
    assert preset.trained is False
    path = save_model(preset.network, tmp_path / "m.safetensors")
    assert surge.load_model(str(path), device="cpu").trained is True
    assert surge.load_model("bicubic", device="cpu").trained is True


def test_upscale_refuses_an_untrained_preset(tmp_path, capsys, image):
    out = tmp_path / "out"
    assert main(["upscale", str(image), "-o", str(out), "--model", "surge-tiny", "--device", "cpu", "-q"]) == 2
    err = capsys.readouterr().err
    assert err == ("surge: error: surge-tiny: is an untrained architecture preset (random weights: its output is noise); "
                   "use a trained model (`surge models`) or pass --allow-untrained\n")
    assert not out.exists() or not any(out.iterdir())


def test_upscale_runs_an_untrained_preset_when_allowed(tmp_path, capsys, image):
    out = tmp_path / "out"
    rc = main(["upscale", str(image), "-o", str(out), "--model", "surge-tiny", "--device", "cpu", "-q", "--allow-untrained"])
    assert rc == 0, capsys.readouterr().err
    assert Image.open(out / "in_x4.png").size == (40, 48)


def test_eval_refuses_an_untrained_preset_unless_allowed(tmp_path, capsys):
    set_dir = tmp_path / "bench" / "Tiny"
    set_dir.mkdir(parents=True)
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(set_dir / "a.png")
    args = ["eval", "--model", "surge-tiny", "--data", str(tmp_path / "bench"), "--sets", "Tiny", "--quiet",
            "--device", "cpu", "--json", str(tmp_path / "s.json")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("surge: error: surge-tiny: is an untrained architecture preset") and err.count("\n") == 1
    assert not (tmp_path / "s.json").exists()
    assert main([*args, "--allow-untrained"]) == 0
    assert (tmp_path / "s.json").is_file()


def test_trained_models_need_no_flag(tmp_path, capsys, image):
    assert main(["upscale", str(image), "-o", str(tmp_path / "o"), "--model", "bicubic", "-q"]) == 0
    out = np.asarray(Image.open(tmp_path / "o" / "in_x4.png"))
    assert out.shape == (48, 40, 3)
    expected = np.floor(np.clip(imresize(np.asarray(Image.open(image)).astype(np.float64) / 255, 4), 0, 1) * 255 + 0.5)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1
