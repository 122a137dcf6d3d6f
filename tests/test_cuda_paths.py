"""The CUDA code paths, checked on the CPU: what a GPU's arithmetic or a reduced precision does to
inference is simulated here, so these run everywhere; tests/test_cuda.py runs the real thing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import surge
from surge.cli.main import main
from surge.errors import NonFiniteOutputError, PrecisionFallbackWarning
from surge.inference.optimize import optimize_for_inference, to_compute_dtype
from surge.inference.runtime import SRModel
from surge.models.config import GENERATOR_PRESETS
from surge.models.files import save_model
from surge.models.generator import SuRGeGenerator
from surge.models.inference_hints import InferenceHints

_REAL_CONV2D = F.conv2d


def tf32(t: torch.Tensor | None) -> torch.Tensor | None:
    """``t`` rounded to TF32 (10 explicit mantissa bits, nearest, ties away from zero), as an
    Ampere+ tensor core reads fp32 operands; other dtypes are left alone."""
    if t is None or t.dtype != torch.float32:
        return t
    bits = t.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


def tf32_conv2d(x, weight, bias=None, *args, **kwargs):
    """conv2d as cuDNN runs an fp32 conv with ``torch.backends.cudnn.allow_tf32`` (PyTorch's default):
    operands rounded to TF32, products accumulated in fp32."""
    return _REAL_CONV2D(tf32(x), tf32(weight), bias, *args, **kwargs)


@pytest.fixture
def emulate_tf32(monkeypatch):
    """Every fp32 conv (nn.Conv2d calls F.conv2d) with TF32 operands, as on a CUDA GPU. With this, the
    equivalence check of the first H200 run's generator (gpu-real-psnr-3400) moves by 1.78e-4 on CPU;
    on the H200 it moved by 1.87e-4."""
    monkeypatch.setattr(F, "conv2d", tf32_conv2d)


def test_tf32_emulation_rounds_to_ten_mantissa_bits():
    x = torch.tensor([1 + 2**-10, 1 + 2**-11 + 2**-12, 1 + 2**-12, -3.0], dtype=torch.float32)
    assert tf32(x).tolist() == [1 + 2**-10, 1 + 2**-10, 1.0, -3.0]
    assert tf32(x.double()).dtype == torch.float64


def test_rewrite_check_of_a_bundled_model_survives_gpu_tf32_arithmetic(emulate_tf32):
    """Issue 21: on CUDA every SuRGe model failed with "inference rewrite ... changed its output by
    0.000187 (> 0.0001)" because the check compared the networks in the device's fp32, where cuDNN
    convs are TF32. The rewrites are exact; the check must not depend on the device's arithmetic."""
    model = surge.load_model("surge-x4", device="cpu", precision="fp32")
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model.network(x)
        exact = model.network.double()(x.double()).float()
        model.network.float()
    # The emulation is doing its job: the original network itself is off by more than the old tolerance.
    assert (plain - exact).abs().max().item() > 1e-4
    fast, stats = optimize_for_inference(model.network)
    assert stats["subpixel_rewrites"] == 2
    # And the model runs: its inference copy is built (and checked) like on a GPU.
    assert model(x).shape == (1, 3, 48, 48)


# --- reduced precision that overflows: detected, recomputed in fp32, never a black image ------------


def overflowing(preset: str, gain: float = 1e6, seed: int = 0) -> SRModel:
    """A small generator whose first conv is ``gain`` x too strong: its activations pass fp16's
    largest value (65504) while fp32 stays finite, like a model trained in bf16/fp32 run in fp16."""
    config = GENERATOR_PRESETS[preset] if preset == "surge-tiny" else TINY_BN
    torch.manual_seed(seed)
    network = SuRGeGenerator(config).eval()
    with torch.no_grad():
        network.C0[0].weight.mul_(gain)
    return SRModel(name=f"loud-{preset}", network=network, scale=4, source="test", precisions=("fp32", "bf16", "fp16"))


# The paper's layout at toy width: BatchNorm, tanh head (an overflow saturates tanh to a plausible 0 or 1).
TINY_BN = dataclasses.replace(GENERATOR_PRESETS["surge"], width0=8, width1=8, blocks0=1, blocks1=1, head_kernel=3)


@pytest.mark.parametrize("preset", ["surge-tiny", "surge"], ids=["residual-head", "tanh-head"])
@pytest.mark.parametrize("tile", [None, 8])
def test_fp16_overflow_is_recomputed_in_fp32_with_one_warning(preset, tile):
    model = overflowing(preset)
    image = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    with torch.inference_mode():
        raw = model._engine("fp16", "cpu").network(torch.from_numpy(image.transpose(2, 0, 1)[None] / 255.0).float())
    assert not torch.isfinite(raw).all()  # the network really overflows in fp16
    expected = surge.upscale(image, model=model, precision="fp32", tile=tile)
    with pytest.warns(PrecisionFallbackWarning, match="fp16 overflowed") as caught:
        got = surge.upscale(image, model=model, precision="fp16", tile=tile)
        surge.upscale(image, model=model, precision="fp16", tile=tile)  # same engine: no second warning
    assert len([w for w in caught if issubclass(w.category, PrecisionFallbackWarning)]) == 1
    np.testing.assert_array_equal(got, expected)
    assert got.max() > 0  # not the black image NaN would quantise to


def test_fp16_that_does_not_overflow_is_not_recomputed(recwarn):
    model = overflowing("surge-tiny", gain=1.0)
    image = (np.random.default_rng(0).random((12, 12, 3)) * 255).astype(np.uint8)
    fp16 = surge.upscale(image, model=model, precision="fp16", tile=None)
    assert not [w for w in recwarn if issubclass(w.category, PrecisionFallbackWarning)]
    assert not np.array_equal(fp16, surge.upscale(image, model=model, precision="fp32", tile=None))


class TanhHead(nn.Module):
    """body (reduced precision) -> 1x1 head with positive weights (fp32) -> tanh: an inf from the body
    comes out of the head as +inf and out of tanh as a plausible 1."""

    def __init__(self):
        super().__init__()
        self.body = nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.head.weight.fill_(0.5)

    def forward(self, x):
        return torch.tanh(self.head(self.body(x)))

    def inference_hints(self):
        return InferenceHints(input_modules=("body",), fp32_modules=("head",))


def test_an_overflow_hidden_by_a_tanh_head_still_shows_in_the_output():
    network = to_compute_dtype(TanhHead().eval(), torch.float16)

    def one_inf(_module, _inputs, output):
        output[0, 0, 5, 5] = float("inf")  # what an fp16 overflow leaves in the body's activations
        return output

    network.body.register_forward_hook(one_inf)
    with torch.inference_mode():
        y = network(torch.rand(1, 3, 12, 12))
    bad = ~torch.isfinite(y)
    assert bad.any() and not bad.all()  # the pixels that read the inf, not the whole image


class NanNetwork(nn.Module):
    """No inference hints, so no rewrite check: only the engine's output check can catch it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        y = F.interpolate(self.conv(x), scale_factor=4.0, mode="nearest")
        return y * torch.where(x.mean() > 2, 1.0, float("nan"))

    def receptive_radius(self):
        return 0


def test_non_finite_fp32_output_is_an_error_not_a_black_image():
    model = SRModel(name="nan-net", network=NanNetwork().eval(), scale=4, source="test", precisions=("fp32", "fp16"))
    image = np.full((12, 12, 3), 128, np.uint8)
    for precision in ("fp32", "fp16"):  # fp16 falls back to fp32, which fails the same way
        with pytest.raises(NonFiniteOutputError, match="nan-net.*NaN or inf in fp32"):
            surge.upscale(image, model=model, precision=precision, tile=None)


def test_cli_writes_nothing_when_the_model_gives_nan(tmp_path, capsys):
    model = overflowing("surge-tiny", gain=1.0)
    with torch.no_grad():
        model.network.out.bias.fill_(float("nan"))
    weights = save_model(model.network, tmp_path / "broken.safetensors")
    Image.fromarray(np.full((12, 12, 3), 99, np.uint8)).save(tmp_path / "in.png")
    code = main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--model", str(weights),
                 "--device", "cpu", "--precision", "fp32", "-q"])
    assert code == 2
    err = capsys.readouterr().err
    # Refused when the file loads (its weights hold NaN), before any inference: named, one line.
    assert err.startswith("surge: error: ") and "broken.safetensors" in err and "NaN" in err and err.count("\n") == 1
    assert "this is a bug" not in err  # broken weights are not a rewrite bug
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.safetensors", "in.png"]


def test_cli_warns_once_and_writes_the_fp32_result_when_fp16_overflows(tmp_path, capsys):
    weights = save_model(overflowing("surge-tiny").network, tmp_path / "loud.safetensors")
    Image.fromarray((np.random.default_rng(1).random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    common = [str(tmp_path / "in.png"), "--model", str(weights), "--device", "cpu", "--tile", "8", "-q"]
    assert main(["upscale", *common, "-o", str(tmp_path / "fp16.png"), "--precision", "fp16"]) == 0
    err = capsys.readouterr().err
    assert err.count("surge: warning: loud: fp16 overflowed on cpu") == 1 and "UserWarning" not in err
    assert main(["upscale", *common, "-o", str(tmp_path / "fp32.png"), "--precision", "fp32"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "fp16.png")), np.asarray(Image.open(tmp_path / "fp32.png")))


# --- ONNX Runtime on CUDA: the provider that runs is the one asked for ------------------------------


def test_execution_providers_per_device():
    from surge.inference.onnx_backend import OnnxError, execution_providers

    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert execution_providers(torch.device("cpu"), both) == ["CPUExecutionProvider"]
    assert execution_providers(torch.device("cuda:1"), both) == [
        ("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert execution_providers(torch.device("cuda"), both)[0] == ("CUDAExecutionProvider", {"device_id": 0})
    with pytest.raises(OnnxError, match="no CUDA provider.*onnxruntime-gpu"):
        execution_providers(torch.device("cuda"), ["CPUExecutionProvider"])
    with pytest.raises(OnnxError, match="not mps"):
        execution_providers(torch.device("mps"), both)


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_onnx_session_refuses_a_silent_fall_back_to_the_cpu(monkeypatch, tmp_path):
    """The provider is listed, but the session runs on the CPU (what ONNX Runtime does when the CUDA
    libraries fail to load, or, as here, when the provider is not really there)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from surge.inference.onnx_backend import OnnxError, OnnxSession, export_to_bytes

    graph = export_to_bytes(SuRGeGenerator(GENERATOR_PRESETS["surge-tiny"]).eval())
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(OnnxError, match="could not start its CUDA provider on cuda:0.*--device cpu"):
        OnnxSession(graph, "cuda:0")
    assert OnnxSession(graph, "cpu").session.get_providers() == ["CPUExecutionProvider"]


@pytest.mark.parametrize("has_cuda_provider", [False, True])
def test_onnx_backend_on_an_automatic_cuda_device_needs_the_cuda_provider(monkeypatch, has_cuda_provider):
    from surge.inference import onnx_backend

    monkeypatch.setattr(onnx_backend, "onnx_cuda_available", lambda: has_cuda_provider)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    # "auto" chose CUDA: without the CUDA provider the onnxruntime backend runs on the CPU instead.
    assert onnx_backend.onnx_device(cuda, chosen_automatically=True) == (cuda if has_cuda_provider else cpu)
    # A device the user named is kept; without the provider the session then fails with a clear error.
    assert onnx_backend.onnx_device(cuda, chosen_automatically=False) == cuda
    assert onnx_backend.onnx_device(cpu, chosen_automatically=True) == cpu


def test_model_remembers_whether_its_device_was_automatic():
    model = surge.load_model("surge-tiny", device="auto")
    assert model._auto_device
    assert not model.to("cpu")._auto_device
    assert surge.load_model("surge-tiny", device="cpu")._auto_device is False


# --- cudnn.benchmark while tiles repeat their shapes ---------------------------------------------------


class RecordingEngine:
    """Nearest x4 on the host; records cudnn.benchmark at each call; claims to run on ``device``."""

    def __init__(self, device: str, backend: str = "torch", fail: bool = False):
        self.device, self.backend, self.fail, self.seen = torch.device(device), backend, fail, []

    def __call__(self, x):
        self.seen.append(torch.backends.cudnn.benchmark)
        if self.fail:
            raise RuntimeError("out of memory")
        return F.interpolate(x, scale_factor=4.0, mode="nearest")


@pytest.mark.parametrize("before", [False, True])
@pytest.mark.parametrize(
    "device, backend, tile, on",
    [("cuda", "torch", 8, True),  # 16 tiles, 4 context shapes (border tiles have less context)
     ("cuda", "torch", None, False),  # one tile: nothing repeats
     ("cuda", "onnxruntime", 8, False),  # cuDNN settings do not reach ONNX Runtime
     ("cpu", "torch", 8, False)],
)
def test_cudnn_benchmark_is_on_only_while_tile_shapes_repeat_on_cuda(monkeypatch, device, backend, tile, on, before):
    from surge.inference.tiling import run_tiled

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", before)
    engine = RecordingEngine(device, backend)
    image = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    out = run_tiled(engine, image, np.empty((128, 128, 3), np.float32), 4, tile, overlap=2)
    np.testing.assert_array_equal(out, image.repeat(4, 0).repeat(4, 1))
    assert set(engine.seen) == {True if on else before}
    assert torch.backends.cudnn.benchmark is before


def test_cudnn_benchmark_is_restored_when_a_tile_fails(monkeypatch):
    from surge.inference.tiling import run_tiled

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    engine = RecordingEngine("cuda", fail=True)
    with pytest.raises(RuntimeError):
        run_tiled(engine, np.zeros((32, 32, 3), np.float32), np.empty((128, 128, 3), np.float32), 4, 8, overlap=2)
    assert engine.seen == [True] and torch.backends.cudnn.benchmark is False
