"""Self-ensemble: the eight symmetries, their inverses, and the averaged output of a real model."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import surge
from surge.cli.main import main
from surge.errors import SurgeError
from surge.evaluation.runner import Predictor
from surge.inference.ensemble import SYMMETRIES, SelfEnsemble, apply, invert, self_ensemble
from surge.inference.runtime import load_model


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_model("surge-tiny", device="cpu", precision="fp32")


def _numpy_symmetry(x: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """The same transform as ``apply`` on an (H, W, C) array, written with numpy."""
    if flip:
        x = x[:, ::-1]
    return np.rot90(x, k, axes=(0, 1))


def test_the_eight_symmetries_are_distinct_and_each_is_undone_by_its_inverse():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    seen = set()
    for k, flip in SYMMETRIES:
        t = apply(x, k, flip)
        assert t.shape[-2:] == ((4, 5) if k % 2 == 0 else (5, 4))
        torch.testing.assert_close(invert(t, k, flip), x, rtol=0, atol=0)
        seen.add((tuple(t.shape), tuple(t.flatten().tolist())))
        arr = x[0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(t[0].permute(1, 2, 0).numpy(), _numpy_symmetry(arr, k, flip))
    assert len(SYMMETRIES) == 8 and len(seen) == 8


def test_self_ensemble_is_the_mean_of_the_eight_mapped_back_outputs():
    # A function that is not equivariant (it adds a ramp along W) makes the eight outputs differ.
    def run(x):
        ramp = torch.linspace(0, 1, x.shape[-1]).expand_as(x)
        return torch.nn.functional.interpolate(x + ramp, scale_factor=2, mode="nearest")

    x = torch.rand(1, 3, 4, 6, generator=torch.Generator().manual_seed(0))
    outputs = [invert(run(apply(x, k, f)), k, f) for k, f in SYMMETRIES]
    assert not torch.allclose(outputs[0], outputs[1])
    torch.testing.assert_close(self_ensemble(run, x), torch.stack(outputs).mean(0))
    # An equivariant function is left unchanged.
    nearest = lambda t: torch.nn.functional.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
    torch.testing.assert_close(self_ensemble(nearest, x), nearest(x))


def test_upscale_with_self_ensemble_averages_the_network_over_the_symmetries(tiny):
    lr = np.random.default_rng(1).random((7, 10, 3)).astype(np.float32)
    out = surge.upscale(lr, model=tiny, tile=None, self_ensemble=True)
    net = tiny.network.eval()
    with torch.no_grad():
        x = torch.from_numpy(lr.transpose(2, 0, 1))[None]
        expected = torch.stack([invert(net(apply(x, k, f)), k, f) for k, f in SYMMETRIES]).mean(0)
    expected = np.clip(expected[0].permute(1, 2, 0).numpy(), 0, 1)
    assert out.shape == (28, 40, 3)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    plain = surge.upscale(lr, model=tiny, tile=None)
    assert np.abs(out - plain).max() > 1e-4  # 10x the tolerance above: the average is not one pass


def test_tiled_self_ensemble_equals_untiled(tiny):
    lr = (np.random.default_rng(2).random((23, 17, 3)) * 255).round().astype(np.uint8)
    whole = surge.upscale(lr, model=tiny, tile=None, self_ensemble=True)
    tiled = surge.upscale(lr, model=tiny, tile=8, self_ensemble=True, batch_size=2)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1  # rounding of equal floats


def test_self_ensemble_keeps_the_engine_attributes(tiny):
    engine = SelfEnsemble(tiny._engine("fp32"))
    assert engine.scale == 4 and engine.precision == "fp32" and engine.model is tiny
    assert engine.describe().endswith("self-ensemble x8")
    import copy

    assert copy.copy(engine).engine is engine.engine  # copying does not recurse through __getattr__


def test_predictor_names_the_ensemble_and_refuses_a_bare_module(tiny):
    predictor = Predictor(tiny, self_ensemble=True)
    assert predictor.name == f"{tiny.name} +x8" and "self-ensemble x8" in predictor.describe()
    with pytest.raises(SurgeError, match="self-ensemble"):
        Predictor(torch.nn.Conv2d(3, 3, 1), self_ensemble=True)


def _write_set(root, name="Set5", n=2):
    rng = np.random.default_rng(0)
    for sub, size in (("HR", 32), ("LR_bicubic_X4", 8)):
        (root / name / sub).mkdir(parents=True)
    for i in range(n):
        hr = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
        Image.fromarray(hr).save(root / name / "HR" / f"img{i}.png")
        Image.fromarray(hr[::4, ::4]).save(root / name / "LR_bicubic_X4" / f"img{i}x4.png")


def test_cli_flags(tmp_path, capsys):
    _write_set(tmp_path / "data")
    assert main(["eval", "--model", "bicubic", "--data", str(tmp_path / "data"), "--sets", "Set5",
                 "--self-ensemble", "--quiet", "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "self-ensemble x8" in out
    assert json.loads((tmp_path / "s.json").read_text())["Set5"]["model"] == "bicubic +x8"
    src = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(3).random((6, 9, 3)) * 255).astype(np.uint8)).save(src)
    assert main(["upscale", str(src), "-o", str(tmp_path / "out.png"), "--model", "bicubic",
                 "--self-ensemble", "-q"]) == 0
    assert Image.open(tmp_path / "out.png").size == (36, 24)
