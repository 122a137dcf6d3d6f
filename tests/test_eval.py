"""Benchmark runner and `surge eval`: tiny synthetic sets, bad input, and the proof on the real sets."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from surge.cli.main import main
from surge.errors import DatasetError, ImageWriteError
from surge.evaluation import evaluate, evaluate_set
from surge.evaluation.datasets import clear_cache, discover_set
from surge.evaluation.metrics import psnr_ssim_y, psnr_y
from surge.evaluation.reference import BICUBIC, BICUBIC_SELFEXSR
from surge.evaluation.runner import Predictor, SetResult
from surge.imaging.bicubic import imresize
from surge.models.config import GENERATOR_PRESETS
from surge.models.generator import SuRGeGenerator
from surge.inference.runtime import load_model


def _hr(seed: int, shape=(48, 40, 3)) -> np.ndarray:
    """Smooth colour gradients plus texture: small, but not trivial for a model."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    base = 120 + 60 * np.sin(xx / 5.0 + seed) * np.cos(yy / 7.0)
    img = base[..., None] + rng.normal(0, 12, (h, w, 3)) + np.array([0, 20, -20])
    img = np.clip(img, 0, 255).astype(np.uint8)
    return img if len(shape) == 3 else img[..., 0]


def _save(img: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def make_set(root: Path, name: str = "Tiny", layout: str = "selfexsr", n: int = 3, gray: bool = True) -> Path:
    """A set folder with ``n`` RGB images (+ one grayscale) in the given layout."""
    set_dir = root / name
    images = {f"im{i}": _hr(i) for i in range(n)}
    if gray:
        images["gray"] = _hr(9, (44, 36))
    for stem, hr in images.items():
        if layout == "selfexsr":
            _save(hr, set_dir / "HR" / f"{stem}.png")
            _save(imresize(hr, 0.25), set_dir / "LR_bicubic_X4" / f"{stem}x4.png")
        elif layout == "basicsr":
            _save(hr, set_dir / "GTmod12" / f"{stem}.png")
            _save(imresize(hr, 0.25), set_dir / "LRbicx4" / f"{stem}.png")
        elif layout == "hr-only":
            _save(hr, set_dir / "HR" / f"{stem}.png")
        elif layout == "flat":
            _save(hr, set_dir / f"{stem}.png")
    return set_dir


@pytest.fixture(autouse=True)
def _fresh_cache(request):
    # tmp paths can be reused between tests; the shared benchmark files stay cached.
    if "tmp_path" in request.fixturenames:
        clear_cache()


def _float_bicubic_sr(lr: np.ndarray) -> np.ndarray:
    """Independent expectation for the `bicubic` model: float64 MATLAB bicubic, clamp, round."""
    x = lr.astype(np.float64) / 255
    sr = imresize(x, 4)
    return np.floor(np.clip(sr, 0, 1) * 255 + 0.5).astype(np.uint8)


def test_evaluate_set_bicubic_scores_and_saved_images(tmp_path):
    set_dir = make_set(tmp_path / "bench")
    result = evaluate_set("bicubic", set_dir, save_sr=tmp_path / "sr")
    assert result.complete and result.images == result.total == 4
    assert set(result.per_image) == {"im0", "im1", "im2", "gray"}
    for name, scores in result.per_image.items():
        hr = np.asarray(Image.open(set_dir / "HR" / f"{name}.png"))
        lr = np.asarray(Image.open(set_dir / "LR_bicubic_X4" / f"{name}x4.png"))
        saved = np.asarray(Image.open(tmp_path / "sr" / f"{name}.png"))
        assert saved.shape == hr.shape  # gray stays single-channel
        expected = _float_bicubic_sr(lr)
        assert np.abs(saved.astype(int) - expected).max() <= 1
        assert (saved == expected).mean() > 0.999
        assert (scores.psnr_y, scores.ssim_y) == psnr_ssim_y(saved, hr)
        assert 15 < scores.psnr_y < 40 and 0 < scores.ssim_y < 1
    assert result.psnr_y == pytest.approx(np.mean([r.psnr_y for r in result.per_image.values()]))


def test_gray_lr_is_replicated_and_luma_taken(tmp_path):
    # A network that makes R, G, B different: the gray SR is BT.601 luma of its output.
    class Tinted(torch.nn.Module):
        scale = 4

        def forward(self, x):
            up = torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest")
            return up * torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1)

    set_dir = make_set(tmp_path, n=0, gray=True)
    result = evaluate_set(Tinted(), set_dir, save_sr=tmp_path / "sr")
    lr = np.asarray(Image.open(set_dir / "LR_bicubic_X4" / "grayx4.png")).astype(np.float64)
    expected = np.floor(np.repeat(np.repeat(lr / 255, 4, 0), 4, 1) * (0.299 + 0.587 * 0.5) * 255 + 0.5)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "sr" / "gray.png")), expected)
    assert result.complete


@pytest.mark.parametrize("layout", ["basicsr", "hr-only", "flat"])
def test_other_layouts_give_the_same_scores(tmp_path, layout):
    ref = evaluate_set("bicubic", make_set(tmp_path / "a"))
    other_dir = make_set(tmp_path / "b", layout=layout)
    bench = discover_set(other_dir)
    assert bench.lr_source == ("files" if layout == "basicsr" else "bicubic from HR")
    other = evaluate_set("bicubic", bench)
    assert other.complete and set(other.per_image) == set(ref.per_image)
    for name, r in ref.per_image.items():
        assert (other.per_image[name].psnr_y, other.per_image[name].ssim_y) == (r.psnr_y, r.ssim_y)


def test_hr_only_crops_hr_to_multiple_of_scale(tmp_path):
    hr = _hr(4, (50, 43, 3))
    _save(hr, tmp_path / "S" / "HR" / "odd.png")
    result = evaluate_set("bicubic", tmp_path / "S", save_sr=tmp_path / "sr")
    assert result.complete
    sr = np.asarray(Image.open(tmp_path / "sr" / "odd.png"))
    assert sr.shape == (48, 40, 3)
    expected = _float_bicubic_sr(imresize(hr[:48, :40], 0.25))
    assert np.abs(sr.astype(int) - expected).max() <= 1 and (sr == expected).mean() > 0.999
    assert result.per_image["odd"].psnr_y == psnr_y(sr, hr[:48, :40])


def test_hr_larger_than_4x_lr_by_less_than_4px_is_cropped(tmp_path):
    set_dir = make_set(tmp_path, n=1, gray=False)
    hr = np.asarray(Image.open(set_dir / "HR" / "im0.png"))
    _save(np.pad(hr, ((0, 3), (0, 2), (0, 0)), mode="edge"), set_dir / "HR" / "im0.png")
    result = evaluate_set("bicubic", set_dir)
    assert result.complete
    clear_cache()
    _save(hr, set_dir / "HR" / "im0.png")
    assert evaluate_set("bicubic", set_dir).per_image["im0"].psnr_y == result.per_image["im0"].psnr_y


def _broken_set(root: Path) -> Path:
    set_dir = make_set(root, n=3, gray=False)
    (set_dir / "LR_bicubic_X4" / "im0x4.png").unlink()  # missing LR
    _save(_hr(7, (20, 20, 3)), set_dir / "LR_bicubic_X4" / "im1x4.png")  # wrong size
    (set_dir / "HR" / "im2.png").write_bytes(b"not a png at all")  # unreadable
    _save(_hr(8, (48, 40, 3)), set_dir / "HR" / "ok.png")
    _save(imresize(_hr(8, (48, 40, 3)), 0.25), set_dir / "LR_bicubic_X4" / "okx4.png")
    _save(_hr(5, (12, 12, 3)), set_dir / "LR_bicubic_X4" / "strayx4.png")  # LR without HR
    return set_dir


def test_bad_inputs_are_skipped_with_a_reason_naming_the_file(tmp_path):
    set_dir = _broken_set(tmp_path)
    result = evaluate_set("bicubic", set_dir)
    assert result.images == 1 and result.total == 5 and not result.complete
    reasons = {s.name: s.reason for s in result.skipped}
    assert set(reasons) == {"im0", "im1", "im2", "strayx4"}
    assert "im0x4.png: LR file missing" in reasons["im0"]
    assert "im1x4.png" in reasons["im1"] and "does not pair with HR 40x48" in reasons["im1"]
    assert "im2.png: cannot read image" in reasons["im2"]
    assert "strayx4.png: LR file without an HR image" in reasons["strayx4"]
    assert result.coverage() == "1/5*"
    assert result.psnr_y == result.per_image["ok"].psnr_y  # the mean is over what was measured...
    d = result.to_dict()
    assert d["images"] == 1 and d["total"] == 5 and d["complete"] is False  # ...and says so
    assert set(d["skipped"]) == set(reasons)


def test_too_small_and_channel_mismatch_are_skipped(tmp_path):
    set_dir = make_set(tmp_path, n=0, gray=False)
    _save(_hr(1, (16, 16, 3)), set_dir / "HR" / "small.png")
    _save(imresize(_hr(1, (16, 16, 3)), 0.25), set_dir / "LR_bicubic_X4" / "smallx4.png")
    _save(_hr(2), set_dir / "HR" / "mixed.png")
    _save(imresize(_hr(2), 0.25)[..., 0], set_dir / "LR_bicubic_X4" / "mixedx4.png")
    result = evaluate_set("bicubic", set_dir)
    reasons = {s.name: s.reason for s in result.skipped}
    assert "too small to measure" in reasons["small"]
    assert "LR is grayscale but HR is RGB" in reasons["mixed"]
    assert result.images == 0 and math.isnan(result.psnr_y)
    assert result.to_dict()["psnr_y"] is None


def test_cli_eval_flags_skipped_images_and_exits_nonzero(tmp_path, capsys):
    _broken_set(tmp_path / "bench")
    out = tmp_path / "scores.json"
    rc = main(["eval", "--model", "bicubic", "--data", str(tmp_path / "bench"), "--sets", "Tiny", "--json", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "1/5*" in captured.out
    assert "mean over 1 of 5 images" in captured.err and "im0x4.png: LR file missing" in captured.err
    data = json.loads(out.read_text())
    assert data["Tiny"]["complete"] is False and data["Tiny"]["images"] == 1


def test_cli_eval_json_table_and_save_sr(tmp_path, capsys):
    make_set(tmp_path / "bench", "SetA")
    make_set(tmp_path / "bench", "SetB", layout="basicsr", n=2, gray=False)
    out = tmp_path / "res" / "scores.json"
    rc = main(["eval", "--model", "bicubic", "--data", str(tmp_path / "bench"), "--sets", "SetA", "setb",
               "--json", str(out), "--save-sr", str(tmp_path / "sr"), "--rgb", "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "PSNR-Y" in captured.out and "SSIM-Y" in captured.out and "PSNR-RGB" in captured.out
    data = json.loads(out.read_text())
    assert list(data) == ["SetA", "SetB"]
    for name, n in (("SetA", 4), ("SetB", 2)):
        entry = data[name]
        assert entry["images"] == n and entry["complete"] and entry["model"] == "bicubic" and entry["params"] == 0
        assert set(entry["per_image"]["im0"]) >= {"psnr_y", "ssim_y", "psnr_rgb"}
        assert entry["psnr_y"] == pytest.approx(np.mean([v["psnr_y"] for v in entry["per_image"].values()]))
        assert len(list((tmp_path / "sr" / name).glob("*.png"))) == n
    # The JSON round-trips into the same result.
    again = SetResult.from_dict("SetA", data["SetA"])
    assert again.psnr_y == pytest.approx(data["SetA"]["psnr_y"]) and again.complete
    assert not list(out.parent.glob(".*.tmp"))


def test_cli_eval_errors_are_one_line(tmp_path, capsys):
    make_set(tmp_path / "bench")
    assert main(["eval", "--model", "bicubic", "--data", str(tmp_path / "bench"), "--sets", "Tiny", "Nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("surge: error: ") and "set 'Nope' not found" in err and "Tiny" in err
    assert err.count("\n") == 1
    assert main(["eval", "--model", "bicubic", "--data", str(tmp_path / "missing")]) == 2
    assert "benchmark folder not found" in capsys.readouterr().err
    assert main(["eval", "--model", "no-such-model", "--data", str(tmp_path / "bench"), "--sets", "Tiny"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_default_data_folder_missing_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--model", "bicubic"]) == 2
    assert "no --data given" in capsys.readouterr().err


def test_save_sr_never_overwrites_inputs(tmp_path):
    set_dir = make_set(tmp_path / "bench", layout="flat")
    with pytest.raises(ImageWriteError, match="inside the benchmark set folder"):
        evaluate_set("bicubic", set_dir, save_sr=set_dir)
    assert np.asarray(Image.open(set_dir / "im0.png")).shape == (48, 40, 3)


def test_identical_output_gives_inf_psnr_and_null_in_json(tmp_path, capsys):
    set_dir = make_set(tmp_path / "bench", n=1, gray=False)
    hr = np.asarray(Image.open(set_dir / "HR" / "im0.png"))
    oracle = Predictor.from_function(lambda lr: hr.copy(), "oracle")
    result = evaluate(oracle, tmp_path / "bench", ["Tiny"])["Tiny"]
    assert result.psnr_y == math.inf and result.ssim_y == pytest.approx(1.0)
    d = result.to_dict()
    assert d["psnr_y"] is None and d["per_image"]["im0"]["psnr_y"] is None
    assert SetResult.from_dict("Tiny", d).psnr_y == math.inf
    json.dumps(d, allow_nan=False)


def test_raw_module_is_restored_to_training_mode_and_matches_engine(tmp_path):
    set_dir = make_set(tmp_path / "bench", n=2, gray=False)
    torch.manual_seed(0)
    net = SuRGeGenerator(GENERATOR_PRESETS["surge-tiny"]).train()
    raw = evaluate_set(net, set_dir)
    assert net.training
    model = load_model("surge-tiny")
    model.network.load_state_dict(net.state_dict())
    via_engine = evaluate_set(model, set_dir, device="cpu")
    for name, r in raw.per_image.items():
        assert r.psnr_y == pytest.approx(via_engine.per_image[name].psnr_y, abs=0.01)


def test_evaluate_checks_every_set_before_running(tmp_path):
    make_set(tmp_path / "bench")
    calls = []
    fn = Predictor.from_function(lambda lr: calls.append(1) or imresize(lr, 4), "fn")
    with pytest.raises(DatasetError, match="Missing"):
        evaluate(fn, tmp_path / "bench", ["Tiny", "Missing"])
    assert not calls


# ---------------------------------------------------------------------------------------
# The proof: the published bicubic numbers on the real benchmark files.


def test_surge_eval_bicubic_reproduces_published_numbers(shared_datasets, tmp_path, capsys):
    out = tmp_path / "bicubic.json"
    rc = main(["eval", "--model", "bicubic", "--data", str(shared_datasets / "benchmark"),
               "--sets", "Set5", "Set14", "BSD100", "--json", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    data = json.loads(out.read_text())
    for name in ("Set5", "Set14", "BSD100"):
        psnr, ssim = BICUBIC.scores[name]
        assert data[name]["images"] == {"Set5": 5, "Set14": 14, "BSD100": 100}[name] and data[name]["complete"]
        assert abs(data[name]["psnr_y"] - psnr) <= 0.01, (name, data[name]["psnr_y"])
        assert abs(data[name]["ssim_y"] - ssim) <= 0.001, (name, data[name]["ssim_y"])


def test_matlab_uint8_bicubic_reproduces_the_selfexsr_table_digit_for_digit(shared_datasets):
    # MATLAB's imresize on the uint8 LR (rounding between the two passes) + rgb2ycbcr on
    # uint8 (rounded Y) is exactly what the authors of these files ran; their README prints
    # 28.42/0.8101, 25.99/0.7023, 25.96/0.6672.
    matlab = Predictor.from_function(lambda lr: imresize(lr, 4), "matlab-bicubic")
    results = evaluate(matlab, shared_datasets / "benchmark", ["Set5", "Set14", "BSD100"])
    for name, r in results.items():
        psnr, ssim = BICUBIC_SELFEXSR.scores[name]
        assert r.complete
        assert round(r.psnr_y, 2) == psnr, (name, r.psnr_y)
        assert round(r.ssim_y, 4) == ssim, (name, r.ssim_y)


def test_images_too_small_for_one_perceptual_metric_keep_their_psnr_ssim(tmp_path, capsys):
    """Issue 22: 64 px images were dropped from PSNR/SSIM too, and the reason named VIF."""
    set_dir = tmp_path / "bench" / "Tiny"
    for i in range(2):
        hr = _hr(i, (64, 64, 3))
        _save(hr, set_dir / "HR" / f"im{i}.png")
        _save(imresize(hr, 0.25), set_dir / "LR_bicubic_X4" / f"im{i}x4.png")
    out = tmp_path / "scores.json"
    rc = main(["eval", "--model", "bicubic", "--data", str(tmp_path / "bench"), "--sets", "Tiny", "--quiet",
               "--metrics", "psnr", "ssim", "niqe", "vif", "--json", str(out)])
    captured = capsys.readouterr()
    assert rc == 1  # a metric was not measured on every image: flagged, as skipped images are
    entry = json.loads(out.read_text())["Tiny"]
    assert entry["images"] == 2 and all("psnr_y" in v and "vif" in v and "niqe" not in v for v in entry["per_image"].values())
    assert "NIQE" in captured.err and "104" in captured.err and "VIF" not in captured.err
    assert SetResult.from_dict("Tiny", entry).psnr_y == pytest.approx(entry["psnr_y"])


def test_eval_json_to_an_unwritable_place_fails_before_evaluating(tmp_path, capsys, monkeypatch):
    """Issue 22: `eval --json` to an unwritable place failed only after the whole evaluation."""
    import surge.evaluation.runner as runner

    make_set(tmp_path / "bench")
    blocked = tmp_path / "file"
    blocked.write_text("a file, not a folder")
    calls = []
    monkeypatch.setattr(runner, "evaluate", lambda *a, **k: calls.append(1) or {})
    assert main(["eval", "--model", "bicubic", "--data", str(tmp_path / "bench"), "--sets", "Tiny", "--quiet",
                 "--json", str(blocked / "scores.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "scores.json" in err and not calls
