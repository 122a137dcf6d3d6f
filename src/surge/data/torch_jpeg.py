"""JPEG compression simulated with batched torch ops: what Pillow/libjpeg encode + decode do to pixels.

Why hand-written: the training degradation needs JPEG on the training device, per sample quality,
for a whole batch at once; Pillow works on one image on the CPU. No differentiable-JPEG library
is a dependency here (and gradients are not needed: the LR is data). The steps follow libjpeg
(IJG 6b / libjpeg-turbo, which Pillow uses) with ``quality=q, subsampling="4:2:0"``:

1. RGB (8-bit levels) -> YCbCr, JFIF/BT.601 full range (libjpeg's ``jccolor.c``);
2. the image is extended to whole 16x16 MCUs by repeating its last row/column (libjpeg's
   ``expand_right_edge`` and bottom-row copies);
3. chroma 2x2 average (libjpeg's ``h2v2_downsample``; its alternating 1/2 rounding bias is not
   reproduced, the average is kept in float);
4. 8x8 DCT-II (orthonormal, as a matrix product), quantisation with the Annex K luminance and
   chrominance tables scaled by quality as ``jpeg_set_quality`` does (q < 50: 5000/q, else
   200 - 2q; ``(t * scale + 50) // 100`` clamped to 1..255, baseline), rounded to integers;
5. dequantise, inverse DCT, +128, rounded and clamped to 8 bits per plane (the decoder's
   ``range_limit``);
6. chroma upsampled by libjpeg's default "fancy" h2v2 upsampling: a triangular filter (3/4, 1/4
   per axis, edges replicated), which is exactly ``F.interpolate(bilinear, align_corners=False)``
   at 2x; then YCbCr -> RGB, rounded and clamped to 8 bits.

What differs from libjpeg: libjpeg's integer DCTs (``JDCT_ISLOW``) and fixed-point colour
conversion round at intermediate steps; here everything between the quantised coefficients is
float32. The resulting decode differs from Pillow's by a few levels at a few pixels
(``docs/results/device-data.md`` has the measured PSNR between the two and their blockiness).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

# ITU-T T.81 Annex K, tables K.1 and K.2 (row-major, natural order).
LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)
CHROMA_TABLE = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
)

_RGB_TO_YCC = ((0.299, 0.587, 0.114), (-0.168735892, -0.331264108, 0.5), (0.5, -0.418687589, -0.081312411))
_YCC_TO_RGB = ((1.0, 0.0, 1.402), (1.0, -0.344136286, -0.714136286), (1.0, 1.772, 0.0))


def quality_scaling(quality: int) -> int:
    """IJG ``jpeg_quality_scaling``: quality 1..100 -> percentage applied to the base tables."""
    q = min(max(int(quality), 1), 100)
    return 5000 // q if q < 50 else 200 - 2 * q


@lru_cache(maxsize=32)
def _constant(name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Constants kept on each device: a host-to-device copy per batch would synchronise the stream."""
    values = {"luma": LUMA_TABLE, "chroma": CHROMA_TABLE, "to_ycc": _RGB_TO_YCC, "to_rgb": _YCC_TO_RGB}
    if name == "dct":
        m = _dct_matrix_cpu()
        return torch.kron(m, m).to(device=device, dtype=dtype)  # vec(M X M^T) = (M kron M) vec(X), row-major
    return torch.tensor(values[name], dtype=dtype, device=device)


def quant_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (B, 8, 8) luminance and chrominance tables for integer qualities ``quality`` (B,)."""
    q = quality.to(torch.int64).clamp(1, 100)
    scale = torch.where(q < 50, 5000 // q, 200 - 2 * q)[:, None]
    out = []
    for name in ("luma", "chroma"):
        t = _constant(name, q.device, torch.int64)[None]
        out.append(((t * scale + 50) // 100).clamp(1, 255).view(-1, 8, 8))  # force_baseline: <= 255
    return out[0], out[1]


@lru_cache(maxsize=8)
def _dct_matrix_cpu() -> torch.Tensor:
    n = torch.arange(8, dtype=torch.float64)
    k = n[:, None]
    m = torch.cos((2 * n[None] + 1) * k * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m  # orthonormal DCT-II: coefficients = M @ block @ M.T


def _dct_matrix(device, dtype) -> torch.Tensor:
    """The 2-D 8x8 DCT as one (64, 64) matrix on flattened blocks: one GEMM for all blocks."""
    return _constant("dct", device, dtype)


def _to_blocks(x: torch.Tensor) -> torch.Tensor:
    b, h, w = x.shape
    return x.view(b, h // 8, 8, w // 8, 8).transpose(2, 3).reshape(b, h // 8, w // 8, 64)


def _from_blocks(x: torch.Tensor) -> torch.Tensor:
    b, bh, bw = x.shape[:3]
    return x.view(b, bh, bw, 8, 8).transpose(2, 3).reshape(b, bh * 8, bw * 8)


def _code_plane(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """One plane (B, H, W), H and W multiples of 8 -> its decoded plane (8-bit levels)."""
    m = _dct_matrix(plane.device, plane.dtype)
    coef = _to_blocks(plane - 128) @ m.T
    t = table.to(plane.dtype).view(-1, 1, 1, 64)
    coef = torch.round(coef / t) * t
    out = _from_blocks(coef @ m) + 128
    return torch.round(out).clamp_(0, 255)


def _pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def _mix(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A 3x3 colour matrix applied per pixel: a 1x1 convolution (faster than einsum's bmm on CPU)."""
    return F.conv2d(x, matrix[:, :, None, None])


def jpeg_levels(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG-code a batch of RGB images in 8-bit levels: (B, 3, H, W) float in 0..255 -> same, integer-valued.

    ``quality`` (B,) holds each sample's integer quality (1..100). Input is rounded and clamped to
    8 bits first, as an encoder sees it. Computation in float32 (float64 input stays float64).
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a (B, 3, H, W) batch, got shape {tuple(x.shape)}")
    dtype = x.dtype if x.dtype == torch.float64 else torch.float32
    b, _, h, w = x.shape
    rgb = _pad_to(torch.round(x.to(dtype)).clamp(0, 255), 16)
    ycc = _mix(_constant("to_ycc", x.device, dtype), rgb)
    ycc[:, 1:] += 128
    luma_t, chroma_t = quant_tables(quality.to(x.device))
    y = _code_plane(ycc[:, 0], luma_t)
    chroma = F.avg_pool2d(ycc[:, 1:], 2)
    cbcr = _code_plane(chroma.reshape(b * 2, *chroma.shape[-2:]), chroma_t.repeat_interleave(2, 0))
    cbcr = F.interpolate(cbcr.view(b, 2, *chroma.shape[-2:]), scale_factor=2, mode="bilinear", align_corners=False)
    ycc = torch.cat([y[:, None], cbcr - 128], 1)
    out = _mix(_constant("to_rgb", x.device, dtype), ycc)
    return torch.round(out[..., :h, :w]).clamp_(0, 255)


def jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """:func:`jpeg_levels` for images in [0, 1] (float): returns [0, 1] on the 8-bit grid, x's dtype."""
    return (jpeg_levels(x * 255, quality) / 255).to(x.dtype)


def blockiness(img) -> float:
    """Mean |step| across 8x8 block boundaries over the mean |step| inside blocks (1 = no block edges).

    ``img``: an HxW or HxWxC array of levels (numpy or torch); measured on the channel mean, both
    axes. JPEG's blocking raises the boundary steps, so a faithful simulation matches the encoder's ratio.
    """
    x = torch.as_tensor(np.array(img) if not isinstance(img, torch.Tensor) else img).double()
    x = x.mean(-1) if x.ndim == 3 else x
    dx, dy = (x[:, 1:] - x[:, :-1]).abs(), (x[1:] - x[:-1]).abs()
    at_x = torch.arange(dx.shape[1]) % 8 == 7  # step from column 8k+7 to 8k+8
    at_y = torch.arange(dy.shape[0]) % 8 == 7
    edge = torch.cat([dx[:, at_x].flatten(), dy[at_y].flatten()]).mean()
    inside = torch.cat([dx[:, ~at_x].flatten(), dy[~at_y].flatten()]).mean()
    return float(edge / inside)
