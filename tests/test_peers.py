"""Peer architectures (benchmarks/peers.py, speed comparison only): published sizes, x4 shapes, structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from script_loader import load_script

# The peers live with the benchmark that uses them, outside the package: load them by path.
peers = load_script("benchmarks/peers.py")
EDSR, PEERS, RRDBNet, SRVGGNetCompact, build_peer = peers.EDSR, peers.PEERS, peers.RRDBNet, peers.SRVGGNetCompact, peers.build_peer


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# Expected sizes are literal numbers from the releases or worked out by hand, never
# recomputed from the code's own layout.
def test_rrdbnet_has_real_esrgan_x4plus_size():
    # RealESRGAN_x4plus.pth holds 16,697,987 parameters (ESRGAN's "16.7M").
    assert n_params(RRDBNet()) == 16_697_987


def test_srvgg_compact_has_realesr_general_x4v3_size():
    # realesr-general-x4v3: "1.2M"; its fp32 .pth is 4.66 MB (1,213,296 x 4 bytes = 4.85 MB = 4.63 MiB).
    # By hand: conv 3->64 1,792 + 32 convs 64->64 1,181,696 + 33 PReLU 2,112 + conv 64->48 27,696.
    assert n_params(SRVGGNetCompact()) == 1_213_296


def test_edsr_baseline_has_the_released_x4_size():
    # The EDSR paper's "1.5M" x4 baseline, by hand: head 1,792 + 32 body convs 1,181,696 + body
    # tail 36,928 + two 64->256 upsampler convs 295,424 + tail 64->3 1,731 (mean shifts are fixed).
    assert n_params(EDSR()) == 1_517_571


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
        y = net(x).numpy()
    # Nearest x4 by hand: every LR pixel becomes a 4x4 block of itself.
    expected = np.repeat(np.repeat(x.numpy(), 4, axis=2), 4, axis=3)
    np.testing.assert_allclose(y, expected, atol=1e-6)


def test_edsr_adds_back_the_mean_it_subtracts():
    net = EDSR(features=8, blocks=1).eval()
    torch.nn.init.zeros_(net.tail.weight)
    torch.nn.init.zeros_(net.tail.bias)
    with torch.no_grad():
        y = net(torch.rand(1, 3, 3, 3))
    assert y.shape == (1, 3, 12, 12)
    # DIV2K's RGB mean, as in the EDSR release.
    for channel, mean in enumerate((0.4488, 0.4371, 0.4040)):
        assert torch.all(torch.abs(y[0, channel] - mean) < 1e-6)


def test_build_peer_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown peer"):
        build_peer("swinir")
