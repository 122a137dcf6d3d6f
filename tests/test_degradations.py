"""Real-world degradation model (surge.data.degradations): operators, determinism, config, loader."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from surge.data.degradations import (
    DegradationConfig,
    OrderConfig,
    add_gaussian_noise,
    add_poisson_noise,
    bench_v1,
    bench_v1_params,
    degrade,
    filter2d,
    gaussian_kernel,
    generalized_gaussian_kernel,
    jpeg,
    plateau_kernel,
    random_kernel,
    resize,
    sinc_kernel,
)
from surge.data.pairs import PairDataset, StepSampler
from surge.errors import ConfigError, DatasetError
from surge.training.config import ExperimentConfig, config_from_dict

PSNR_LOSS = {"loss": {"l1": True, "adversarial": False, "js": False, "gw": False}}


def photo(h=64, w=64, seed=0) -> np.ndarray:
    """Smooth colour structure plus mild texture, uint8 HxWx3."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 0.5 + 0.3 * np.sin(xx / 6.0 + seed) * np.cos(yy / 9.0)
    img = base[..., None] + np.array([0.0, 0.08, -0.08]) + rng.normal(0, 0.02, (h, w, 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def second_moments(k: np.ndarray) -> tuple[float, float]:
    """Variance of a kernel along x (columns) and y (rows)."""
    c = np.arange(k.shape[0]) - k.shape[0] // 2
    return float((k.sum(0) * c**2).sum()), float((k.sum(1) * c**2).sum())


# --- kernels ----------------------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda: gaussian_kernel(21, 2.0),
    lambda: gaussian_kernel(15, 3.0, 0.7, 0.4),
    lambda: generalized_gaussian_kernel(13, 1.5, 2.5, 1.0, 0.6),
    lambda: plateau_kernel(21, 2.0, 1.0, -0.3, 1.5),
    lambda: sinc_kernel(11, np.pi / 3),
])
def test_kernels_are_normalised_odd_and_point_symmetric(make):
    k = make()
    assert k.dtype == np.float32 and k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert abs(float(k.sum()) - 1) < 1e-5
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-7)  # centred: blurring does not shift the image


def test_isotropic_gaussian_has_the_requested_sigma_and_anisotropic_one_its_orientation():
    vx, vy = second_moments(gaussian_kernel(31, 2.0))
    assert vx == pytest.approx(4.0, rel=0.01) and vy == pytest.approx(4.0, rel=0.01)
    vx, vy = second_moments(gaussian_kernel(31, 3.0, 1.0, 0.0))
    assert vx == pytest.approx(9.0, rel=0.02) and vy == pytest.approx(1.0, rel=0.02)
    np.testing.assert_allclose(gaussian_kernel(31, 3.0, 1.0, math.pi / 2), gaussian_kernel(31, 3.0, 1.0, 0.0).T, atol=1e-7)


def test_generalized_gaussian_shapes():
    np.testing.assert_allclose(generalized_gaussian_kernel(21, 2.0, 2.0, 0.0, 1.0), gaussian_kernel(21, 2.0), atol=1e-7)
    def near_and_far(k):  # value 1 px and 8 px from the centre, relative to the centre
        return k[10, 11] / k[10, 10], k[10, 18] / k[10, 10]

    g_near, g_far = near_and_far(gaussian_kernel(21, 2.0))
    near, far = near_and_far(generalized_gaussian_kernel(21, 2.0, 2.0, 0.0, 0.5))
    assert near < g_near and far > g_far  # beta < 1: sharper peak, heavier tails
    near, far = near_and_far(generalized_gaussian_kernel(21, 2.0, 2.0, 0.0, 3.0))
    assert near > g_near and far < g_far  # beta > 1: flatter top, lighter tails


def test_plateau_kernel_has_a_flat_top_and_heavier_tails_than_a_gaussian():
    p, g = plateau_kernel(21, 2.0, 2.0, 0.0, 2.0), gaussian_kernel(21, 2.0)
    assert p[10, 11] / p[10, 10] > g[10, 11] / g[10, 10]
    assert p[10, 0] / p[10, 10] > 100 * g[10, 0] / g[10, 10]


def test_sinc_kernel_is_a_low_pass_with_the_requested_cutoff():
    k = sinc_kernel(21, np.pi / 3)
    response = np.abs(np.fft.fft(np.pad(k.sum(0), (0, 107))))  # 1-D cut of the 2-D response, 128 bins
    freqs = np.fft.fftfreq(128) * 2 * np.pi
    assert response[0] == pytest.approx(1.0, abs=1e-5)
    assert response[np.abs(freqs) < np.pi / 6].min() > 0.8
    assert response[np.abs(freqs) > np.pi / 2].max() < 0.15


def test_random_kernels_follow_the_configured_types_and_sizes():
    rng = np.random.default_rng(0)
    cfg = OrderConfig(kernel_size=(7, 9), sinc_prob=0.0, kernel_types=("iso",), kernel_probs=(1.0,))
    for _ in range(10):
        k = random_kernel(rng, cfg)
        assert k.shape[0] in (7, 9)
        np.testing.assert_allclose(k, k.T, atol=1e-7)  # isotropic
    aniso = OrderConfig(sinc_prob=0.0, kernel_types=("aniso",), kernel_probs=(1.0,))
    assert any(np.abs(k - k.T).max() > 1e-4 for k in (random_kernel(rng, aniso) for _ in range(5)))


# --- operators --------------------------------------------------------------------------


def test_filter2d_convolves_keeps_size_dtype_and_constants():
    k = np.zeros((5, 5), np.float32)
    k[0, 1], k[2, 2] = 0.25, 0.75  # not point-symmetric: tells convolution from correlation
    delta = np.zeros((9, 9, 1), np.float32)
    delta[4, 4] = 1
    np.testing.assert_allclose(filter2d(delta, k)[2:7, 2:7, 0], k, atol=1e-7)
    flat = np.full((5, 6, 3), 0.3, np.float32)  # smaller than the kernel's radius
    out = filter2d(flat, gaussian_kernel(21, 3.0))
    assert out.shape == flat.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.3, atol=1e-6)
    assert filter2d(flat.astype(np.float64), k).dtype == np.float64


@pytest.mark.parametrize("mode", ["area", "bilinear", "bicubic"])
def test_resize_gives_the_requested_size_and_keeps_constants(mode):
    img = np.full((30, 40, 3), 0.6, np.float32)
    for size in ((7, 11), (45, 61)):
        out = resize(img, size, mode)
        assert out.shape == (*size, 3)
        np.testing.assert_allclose(out, 0.6, atol=1e-5)


def test_gaussian_noise_has_the_requested_std_and_gray_noise_is_shared():
    img = np.full((256, 256, 3), 0.5, np.float32)
    noisy = add_gaussian_noise(img, np.random.default_rng(0), 10 / 255)
    diff = noisy - img
    assert diff.std() == pytest.approx(10 / 255, rel=0.02) and abs(diff.mean()) < 1e-3
    assert abs(np.corrcoef(diff[..., 0].ravel(), diff[..., 1].ravel())[0, 1]) < 0.02  # colour: independent channels
    gray = add_gaussian_noise(img, np.random.default_rng(0), 10 / 255, gray=True)
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    assert gray.std() == pytest.approx(10 / 255, rel=0.02)
    assert add_gaussian_noise(np.ones((8, 8, 3), np.float32), np.random.default_rng(0), 0.5).max() <= 1.0


def test_poisson_noise_grows_with_intensity():
    levels = np.repeat(np.arange(256, dtype=np.float32)[None, :] / 255, 400, axis=0)
    img = np.repeat(levels[..., None], 3, axis=2)
    diff = add_poisson_noise(img, np.random.default_rng(0), scale=1.0) - img
    # 256 levels -> 256 photons per unit intensity: noise variance = intensity / 256.
    for lo, hi in ((60, 70), (180, 190)):
        band = img[:, lo:hi, 0]
        assert diff[:, lo:hi].var() == pytest.approx(band.mean() / 256, rel=0.1)
    gray = add_poisson_noise(img, np.random.default_rng(0), scale=1.0, gray=True) - img
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])


def test_jpeg_changes_the_image_and_leaves_8x8_block_edges():
    img = photo(128, 128).astype(np.float32) / 255
    out = jpeg(img, 20)
    assert out.shape == img.shape and out.dtype == np.float32 and 0 < np.abs(out - img).mean() < 0.1

    def blockiness(x):
        # Mean jump across columns 8k-1|8k over the mean jump inside blocks.
        jumps = np.abs(np.diff(x.mean(axis=2), axis=1)).mean(axis=0)
        at_edges = np.arange(jumps.size) % 8 == 7
        return jumps[at_edges].mean() / jumps[~at_edges].mean()

    assert blockiness(out) > 1.3 > 1.1 > blockiness(img)
    assert np.abs(jpeg(img, 95) - img).mean() < np.abs(out - img).mean()


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_antialiased_resize_removes_the_aliasing_of_a_plain_downscale(mode):
    # Stripes 2 px wide (period 4) downscaled x1/4: a box average (what a sensor or any common
    # resampler does) leaves flat mid-grey; torch's plain resize samples one phase of the pattern
    # and turns it into a flat *white* image: the aliasing Real-ESRGAN's recipe trains on.
    img = np.repeat(np.tile(np.array([0.0, 1.0, 1.0, 0.0], np.float32), 15)[None, :, None], 64, 0).repeat(3, 2)
    plain = resize(img, (16, 15), mode)
    smooth = resize(img, (16, 15), mode, antialias=True)
    assert abs(plain.mean() - 0.5) > 0.4
    np.testing.assert_allclose(smooth[:, 1:-1], 0.5, atol=0.02)  # the outer columns see the border


def test_antialias_prob_zero_draws_nothing_and_one_changes_the_lr():
    hr = photo(64, 64)
    # LR of the default recipe made by the implementation before antialias_prob existed (commit
    # 5dc8c5c): an extra random draw would shift every later choice (a shifted stream differs by
    # ~18 levels on average); the margin only allows a rare rounding flip on another CPU.
    before = np.load(Path(__file__).parent / "data" / "degrade_default_before_antialias.npy")
    now = np.stack([degrade(hr, np.random.default_rng(k), DegradationConfig()) for k in range(len(before))])
    assert np.abs(now.astype(int) - before).mean() < 0.5
    aa = DegradationConfig(antialias_prob=1.0, resize_modes=("bicubic",))
    no = DegradationConfig(antialias_prob=0.0, resize_modes=("bicubic",))
    diffs = [np.abs(degrade(hr, np.random.default_rng(k), aa).astype(int) - degrade(hr, np.random.default_rng(k), no)).mean()
             for k in range(6)]
    assert max(diffs) > 0.5  # 8-bit levels: some samples differ (noise draws shift, resizes smooth)
    with pytest.raises(ConfigError, match="antialias_prob"):
        DegradationConfig(antialias_prob=1.5)


# --- the pipeline -----------------------------------------------------------------------


def test_degrade_is_a_pure_function_of_the_generator_state():
    hr, cfg = photo(64, 64), DegradationConfig()
    a = degrade(hr, np.random.default_rng([7, 3, 11]), cfg)
    assert a.shape == (16, 16, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, degrade(hr, np.random.default_rng([7, 3, 11]), cfg))
    others = [degrade(hr, np.random.default_rng([7, 3, k]), cfg) for k in range(12, 16)]
    assert all(not np.array_equal(a, o) for o in others)


def test_degrade_makes_a_worse_input_than_bicubic_on_average():
    from surge.imaging.bicubic import imresize

    hr = photo(96, 96)
    clean = imresize(hr, 0.25).astype(np.float64)
    errors = [np.abs(degrade(hr, np.random.default_rng(k), DegradationConfig()) - clean).mean() for k in range(8)]
    assert np.mean(errors) > 2.0  # 8-bit levels


def test_degrade_works_down_to_the_smallest_crop():
    # hr_size 8 (the config's minimum): a first-order x0.15 resize leaves 1 px, smaller than any kernel.
    hr = photo(8, 12)
    for k in range(40):
        assert degrade(hr, np.random.default_rng(k), DegradationConfig()).shape == (2, 3, 3)


def test_degrade_refuses_sizes_that_are_not_multiples_of_the_scale():
    with pytest.raises(ValueError):
        degrade(photo(30, 32), np.random.default_rng(0), DegradationConfig())


def test_bench_v1_parameters_depend_on_seed_and_name_only_and_lie_in_range():
    p = bench_v1_params(0, "Set5/baby")
    assert p == bench_v1_params(0, "Set5/baby")
    assert p != bench_v1_params(1, "Set5/baby") and p != bench_v1_params(0, "Set5/bird")
    for key in ("Set5/a", "Set14/b", "BSD100/c", "x/y"):
        q = bench_v1_params(3, key)
        assert 0.8 <= q["blur_sigma"] <= 1.6 and 2 <= q["noise_sigma_8bit"] <= 8 and 30 <= q["jpeg_quality"] <= 70


def test_bench_v1_rgb_and_gray():
    params = bench_v1_params(0, "T/x")
    hr = photo(40, 48)
    lr = bench_v1(hr, params)
    assert lr.shape == (10, 12, 3) and lr.dtype == np.uint8
    np.testing.assert_array_equal(lr, bench_v1(hr, params))
    assert bench_v1(hr[..., 1], params).shape == (10, 12)


# --- config -----------------------------------------------------------------------------


def test_degradation_table_is_parsed_defaults_kept_and_round_trips():
    cfg = ExperimentConfig.from_dict({**PSNR_LOSS, "data": {"degradation": {"final_sinc_prob": 0.5, "second": {"jpeg_range": [40, 90]}}}})
    d = cfg.data.degradation
    assert isinstance(d, DegradationConfig) and d.final_sinc_prob == 0.5
    assert d.second.jpeg_range == (40, 90) and d.second.blur_prob == 0.8  # other keys: second-order defaults
    assert d.first == OrderConfig()
    assert config_from_dict(cfg.to_dict()) == cfg
    assert ExperimentConfig.from_dict(PSNR_LOSS).data.degradation is None  # off unless the table is there


@pytest.mark.parametrize("table, message", [
    ({"bogus": 1}, "data.degradation: unknown key(s) bogus"),
    ({"first": {"blur_prob": 2}}, "data.degradation.first: blur_prob must be a probability"),
    ({"second": {"kernel_size": [8, 21]}}, "data.degradation.second: kernel_size must be odd"),
    ({"first": {"kernel_probs": [0.5, 0.5]}}, "kernel_probs must be 6 non-negative probabilities"),
    ({"first": {"jpeg_range": [30, 101]}}, "jpeg_range must be integer qualities in [1, 100]"),
    ({"resize_modes": ["nearest"]}, "resize_modes: unknown nearest"),
    ({"clean_prob": 1.5}, "clean_prob must be a probability"),
    (3, "data.degradation must be a table"),
])
def test_bad_degradation_settings_name_the_file_and_key(table, message):
    with pytest.raises(ConfigError) as exc:
        ExperimentConfig.from_dict({**PSNR_LOSS, "data": {"degradation": table}}, source="real.toml")
    assert str(exc.value).startswith("real.toml: ") and message in str(exc.value) and "\n" not in str(exc.value)


def test_degradation_and_lr_folders_exclude_each_other():
    data = {"train_dirs": ["a"], "lr_dirs": ["b"], "degradation": {}}
    with pytest.raises(ConfigError, match="cannot be combined with data.lr_dirs"):
        ExperimentConfig.from_dict({**PSNR_LOSS, "data": data})
    with pytest.raises(DatasetError):
        PairDataset([photo()], 32, lr_images=[photo(8, 8)], degradation=DegradationConfig())


# --- the training dataset ---------------------------------------------------------------


@pytest.fixture(scope="module")
def images():
    return [photo(48, 56, seed=i) for i in range(3)]


def test_dataset_with_degradation_is_deterministic_and_keeps_the_hr_crops(images):
    plain = PairDataset(images, 32, seed=5)
    real = PairDataset(images, 32, seed=5, degradation=DegradationConfig())
    lr9, hr9 = real[9]
    assert lr9.shape == (3, 8, 8) and lr9.dtype == torch.float32 and 0 <= lr9.min() and lr9.max() <= 1
    assert torch.equal((lr9 * 255).round() / 255, lr9)  # 8-bit values, like a decoded JPEG
    real[4]  # another sample in between must not change sample 9
    assert torch.equal(real[9][0], lr9)
    assert not torch.equal(real[10][0], lr9)
    assert torch.equal(hr9, plain[9][1])  # same crops and augmentations as a bicubic run
    assert not torch.equal(lr9, plain[9][0])


def test_dataset_without_degradation_is_unchanged(images):
    from surge.imaging.bicubic import imresize

    lr, hr = PairDataset(images, 32, seed=5)[3]
    hr8 = (hr * 255).round().byte().permute(1, 2, 0).numpy()
    np.testing.assert_array_equal((lr * 255).round().byte().permute(1, 2, 0).numpy(), imresize(hr8, 0.25))


def test_clean_prob_mixes_clean_bicubic_samples_into_the_degraded_ones(images):
    plain = PairDataset(images, 32, seed=5)
    always = PairDataset(images, 32, seed=5, degradation=DegradationConfig(clean_prob=1.0))
    mixed = PairDataset(images, 32, seed=5, degradation=DegradationConfig(clean_prob=0.5))
    clean = [torch.equal(mixed[k][0], plain[k][0]) for k in range(40)]
    assert all(torch.equal(always[k][0], plain[k][0]) for k in range(5))
    assert 8 <= sum(clean) <= 32  # about half the samples, never all or none
    assert all(torch.equal(mixed[k][1], plain[k][1]) for k in range(5))  # same HR crops


def test_degradation_runs_in_loader_workers_with_the_same_samples(images):
    dataset = PairDataset(images, 32, seed=1, degradation=DegradationConfig())
    sampler = StepSampler(0, 3, 4)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, sampler=sampler, num_workers=2)
    for step, (lr, hr) in enumerate(loader):
        expected = [dataset[k] for k in range(step * 4, step * 4 + 4)]
        assert torch.equal(lr, torch.stack([e[0] for e in expected]))
        assert torch.equal(hr, torch.stack([e[1] for e in expected]))


def test_a_training_run_uses_the_degradation_and_records_it(tmp_path, images, monkeypatch):
    from PIL import Image

    import surge
    import surge.data.pairs
    from surge.training.config import load_config
    from surge.training.trainer import Trainer

    for i, img in enumerate(images):
        Image.fromarray(img).save(tmp_path / f"{i}.png")
    path = tmp_path / "real.toml"
    path.write_text(f"""
[data]
train_dirs = ["{tmp_path}"]
hr_size = 32
batch_size = 2
val_dir = ""
[data.degradation.second]
jpeg_range = [20, 40]
[generator]
preset = "surge-tiny"
[loss]
l1 = true
adversarial = false
js = false
gw = false
[train]
stage = "psnr"
steps = 2
precision = "fp32"
threads = 1
""")
    cfg = load_config(path)
    assert cfg.data.degradation.second.jpeg_range == (20, 40)
    calls = []
    real_degrade = surge.data.pairs.degrade
    monkeypatch.setattr(surge.data.pairs, "degrade", lambda *a: calls.append(a[2]) or real_degrade(*a))
    Trainer(cfg, tmp_path / "run").run()
    assert len(calls) == 4 and calls[0] == cfg.data.degradation  # 2 steps x batch 2, in-process loader
    provenance = surge.load_model(str(tmp_path / "run" / "last.safetensors")).provenance
    assert provenance["degradation"]["second"]["jpeg_range"] == [20, 40]
