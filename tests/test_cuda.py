"""CUDA inference on a real GPU: every bundled model and preset at every precision, tiling, self-ensemble,
the fp16 overflow fall-back, the `surge eval` path that failed in the first device run (issue 21), and
ONNX Runtime's CUDA provider. Marked ``cuda``: skipped without a GPU (tests/conftest.py); the device
script runs them with ``python -m pytest -m cuda tests/``. Tiny images: well under a minute on one GPU.

References are float64 forward passes on the CPU. Tolerances (max / mean abs on [0, 1]) are about ten
times what the same comparison measures on the CPU (fp16 1.1e-3 / 1.1e-4, bf16 9.2e-3 / 9.6e-4 for
surge-x4 on a 24 x 24 input); fp32 allows for TF32 convolutions (10-bit mantissa) when cuDNN uses them.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

import surge
from surge.cli.main import main
from surge.errors import PrecisionFallbackWarning
from surge.evaluation.runner import Predictor, evaluate_set
from surge.inference.runtime import SRModel
from surge.models.config import GENERATOR_PRESETS
from surge.models.generator import SuRGeGenerator
from surge.models.registry import BUNDLED, bundled_path

pytestmark = pytest.mark.cuda

CUDA = "cuda"
SHIPPED = [name for name in BUNDLED if bundled_path(name) is not None]
PRESETS = list(GENERATOR_PRESETS)


def tolerance(precision: str) -> tuple[float, float]:
    """(max, mean) abs difference from the float64 CPU reference allowed at ``precision``."""
    if precision == "fp32":
        return (2e-3, 2e-4) if torch.backends.cudnn.allow_tf32 else (1e-5, 1e-6)
    return {"fp16": (1e-2, 1e-3), "bf16": (5e-2, 5e-3)}[precision]


def lr_batch(size: int = 24, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def cpu_float64(model: SRModel, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return copy.deepcopy(model.network).to("cpu", torch.float64).eval()(x.double()).float()


def assert_close_to(y: torch.Tensor, reference: torch.Tensor, precision: str) -> None:
    assert torch.isfinite(y).all()
    diff = (y - reference).abs()
    most, mean = tolerance(precision)
    assert diff.max().item() <= most and diff.mean().item() <= mean, (
        f"{precision}: max {diff.max().item():.3g} (<= {most:g}), mean {diff.mean().item():.3g} (<= {mean:g})")


@pytest.mark.filterwarnings("error::surge.errors.PrecisionFallbackWarning")  # a shipped model must not overflow
@pytest.mark.parametrize("name", SHIPPED + PRESETS)
def test_every_model_runs_on_cuda_at_every_precision(name):
    model = surge.load_model(name, device=CUDA)
    assert model.device.type == "cuda" and next(model.network.parameters()).is_cuda
    x = lr_batch()
    reference = cpu_float64(model, x)
    for precision in ("fp32", "fp16", "bf16"):
        engine = model._engine(precision)  # builds the inference copy: the rewrite check that failed on CUDA
        assert engine.device.type == "cuda" and engine.precision == precision
        y = engine(x)
        assert y.shape == (1, 3, 96, 96) and y.device.type == "cpu" and y.dtype == torch.float32
        assert_close_to(y, reference, precision)
    assert model._engine().precision in ("fp16", "bf16", "fp32")  # "auto" resolves on this GPU


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tiled_equals_untiled_on_cuda(precision):
    name = SHIPPED[0] if SHIPPED else "surge-small"
    model = surge.load_model(name, device=CUDA, precision=precision)
    image = np.random.default_rng(0).random((40, 36, 3), dtype=np.float32)
    before = torch.backends.cudnn.benchmark
    whole = surge.upscale(image, model=model, tile=None)
    tiled = surge.upscale(image, model=model, tile=16, batch_size=2)
    assert torch.backends.cudnn.benchmark == before  # scoped to the tiled run
    # Different tile shapes may get different cuDNN algorithms: equal up to the precision's rounding.
    assert np.abs(tiled - whole).max() <= tolerance(precision)[0]


def test_self_ensemble_on_cuda_matches_the_cpu():
    name = SHIPPED[0] if SHIPPED else "surge-small"
    image = np.random.default_rng(1).random((20, 20, 3), dtype=np.float32)
    gpu = surge.upscale(image, model=surge.load_model(name, device=CUDA, precision="fp32"), tile=None, self_ensemble=True)
    cpu = surge.upscale(image, model=surge.load_model(name, device="cpu", precision="fp32"), tile=None, self_ensemble=True)
    assert np.abs(gpu - cpu).max() <= tolerance("fp32")[0]


def test_fp16_overflow_on_cuda_is_recomputed_in_fp32():
    torch.manual_seed(0)
    network = SuRGeGenerator(GENERATOR_PRESETS["surge-tiny"]).eval()
    with torch.no_grad():
        network.C0[0].weight.mul_(1e6)  # activations past fp16's 65504; fp32 stays finite
    model = SRModel(name="loud", network=network.to(CUDA), scale=4, source="test", precisions=("fp32", "fp16"))
    image = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    with torch.inference_mode():
        raw = model._engine("fp16").network(torch.from_numpy(image.transpose(2, 0, 1)[None] / 255.0).float().to(CUDA))
    assert not torch.isfinite(raw).all()  # it really overflows on this GPU
    fp32 = surge.upscale(image.astype(np.float32) / 255, model=model, precision="fp32", tile=8)
    with pytest.warns(PrecisionFallbackWarning, match="fp16 overflowed on cuda"):
        fp16 = surge.upscale(image.astype(np.float32) / 255, model=model, precision="fp16", tile=8)
    np.testing.assert_allclose(fp16, fp32, atol=1e-6)


def test_eval_path_on_cuda_scores_like_the_cpu(tmp_path):
    """`surge eval` failed on CUDA before its first pixel (issue 21). Same images, same model: the
    fp32 scores on CUDA (TF32 convs) and on the CPU agree to a few thousandths of a dB."""
    name = SHIPPED[0] if SHIPPED else "surge-small"
    rng = np.random.default_rng(2)
    (tmp_path / "Tiny" / "HR").mkdir(parents=True)
    for i in range(2):
        Image.fromarray((rng.random((48, 40, 3)) * 255).astype(np.uint8)).save(tmp_path / "Tiny" / "HR" / f"{i}.png")
    gpu = evaluate_set(Predictor(name, "fp32", CUDA), tmp_path / "Tiny")
    cpu = evaluate_set(Predictor(name, "fp32", "cpu"), tmp_path / "Tiny")
    assert gpu.complete and abs(gpu.psnr_y - cpu.psnr_y) < 0.01


def test_cli_upscale_on_cuda_writes_a_real_image(tmp_path):
    if not SHIPPED:
        pytest.skip("no bundled model in this installation")
    rng = np.random.default_rng(3)
    Image.fromarray((rng.random((24, 20, 3)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--device", CUDA,
                 "--tile", "12", "-q"]) == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (96, 80, 3) and out.std() > 10  # not black, not flat


def _onnx_cuda_or_skip():
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    pytest.importorskip("onnx", reason="onnx not installed")
    return "CUDAExecutionProvider" in ort.get_available_providers()


def test_onnxruntime_cuda_provider_runs_on_the_gpu():
    if not _onnx_cuda_or_skip():
        pytest.skip("this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
    name = SHIPPED[0] if SHIPPED else "surge-small"
    model = surge.load_model(name, device=CUDA)
    engine = model._engine("fp32", CUDA, "onnxruntime")
    assert engine._session.session.get_providers()[0] == "CUDAExecutionProvider"
    x = lr_batch()
    assert_close_to(engine(x), cpu_float64(model, x), "fp32")


def test_onnxruntime_backend_on_an_automatic_device():
    """"auto" picked CUDA: the onnxruntime backend runs there with the CUDA provider, else on the CPU."""
    has_cuda_provider = _onnx_cuda_or_skip()
    model = surge.load_model("surge-tiny", device="auto")
    assert model.device.type == "cuda"
    engine = model._engine("fp32", None, "onnxruntime")
    assert engine.device.type == ("cuda" if has_cuda_provider else "cpu")
    assert torch.isfinite(engine(lr_batch(8))).all()
