"""MATLAB-compatible bicubic: known values by hand, numpy == torch, and the official LR files."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from surge.imaging.bicubic import imresize, imresize_torch


def _cubic(d: float) -> float:
    """Keys' cubic (a = -0.5), written out independently of the library."""
    d = abs(d)
    if d <= 1:
        return 1.5 * d**3 - 2.5 * d**2 + 1
    if d <= 2:
        return -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2
    return 0.0


@pytest.mark.parametrize("shape", [(16, 16), (13, 7), (9, 20, 3)])
@pytest.mark.parametrize("scale", [0.25, 0.5, 4, 3])
def test_constant_image_stays_constant(shape, scale):
    img = np.full(shape, 173, dtype=np.uint8)
    out = imresize(img, scale)
    assert out.dtype == np.uint8
    assert np.all(out == 173)
    flt = imresize(np.full(shape, 0.3), scale)
    np.testing.assert_allclose(flt, 0.3, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("size", "scale", "expected"), [((10, 7), 0.25, (3, 2)), ((10, 7), 4, (40, 28)), ((11, 5), 0.3, (4, 2))])
def test_output_size_is_ceil_of_scaled_size(size, scale, expected):
    assert imresize(np.zeros(size, np.uint8), scale).shape == expected
    assert tuple(imresize_torch(torch.zeros(1, 1, *size), scale).shape[-2:]) == expected


def test_ramp_upscale_matches_hand_computed_cubic_weights():
    # 1-D ramp f(i) = i (1-based), upscaled x4 along the width.
    n = 12
    ramp = np.tile(np.arange(1, n + 1, dtype=np.float64), (3, 1))
    out = imresize(ramp, out_size=(3, 4 * n))[1]
    # Output pixel x (1-based) samples input coordinate u = x/4 + 0.5*(1 - 1/4).
    # x = 1: u = 0.625, taps at input indices -1, 0, 1, 2 with distances 1.625, 0.625,
    # -0.375, -1.375; symmetric padding reads f(2), f(1), f(1), f(2).
    w = [_cubic(1.625), _cubic(0.625), _cubic(0.375), _cubic(1.375)]
    assert w == [-0.0439453125, 0.3896484375, 0.7275390625, -0.0732421875]  # exact binary fractions
    assert out[0] == pytest.approx(w[0] * 2 + w[1] * 1 + w[2] * 1 + w[3] * 2, abs=1e-12)
    assert out[0] == pytest.approx(0.8828125, abs=1e-12)  # not 0.625: the mirrored border bends the ramp
    # Interior: every non-zero tap is inside the image, and Keys' cubic reproduces linear
    # functions, so the value is the ramp itself at u.
    for x in range(9, 4 * n - 8):
        assert out[x - 1] == pytest.approx(x / 4 + 0.375, abs=1e-12)


def test_downscale_weights_are_the_stretched_kernel():
    # x1/4 of a single bright pixel: output pixel 1 samples u = 1/(1/4) + 0.5*(1 - 4) = 2.5
    # and sees input pixel i (1-based) with weight cubic((u - i) / 4) / 4 (the kernel
    # stretched 4x, so |u - i| < 8), normalised by the sum of the weights.
    img = np.zeros((1, 16))
    img[0, 3] = 1.0  # 1-based index 4
    out = imresize(img, out_size=(1, 4))
    taps = np.arange(-6, 12)  # floor(u - 8) .. +17: MATLAB's 18 taps
    weights = np.array([_cubic((2.5 - i) / 4) / 4 for i in taps])
    # Mirrored indices 0, -1, ... fold back onto 1, 2, ...: only index 4 and its mirror -3 hold the pixel.
    expected = (weights[taps == 4].sum() + weights[taps == -3].sum()) / weights.sum()
    assert out[0, 0] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("scale", [0.25, 4, 0.5])
def test_imresize_torch_equals_numpy_in_float64(scale):
    rng = np.random.default_rng(0)
    img = rng.random((3, 21, 17))
    ref = np.stack([imresize(c, scale) for c in img])
    got = imresize_torch(torch.from_numpy(img)[None], scale)[0].numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def test_uint8_resize_rounds_between_passes():
    # MATLAB rounds the height pass to uint8 before the width pass; the float path does not.
    # Values in [64, 192] keep the cubic overshoot inside [0, 255], so only rounding differs.
    rng = np.random.default_rng(1)
    img = rng.integers(64, 193, (40, 36, 3), dtype=np.uint8)
    u8 = imresize(img, 4).astype(int)
    flt = np.floor(np.clip(imresize(img.astype(np.float64), 4), 0, 255) + 0.5).astype(int)
    diff = np.abs(u8 - flt)
    assert diff.max() == 1  # the two conventions differ, by a single level at most
    assert (diff == 0).mean() > 0.5


@pytest.mark.parametrize("set_name", ["Set5", "Set14", "BSD100"])
def test_imresize_reproduces_official_matlab_lr_files(shared_datasets: Path, set_name: str):
    root = shared_datasets / "benchmark" / set_name
    hr_files = sorted((root / "HR").glob("*.png"))
    assert hr_files, f"no HR images in {root}"
    for hr_path in hr_files:
        hr = np.asarray(Image.open(hr_path))
        lr = np.asarray(Image.open(root / "LR_bicubic_X4" / f"{hr_path.stem}x4.png"))
        ours = imresize(hr, 0.25)
        assert ours.shape == lr.shape, hr_path.name
        # The 2 px border is excluded: LR files made before the HR crop may differ there.
        diff = np.abs(ours.astype(int) - lr.astype(int))[2:-2, 2:-2]
        assert diff.max() <= 1, f"{hr_path.name}: a pixel is off by {diff.max()} levels"
        assert (diff == 0).mean() >= 0.99, f"{hr_path.name}: only {(diff == 0).mean():.4f} of pixels identical"
