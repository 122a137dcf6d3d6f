"""The SuRGe generator: a fully convolutional x4 network with skips and convex feature mixing.

Layout (names follow the method spec, ``../shared/docs/surge-method.md``)::

    C0 -> R0 -> I0 -> F0 = mix(I0, C0) -> U0 -> C1 = X ----> R1 -> I1 -> F1 = mix(I1, X, S) -> U1 -> out
    C0 ------------------------------------> U0 -> C1 = S --------------------^
                                 (U0 and C1 are shared by the main and skip paths)

Input is an RGB batch in [0, 1]; output is in [0, 1] (not clamped, so losses see the
raw values; callers clamp when they quantise).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from surge.models.config import GeneratorConfig
from surge.models.inference_hints import InferenceHints


def _conv(cin: int, cout: int, k: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.Identity()


class ResidualBlock(nn.Module):
    """``h + N(conv(PReLU(N(conv(h)))))``; convs are bias-free when a norm follows them."""

    def __init__(self, channels: int, kernel: int, norm: str):
        super().__init__()
        bias = norm == "none"
        self.conv1 = _conv(channels, channels, kernel, bias)
        self.norm1 = _norm(norm, channels)
        self.act = nn.PReLU(channels)
        self.conv2 = _conv(channels, channels, kernel, bias)
        self.norm2 = _norm(norm, channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.norm2(self.conv2(self.act(self.norm1(self.conv1(h)))))


class ConvexMix(nn.Module):
    """Learnable convex combination ``sum_k softmax(logits)_k * x_k`` (or a plain sum).

    Logits start at ``log(init)`` so the initial weights are exactly the spec's values.
    """

    def __init__(self, init: tuple[float, ...], mode: str = "convex"):
        super().__init__()
        self.mode = mode
        self.logits = nn.Parameter(torch.tensor([math.log(w) for w in init]))
        if mode == "sum":
            self.logits.requires_grad_(False)

    def weights(self) -> torch.Tensor:
        if self.mode == "sum":
            return torch.ones_like(self.logits)
        return torch.softmax(self.logits, dim=0)

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        w = self.weights().to(features[0].dtype)
        out = w[0] * features[0]
        for k in range(1, len(features)):
            out = out + w[k] * features[k]
        return out


class Upsample2x(nn.Module):
    """conv -> nearest-neighbour x2 -> PReLU (conv before the upsample, as in the spec)."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv = _conv(channels, channels, kernel)
        self.act = nn.PReLU(channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # scale_factor (not a size) keeps ONNX exports free of fixed-size resize nodes.
        return self.act(F.interpolate(self.conv(h), scale_factor=2.0, mode="nearest"))


class SuRGeGenerator(nn.Module):
    scale = 4

    def __init__(self, config: GeneratorConfig | None = None):
        super().__init__()
        self.config = config = config or GeneratorConfig()
        c0, c1, kh, kb, norm = config.width0, config.width1, config.head_kernel, config.body_kernel, config.norm
        has_bias = norm == "none"
        self.C0 = nn.Sequential(_conv(config.in_channels, c0, kh), nn.PReLU(c0))
        self.R0 = nn.Sequential(*[ResidualBlock(c0, kb, norm) for _ in range(config.blocks0)])
        self.I0 = nn.Sequential(_conv(c0, c0, kb, bias=has_bias), _norm(norm, c0))
        self.F0 = ConvexMix(config.mix0_init, config.mixing)
        self.U0 = Upsample2x(c0, kb)
        self.C1 = nn.Sequential(_conv(c0, c1, kh), nn.PReLU(c1))
        self.R1 = nn.Sequential(*[ResidualBlock(c1, kb, norm) for _ in range(config.blocks1)])
        self.I1 = nn.Sequential(_conv(c1, c1, kb, bias=has_bias), _norm(norm, c1))
        self.F1 = ConvexMix(config.mix1_init, config.mixing)
        self.U1 = Upsample2x(c1, kb)
        self.out = _conv(c1, config.out_channels, kh)
        if config.global_residual:
            # Start as plain bicubic: the residual branch's last conv begins near zero.
            nn.init.normal_(self.out.weight, std=1e-3)
            nn.init.zeros_(self.out.bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        c0 = self.C0(lr)
        i0 = self.I0(self.R0(c0))
        f0 = self.F0(i0, c0)
        x = self.C1(self.U0(f0))
        s = self.C1(self.U0(c0))
        i1 = self.I1(self.R1(x))
        f1 = self.F1(i1, x, s)
        y = self.out(self.U1(f1))
        if self.config.output_activation == "tanh":
            return (torch.tanh(y) + 1) * 0.5
        if self.config.global_residual:
            base = F.interpolate(lr, scale_factor=4.0, mode="bicubic", align_corners=False)
            return base + y
        return y

    def mixing_weights(self) -> dict[str, list[float]]:
        """Current F0 (mu, nu) and F1 (alpha, beta, gamma) weights, for logs and `surge info`."""
        with torch.no_grad():
            return {
                "F0 (mu*I0, nu*C0)": [round(float(w), 4) for w in self.F0.weights()],
                "F1 (alpha*I1, beta*X, gamma*S)": [round(float(w), 4) for w in self.F1.weights()],
            }

    def inference_hints(self) -> InferenceHints:
        """How :mod:`surge.inference.optimize` may rewrite this network (see InferenceHints).

        ``U0``'s output is read only by ``C1`` (on both the main and the skip path) and
        ``U1``'s only by ``out``, as ``forward`` shows. The input image and the output head
        stay fp32 in reduced precision: a bf16 8-bit pixel already has rounding error, and
        the tanh / bicubic residual computed from them would carry it into every output pixel.
        """
        return InferenceHints(
            subpixel_pairs=(("U0", "C1.0"), ("U1", "out")),
            input_modules=("C0",),
            fp32_modules=("out",),
            fp32_parameters=("F0.logits", "F1.logits"),
        )

    def receptive_radius(self) -> int:
        """LR pixels of context on each side that can influence an output pixel.

        Used to size tile overlaps so tiled output equals untiled output.
        """
        c = self.config
        kh, kb = c.head_kernel // 2, c.body_kernel // 2
        # LR resolution: C0, R0 (2 convs each), I0, U0 conv.
        r = kh + 2 * kb * c.blocks0 + kb + kb
        # x2 resolution: C1, R1, I1, U1 conv -> convert to LR pixels (ceil).
        r2 = kh + 2 * kb * c.blocks1 + kb + kb
        # x4 resolution: output conv.
        r4 = kh
        radius = r + math.ceil(r2 / 2) + math.ceil(r4 / 4)
        if c.global_residual:
            radius = max(radius, 2)
        return radius
