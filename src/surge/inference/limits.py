"""One resource budget for upscaling a file: input pixels, output pixels and peak memory together.

A 132-byte PNG can declare 9000x9000 pixels: under an input limit alone it decodes to 243 MB
and asks for a 36000x36000 output (3.9 GB as 8-bit RGB, more in the buffers that make it).
So every file is checked, from the size its header declares and before anything is decoded,
against three bounds (:meth:`Limits.check`):

* ``max_input_pixels``: all frames of the input together (default 100 MP);
* ``max_output_pixels``: one output frame (default 178,956,970 px: above this Pillow's own
  default refuses to open an image as a decompression bomb, so any larger output would be
  unreadable by the library that wrote it);
* ``max_memory``: the estimated peak of the buffers one file needs (:func:`estimate_peak_bytes`)
  plus the tiles' working set; by default 3/4 of the RAM available when the budget is made
  (MemAvailable, capped by a cgroup limit).

The estimate for an 8-bit RGB still at x4 is :data:`BYTES_PER_INPUT_PIXEL_X4` bytes per input
pixel, i.e. about ``1e9 / 123 / 1e6`` = 8.1 MP of input (130 MP of output) per GB of
budget, plus the tile working set (at most 1 GiB on a CPU). The command line and, later, a
web server make one ``Limits`` and check each file with it
(:meth:`surge.inference.pipeline.Upscaler.check_limits`).

Measured (2-core AMD EPYC, `/usr/bin/time -v`, peak RSS): a 2000x1500 PNG with ``bicubic``
990 MB (estimate 1.4 GB, of which 1.07 GB is the tile allowance), a 1000x750 PNG with
``surge-x4-psnr`` 853 MB (estimate 1.2 GB); a 16x12 PNG 245 MB (torch and the model). The
150-byte PNG declaring 9000x9000 is refused from its header in the time a tiny file takes
(8.4 s on the loaded machine, 243 MB peak RSS); issue 22 reported over 120 s and 2.7 GB before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from surge.errors import ImageReadError

DEFAULT_MAX_INPUT_PIXELS = 100_000_000
# Pillow raises DecompressionBombError above twice Image.MAX_IMAGE_PIXELS (89,478,485).
DEFAULT_MAX_OUTPUT_PIXELS = 2 * 89_478_485
MEMORY_FRACTION = 0.75
_FLOAT = 4  # bytes of a float32 sample: the model's input copies and resize buffers


class LimitError(ImageReadError):
    """A file would exceed the input, output or memory budget (checked before decoding)."""


@dataclass(frozen=True)
class Estimate:
    input_pixels: int
    output_size: tuple[int, int]
    peak_bytes: int


def estimate_peak_bytes(width: int, height: int, *, frames: int = 1, scale: int = 4,
                        out_size: tuple[int, int] | None = None, channels: int = 3,
                        sample_bytes: int = 1, tile_bytes: int = 0) -> int:
    """Estimated peak bytes of the buffers for upscaling one ``width`` x ``height`` input.

    The decoded frames (all held), two float32 RGB copies of one frame for the model, every
    output frame at the model's scale in the output dtype plus one encoder copy, the float
    alpha plane, and with a final size other than the model's (``out_size`` = (w, h)) the float
    resize buffers and the resized frames; ``tile_bytes``: the tiles' working set. A model and
    the interpreter come on top (a few hundred MB).
    """
    in_px = width * height
    model_px = in_px * scale * scale
    out_w, out_h = out_size if out_size is not None else (width * scale, height * scale)
    out_px = out_w * out_h
    total = frames * in_px * channels * sample_bytes  # decoded input
    total += 2 * in_px * 3 * _FLOAT  # float copy and RGB copy for the model
    if channels in (2, 4):
        total += 2 * model_px * _FLOAT  # alpha upscaled in float, then clamped
    if out_size is None or (out_w, out_h) == (width * scale, height * scale):
        total += (frames + 1) * model_px * channels * sample_bytes  # outputs + encoder copy
    else:
        total += model_px * channels * sample_bytes  # one frame at the model's scale
        total += model_px * channels * _FLOAT  # ... in float for the resize
        total += out_h * width * scale * channels * _FLOAT + 2 * out_px * channels * _FLOAT  # resize passes, clamp
        total += (frames + 1) * out_px * channels * sample_bytes  # resized outputs + encoder copy
    return int(total + tile_bytes)


# 8-bit RGB still at x4, per input pixel (see the module docstring).
BYTES_PER_INPUT_PIXEL_X4 = estimate_peak_bytes(1, 1)


def default_max_memory() -> int:
    """3/4 of the RAM this process can use now."""
    from surge.inference.tiling import host_memory_available

    return int(host_memory_available() * MEMORY_FRACTION)


def _size(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


@dataclass(frozen=True)
class Limits:
    """The budget of one file; ``None`` switches a bound off."""

    max_input_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS
    max_output_pixels: int | None = DEFAULT_MAX_OUTPUT_PIXELS
    max_memory: int | None = None
    tile_bytes: int = 0  # the tiles' working set, counted in the memory estimate

    @classmethod
    def default(cls, **overrides) -> Limits:
        """Default bounds; ``max_memory`` from the RAM available now unless given."""
        if overrides.get("max_memory", None) is None:
            overrides["max_memory"] = default_max_memory()
        return cls(**overrides)

    def output_size(self, width: int, height: int, scale: int = 4, outscale: float | None = None) -> tuple[int, int]:
        if outscale is None:
            return width * scale, height * scale
        return max(1, round(width * outscale)), max(1, round(height * outscale))

    def check(self, name: object, width: int, height: int, *, frames: int = 1, scale: int = 4,
              outscale: float | None = None, channels: int = 3, sample_bytes: int = 1) -> Estimate:
        """Raise :class:`LimitError` naming ``name`` if the file would exceed a bound."""
        in_px = width * height * max(1, frames)
        if self.max_input_pixels and in_px > self.max_input_pixels:
            many = f"{frames} frames of " if frames > 1 else ""
            raise LimitError(f"{name}: {many}{width}x{height} = {in_px} pixels exceeds the limit of "
                             f"{self.max_input_pixels} (max_pixels)")
        out_w, out_h = self.output_size(width, height, scale, outscale)
        if self.max_output_pixels and out_w * out_h > self.max_output_pixels:
            raise LimitError(f"{name}: the output would be {out_w}x{out_h} = {out_w * out_h:,} pixels, over the limit of "
                             f"{self.max_output_pixels:,} (--max-output-pixels; larger images cannot be opened by "
                             "Pillow's defaults)")
        resized = None if outscale is None else (out_w, out_h)
        peak = estimate_peak_bytes(width, height, frames=max(1, frames), scale=scale, out_size=resized,
                                   channels=channels, sample_bytes=sample_bytes, tile_bytes=self.tile_bytes)
        if self.max_memory and peak > self.max_memory:
            raise LimitError(f"{name}: {width}x{height} -> {out_w}x{out_h} needs about {_size(peak)} of memory, over the "
                             f"limit of {_size(self.max_memory)} (--max-memory; default 3/4 of the available RAM)")
        return Estimate(in_px, (out_w, out_h), peak)

    def per_gigabyte(self) -> float:
        """Input megapixels of an 8-bit RGB still at x4 that fit in 1 GB (tiles aside)."""
        return 1e9 / BYTES_PER_INPUT_PIXEL_X4 / 1e6


def parse_size(text: str) -> int:
    """'4G', '512M', '2.5GB', '1000000' -> bytes (decimal or binary units by their letters: G = GiB)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    cleaned = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (cleaned[:-1], cleaned[-1]) if cleaned and cleaned[-1] in units else (cleaned, "")
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"expected a size such as 4G, 512M or a number of bytes, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"expected a size > 0, got {text!r}")
    return int(value * units[unit])
