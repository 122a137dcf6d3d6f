"""surge.upscale: types, modes and precisions in -> the same out, with the right pixels.

The ``bicubic`` model makes the expected output computable independently
(MATLAB bicubic of the input), so these tests check pixels, not only shapes.
"""

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

import surge
from surge.imaging.bicubic import imresize
from surge.errors import ImageValueError
from surge.inference import optimize
from surge.inference.image_io import quantise
from surge.inference.runtime import SRModel, load_model


@pytest.fixture(scope="module")
def bicubic():
    return load_model("bicubic", device="cpu")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_model("surge-tiny", device="cpu", precision="fp32")


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
    out = surge.upscale(grey, model=tiny, tile=None)
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


def test_model_given_as_name_path_or_srmodel(tmp_path):
    from surge.models.files import save_model

    arr = _img(5, 6)
    by_name = surge.upscale(arr, model="bicubic", device="cpu")
    by_model = surge.upscale(arr, model=load_model("bicubic"), device="cpu")
    assert np.array_equal(by_name, by_model)
    torch.manual_seed(3)
    path = save_model(load_model("surge-tiny").network, tmp_path / "tiny.safetensors")
    by_path = surge.upscale(arr, model=path, precision="fp32", device="cpu")
    assert np.array_equal(by_path, surge.upscale(arr, model=load_model(path, device="cpu", precision="fp32")))
    with pytest.raises(TypeError, match="SRModel"):
        surge.upscale(arr, model=load_model("bicubic").network)


def test_engine_is_built_once_per_model_and_settings(monkeypatch):
    """Issue 10 item 17: repeated surge.upscale calls with one model reuse its inference copy."""
    from surge.inference import _engine

    builds = []
    real = optimize.optimize_for_inference
    monkeypatch.setattr(_engine, "optimize_for_inference", lambda net, **k: builds.append(net) or real(net, **k))
    model = load_model("surge-tiny", device="cpu", precision="fp32")
    arr = _img(6, 7)
    first = surge.upscale(arr, model=model)
    assert np.array_equal(surge.upscale(arr, model=model, tile=4), first)
    model(torch.rand(1, 3, 5, 5))
    assert len(builds) == 1
    surge.upscale(arr, model=model, precision="bf16")  # other settings: a second copy, also kept
    surge.upscale(arr, model=model, precision="bf16")
    assert len(builds) == 2
    model.clear_cache()
    surge.upscale(arr, model=model)
    assert len(builds) == 3


def test_model_call_runs_a_batch_and_checks_its_shape():
    model = load_model("bicubic", device="cpu")
    x = torch.from_numpy(_img(5, 6, dtype=np.float32)).permute(2, 0, 1)[None]
    y = model(x)
    assert y.shape == (1, 3, 20, 24) and y.dtype == torch.float32
    expected = _expected_bicubic(x[0].permute(1, 2, 0).numpy())
    assert np.abs(y[0].permute(1, 2, 0).numpy() - expected).max() < 1e-5
    with pytest.raises(ValueError, match=r"expected a \(B, 3, H, W\) batch"):
        model(x[:, :2])
    strict = SRModel(name="strict", network=model.network, scale=4, source="test", size_multiple=4, min_size=8)
    with pytest.raises(ValueError, match="at least 8 px, multiples of 4"):
        strict(torch.rand(1, 3, 8, 10))
    assert strict(torch.rand(1, 3, 8, 12)).shape == (1, 3, 32, 48)


def test_descriptor_says_what_a_model_needs_and_can_do():
    bic, preset = load_model("bicubic", device="cpu"), load_model("surge-tiny", device="cpu", precision="bf16")
    assert (bic.scale, bic.in_channels, bic.out_channels, bic.precisions, bic.receptive_radius) == (4, 3, 3, ("fp32",), 2)
    assert bic.trained and not preset.trained and "untrained" in preset.source
    assert preset.precision == "bf16" and set(preset.precisions) == {"fp32", "bf16", "fp16"}
    assert preset.description and bic.description
    with pytest.raises(surge.errors.SurgeError, match="does not support precision bf16"):
        load_model("bicubic", precision="bf16")


def test_onnxruntime_backend_matches_torch_fp32():
    pytest.importorskip("onnxruntime")
    model = load_model("surge-tiny", device="cpu", precision="fp32")
    arr = _img(7, 9, dtype=np.float32)
    ort = surge.upscale(arr, model=model, backend="onnxruntime")
    assert np.abs(ort - surge.upscale(arr, model=model)).max() < 1e-4
    assert {key[2] for key in model._engines} == {"torch", "onnxruntime"}
    with pytest.raises(surge.errors.SurgeError, match="backend"):
        surge.upscale(arr, model=model, backend="tensorrt")


@pytest.mark.parametrize(
    ("value", "message"),
    [(-0.25, r"min -0.25, max 1\b"), (1.5, r"min 0, max 1.5\b"), (np.nan, "1 non-finite"), (np.inf, "1 non-finite")],
)
def test_float_arrays_outside_unit_range_are_refused_not_clipped(bicubic, value, message):
    arr = _img(dtype=np.float32)
    arr[0, 0, 0], arr[1, 1, 1] = 0.0, 1.0
    arr[2, 3, 0] = value
    with pytest.raises(ImageValueError, match=message):
        surge.upscale(arr, model=bicubic)
    with pytest.raises(ValueError):  # also a ValueError, for callers that catch that
        surge.upscale(arr, model=bicubic)
    # A float ("F") PIL image with the same value: the same error class as the array.
    with pytest.raises(ImageValueError, match="NaN or infinite" if "non-finite" in message else "outside"):
        surge.upscale(Image.fromarray(arr[..., 0]), model=bicubic)


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
