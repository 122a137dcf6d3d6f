"""surge.upscale: types, modes and precisions in -> the same out, with the right pixels.

The ``bicubic`` model makes the expected output computable independently
(MATLAB bicubic of the input), so these tests check pixels, not only shapes.
"""

import inspect

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

import surge
from surge.imaging.bicubic import imresize
from surge.inference.engine import Engine
from surge.inference.image_io import quantise
from surge.inference.upscale import get_engine, upscale_array
from surge.models.registry import load_model


@pytest.fixture(scope="module")
def bicubic():
    return get_engine("bicubic", device="cpu")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return get_engine(load_model("surge-tiny"), precision="fp32", device="cpu")


def _img(h=9, w=13, channels=3, seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random((h, w, channels)).astype(dtype)
    return (rng.random((h, w, channels)) * np.iinfo(dtype).max).round().astype(dtype)


def _expected_bicubic(arr: np.ndarray) -> np.ndarray:
    """MATLAB bicubic x4 of a float image, computed by the numpy implementation."""
    return imresize(arr.astype(np.float64), scale=4)


def test_uint8_rgb_is_matlab_bicubic(bicubic):
    arr = _img()
    out = surge.upscale(arr, model=bicubic, tile=None)
    assert out.dtype == np.uint8 and out.shape == (36, 52, 3)
    expected = quantise(_expected_bicubic(arr / 255.0), np.uint8).astype(int)
    assert np.abs(out.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_float_stays_float_in_unit_range(bicubic, dtype):
    arr = _img(dtype=dtype)
    out = surge.upscale(arr, model=bicubic)
    assert out.dtype == dtype and out.shape == (36, 52, 3)
    assert out.min() >= 0 and out.max() <= 1
    expected = np.clip(_expected_bicubic(arr.astype(np.float32)), 0, 1)
    assert np.abs(out.astype(np.float64) - expected).max() < (2e-3 if dtype == np.float16 else 1e-5)


def test_uint16_keeps_16_bit_precision(bicubic):
    arr = _img(dtype=np.uint16)
    out = surge.upscale(arr, model=bicubic)
    assert out.dtype == np.uint16
    expected = quantise(_expected_bicubic(arr / 65535.0), np.uint16).astype(int)
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert (out % 257 != 0).mean() > 0.9  # not 8-bit values scaled up


@pytest.mark.parametrize("shape", [(9, 13), (9, 13, 1)])
def test_grey_layout_kept_and_equals_bicubic_of_grey(bicubic, shape):
    arr = _img(channels=1)[..., 0].reshape(shape)
    out = surge.upscale(arr, model=bicubic)
    assert out.shape == (36, 52) + shape[2:]
    expected = quantise(_expected_bicubic(arr.reshape(9, 13) / 255.0), np.uint8).astype(int)
    assert np.abs(out.reshape(36, 52).astype(int) - expected).max() <= 1


def test_grey_through_learned_model_is_luma_of_rgb_result(tiny):
    grey = _img(channels=1, dtype=np.float32)[..., 0]
    out = upscale_array(grey, tiny, tile=None)
    rgb = tiny(torch.from_numpy(grey)[None, None].repeat(1, 3, 1, 1))[0].permute(1, 2, 0).numpy()  # unclamped
    luma = np.clip(rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32), 0, 1)
    assert out.shape == (36, 52) and np.abs(out - luma).max() < 1e-6


def test_alpha_is_resized_separately(tiny):
    rgba = _img(channels=4)
    out = surge.upscale(rgba, model=tiny)
    assert out.shape == (36, 52, 4)
    # Colour does not depend on alpha ...
    assert np.array_equal(out[..., :3], surge.upscale(np.ascontiguousarray(rgba[..., :3]), model=tiny))
    # ... and alpha is MATLAB bicubic of alpha, not what the model would make of it.
    expected = quantise(_expected_bicubic(rgba[..., 3] / 255.0), np.uint8).astype(int)
    assert np.abs(out[..., 3].astype(int) - expected).max() <= 1


def test_grey_alpha_array(bicubic):
    out = surge.upscale(_img(channels=2), model=bicubic)
    assert out.shape == (36, 52, 2) and out.dtype == np.uint8


@pytest.mark.parametrize(
    ("mode", "want"),
    [("RGB", "RGB"), ("RGBA", "RGBA"), ("L", "L"), ("LA", "LA"), ("I;16", "I;16"), ("I", "I"), ("F", "F"),
     ("1", "L"), ("P", "RGB"), ("CMYK", "RGB"), ("YCbCr", "RGB"), ("RGBa", "RGBA")],
)
def test_pil_modes(bicubic, mode, want):
    base = Image.fromarray(_img(channels=3))
    if mode == "I;16":
        img = Image.fromarray(_img(channels=1, dtype=np.uint16)[..., 0])
    elif mode in ("I", "F"):
        img = base.convert("L").convert(mode)
        if mode == "F":
            img = img.point(lambda v: v / 255.0)
    else:
        img = base.convert(mode)
    out = surge.upscale(img, model=bicubic)
    assert isinstance(out, Image.Image) and out.mode == want and out.size == (52, 36)


def test_pil_rgb_matches_array_path(tiny):
    arr = _img()
    assert np.array_equal(np.asarray(surge.upscale(Image.fromarray(arr), model=tiny)), surge.upscale(arr, model=tiny))


def test_pil_keeps_icc_profile(bicubic):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    img = Image.fromarray(_img())
    img.info["icc_profile"] = icc
    assert surge.upscale(img, model=bicubic).info.get("icc_profile") == icc


def test_model_given_as_name_srmodel_or_engine():
    arr = _img(5, 6)
    by_name = surge.upscale(arr, model="bicubic", device="cpu")
    by_model = surge.upscale(arr, model=load_model("bicubic"), device="cpu")
    engine = get_engine("bicubic", device="cpu")
    assert get_engine(engine) is engine
    assert np.array_equal(by_name, by_model) and np.array_equal(by_name, surge.upscale(arr, model=engine))


def test_backend_passed_through_when_supported():
    if "backend" not in inspect.signature(Engine).parameters:
        pytest.skip("Engine has no backend argument in this version")
    engine = get_engine("surge-tiny", device="cpu", backend="onnxruntime")
    assert engine.backend == "onnxruntime"


@pytest.mark.parametrize(
    ("arr", "message"),
    [
        (np.zeros((4, 4, 5), np.uint8), "C = 1..4"),
        (np.zeros((4,), np.uint8), "HxW"),
        (np.zeros((4, 4, 3), np.int32), "uint8, uint16 or float"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
    ],
)
def test_bad_arrays(bicubic, arr, message):
    with pytest.raises(ValueError, match=message):
        surge.upscale(arr, model=bicubic)


def test_bad_types_and_tiles(bicubic):
    with pytest.raises(TypeError, match="PIL image or a numpy array"):
        surge.upscale([[0, 1]], model=bicubic)
    with pytest.raises(ValueError, match="tile"):
        surge.upscale(_img(), model=bicubic, tile="big")
    with pytest.raises(ValueError, match="overlap"):
        surge.upscale(_img(), model=bicubic, tile=4, overlap=-1)
