"""Network interpolation (surge.models.interpolation, `surge interpolate`)."""

import pytest
import torch

from surge.cli.main import main as cli
from surge.errors import ModelFileError, SurgeError
from surge.models import GENERATOR_PRESETS, SuRGeGenerator
from surge.models.files import load_model_file, read_provenance, save_model, total_steps
from surge.models.interpolation import interpolate_models, save_interpolation


def _model(tmp_path, name, seed, preset="surge-tiny", provenance=None):
    torch.manual_seed(seed)
    net = SuRGeGenerator(GENERATOR_PRESETS[preset])
    return save_model(net, tmp_path / f"{name}.safetensors", provenance=provenance)


@pytest.fixture
def pair(tmp_path):
    a = _model(tmp_path, "a", 0, provenance={"experiment": "psnr", "tag": "last", "steps": 100, "stage": "psnr"})
    b = _model(tmp_path, "b", 1, provenance={
        "experiment": "gan", "tag": "last", "steps": 30, "stage": "gan", "val_psnr_y": 29.5,
        "scores": {"Set5": {"psnr_y": 29.5}}, "lineage": [{"experiment": "psnr", "tag": "last", "steps": 100}]})
    return a, b


def test_weights_are_the_convex_blend(pair):
    a, b = pair
    wa, wb = load_model_file(a)[0].state_dict(), load_model_file(b)[0].state_dict()
    for alpha in (0.0, 1.0, 0.25):
        got = interpolate_models(a, b, alpha)[0].state_dict()
        for k in wa:
            expected = wa[k] if alpha == 0 else wb[k] if alpha == 1 else 0.75 * wa[k] + 0.25 * wb[k]
            if alpha in (0, 1):
                assert torch.equal(got[k], expected), k  # the end points are exact
            else:
                torch.testing.assert_close(got[k], expected)


def test_provenance_is_bs_chain_with_the_blend_recorded(pair, tmp_path):
    a, b = pair
    out = save_interpolation(a, b, 0.6, tmp_path / "mix.safetensors")
    prov = read_provenance(out)
    assert prov["interpolation"]["alpha"] == 0.6
    assert prov["interpolation"]["a"] == {"file": "a.safetensors", "experiment": "psnr", "tag": "last", "steps": 100, "stage": "psnr"}
    assert prov["interpolation"]["b"]["experiment"] == "gan"
    # B's scores and validation figure were measured on other weights
    assert "scores" not in prov and prov["val_psnr_y"] is None
    assert total_steps(prov) == 130


def test_refuses_other_networks_bad_alpha_and_writing_over_an_input(pair, tmp_path):
    a, b = pair
    other = _model(tmp_path, "small", 2, preset="surge-small")
    with pytest.raises(ModelFileError, match="small.safetensors: a different architecture or config"):
        interpolate_models(a, other, 0.5)
    for alpha in (-0.1, 1.5, float("nan")):
        with pytest.raises(SurgeError, match="alpha must be a number in"):
            interpolate_models(a, b, alpha)
    before = b.read_bytes()
    with pytest.raises(SurgeError, match="is an input of the interpolation"):
        save_interpolation(a, b, 0.5, b)
    assert b.read_bytes() == before


def test_cli(pair, tmp_path, capsys):
    a, b = pair
    out = tmp_path / "mix.safetensors"
    assert cli(["interpolate", str(a), str(b), "--alpha", "0.5", "-o", str(out), "--fp16"]) == 0
    assert "wrote" in capsys.readouterr().out
    state = load_model_file(out)[0].state_dict()
    assert read_provenance(out)["interpolation"]["alpha"] == 0.5
    before = out.read_bytes()
    assert cli(["interpolate", str(a), str(b), "--alpha", "0.7", "-o", str(out)]) == 2
    assert "exists; use --overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert cli(["interpolate", str(a), str(tmp_path / "missing.safetensors"), "--alpha", "0.5", "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "missing.safetensors: no such model file or bundled model" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
    assert cli(["interpolate", "bicubic", str(b), "--alpha", "0.5", "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "bicubic: has no weights file" in capsys.readouterr().err
    assert cli(["interpolate", str(a), "surge-tiny", "--alpha", "0.5", "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "surge-tiny: has no weights file" in capsys.readouterr().err  # an untrained preset
    assert all(t.dtype == torch.float32 for t in state.values())  # fp16 storage is cast back on load


def test_cli_accepts_bundled_names(tmp_path):
    from surge.models.registry import bundled_path

    if bundled_path("surge-x4-psnr") is None or bundled_path("surge-x4") is None:
        pytest.skip("bundled weights not installed")
    out = tmp_path / "mix.safetensors"
    assert cli(["interpolate", "surge-x4-psnr", "surge-x4", "--alpha", "0.5", "-o", str(out)]) == 0
    assert read_provenance(out)["interpolation"]["b"]["file"] == "surge-x4.safetensors"


def test_a_file_with_nan_weights_is_blamed_by_interpolate_and_upscale(pair, tmp_path, capsys):
    """Issue 22: NaN weights passed `interpolate`, and `upscale` blamed itself ("this is a bug")."""
    import numpy as np
    from PIL import Image

    torch.manual_seed(0)
    net = SuRGeGenerator(GENERATOR_PRESETS["surge-tiny"])
    with torch.no_grad():
        next(net.parameters()).view(-1)[3] = float("nan")
    broken = save_model(net, tmp_path / "broken.safetensors", provenance={"experiment": "x", "stage": "psnr", "steps": 1})
    with pytest.raises(ModelFileError, match="broken.safetensors.*NaN"):
        load_model_file(broken)
    out = tmp_path / "blend.safetensors"
    assert cli(["interpolate", str(pair[0]), str(broken), "--alpha", "0.5", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broken.safetensors" in err and "NaN" in err and not out.exists()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    assert cli(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "up"), "--model", str(broken), "-q"]) == 2
    err = capsys.readouterr().err
    assert "broken.safetensors" in err and "NaN" in err and "bug" not in err
