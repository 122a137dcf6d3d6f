"""Loss terms of the SuRGe objective: values against definitions, gradients, edge cases, configs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import jensenshannon
from torch import nn

from surge.errors import ConfigError
from surge.losses import (
    JS_MODES,
    LossConfig,
    charbonnier_loss,
    mse_loss,
    combine_losses,
    critic_loss,
    dynamic_weights,
    generator_adversarial_loss,
    generator_objective,
    gradient_penalty,
    gromov_wasserstein_loss,
    image_distributions,
    js_divergence,
    l1_loss,
)
from surge.losses.divergence import pairwise_distances
from surge.models import GENERATOR_PRESETS, Critic, CriticConfig, SuRGeGenerator

LN2 = math.log(2)


class LinearCritic(nn.Module):
    """D(x) = <w, x> per sample: its input gradient is w everywhere, so the penalty is exact."""

    def __init__(self, shape: tuple[int, ...], scale: float = 1.0):
        super().__init__()
        self.w = nn.Parameter(scale * torch.randn(*shape, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).flatten(1).sum(1)


class QuadraticCritic(nn.Module):
    """D(x) = 1/2 ||x||^2: its input gradient at x is x itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x.flatten(1).pow(2).sum(1)


def smooth_images(b: int = 2, c: int = 3, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    """Natural-ish test images in [0.1, 0.9]: smooth ramps and waves with random phases."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    phase = torch.rand(b, c, 1, 1, generator=g) * 6.28
    freq = 2 + 4 * torch.rand(b, c, 1, 1, generator=g)
    img = 0.5 + 0.25 * torch.sin(freq * xx + phase) * torch.cos(freq * yy - phase) + 0.15 * (xx - yy)
    return img.clamp(0.1, 0.9).to(torch.float64)


# ----------------------------------------------------------------------------- adversarial


def test_gradient_penalty_of_linear_critic_is_exact_with_exact_parameter_gradient():
    torch.manual_seed(0)
    critic = LinearCritic((3, 4, 4), scale=0.2)
    real, fake = torch.rand(3, 3, 4, 4, dtype=torch.float64), torch.rand(3, 3, 4, 4, dtype=torch.float64)
    gp = gradient_penalty(critic, real, fake)
    norm = critic.w.detach().norm()
    assert gp.item() == pytest.approx((norm.item() - 1) ** 2, rel=1e-9)
    gp.backward()  # second-order path: the penalty trains the critic through its input gradient
    expected = 2 * (norm - 1) * critic.w.detach() / norm
    torch.testing.assert_close(critic.w.grad, expected, rtol=1e-6, atol=1e-12)


def test_gradient_penalty_interpolates_per_sample_and_takes_the_norm_over_chw():
    real = torch.rand(4, 2, 3, 3, dtype=torch.float64)
    fake = torch.rand(4, 2, 3, 3, dtype=torch.float64)
    mix = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64).view(4, 1, 1, 1)
    gp = gradient_penalty(QuadraticCritic(), real, fake, mix=mix)
    x_hat = mix * real + (1 - mix) * fake  # gradient of the quadratic critic = x_hat
    norms = x_hat.flatten(1).norm(dim=1)
    assert gp.item() == pytest.approx(((norms - 1) ** 2).mean().item(), rel=1e-9)
    # The default draws eps ~ U[0, 1] with shape (B, 1, 1, 1) from torch's global generator.
    torch.manual_seed(7)
    drawn = gradient_penalty(QuadraticCritic(), real, fake)
    torch.manual_seed(7)
    expected = gradient_penalty(QuadraticCritic(), real, fake, mix=torch.rand(4, 1, 1, 1, dtype=torch.float64))
    assert drawn.item() == pytest.approx(expected.item(), rel=1e-12)


def test_gradient_penalty_stays_finite_where_the_critic_is_flat():
    # A dead ReLU makes grad_x D = 0 exactly; the plain norm's derivative is NaN there.
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 1), nn.ReLU()).double()
    with torch.no_grad():
        critic[1].bias.fill_(-1e3)
    x = torch.rand(2, 3, 2, 2, dtype=torch.float64)
    gp = gradient_penalty(critic, x, torch.rand_like(x))
    assert gp.item() == pytest.approx(1.0, abs=1e-5)
    gp.backward()
    assert all(torch.isfinite(p.grad).all() for p in critic.parameters())


def test_critic_loss_value_and_stats():
    torch.manual_seed(1)
    critic = LinearCritic((3, 4, 4), scale=0.3)
    real, fake = torch.rand(3, 3, 4, 4, dtype=torch.float64), torch.rand(3, 3, 4, 4, dtype=torch.float64)
    loss, stats = critic_loss(critic, real, fake, gp_weight=10.0)
    d_real, d_fake = critic(real).mean().item(), critic(fake).mean().item()
    gp = (critic.w.detach().norm().item() - 1) ** 2
    assert loss.item() == pytest.approx(d_fake - d_real + 10 * gp, rel=1e-9)
    assert float(stats["wasserstein"]) == pytest.approx(d_real - d_fake, rel=1e-9)
    assert float(stats["gp"]) == pytest.approx(gp, rel=1e-9)
    assert not any(v.requires_grad for v in stats.values())
    loss_no_gp, stats_no_gp = critic_loss(critic, real, fake, gp_weight=0.0)
    assert loss_no_gp.item() == pytest.approx(d_fake - d_real, rel=1e-9)
    assert float(stats_no_gp["gp"]) == 0.0


def test_critic_loss_trains_the_surge_critic_and_never_the_generator():
    torch.manual_seed(0)
    gen = SuRGeGenerator(GENERATOR_PRESETS["surge-tiny"])
    critic = Critic(CriticConfig(width=4, max_width=8, stages=1, pool_size=2, hidden=8))
    lr = torch.rand(2, 3, 4, 4)
    hr = torch.rand(2, 3, 16, 16)
    loss, _ = critic_loss(critic, hr, gen(lr))
    loss.backward()
    assert all(p.grad is None for p in gen.parameters())
    grads = [p.grad for p in critic.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_generator_adversarial_loss_is_minus_mean_score_and_reaches_the_generator():
    torch.manual_seed(0)
    gen = SuRGeGenerator(GENERATOR_PRESETS["surge-tiny"])
    critic = Critic(CriticConfig(width=4, max_width=8, stages=1, pool_size=2, hidden=8))
    fake = gen(torch.rand(2, 3, 4, 4))
    loss = generator_adversarial_loss(critic, fake)
    assert loss.item() == pytest.approx(-critic(fake).mean().item(), rel=1e-6)
    loss.backward()
    assert gen.out.weight.grad is not None and gen.out.weight.grad.abs().sum() > 0


def _offset_critic(offset: float) -> Critic:
    torch.manual_seed(0)
    critic = Critic(CriticConfig(width=8, max_width=16, stages=2, pool_size=2, hidden=16))
    with torch.no_grad():  # scores near 8, where bf16's grid step is 1/16, far above d_real - d_fake
        critic.head[-1].bias.fill_(offset)
    return critic


def test_critic_statistics_under_bf16_autocast_are_not_rounded_to_bf16():
    critic = _offset_critic(8.0)
    real, fake = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    mix = torch.rand(4, 1, 1, 1)
    _, exact = critic_loss(critic, real, fake, mix=mix)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, stats = critic_loss(critic, real, fake, mix=mix)
        scores_real, scores_fake = critic(real), critic(fake)
        adv = generator_adversarial_loss(critic, fake)
    assert loss.dtype == torch.float32 and all(v.dtype == torch.float32 for v in stats.values())
    assert scores_real.dtype == torch.float32
    # The reductions are fp32 means of the per-sample scores (bf16 would round d_real and d_fake to
    # multiples of 1/16 here, and their difference to 0 or +-1/16).
    gap = scores_real.detach().double().mean() - scores_fake.detach().double().mean()
    assert float(stats["wasserstein"]) == pytest.approx(float(gap), abs=1e-6)
    assert adv.dtype == torch.float32
    assert float(adv.detach()) == pytest.approx(-float(scores_fake.detach().double().mean()), abs=1e-6)
    # Only the convolutions run in bf16: the estimate stays within a few % of the fp32 one.
    w = float(exact["wasserstein"])
    assert abs(w) > 1e-4
    assert float(stats["wasserstein"]) == pytest.approx(w, rel=0.2)
    assert float(stats["gp"]) == pytest.approx(float(exact["gp"]), rel=0.05)


class Bf16ScoreCritic(nn.Module):
    """A critic whose scores come out in bf16 (as any critic's last layer does under autocast)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (8 + x.flatten(1)[:, 0]).to(torch.bfloat16)


def test_critic_reductions_are_fp32_even_for_a_critic_with_bf16_scores():
    critic = Bf16ScoreCritic()
    real = torch.zeros(4, 1, 2, 2)
    real[:, 0, 0, 0] = torch.tensor([0.0625, 0.125, 0.0, 0.0])  # scores 8.0625, 8.125, 8, 8: exact in bf16
    fake = torch.zeros(4, 1, 2, 2)
    _, stats = critic_loss(critic, real, fake, gp_weight=0.0)
    # The mean 8.046875 lies between two bf16 values (8.0 and 8.0625): a bf16 mean cannot hold it.
    assert float(stats["d_real"]) == 8.046875 and float(stats["wasserstein"]) == 0.046875
    assert float(generator_adversarial_loss(critic, real).detach()) == -8.046875


# ----------------------------------------------------------------------------- Jensen-Shannon


@pytest.mark.parametrize("mode", JS_MODES)
def test_js_is_zero_for_identical_inputs_including_constant_and_zero_images(mode):
    constant = torch.full((2, 3, 8, 8), 0.5, dtype=torch.float64)
    for img in (smooth_images(), constant, torch.zeros_like(constant)):
        assert js_divergence(img, img.clone(), mode=mode).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("mode", JS_MODES)
def test_js_is_symmetric_and_bounded_by_ln2(mode):
    a, b = smooth_images(seed=1), torch.rand(2, 3, 16, 16, dtype=torch.float64)
    ab, ba = js_divergence(a, b, mode=mode), js_divergence(b, a, mode=mode)
    assert ab.item() == pytest.approx(ba.item(), rel=1e-12)
    assert 0 < ab.item() <= LN2


def test_js_reaches_ln2_for_disjoint_supports():
    sr = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    hr = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    sr[..., 0, 0] = 1.0
    hr[..., 3, 3] = 1.0
    assert js_divergence(sr, hr, mode="normalized").item() == pytest.approx(LN2, rel=1e-4)
    assert js_divergence(sr, hr, mode="softmax", temperature=0.01).item() == pytest.approx(LN2, rel=1e-6)
    dark_vs_bright = js_divergence(torch.zeros_like(sr), torch.ones_like(hr), mode="histogram")
    assert dark_vs_bright.item() == pytest.approx(LN2, rel=1e-4)


def test_js_matches_scipy_on_the_documented_distributions():
    sr, hr = smooth_images(1, 2, 6, 6, seed=2), torch.rand(1, 2, 6, 6, dtype=torch.float64)
    def normalised(x: torch.Tensor) -> torch.Tensor:
        return (x + 1e-6) / (x + 1e-6).sum((2, 3), keepdim=True)

    for mode, p, q in (
        ("normalized", normalised(sr), normalised(hr)),
        ("softmax", torch.softmax(sr.flatten(2) / 0.3, -1), torch.softmax(hr.flatten(2) / 0.3, -1)),
    ):
        p, q = p.flatten(2).numpy(), q.flatten(2).numpy()
        expected = np.mean([jensenshannon(p[0, c], q[0, c]) ** 2 for c in range(2)])  # scipy: sqrt(JS), natural log
        assert js_divergence(sr, hr, mode=mode, temperature=0.3).item() == pytest.approx(expected, rel=1e-9)


def test_histogram_distribution_puts_pixels_at_their_bin():
    def hist(value: float) -> torch.Tensor:  # 5 bins: centres 0, .25, .5, .75, 1
        h = image_distributions(torch.full((1, 1, 3, 3), value, dtype=torch.float64), "histogram", bins=5)[0, 0]
        assert h.sum().item() == pytest.approx(1.0)
        return h

    centre = hist(0.5)
    assert centre.argmax().item() == 2
    assert centre[1].item() == pytest.approx(centre[3].item()) and centre[0].item() == pytest.approx(centre[4].item())
    assert hist(0.75).argmax().item() == 3
    assert hist(5.0)[4].item() == pytest.approx(1.0)  # out of range: the edge bin, not an underflow
    assert hist(-5.0)[0].item() == pytest.approx(1.0)


@pytest.mark.parametrize("mode", JS_MODES)
def test_js_gradients_are_finite_for_constant_zero_and_out_of_range_images(mode):
    hr_cases = [torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8), smooth_images(2, 3, 8, 8).float()]
    sr_cases = [torch.zeros(2, 3, 8, 8), torch.full((2, 3, 8, 8), 0.3), torch.randn(2, 3, 8, 8) * 3]
    for hr in hr_cases:
        for sr in sr_cases:
            sr = sr.clone().requires_grad_(True)
            loss = js_divergence(sr, hr, mode=mode, temperature=0.05)
            loss.backward()
            assert torch.isfinite(loss) and torch.isfinite(sr.grad).all(), (mode, hr[0, 0, 0, 0], sr[0, 0, 0, 0])


@pytest.mark.parametrize("mode", JS_MODES)
def test_js_grows_with_the_difference(mode):
    hr = smooth_images(2, 3, 16, 16, seed=3)
    noise = torch.randn(hr.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    values = [js_divergence((hr + s * noise).clamp(0, 1), hr, mode=mode).item() for s in (0.01, 0.05, 0.2)]
    assert 0 < values[0] < values[1] < values[2]


def test_js_reduction_none_is_per_image():
    sr, hr = smooth_images(3, 2, 8, 8, seed=4), smooth_images(3, 2, 8, 8, seed=5)
    per_image = js_divergence(sr, hr, reduction="none")
    assert per_image.shape == (3,)
    assert per_image.mean().item() == pytest.approx(js_divergence(sr, hr).item(), rel=1e-12)
    with pytest.raises(ValueError, match="mode"):
        js_divergence(sr, hr, mode="batch-softmax")
    with pytest.raises(ValueError, match="shape"):
        js_divergence(sr, hr[:, :, :4])


# ----------------------------------------------------------------------------- Gromov-Wasserstein


def test_pairwise_distances_match_cdist_with_exact_zero_diagonal():
    x = torch.rand(5, 3, 4, 4)
    d = pairwise_distances(x)
    torch.testing.assert_close(d, torch.cdist(x.flatten(1).double(), x.flatten(1).double()), rtol=1e-9, atol=1e-5)
    assert (d.diagonal() == 0).all()


def test_gw_is_zero_for_isometric_batches_and_positive_otherwise():
    torch.manual_seed(0)
    lr = torch.rand(6, 3, 6, 6, dtype=torch.float64)
    up = F.interpolate(lr, scale_factor=4, mode="nearest")  # all distances x4: same normalised geometry
    assert abs(gromov_wasserstein_loss(lr, up).item()) < 1e-12
    assert abs(gromov_wasserstein_loss(lr, 0.5 * up + 0.2).item()) < 1e-12
    assert gromov_wasserstein_loss(lr, torch.rand(6, 3, 24, 24, dtype=torch.float64)).item() > 1e-4
    # Without normalisation the scale of the SR geometry counts.
    assert gromov_wasserstein_loss(lr, up / 4, normalize=False).item() == pytest.approx(0.0, abs=1e-12)
    assert gromov_wasserstein_loss(lr, up, normalize=False).item() > 1e-2


def test_gw_gradient_reaches_the_generator_and_matches_finite_differences():
    torch.manual_seed(0)
    gen = SuRGeGenerator(GENERATOR_PRESETS["surge-tiny"]).double()
    with torch.no_grad():
        gen.out.weight.normal_(std=0.03)  # a visible residual: SR is a non-isometric map of LR
        for m in gen.modules():  # PReLU slope 1: a smooth network, so finite differences are exact to O(h^2)
            if isinstance(m, nn.PReLU):
                m.weight.fill_(1.0)
    lr = torch.rand(5, 3, 6, 6, dtype=torch.float64)
    params = [p for p in gen.parameters() if p.requires_grad]
    loss = gromov_wasserstein_loss(lr, gen(lr))
    assert loss.item() > 1e-5
    grads = torch.autograd.grad(loss, params)
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    direction = [torch.randn_like(p) for p in params]
    analytic = sum((g * d).sum() for g, d in zip(grads, direction)).item()

    def shifted(step: float) -> float:
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.add_(step * d)
            value = gromov_wasserstein_loss(lr, gen(lr)).item()
            for p, d in zip(params, direction):
                p.sub_(step * d)
        return value

    h = 1e-5
    numeric = (shifted(h) - shifted(-h)) / (2 * h)
    assert analytic == pytest.approx(numeric, rel=1e-4)


def test_gw_gradients_are_finite_with_duplicate_and_identical_images():
    lr = torch.rand(4, 3, 4, 4)
    lr[1] = lr[0]
    sr = F.interpolate(lr, scale_factor=4, mode="bicubic").requires_grad_(True)
    loss = gromov_wasserstein_loss(lr, sr * 1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(sr.grad).all()
    same = torch.rand(1, 3, 4, 4).expand(3, -1, -1, -1)
    sr_same = F.interpolate(same, scale_factor=4, mode="nearest").clone().requires_grad_(True)
    loss = gromov_wasserstein_loss(same, sr_same)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(sr_same.grad).all()


def test_gw_of_a_single_image_is_zero_and_keeps_the_graph():
    sr = torch.rand(1, 3, 8, 8, requires_grad=True)
    loss = gromov_wasserstein_loss(torch.rand(1, 3, 2, 2), sr)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert (sr.grad == 0).all()


def test_gw_returns_the_sr_dtype_and_rejects_mismatched_batches():
    lr, sr = torch.rand(3, 3, 2, 2), torch.rand(3, 3, 8, 8)
    assert gromov_wasserstein_loss(lr, sr).dtype == torch.float32
    with pytest.raises(ValueError, match="batch sizes"):
        gromov_wasserstein_loss(lr[:2], sr)


# ----------------------------------------------------------------------------- pixel


def test_l1_and_charbonnier():
    sr, hr = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    assert l1_loss(sr, hr).item() == pytest.approx((sr - hr).abs().mean().item(), rel=1e-6)
    assert l1_loss(hr, hr).item() == 0.0
    assert charbonnier_loss(hr, hr, eps=1e-3).item() == pytest.approx(1e-3, rel=1e-5)
    far = hr + 0.5
    assert charbonnier_loss(far, hr, eps=1e-3).item() == pytest.approx(0.5, rel=1e-5)
    x = (hr + 1e-4).requires_grad_(True)
    charbonnier_loss(x, hr).backward()  # smooth at 0: gradient ~ diff / eps, not L1's +-1
    assert x.grad.abs().max().item() < 0.5 / x.numel()
    with pytest.raises(ValueError, match="shape"):
        l1_loss(sr, hr[..., :2])


def test_mse_is_the_mean_squared_error():
    sr, hr = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    assert mse_loss(sr, hr).item() == pytest.approx(((sr - hr) ** 2).mean().item(), rel=1e-6)
    assert mse_loss(hr + 0.5, hr).item() == pytest.approx(0.25, rel=1e-6)
    with pytest.raises(ValueError, match="mse_loss.*shape"):
        mse_loss(sr, hr[..., :2])


# ----------------------------------------------------------------------------- combination


def test_dynamic_weights_are_a_detached_softmax_favouring_the_largest_loss():
    losses = {"adv": torch.tensor(0.3, requires_grad=True), "js": torch.tensor(0.01), "gw": torch.tensor(0.1)}
    w = dynamic_weights(losses, tau=0.1)
    expected = torch.softmax(torch.tensor([0.3, 0.01, 0.1]) / 0.1, 0)
    torch.testing.assert_close(torch.stack([w["adv"], w["js"], w["gw"]]), expected)
    assert sum(w.values()).item() == pytest.approx(1.0)
    assert max(w, key=lambda k: w[k]) == "adv"
    assert not any(v.requires_grad for v in w.values())


def test_combined_gradient_per_term_equals_its_weight_and_is_never_negative():
    values = torch.tensor([1.0, 0.5, 0.2], dtype=torch.float64, requires_grad=True)
    losses = dict(zip(("adv", "js", "gw"), values.unbind()))
    total, w = combine_losses(losses, "dynamic", tau=0.1)
    (grad,) = torch.autograd.grad(total, values)
    torch.testing.assert_close(grad, torch.stack([w["adv"], w["js"], w["gw"]]).double())
    assert (grad >= 0).all()
    # What detaching prevents: with live weights, the smallest term's coefficient turns negative.
    live = (torch.softmax(values / 0.1, 0) * values).sum()
    (live_grad,) = torch.autograd.grad(live, values)
    assert live_grad[2] < 0


def test_fixed_combination_and_missing_weight():
    losses = {"js": torch.tensor(0.2), "l1": torch.tensor(0.05)}
    total, w = combine_losses(losses, "fixed", fixed_weights={"js": 2.0, "l1": 10.0, "gw": 3.0})
    assert total.item() == pytest.approx(2 * 0.2 + 10 * 0.05)
    assert set(w) == {"js", "l1"}
    with pytest.raises(ConfigError, match="l1"):
        combine_losses(losses, "fixed", fixed_weights={"js": 1.0})
    with pytest.raises(ConfigError, match="dynamic"):
        combine_losses(losses, "average")


def test_loss_config_terms():
    assert LossConfig().active_terms() == ("adv", "js", "gw")
    assert LossConfig().needs_critic
    cfg = LossConfig(l1=True, l1_weight=5.0)
    assert cfg.combination_terms() == ("adv", "js", "gw") and cfg.active_terms() == ("adv", "js", "gw", "l1")
    assert LossConfig(l1=True, l1_in_combination=True).combination_terms() == ("adv", "js", "gw", "l1")
    fixed = LossConfig(adversarial=True, gw=False, combination="fixed", fixed_weights={"adv": 0.0, "js": 1.0})
    assert fixed.active_terms() == ("js",) and not fixed.needs_critic
    assert LossConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"combination": "average"}, "combination"),
        ({"tau": 0.0}, "tau"),
        ({"tau": float("nan")}, "tau"),
        ({"gp_weight": -1.0}, "gp_weight"),
        ({"js_mode": "batch"}, "js_mode"),
        ({"js_bins": 1}, "js_bins"),
        ({"js": "yes"}, "loss.js "),
        ({"l1_in_combination": True}, "l1_in_combination"),
        ({"l1": True, "l1_weight": 0.0}, "l1_weight"),
        ({"l1": True, "pixel": "l2"}, "loss.pixel must be one of l1, mse, charbonnier"),
        ({"pixel": "mse"}, "needs loss.l1 = true"),
        ({"fixed_weights": {"js": 1.0}}, "fixed_weights"),
        ({"combination": "fixed", "fixed_weights": {"adv": 1.0, "js": 1.0}}, "gw"),
        ({"combination": "fixed", "gw": False, "fixed_weights": {"adv": 1, "js": 1, "gw": 1}}, "disabled"),
        ({"combination": "fixed", "fixed_weights": {"adv": 1, "js": 1, "gw": 1, "vgg": 1}}, "vgg"),
        ({"combination": "fixed", "fixed_weights": {"adv": 1, "js": -1, "gw": 1}}, "fixed_weights.js"),
        ({"adversarial": False, "js": False, "gw": False}, "no generator loss"),
    ],
)
def test_loss_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LossConfig(**kwargs)


def test_loss_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match=r"loss config: unknown key.*lambda_gp"):
        LossConfig.from_dict({"lambda_gp": 10})


def test_generator_objective_adds_a_separate_l1_and_checks_the_terms():
    cfg = LossConfig(gw=False, l1=True, l1_weight=4.0)
    losses = {"adv": torch.tensor(-0.5), "js": torch.tensor(0.01), "l1": torch.tensor(0.1)}
    total, w = generator_objective(losses, cfg)
    combined, _ = combine_losses({"adv": losses["adv"], "js": losses["js"]}, "dynamic", 0.1)
    assert total.item() == pytest.approx(combined.item() + 4.0 * 0.1, rel=1e-6)
    assert float(w["l1"]) == 4.0
    with pytest.raises(ValueError, match="needs"):
        generator_objective({"adv": torch.tensor(0.0)}, cfg)
