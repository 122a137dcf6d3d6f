"""Peer architectures (speed comparison only): published sizes, x4 shapes, structure."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from surge.models.peers import EDSR, PEERS, RRDBNet, SRVGGNetCompact, build_peer


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv(cin: int, cout: int, k: int = 3) -> int:
    return cin * cout * k * k + cout


def test_rrdbnet_has_real_esrgan_x4plus_size():
    # RealESRGAN_x4plus.pth holds 16,697,987 parameters (ESRGAN's "16.7M").
    assert n_params(RRDBNet()) == 16_697_987


def test_srvgg_compact_size_follows_its_layout():
    # conv 3->64, 32 x conv 64->64, 33 PReLU(64), conv 64->48 (3 channels x 4^2 for pixel shuffle).
    expected = conv(3, 64) + 32 * conv(64, 64) + 33 * 64 + conv(64, 48)
    assert n_params(SRVGGNetCompact()) == expected == 1_213_296


def test_edsr_baseline_size_follows_its_layout():
    # head, 16 blocks of two convs, body tail conv, two 64->256 upsampler convs, tail 64->3.
    expected = conv(3, 64) + 32 * conv(64, 64) + conv(64, 64) + 2 * conv(64, 256) + conv(64, 3)
    assert n_params(EDSR()) == expected  # ~1.5M, the EDSR paper's baseline


@pytest.mark.parametrize(
    "net",
    [RRDBNet(blocks=2), SRVGGNetCompact(convs=4), EDSR(blocks=2)],  # shallow: same code path, fast
    ids=["rrdbnet", "srvgg-compact", "edsr-baseline"],
)
def test_peers_upscale_x4_any_size_and_in_bf16(net):
    net = net.eval()
    x = torch.rand(2, 3, 6, 9)
    with torch.no_grad():
        y = net(x)
        y_bf16 = net.to(torch.bfloat16).to(memory_format=torch.channels_last)(x.to(torch.bfloat16))
    assert y.shape == (2, 3, 24, 36) and torch.isfinite(y).all()
    assert y_bf16.shape == y.shape


@pytest.mark.parametrize("name", list(PEERS))
def test_build_peer_gives_the_published_configuration_in_eval_mode(name):
    net = build_peer(name)
    assert isinstance(net, PEERS[name]) and not net.training and net.scale == 4


def test_srvgg_compact_adds_nearest_upsampled_input():
    net = SRVGGNetCompact(features=8, convs=2).eval()
    torch.nn.init.zeros_(net.body[-1].weight)
    torch.nn.init.zeros_(net.body[-1].bias)
    x = torch.rand(1, 3, 5, 4)
    with torch.no_grad():
        torch.testing.assert_close(net(x), F.interpolate(x, scale_factor=4.0, mode="nearest"))


def test_edsr_adds_back_the_mean_it_subtracts():
    net = EDSR(features=8, blocks=1).eval()
    torch.nn.init.zeros_(net.tail.weight)
    torch.nn.init.zeros_(net.tail.bias)
    with torch.no_grad():
        y = net(torch.rand(1, 3, 3, 3))
    torch.testing.assert_close(y, torch.tensor(EDSR.RGB_MEAN).view(1, 3, 1, 1).expand_as(y))


def test_build_peer_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown peer"):
        build_peer("swinir")
