"""Tiling: the plan covers the image exactly once, and tiled output equals untiled output."""

import numpy as np
import pytest
import torch

import surge
from surge.inference import tiling
from surge.inference import upscale as upscale_module
from surge.inference.tiling import activation_bytes_per_lr_pixel, auto_tile_size, plan_tiles, run_tiled
from surge.models.config import GeneratorConfig
from surge.models.generator import SuRGeGenerator
from surge.inference.runtime import SRModel, load_model


def _random_batchnorm_stats(net: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics, so BatchNorm in eval mode really transforms."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    net.eval()


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    # fp32: the equality checks below are about tiling, not reduced-precision rounding.
    return load_model("surge-tiny", device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def small_bn_model():
    """Paper layout (BatchNorm, tanh, 9x9 heads) at a width that runs in milliseconds."""
    torch.manual_seed(1)
    cfg = GeneratorConfig(width0=8, width1=8, blocks0=1, blocks1=1)
    net = SuRGeGenerator(cfg)
    _random_batchnorm_stats(net)
    return SRModel(name="small-bn", network=net, scale=4, source="test", precision="fp32")


def upscale_array(lr, model, **options):
    return surge.upscale(lr, model=model, **options)


def _lr(h=40, w=52, seed=0):
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


@pytest.mark.parametrize(("h", "w", "tile", "overlap"), [(40, 52, 16, 5), (17, 9, 4, 0), (10, 10, 32, 3), (33, 64, 7, 40)])
def test_plan_covers_each_pixel_once_with_clipped_context(h, w, tile, overlap):
    cover = np.zeros((h, w), dtype=int)
    for t in plan_tiles(h, w, tile, overlap):
        (vy, vx), (cy, cx) = t.valid, t.context
        cover[vy, vx] += 1
        assert vy.stop - vy.start <= tile and vx.stop - vx.start <= tile
        assert cy.start == max(0, vy.start - overlap) and cy.stop == min(h, vy.stop + overlap)
        assert cx.start == max(0, vx.start - overlap) and cx.stop == min(w, vx.stop + overlap)
    assert (cover == 1).all()


def test_plan_untiled_is_one_tile():
    for tile in (None, 0, 100):
        (only,) = plan_tiles(30, 20, tile, 5)
        assert only.valid == only.context == (slice(0, 30), slice(0, 20))


def test_plan_tiles_are_balanced():
    # 52 px in tiles of at most 16: 4 tiles of 13, not 16+16+16+4.
    widths = sorted({t.valid[1].stop - t.valid[1].start for t in plan_tiles(16, 52, 16, 2)})
    assert widths == [13]


def test_plan_rejects_negative_values():
    with pytest.raises(ValueError):
        plan_tiles(10, 10, 4, -1)
    with pytest.raises(ValueError):
        plan_tiles(10, 10, -4, 1)


def test_tiled_equals_untiled_tiny(tiny_model):
    lr = _lr()
    full = upscale_array(lr, tiny_model, tile=None)
    radius = tiny_model.receptive_radius
    for tile, batch in [(16, 1), (16, 3), (11, 2)]:
        tiled = upscale_array(lr, tiny_model, tile=tile, overlap=radius, batch_size=batch)
        assert np.abs(tiled - full).max() <= 1e-5, (tile, batch)


def test_tiled_equals_untiled_batchnorm_paper_layout(small_bn_model):
    lr = _lr(seed=1)
    full = upscale_array(lr, small_bn_model, tile=None)
    assert small_bn_model.receptive_radius < 16  # so some tiles have interior context
    tiled = upscale_array(lr, small_bn_model, tile=16)  # default overlap = receptive radius
    assert np.abs(tiled - full).max() <= 1e-5


@pytest.mark.slow
def test_tiled_equals_untiled_surge_preset():
    """The paper-size preset itself (BatchNorm in eval mode); small image to stay fast."""
    torch.manual_seed(2)
    model = load_model("surge", device="cpu", precision="fp32")
    _random_batchnorm_stats(model.network, seed=2)
    lr = _lr(16, 24, seed=2)
    full = upscale_array(lr, model, tile=None)
    tiled = upscale_array(lr, model, tile=12)
    assert np.abs(tiled - full).max() <= 1e-5


def test_overlap_below_radius_differs(tiny_model, small_bn_model):
    """Proves the equality tests can fail: without context, tile seams change pixels."""
    lr = _lr()
    for model in (tiny_model, small_bn_model):
        full = upscale_array(lr, model, tile=None)
        seams = upscale_array(lr, model, tile=16, overlap=0)
        assert np.abs(seams - full).max() > 1e-3


def test_tiled_equals_untiled_uint8_default_precision():
    """8-bit output at the default (auto) precision, which may be bf16 on this CPU."""
    model = load_model("surge-tiny", device="cpu")
    lr = (_lr(23, 37, seed=3) * 255).round().astype(np.uint8)
    full = upscale_array(lr, model, tile=None).astype(int)
    tiled = upscale_array(lr, model, tile=8).astype(int)
    assert np.abs(tiled - full).max() <= 1


def test_auto_tile_size_fits_budget():
    assert auto_tile_size(100, 100, 10, bytes_per_pixel=100, budget=100 * 100 * 100) is None
    bpp, budget, overlap = 26_000, 1 << 30, 34
    # By hand: 2^30 // 26000 = 41297 px, isqrt -> 203 px a side with context, minus 2 x 34
    # of context = 135, rounded down to a multiple of 8 = 128.
    tile = auto_tile_size(540, 960, overlap, bpp, budget)
    assert tile == 128
    # Batches share the budget; a tiny budget still gives a usable tile.
    assert auto_tile_size(540, 960, overlap, bpp, budget, batch_size=4) < tile
    assert auto_tile_size(540, 960, overlap, bpp, budget=1000) == tiling.MIN_TILE


def test_activation_estimate_follows_widest_activation():
    cfg = GeneratorConfig(width0=4, width1=8, blocks0=1, blocks1=1, head_kernel=3, norm="none",
                          output_activation="none", global_residual=True)
    wide = SuRGeGenerator(GeneratorConfig(**{**cfg.to_dict(), "width1": 16}))
    # By hand: the widest activation is U1's output, 8 channels at x4 (16 HR pixels per LR
    # pixel) = 128 fp32 values = 512 bytes per LR pixel; x4 peak-over-largest margin = 2048.
    assert tiling._PEAK_OVER_LARGEST_ACTIVATION == 4
    assert activation_bytes_per_lr_pixel(SuRGeGenerator(cfg)) == 2048
    assert activation_bytes_per_lr_pixel(wide) == 4096


def test_memory_budget_cpu_is_bounded():
    budget = tiling.memory_budget(torch.device("cpu"))
    assert 0 < budget <= tiling._CPU_BUDGET_CAP
    assert tiling.host_memory_available() > 0


def test_auto_tile_really_tiles_under_a_small_budget_and_matches(tiny_model, monkeypatch):
    # A budget of a few tiles' worth forces "auto" down to the smallest tile (32 px), so a
    # 40x72 image needs 2 x 3 tiles; the default overlap keeps the result equal to untiled.
    monkeypatch.setattr(upscale_module, "memory_budget", lambda device: 1)
    plans = []
    real_plan = tiling.plan_tiles
    monkeypatch.setattr(tiling, "plan_tiles", lambda *a: plans.append(real_plan(*a)) or plans[-1])
    lr = _lr(40, 72)
    auto = upscale_array(lr, tiny_model, tile="auto")
    assert len(plans[-1]) == 6
    full = upscale_array(lr, tiny_model, tile=None)
    assert len(plans[-1]) == 1
    assert np.abs(auto - full).max() <= 1e-5


def test_run_tiled_checks_output_shape(tiny_model):
    with pytest.raises(ValueError, match="expected"):
        run_tiled(tiny_model, _lr(8, 8), np.zeros((8, 8, 3), np.float32), 4, None, 0)
