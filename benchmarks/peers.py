"""Peer x4 architectures, random init, for *speed comparison only* (``benchmarks/infer.py``).

Written from the papers' descriptions so the inference benchmark can put SuRGe's cost next
to well-known models on the same machine and code path. No weights are loaded or shipped:
they are not part of the surge package or its model registry and cannot upscale anything
meaningful. The benchmark wraps them in an ``SRModel`` like any other network.

* :class:`RRDBNet` -- ESRGAN (Wang et al., ECCVW 2018) as used by Real-ESRGAN x4plus:
  23 Residual-in-Residual Dense Blocks, 64 features, growth 32, nearest x2 + conv twice.
* :class:`SRVGGNetCompact` -- Real-ESRGAN's compact net (realesr-general-x4v3): a plain
  conv/PReLU stack at LR resolution, pixel shuffle x4, plus a nearest-upsampled input.
* :class:`EDSR` -- EDSR-baseline (Lim et al., CVPRW 2017): 16 residual blocks of 64
  features (no BatchNorm), two conv + pixel-shuffle x2 stages.

Every network maps (B, 3, h, w) in [0, 1] to (B, 3, 4h, 4w), like the SuRGe generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each reading the block input and all earlier outputs; scaled residual."""

    def __init__(self, features: int = 64, growth: int = 32, res_scale: float = 0.2):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(features + i * growth, growth if i < 4 else features, 3, padding=1) for i in range(5)
        )
        self.act = nn.LeakyReLU(0.2, inplace=True)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs[:-1]:
            feats.append(self.act(conv(torch.cat(feats, 1))))
        return x + self.res_scale * self.convs[-1](torch.cat(feats, 1))


class RRDB(nn.Module):
    """Residual in Residual Dense Block: three dense blocks, scaled residual around them."""

    def __init__(self, features: int = 64, growth: int = 32, res_scale: float = 0.2):
        super().__init__()
        self.blocks = nn.Sequential(*[ResidualDenseBlock(features, growth, res_scale) for _ in range(3)])
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.blocks(x)


class RRDBNet(nn.Module):
    """ESRGAN generator, Real-ESRGAN x4plus configuration (nf 64, nb 23, gc 32; 16.7M params)."""

    scale = 4

    def __init__(self, in_channels: int = 3, out_channels: int = 3, features: int = 64, blocks: int = 23, growth: int = 32):
        super().__init__()
        self.conv_first = nn.Conv2d(in_channels, features, 3, padding=1)
        self.body = nn.Sequential(*[RRDB(features, growth) for _ in range(blocks)])
        self.conv_body = nn.Conv2d(features, features, 3, padding=1)
        self.conv_up1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv_up2 = nn.Conv2d(features, features, 3, padding=1)
        self.conv_hr = nn.Conv2d(features, features, 3, padding=1)
        self.conv_last = nn.Conv2d(features, out_channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.act(self.conv_up1(F.interpolate(feat, scale_factor=2.0, mode="nearest")))
        feat = self.act(self.conv_up2(F.interpolate(feat, scale_factor=2.0, mode="nearest")))
        return self.conv_last(self.act(self.conv_hr(feat)))


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN compact net (realesr-general-x4v3: 64 features, 32 convs, PReLU; 1.2M params)."""

    scale = 4

    def __init__(self, in_channels: int = 3, out_channels: int = 3, features: int = 64, convs: int = 32):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, features, 3, padding=1), nn.PReLU(features)]
        for _ in range(convs):
            layers += [nn.Conv2d(features, features, 3, padding=1), nn.PReLU(features)]
        layers.append(nn.Conv2d(features, out_channels * self.scale**2, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.pixel_shuffle(self.body(x), self.scale)
        return out + F.interpolate(x, scale_factor=float(self.scale), mode="nearest")


class EDSRBlock(nn.Module):
    """conv -> ReLU -> conv with an identity skip (no BatchNorm: the EDSR point)."""

    def __init__(self, features: int, res_scale: float = 1.0):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.conv2(self.act(self.conv1(x)))


class EDSR(nn.Module):
    """EDSR-baseline x4 (64 features, 16 residual blocks, pixel-shuffle upsampler; 1.5M params).

    The mean-shift layers of the original are a fixed RGB-mean subtraction/addition.
    """

    scale = 4
    RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K

    def __init__(self, in_channels: int = 3, out_channels: int = 3, features: int = 64, blocks: int = 16):
        super().__init__()
        self.register_buffer("mean", torch.tensor(self.RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.head = nn.Conv2d(in_channels, features, 3, padding=1)
        self.body = nn.Sequential(*[EDSRBlock(features) for _ in range(blocks)], nn.Conv2d(features, features, 3, padding=1))
        self.upsample = nn.Sequential(
            nn.Conv2d(features, 4 * features, 3, padding=1), nn.PixelShuffle(2),
            nn.Conv2d(features, 4 * features, 3, padding=1), nn.PixelShuffle(2),
        )
        self.tail = nn.Conv2d(features, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x - self.mean.to(x.dtype))
        feat = feat + self.body(feat)
        return self.tail(self.upsample(feat)) + self.mean.to(x.dtype)


PEERS: dict[str, type[nn.Module]] = {
    "rrdbnet": RRDBNet,
    "srvgg-compact": SRVGGNetCompact,
    "edsr-baseline": EDSR,
}


def build_peer(name: str) -> nn.Module:
    """A peer architecture at its published configuration, random init, eval mode."""
    try:
        return PEERS[name]().eval()
    except KeyError:
        raise ValueError(f"unknown peer architecture {name!r} (one of: {', '.join(PEERS)})") from None
