"""PSNR-Y / SSIM-Y with known values (no shared data needed)."""

import math

import numpy as np
import pytest

from surge.evaluation import metrics
from surge.evaluation.metrics import psnr_rgb, psnr_ssim_y, psnr_y, rgb_to_y, ssim_y


def _rgb(r, g, b, shape=(4, 4)):
    img = np.zeros((*shape, 3), np.uint8)
    img[...] = (r, g, b)
    return img


def test_rgb_to_y_bt601_endpoints_and_primaries():
    assert rgb_to_y(_rgb(0, 0, 0))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(_rgb(255, 255, 255))[0, 0] == pytest.approx(235.0)
    assert rgb_to_y(_rgb(255, 0, 0))[0, 0] == pytest.approx(16 + 65.481)
    assert rgb_to_y(_rgb(0, 255, 0))[0, 0] == pytest.approx(16 + 128.553)
    assert rgb_to_y(_rgb(0, 0, 255))[0, 0] == pytest.approx(16 + 24.966)
    y = rgb_to_y(_rgb(10, 200, 30))
    assert y.dtype == np.float64 and y.shape == (4, 4)


def test_rgb_to_y_uint8_and_float_agree_and_rounding_is_matlabs():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (8, 9, 3), dtype=np.uint8)
    y = rgb_to_y(img)
    np.testing.assert_allclose(rgb_to_y(img.astype(np.float32) / 255), y, atol=1e-4)
    assert not np.all(y == np.round(y))  # unrounded by default
    rounded = rgb_to_y(img, rounded=True)
    np.testing.assert_array_equal(rounded, np.floor(y + 0.5))
    # Red 255 -> 81.481 -> 81; (0, 2, 0) -> 17.008 -> 17; (0, 0, 5) -> 16.4895 -> 16
    assert rgb_to_y(_rgb(255, 0, 0), rounded=True)[0, 0] == 81
    assert rgb_to_y(_rgb(0, 0, 5), rounded=True)[0, 0] == 16


def test_single_channel_is_its_own_y():
    gray = np.arange(0, 250, 10, dtype=np.uint8).reshape(5, 5)
    np.testing.assert_array_equal(rgb_to_y(gray), gray.astype(np.float64))
    np.testing.assert_array_equal(rgb_to_y(gray[..., None], rounded=True), gray.astype(np.float64))
    # Not compressed to 16..235 as an R=G=B colour image would be.
    assert rgb_to_y(np.stack([gray] * 3, -1))[0, 0] == pytest.approx(16.0)


def test_psnr_of_identical_images_is_inf():
    img = _rgb(12, 200, 99, (30, 30))
    assert psnr_y(img, img) == math.inf
    assert psnr_rgb(img, img) == math.inf


def test_known_mse_gives_known_psnr():
    hr = np.full((20, 20), 100, np.uint8)
    sr = np.full((20, 20), 110, np.uint8)  # gray: MSE = 100 on Y
    assert psnr_y(sr, hr) == pytest.approx(10 * math.log10(255**2 / 100))
    assert psnr_y(sr, hr) == pytest.approx(28.130803608679106)
    # RGB PSNR over all channels: one channel off by 30 -> MSE = 900 / 3 = 300.
    a, b = _rgb(50, 60, 70, (16, 16)), _rgb(80, 60, 70, (16, 16))
    assert psnr_rgb(a, b, crop=0) == pytest.approx(10 * math.log10(255**2 / 300))


def test_crop_removes_borders():
    hr = np.full((24, 24), 128, np.uint8)
    sr = hr.copy()
    sr[:4] = 0
    sr[:, -4:] = 255
    assert psnr_y(sr, hr, crop=4) == math.inf
    assert psnr_y(sr, hr, crop=3) < 20
    assert ssim_y(sr, hr, crop=3) < 1.0
    assert ssim_y(sr, hr, crop=4) == pytest.approx(1.0)


def test_ssim_of_image_with_itself_is_one():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    assert ssim_y(img, img) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_constant_images_follows_wangs_formula():
    # No variance anywhere: SSIM = (2 mu1 mu2 + C1) / (mu1^2 + mu2^2 + C1), C1 = (0.01 * 255)^2.
    a = np.full((30, 30), 100, np.uint8)
    b = np.full((30, 30), 110, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert ssim_y(a, b) == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1), abs=1e-12)


def test_ssim_uses_gaussian_window_with_population_statistics():
    # One bright pixel in the centre of an otherwise flat 11x11 region: the SSIM map has a
    # single valid value, computed here by hand from the normalised 11x11 Gaussian.
    a = np.zeros((19, 19), np.float64)
    b = a.copy()
    b[9, 9] = 50
    g = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    mu_b = 50 * w[5, 5]
    var_b = 2500 * w[5, 5] - mu_b**2
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    expected = (c1 * c2) / ((mu_b**2 + c1) * (var_b + c2))
    assert metrics.ssim_of_y(a[4:15, 4:15], b[4:15, 4:15]) == pytest.approx(expected, rel=1e-9)


def test_y_conventions_differ_and_are_validated():
    rng = np.random.default_rng(5)
    hr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-3, 4, hr.shape), 0, 255).astype(np.uint8)
    assert psnr_y(sr, hr, y_convention="matlab") != psnr_y(sr, hr, y_convention="float")
    assert psnr_ssim_y(sr, hr) == (psnr_y(sr, hr), ssim_y(sr, hr))
    with pytest.raises(ValueError, match="y_convention"):
        psnr_y(sr, hr, y_convention="bt709")


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="SR is"):
        psnr_y(np.zeros((20, 20), np.uint8), np.zeros((24, 20), np.uint8))
    with pytest.raises(ValueError, match="too small"):
        psnr_y(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), crop=4)
    with pytest.raises(ValueError, match="SSIM window"):
        ssim_y(np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8), crop=4)
    with pytest.raises(ValueError, match="HxW"):
        rgb_to_y(np.zeros((4, 4, 4), np.uint8))
    assert metrics.min_measurable_size(4) == 19
