"""NIQE and VIF (surge.evaluation.perceptual) and their `surge eval --metrics` columns."""

import json

import numpy as np
import pytest
import skimage.data
from PIL import Image
from scipy.ndimage import gaussian_filter

from surge.cli.main import main
from surge.errors import SurgeError
from surge.evaluation import perceptual
from surge.evaluation.datasets import clear_cache
from surge.evaluation.runner import SetResult, evaluate_set
from surge.imaging.bicubic import imresize

# Reference values, not computed by surge (the reference code is not part of the repository).
#
# "basicsr": BasicSR 1.4.2 (`pip download --no-deps basicsr==1.4.2`), basicsr/metrics/niqe.py,
# `calculate_niqe(img_bgr, crop_border, input_order='HWC', convert_to='y')` (a gray image:
# `input_order='HW'`), run standalone from the sdist (registry, cv2 and the scipy.ndimage.filters
# import stubbed; none is used on this path). It computes in float32.
# "basicsr64": the same file with its float32 casts (niqe.py `astype(np.float32)`, and
# matlab_functions.imresize's `.float()`, `torch.FloatTensor`, `torch.linspace`) made float64, as
# MATLAB computes in double, on a luma rounded half to even (np.round).
# Keys: skimage.data image name -> {crop: value}.
REFERENCE = {
    "camera": {"basicsr": {0: 3.096207, 4: 3.046518}, "basicsr64": {0: 3.0962022, 4: 3.0467219}},
    "chelsea": {"basicsr": {0: 2.625524, 4: 2.689313}, "basicsr64": {0: 2.6255267, 4: 2.6893130}},
    "coffee": {"basicsr": {0: 4.115242, 4: 4.079406}, "basicsr64": {0: 4.1153316, 4: 4.0796290}},
    "astronaut": {"basicsr": {0: 3.064948, 4: 2.991296}, "basicsr64": {0: 3.1004515, 4: 3.0205269}},
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
@pytest.mark.parametrize("crop", [0, 4])
def test_niqe_matches_basicsr_on_skimage_images(name, crop):
    """Within 0.05 of BasicSR as released, and within 2e-3 of it computed in double precision.

    The float32 release differs by up to 0.035 (astronaut), and only where flat dark regions
    make the MSCN signs depend on rounding noise; in float64 the remaining differences come from
    luma values that are exactly x.5 (we round half up, as MATLAB's rgb2ycbcr on uint8 does;
    np.round rounds half to even: 4 pixels of astronaut, 1 of coffee) and from summation order.
    """
    img = getattr(skimage.data, name)()
    ours = perceptual.niqe(img, crop)
    assert ours == pytest.approx(REFERENCE[name]["basicsr"][crop], abs=0.05)
    assert ours == pytest.approx(REFERENCE[name]["basicsr64"][crop], abs=2e-3)


def test_niqe_of_set14_baboon_matches_the_published_matlab_value(shared_datasets):
    """BasicSR's calculate_niqe docstring: 'MATLAB R2021a result for tests/data/baboon.png:
    5.72957338', the Set14 baboon (BasicSR 1.4.2 on our Set14/HR/baboon.png gives 5.729573, its
    published 'Our re-implementation result'); crop 0."""
    img = np.asarray(Image.open(shared_datasets / "benchmark" / "Set14" / "HR" / "baboon.png").convert("RGB"))
    assert perceptual.niqe(img, 0) == pytest.approx(5.72957338, abs=1e-3)


def test_gaussian_window_is_the_release_window():
    with np.load(perceptual.resources.files("surge.evaluation").joinpath("data", "niqe_pris_params.npz")) as data:
        shipped = data["gaussian_window"]
    np.testing.assert_allclose(perceptual.gaussian_window(), shipped, rtol=0, atol=1e-15)


def test_aggd_fit_recovers_known_shapes():
    """Samples of a generalised Gaussian with shape 1 (Laplace), and of an asymmetric one with shape 2."""
    rng = np.random.default_rng(0)
    laplace = rng.laplace(0, 1.0, 200_000)
    # AGGD with shape 2, left scale 2, right scale 1: each side a half-normal, the left one
    # holding 2/3 of the mass (the density is continuous at 0).
    half = np.abs(rng.normal(0, 1.0, 200_000))
    gauss = np.where(rng.random(200_000) < 2 / 3, -2 * half, half)
    shape, left, right = perceptual.aggd_fit(np.stack([laplace, gauss]))
    assert shape == pytest.approx([1.0, 2.0], abs=0.03)
    assert left[1] / right[1] == pytest.approx(2.0, rel=0.02)
    assert left[0] == pytest.approx(right[0], rel=0.02)


def test_niqe_rises_with_blur_and_noise():
    img = skimage.data.camera().astype(np.float64)
    rng = np.random.default_rng(0)
    clean = perceptual.niqe_of_luma(img)
    blurred = perceptual.niqe_of_luma(np.round(gaussian_filter(img, 2.0)))
    noisy = perceptual.niqe_of_luma(np.clip(np.round(img + rng.normal(0, 20, img.shape)), 0, 255))
    assert blurred > clean + 1 and noisy > clean + 1


def test_niqe_edge_cases():
    img = skimage.data.camera()
    assert np.isfinite(perceptual.niqe(img[:96, :96]))  # one block: covariance 0, as MATLAB's cov
    with pytest.raises(ValueError, match="no whole 96x96 block"):
        perceptual.niqe(img[:103, :200], crop=4)
    with pytest.raises(ValueError, match="flat"):
        perceptual.niqe(np.full((192, 192), 128, np.uint8))
    # Float [0, 1] input is the same image as uint8.
    assert perceptual.niqe(img.astype(np.float64) / 255) == pytest.approx(perceptual.niqe(img), abs=1e-9)


# The first VIF call imports torchmetrics (5-10 s on the 2-core CI machine); the tests that call it are slow.
@pytest.mark.slow
def test_vif_is_one_for_identical_images_and_orders_distortions():
    hr = skimage.data.astronaut()[:200, :200]
    assert perceptual.vif(hr, hr) == pytest.approx(1.0, abs=1e-9)
    blur1 = np.round(gaussian_filter(hr.astype(np.float64), (1, 1, 0))).astype(np.uint8)
    blur3 = np.round(gaussian_filter(hr.astype(np.float64), (3, 3, 0))).astype(np.uint8)
    v1, v3 = perceptual.vif(blur1, hr), perceptual.vif(blur3, hr)
    assert 1 > v1 > v3 > 0
    with pytest.raises(ValueError, match="41 px minimum"):
        perceptual.vif(hr[:48, :48], hr[:48, :48], crop=4)


def _save(img, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def _make_set(root):
    """Two 112x112 HR crops of skimage images (+ LR), and one 64x64 image too small for NIQE."""
    for name, hr in {"astro": skimage.data.astronaut()[100:212, 150:262], "coffee": skimage.data.coffee()[:112, 200:312],
                     "small": skimage.data.chelsea()[:64, :64]}.items():
        _save(hr, root / "Tiny" / "HR" / f"{name}.png")
        _save(imresize(hr, 0.25), root / "Tiny" / "LR_bicubic_X4" / f"{name}x4.png")
    clear_cache()
    return root / "Tiny"


@pytest.mark.slow
def test_evaluate_set_measures_niqe_and_vif_and_skips_too_small(tmp_path):
    set_dir = _make_set(tmp_path)
    result = evaluate_set("bicubic", set_dir, perceptual_metrics=["vif", "niqe"], save_sr=tmp_path / "sr")
    # Issue 22: an image too small for NIQE keeps its PSNR/SSIM (and VIF); only NIQE leaves it out.
    assert sorted(result.per_image) == ["astro", "coffee", "small"] and not result.skipped
    assert [s.name for s in result.unmeasured] == ["small"] and "too small for NIQE" in result.unmeasured[0].reason
    assert result.per_image["small"].niqe is None and result.per_image["small"].vif is not None
    for name, scores in result.per_image.items():
        if name == "small":
            continue
        saved = np.asarray(Image.open(tmp_path / "sr" / f"{name}.png"))  # the measured 8-bit SR
        hr = np.asarray(Image.open(set_dir / "HR" / f"{name}.png"))
        assert scores.niqe == perceptual.niqe(saved, crop=4)
        assert scores.vif == perceptual.vif(saved, hr, crop=4)
    assert 0 < result.vif < 1 and result.niqe == pytest.approx(np.mean([r.niqe for r in result.per_image.values() if r.niqe is not None]))
    again = SetResult.from_dict("Tiny", result.to_dict())
    assert again.niqe == pytest.approx(result.niqe) and again.vif == pytest.approx(result.vif)
    with pytest.raises(SurgeError, match="unknown perceptual metric"):
        evaluate_set("bicubic", set_dir, perceptual_metrics=["lpips"])


@pytest.mark.slow
def test_cli_eval_metrics_columns_and_json(tmp_path, capsys):
    _make_set(tmp_path / "bench")
    out = tmp_path / "scores.json"
    common = ["eval", "--model", "bicubic", "--data", str(tmp_path / "bench"), "--sets", "Tiny", "--quiet", "--json", str(out)]
    assert main(common + ["--metrics", "psnr", "ssim", "niqe", "vif"]) == 1  # "small" has no NIQE
    captured = capsys.readouterr()
    header = captured.out.splitlines()[2].split()
    assert header == ["set", "images", "PSNR-Y", "SSIM-Y", "NIQE", "VIF", "s/img"]
    assert "small.png: 64x64 px is too small for NIQE" in captured.err and "PSNR/SSIM measured" in captured.err
    data = json.loads(out.read_text())["Tiny"]
    assert {"niqe", "vif"} <= set(data) and {"niqe", "vif"} <= set(data["per_image"]["astro"])
    # The default stays PSNR/SSIM: no new columns, no skipped image.
    assert main(common) == 0
    captured = capsys.readouterr()
    assert "NIQE" not in captured.out and "VIF" not in captured.out
    data = json.loads(out.read_text())["Tiny"]
    assert "niqe" not in data and "vif" not in data["per_image"]["astro"]
    with pytest.raises(SystemExit) as exc:
        main(common + ["--metrics", "lpips"])
    assert exc.value.code == 2 and "invalid choice: 'lpips'" in capsys.readouterr().err
