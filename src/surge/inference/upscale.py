"""``surge.upscale``: x4 upscaling of PIL images and numpy arrays, any common mode.

Colour goes through the model; what the model does not know about is handled around it:

* grey (L, I;16, HxW arrays) is replicated to RGB for the model and turned back into
  grey with ITU-R 601 luma weights (Pillow's ``convert("L")``), so grey stays grey;
* alpha is resized with MATLAB bicubic on its own, since a colour model has no notion of
  transparency, and recombined;
* 16-bit input stays 16-bit (float all the way, quantised once at the end), float stays
  float in [0, 1];
* palette, CMYK, bilevel and other Pillow modes are converted to RGB/RGBA (L for 1-bit)
  by :func:`surge.inference.image_io.pil_to_array`.

The result is written tile by tile into one preallocated array of the output dtype
(see :mod:`surge.inference.tiling`), so memory is bounded for any image size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from surge.errors import ImageValueError
from surge.imaging.bicubic import imresize_torch
from surge.inference._engine import Engine
from surge.inference.ensemble import SelfEnsemble
from surge.inference.image_io import array_to_pil, pil_to_array, quantise
from surge.inference.tiling import activation_bytes_per_lr_pixel, auto_tile_size, memory_budget, run_tiled
from surge.models.registry import SRModel, load_model

# ITU-R 601 luma, the weights of Pillow's RGB -> L conversion.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_INTEGER_DTYPES = (np.uint8, np.uint16)
# Bytes per activation value at each compute precision (the tile-size estimate is fp32).
_ELEMENT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def upscale(
    image: Image.Image | np.ndarray,
    model: str | Path | SRModel | None = "default",
    tile: int | str | None = "auto",
    overlap: int | None = None,
    precision: str | None = None,
    device: str | torch.device | None = None,
    progress: bool | Callable[[int, int], None] = False,
    batch_size: int = 1,
    backend: str = "torch",
    self_ensemble: bool = False,
):
    """Upscale ``image`` x4 and return the same type: PIL image of the same mode family,
    or a numpy array of the same dtype and layout.

    ``model``: a name or weights path (loaded for this call), or an :class:`SRModel` from
    :func:`surge.load_model` -- pass one to upscale many images: the model builds its
    inference copy once per (precision, device, backend) and keeps it. ``precision`` and
    ``device`` default to the model's own (see ``load_model``); ``backend`` is ``"torch"``
    or ``"onnxruntime"``.
    ``tile``: LR tile size, ``"auto"`` (from free memory and the model's cost) or
    None/0 (whole image at once). ``overlap``: LR context per tile side; defaults to the
    model's receptive radius, which makes tiled output equal untiled output.
    ``progress``: True for a tqdm bar of tiles on stderr, or a callable(done, total) called
    with (0, tiles) first and after each batch of tiles (e.g. to stream progress).
    ``batch_size``: tiles per forward pass (useful on GPUs).
    ``self_ensemble``: average the outputs for the eight flips and rotations of the input
    (:mod:`surge.inference.ensemble`): 8x the time for a small fidelity gain.
    Float arrays must hold values in [0, 1]; others are refused, never clipped.
    """
    if not isinstance(model, SRModel):
        if model is not None and not isinstance(model, (str, Path)):
            raise TypeError(f"model must be a name, a weights path or an SRModel from surge.load_model, not {type(model).__name__}")
        model = load_model(model, device=device or "auto", precision=precision or "auto")
    engine = model._engine(precision, device, backend)
    if self_ensemble:
        engine = SelfEnsemble(engine)
    options = dict(tile=tile, overlap=overlap, progress=progress, batch_size=batch_size)
    if isinstance(image, Image.Image):
        return _upscale_pil(image, engine, **options)
    if isinstance(image, np.ndarray):
        return _upscale_array(image, engine, **options)
    raise TypeError(f"upscale() takes a PIL image or a numpy array, not {type(image).__name__}")


def _upscale_pil(img: Image.Image, engine: Engine, **options) -> Image.Image:
    arr, mode, keeps_icc = pil_to_array(img)
    result = array_to_pil(_upscale_array(arr, engine, **options), mode)
    icc = img.info.get("icc_profile")
    if icc and keeps_icc:
        result.info["icc_profile"] = icc
    return result


def _check_array(arr: np.ndarray) -> None:
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and not 1 <= arr.shape[2] <= 4):
        raise ValueError(f"expected an HxW or HxWxC (C = 1..4) image array, got shape {arr.shape}")
    if arr.dtype not in _INTEGER_DTYPES and arr.dtype.kind != "f":
        raise ValueError(f"expected a uint8, uint16 or float image array, got {arr.dtype}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"empty image array, shape {arr.shape}")
    if arr.dtype.kind == "f":
        _check_float_range(arr)


def _check_float_range(arr: np.ndarray) -> None:
    """Float pixels must be finite and in [0, 1]: clipping others would silently change the image."""
    finite = np.isfinite(arr)
    if not finite.all():
        raise ImageValueError(f"float image array has {arr.size - int(finite.sum())} non-finite values (NaN or inf)")
    low, high = float(arr.min()), float(arr.max())
    if low < 0.0 or high > 1.0:
        raise ImageValueError(
            f"float image array values must be in [0, 1], got min {low:.6g}, max {high:.6g} "
            "(rescale it first, e.g. divide 0-255 data by 255)"
        )


def _to_float(arr: np.ndarray) -> np.ndarray:
    """(H, W, C) float32 in [0, 1]."""
    x = arr[..., None] if arr.ndim == 2 else arr
    if arr.dtype.kind == "f":
        return x.astype(np.float32)
    return x.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)


def _encode(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float [0, 1] -> ``dtype`` (clamped; rounded when integer)."""
    if np.dtype(dtype).kind == "f":
        return np.clip(x, 0.0, 1.0).astype(dtype)
    return quantise(x, dtype)


def _resolve_tile(tile: int | str | None, engine: Engine, height: int, width: int, overlap: int, batch_size: int = 1) -> int | None:
    """An LR tile size (None = untiled) from ``tile`` = int, "auto", or None/0."""
    if tile is None or tile == 0:
        return None
    if tile == "auto":
        network = engine.model.network
        per_pixel = activation_bytes_per_lr_pixel(network, engine.model.in_channels)
        per_pixel = per_pixel * _ELEMENT_BYTES.get(engine.precision, 4) // 4
        return auto_tile_size(height, width, overlap, per_pixel, memory_budget(engine.device), batch_size)
    if isinstance(tile, str) and tile.isdigit():
        tile = int(tile)
    if not isinstance(tile, int) or isinstance(tile, bool) or tile < 0:
        raise ValueError(f"tile must be a non-negative integer, 'auto' or None, got {tile!r}")
    return tile or None


def _upscale_array(
    arr: np.ndarray,
    engine: Engine,
    tile: int | str | None = "auto",
    overlap: int | None = None,
    progress: bool | Callable[[int, int], None] = False,
    batch_size: int = 1,
) -> np.ndarray:
    """Core of :func:`upscale` for arrays: HxW or HxWxC (C = 1 grey, 2 grey+alpha, 3 RGB,
    4 RGBA), uint8/uint16/float in [0, 1] -> the same layout and dtype, x scale."""
    _check_array(arr)
    lr = _to_float(arr)
    height, width, channels = lr.shape
    grey, has_alpha = channels in (1, 2), channels in (2, 4)
    colour = np.repeat(lr[..., :1], 3, axis=2) if grey else np.ascontiguousarray(lr[..., :3])
    scale = engine.scale
    out = np.empty((height * scale, width * scale, channels), dtype=arr.dtype)
    if overlap is None:
        overlap = engine.model.receptive_radius
    tile_px = _resolve_tile(tile, engine, height, width, overlap, batch_size)

    def encode(rgb: np.ndarray) -> np.ndarray:
        return _encode(rgb @ _LUMA[:, None] if grey else rgb, arr.dtype)

    colour_out = out[..., :1] if grey else out[..., :3]
    run_tiled(engine, colour, colour_out, scale, tile_px, overlap, encode, batch_size, progress)
    if has_alpha:
        out[..., -1] = _encode(upscale_alpha(lr[..., -1], scale), arr.dtype)
    return out[..., 0] if arr.ndim == 2 else out


def upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    """Alpha plane (H, W) float -> (scale*H, scale*W) by MATLAB bicubic, clamped to [0, 1]."""
    plane = torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32))[None]
    return imresize_torch(plane, scale=scale)[0].clamp_(0.0, 1.0).numpy()
