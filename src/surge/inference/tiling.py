"""Tiled inference: bounded memory, output identical to untiled inference.

An LR image is cut into tiles of at most ``tile`` LR pixels a side. Each tile is run
with ``overlap`` LR pixels of extra context on every side (clipped at the image
border), and only its valid centre is written into a preallocated host array. Because
every output pixel depends on at most ``receptive_radius`` LR pixels either side, an
overlap of at least that radius gives exactly the untiled result: at interior tile
edges the context covers the whole receptive field, and at the image border the tile
ends where the image ends, so the network zero-pads at the same place as untiled.

Only one batch of tiles is ever on the compute device; the full-size output lives on
the host in its final dtype, so memory is the output array plus one batch of
activations.
"""

from __future__ import annotations

import math
import os
import sys
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

# Auto tile sizing. The measured CPU peak for the `surge` preset is ~26 KB per LR pixel of
# a tile (fp32), about 3.3x its largest activation (128 channels at x4 = 8 KB); 4x is the
# margin used to turn "largest activation" into "peak of a forward pass".
_PEAK_OVER_LARGEST_ACTIVATION = 4
# On CPU bigger tiles stop paying off (throughput is flat beyond ~180 px tiles with
# context), while a small resident set matters; so activations get at most 1 GiB.
_CPU_BUDGET_CAP = 1 << 30
_CPU_BUDGET_FRACTION = 0.25
_GPU_BUDGET_FRACTION = 0.5
MIN_TILE = 32
MAX_TILE = 2048
_TILE_MULTIPLE = 8

Encoder = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Tile:
    """One tile: the LR region it fills (``valid``) and the LR region it reads (``context``)."""

    valid: tuple[slice, slice]
    context: tuple[slice, slice]

    @property
    def context_shape(self) -> tuple[int, int]:
        return (self.context[0].stop - self.context[0].start, self.context[1].stop - self.context[1].start)


def _axis_spans(length: int, tile: int | None, overlap: int) -> list[tuple[int, int, int, int]]:
    """(start, stop, context_start, context_stop) along one axis, tiles as equal as possible.

    Equal tiles (rather than full tiles plus a sliver at the end) waste less compute on
    context and give more tiles of one shape, which can share a batch.
    """
    if not tile or tile >= length:
        return [(0, length, 0, length)]
    count = math.ceil(length / tile)
    base, extra = divmod(length, count)
    spans, start = [], 0
    for i in range(count):
        stop = start + base + (1 if i < extra else 0)
        spans.append((start, stop, max(0, start - overlap), min(length, stop + overlap)))
        start = stop
    return spans


def plan_tiles(height: int, width: int, tile: int | None, overlap: int) -> list[Tile]:
    """Tiles covering an ``height`` x ``width`` LR image; ``tile`` None/0 means one tile."""
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    if tile is not None and tile < 0:
        raise ValueError(f"tile must be >= 0, got {tile}")
    return [
        Tile((slice(y0, y1), slice(x0, x1)), (slice(cy0, cy1), slice(cx0, cx1)))
        for y0, y1, cy0, cy1 in _axis_spans(height, tile, overlap)
        for x0, x1, cx0, cx1 in _axis_spans(width, tile, overlap)
    ]


# --- memory budget -------------------------------------------------------------------


def host_memory_available() -> int:
    """Bytes of RAM this process can still use: MemAvailable, capped by a cgroup limit.

    psutil is not a dependency; /proc/meminfo and the cgroup v2 files are what it reads
    on Linux anyway, and os.sysconf covers other Unixes.
    """
    available = _meminfo_available()
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = 4 << 30  # unknown platform: assume a modest machine
    cgroup = _cgroup_headroom()
    return min(available, cgroup) if cgroup is not None else available


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_headroom() -> int | None:
    """Container memory limit minus current usage (cgroup v2), or None when unlimited."""
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((root / "memory.current").read_text()))
    except (OSError, ValueError):
        return None


def memory_budget(device: torch.device) -> int:
    """Bytes of activations one batch of tiles may use on ``device``."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * _GPU_BUDGET_FRACTION)
    return int(min(host_memory_available() * _CPU_BUDGET_FRACTION, _CPU_BUDGET_CAP))


_BYTES_PER_PIXEL: "weakref.WeakKeyDictionary[torch.nn.Module, int]" = weakref.WeakKeyDictionary()


def activation_bytes_per_lr_pixel(network: torch.nn.Module, in_channels: int = 3, probe: int = 16) -> int:
    """Estimated peak forward memory per LR input pixel (fp32), from a small probe run.

    Hooks record every module's output size on a ``probe`` x ``probe`` input; the largest
    one times a safety factor approximates the forward's peak (see the constants above).
    A network whose layers hooks cannot see (an ONNX graph) declares ``bytes_per_lr_pixel``.
    """
    declared = getattr(network, "bytes_per_lr_pixel", None)
    if declared:
        return int(declared)
    cached = _BYTES_PER_PIXEL.get(network)
    if cached is not None:
        return cached
    largest = 0

    def record(_module, _inputs, output):
        nonlocal largest
        if isinstance(output, torch.Tensor):
            largest = max(largest, output.numel())

    device = next((p.device for p in network.parameters()), torch.device("cpu"))
    handles = [m.register_forward_hook(record) for m in network.modules()]
    try:
        with torch.inference_mode():
            network(torch.rand(1, in_channels, probe, probe, device=device))
    finally:
        for handle in handles:
            handle.remove()
    estimate = max(1, math.ceil(largest * 4 / (probe * probe))) * _PEAK_OVER_LARGEST_ACTIVATION
    _BYTES_PER_PIXEL[network] = estimate
    return estimate


def auto_tile_size(
    height: int, width: int, overlap: int, bytes_per_pixel: int, budget: int, batch_size: int = 1
) -> int | None:
    """Largest tile whose batch (with context) fits ``budget``; None when untiled fits."""
    if height * width * bytes_per_pixel * batch_size <= budget:
        return None
    side = math.isqrt(max(1, budget // (bytes_per_pixel * batch_size)))
    tile = (side - 2 * overlap) // _TILE_MULTIPLE * _TILE_MULTIPLE
    return int(min(MAX_TILE, max(MIN_TILE, tile)))


# --- running -------------------------------------------------------------------------


def _batches(tiles: list[Tile], batch_size: int) -> Iterator[list[Tile]]:
    """Tiles grouped by context shape (a batch needs one shape), at most batch_size each."""
    if batch_size <= 1:
        yield from ([t] for t in tiles)
        return
    by_shape: dict[tuple[int, int], list[Tile]] = {}
    for t in tiles:
        by_shape.setdefault(t.context_shape, []).append(t)
    for group in by_shape.values():
        for i in range(0, len(group), batch_size):
            yield group[i : i + batch_size]


def run_tiled(
    engine: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    out: np.ndarray,
    scale: int,
    tile: int | None,
    overlap: int,
    encode: Encoder | None = None,
    batch_size: int = 1,
    progress: bool | Callable[[int, int], None] = False,
) -> np.ndarray:
    """Upscale ``image`` (H, W, C float32 in [0, 1]) tile by tile into ``out``.

    ``out`` is a preallocated host array of shape (scale*H, scale*W, ...) in any dtype;
    ``encode`` turns each tile's float (h, w, C) result into what ``out`` stores
    (quantisation, grey conversion), so no full-size float copy is ever made.
    ``progress``: True for a tqdm bar on stderr (when there are several tiles), or a
    callable(done, total) called with (0, tiles) first and after each batch of tiles.
    """
    height, width = image.shape[:2]
    if out.shape[:2] != (height * scale, width * scale):
        raise ValueError(f"output array is {out.shape[:2]}, expected {(height * scale, width * scale)}")
    tiles = plan_tiles(height, width, tile, overlap)
    report = progress if callable(progress) else None
    bar = tqdm(
        total=len(tiles), desc="tiles", unit="tile", leave=False, file=sys.stderr,
        disable=report is not None or not progress or len(tiles) <= 1,
    )
    done = 0
    if report is not None:
        report(0, len(tiles))
    with bar:
        for batch in _batches(tiles, batch_size):
            x = np.stack([image[t.context].transpose(2, 0, 1) for t in batch])
            y = engine(torch.from_numpy(np.ascontiguousarray(x)))
            for t, sr in zip(batch, y):
                _stitch(out, t, sr, scale, encode)
            bar.update(len(batch))
            done += len(batch)
            if report is not None:
                report(done, len(tiles))
    return out


def _stitch(out: np.ndarray, tile: Tile, sr: torch.Tensor, scale: int, encode: Encoder | None) -> None:
    (vy, vx), (cy, cx) = tile.valid, tile.context
    oy, ox = (vy.start - cy.start) * scale, (vx.start - cx.start) * scale
    h, w = (vy.stop - vy.start) * scale, (vx.stop - vx.start) * scale
    centre = sr[:, oy : oy + h, ox : ox + w].permute(1, 2, 0).numpy()
    out[vy.start * scale : vy.stop * scale, vx.start * scale : vx.stop * scale] = (
        encode(centre) if encode else centre
    )
