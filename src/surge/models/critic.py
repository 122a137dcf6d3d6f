"""WGAN-GP critic with residual PixelNorm blocks (the design drawn in the SuRGe release).

No BatchNorm (the gradient penalty is per sample, and batch statistics would couple the
samples) and no sigmoid (a Wasserstein critic outputs an unbounded score).
"""

from __future__ import annotations

import torch
from torch import nn

from surge.models.config import CriticConfig


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector to unit RMS (Karras et al. 2018)."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


class CriticBlock(nn.Module):
    """conv, PixelNorm, LeakyReLU, conv, PixelNorm, + skip."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            PixelNorm(),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, channels, 3, padding=1),
            PixelNorm(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Critic(nn.Module):
    def __init__(self, config: CriticConfig | None = None):
        super().__init__()
        self.config = config = config or CriticConfig()
        layers: list[nn.Module] = [nn.Conv2d(config.in_channels, config.width, 3, padding=1), nn.LeakyReLU(0.2)]
        width = config.width
        for _ in range(config.stages):
            out = min(width * 2, config.max_width)
            layers += [CriticBlock(width), nn.Conv2d(width, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            width = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(config.pool_size)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(width * config.pool_size**2, config.hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(config.hidden, config.hidden // 2),
            nn.LeakyReLU(0.2),
            nn.Linear(config.hidden // 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of shape (B,), float32 even under autocast, for a batch of images in [0, 1]."""
        features = self.features(x)
        # Pool and head in fp32 even under autocast: real and fake scores differ by far less than a
        # bf16 step at their magnitude (at initialisation d_real - d_fake rounded to exactly 0), and
        # the Wasserstein estimate and L_adv are means and differences of these scores. The head is
        # a few small dense layers, so this costs nothing measurable.
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.head(self.pool(features.float())).squeeze(1)
