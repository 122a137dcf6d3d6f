"""The built-in ``bicubic`` model: MATLAB-compatible bicubic x4 as an ``nn.Module``.

It goes through the same API, tiling and evaluation code as learned models, so every
command works before any trained weights exist and the bicubic baseline is measured by
the very pipeline that measures our models.
"""

from __future__ import annotations

import torch
from torch import nn

from surge.imaging.bicubic import imresize_torch


class BicubicUpscaler(nn.Module):
    def __init__(self, scale: int = 4):
        super().__init__()
        self.scale = scale

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return imresize_torch(lr, scale=self.scale)

    def receptive_radius(self) -> int:
        # Upscaling cubic kernel: 4 taps, i.e. 2 LR pixels either side.
        return 2
