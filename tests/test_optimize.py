"""Inference rewrites (BatchNorm folding, sub-pixel convs), precision choice, the model's inference copy."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from surge.errors import SurgeError
from surge.inference import optimize
from surge.inference.optimize import (
    OptimizationError,
    SubpixelConv,
    auto_precision,
    check_equivalent,
    fold_batchnorm,
    fold_conv_bn,
    optimize_for_inference,
    subpixel_rewrite,
    to_compute_dtype,
)
from surge.models.config import GENERATOR_PRESETS
from surge.models.generator import SuRGeGenerator, Upsample2x
from surge.models.inference_hints import InferenceHints
from surge.inference.runtime import SRModel

# The paper's layout (BatchNorm, tanh) at toy width, and the residual preset's layout.
TINY_BN = dataclasses.replace(GENERATOR_PRESETS["surge"], width0=8, width1=12, blocks0=2, blocks1=1, head_kernel=5)
TINY_RES = GENERATOR_PRESETS["surge-tiny"]


def randomise_batchnorm(net: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN non-trivial statistics and affine parameters, as training would."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.2)
                m.weight.copy_(torch.randn(n, generator=gen) * 0.5 + 1)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
    return net.eval()


def generator(config, seed: int = 0) -> SuRGeGenerator:
    torch.manual_seed(seed)
    return randomise_batchnorm(SuRGeGenerator(config), seed)


@pytest.mark.parametrize("bias", [False, True])
def test_fold_conv_bn_matches_conv_then_bn(bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=bias)
    bn = randomise_batchnorm(nn.BatchNorm2d(6))
    x = torch.randn(2, 4, 9, 7)
    with torch.no_grad():
        expected = bn(conv(x))
        fold_conv_bn(conv, bn)
        got = conv(x)
    assert conv.bias is not None
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_fold_batchnorm_folds_every_generator_pair_and_keeps_output():
    net = generator(TINY_BN)
    x = torch.rand(1, 3, 10, 11)
    with torch.no_grad():
        expected = net(x)
    folded = fold_batchnorm(net)
    # Two per residual block, plus I0 and I1.
    assert folded == 2 * (TINY_BN.blocks0 + TINY_BN.blocks1) + 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected, atol=1e-5, rtol=1e-4)


def test_batchnorm_not_fed_directly_by_a_conv_is_left_alone():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4))
    randomise_batchnorm(net)
    assert fold_batchnorm(net) == 0
    assert isinstance(net[2], nn.BatchNorm2d)


def test_fold_batchnorm_refuses_training_mode():
    with pytest.raises(OptimizationError, match="eval"):
        fold_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train())


@pytest.mark.parametrize("kernel", [1, 3, 5, 7, 9])
def test_subpixel_conv_equals_conv_of_nearest_upsample(kernel):
    torch.manual_seed(kernel)
    conv = nn.Conv2d(5, 3, kernel, padding=kernel // 2)
    z = torch.randn(2, 5, 7, 10)
    with torch.no_grad():
        expected = conv(F.interpolate(z, scale_factor=2.0, mode="nearest"))
        got = SubpixelConv.from_upsampled_conv(conv)(z)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_subpixel_conv_rejects_strided_conv():
    with pytest.raises(OptimizationError):
        SubpixelConv.from_upsampled_conv(nn.Conv2d(3, 3, 3, stride=2, padding=1))


@pytest.mark.parametrize("config", [TINY_BN, TINY_RES], ids=["batchnorm-tanh", "residual"])
def test_optimize_for_inference_is_exact_and_leaves_the_original_alone(config):
    net = generator(config)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(2, 3, 13, 9)
    with torch.no_grad():
        expected = net(x)
    fast, stats = optimize_for_inference(net)
    assert stats["subpixel_rewrites"] == 2
    assert stats["batchnorm_folded"] == (2 * (config.blocks0 + config.blocks1) + 2 if config.norm == "batch" else 0)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), expected, atol=2e-5, rtol=1e-4)
    # The source network (a trainer may hold it) is untouched: same modules, same tensors.
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == (config.norm == "batch")
    after = net.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_optimized_network_cost_drops_by_the_subpixel_saving():
    from torch.utils.flop_counter import FlopCounterMode

    net = generator(dataclasses.replace(TINY_BN, head_kernel=9))
    fast, _ = optimize_for_inference(net)
    x = torch.rand(1, 3, 16, 16)

    def flops(module):
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            module(x)
        return counter.get_total_flops()

    assert flops(fast) < 0.9 * flops(net)


def test_check_equivalent_catches_a_wrong_rewrite():
    net = generator(TINY_RES)
    broken, _ = optimize_for_inference(net)
    with torch.no_grad():
        broken.out.conv.bias.add_(0.01)
    with pytest.raises(OptimizationError, match="changed its output"):
        check_equivalent(net, broken)


def test_subpixel_rewrite_ignores_other_networks():
    assert subpixel_rewrite(nn.Sequential(nn.Conv2d(3, 3, 3))) == 0


class _OtherUpsampler(nn.Module):
    """Not SuRGe, other module names: the rewrites follow its declared hints."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 6, 3, padding=1)
        self.up = Upsample2x(6, 3)
        self.tail = nn.Conv2d(6, 3, 5, padding=2)
        self.mix = nn.Parameter(torch.tensor([0.25, 0.75]))

    def forward(self, x):
        y = self.tail(self.up(self.head(x)))
        w = torch.softmax(self.mix, 0)
        return w[0] * y + w[1] * F.interpolate(x, scale_factor=2.0, mode="nearest")

    def inference_hints(self):
        return InferenceHints(subpixel_pairs=(("up", "tail"),), input_modules=("head",), fp32_modules=("tail",),
                              fp32_parameters=("mix",))


def test_rewrites_follow_the_architectures_hints_not_module_names():
    torch.manual_seed(0)
    net = _OtherUpsampler().eval()
    x = torch.rand(1, 3, 7, 6)
    with torch.no_grad():
        expected = net(x)
    fast, stats = optimize_for_inference(net)
    assert stats["subpixel_rewrites"] == 1 and isinstance(fast.tail, SubpixelConv)
    low = to_compute_dtype(fast, torch.bfloat16)
    assert low.head.module.weight.dtype == torch.bfloat16 and low.up.conv.weight.dtype == torch.bfloat16
    assert low.tail.module.conv.weight.dtype == torch.float32 and low.mix.dtype == torch.float32
    with torch.no_grad():
        y = low(x)
    assert y.dtype == torch.float32 and (y - expected).abs().max() < 0.02


def test_generator_declares_its_pairs_and_fp32_islands():
    hints = SuRGeGenerator(TINY_RES).inference_hints()
    assert hints.subpixel_pairs == (("U0", "C1.0"), ("U1", "out"))
    assert hints.input_modules == ("C0",) and hints.fp32_modules == ("out",)


def test_bf16_compute_keeps_fp32_interface_and_stays_close():
    net = generator(TINY_BN)
    fast, _ = optimize_for_inference(net)
    low = to_compute_dtype(fast, torch.bfloat16)
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        y, ref = low(x), net(x)
    assert y.dtype == torch.float32
    assert low.R0[0].conv1.weight.dtype == torch.bfloat16
    assert low.F0.logits.dtype == torch.float32  # mixing weights computed in fp32
    assert (y - ref).abs().max() < 0.02


# ------------------------------------------------------------------ precision choice


@pytest.fixture
def fake_cpu(monkeypatch):
    """Pretend to be an x86 CPU with the given /proc/cpuinfo flags and oneDNN answer."""

    def set_cpu(flags: set[str], onednn: bool = True, machine: str = "x86_64"):
        optimize.cpu_has_native_bf16.cache_clear()
        monkeypatch.setattr(optimize, "cpu_flags", lambda: frozenset(flags))
        monkeypatch.setattr(optimize.platform, "machine", lambda: machine)
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn, raising=False)

    yield set_cpu
    optimize.cpu_has_native_bf16.cache_clear()


@pytest.mark.parametrize(
    "flags, onednn, machine, native",
    [
        ({"avx2", "avx512f", "avx512_bf16"}, True, "x86_64", True),
        ({"avx2", "amx_bf16"}, True, "x86_64", True),
        ({"avx2", "avx512f"}, True, "x86_64", False),  # oneDNN would emulate bf16: slower
        ({"avx512_bf16"}, False, "x86_64", False),
        ({"asimd", "bf16"}, True, "aarch64", True),
        ({"asimd"}, True, "aarch64", False),
    ],
)
def test_native_bf16_detection(fake_cpu, flags, onednn, machine, native):
    fake_cpu(flags, onednn, machine)
    assert optimize.cpu_has_native_bf16() is native
    cpu = torch.device("cpu")
    assert auto_precision(("fp32", "bf16", "fp16"), cpu) == ("bf16" if native else "fp32")


def test_auto_precision_respects_model_and_provenance_veto(fake_cpu):
    fake_cpu({"avx512_bf16"})
    cpu = torch.device("cpu")
    assert auto_precision(("fp32",), cpu) == "fp32"
    assert auto_precision(("fp32", "bf16"), cpu, {"auto_precision": "fp32"}) == "fp32"
    assert auto_precision(("fp32", "bf16"), cpu, {"auto_precision": ["fp32", "bf16"]}) == "bf16"
    assert auto_precision(("fp32", "bf16"), cpu, {"other": 1}) == "bf16"


def tiny_model(config=TINY_BN, **kwargs) -> SRModel:
    return SRModel(name="tiny", network=generator(config), scale=4, source="test",
                   precisions=("fp32", "bf16", "fp16"), **kwargs)


def test_auto_precision_of_a_model_follows_detection_and_veto(fake_cpu):
    fake_cpu({"avx512_bf16"})
    assert tiny_model()._engine(device="cpu").precision == "bf16"
    assert tiny_model(provenance={"auto_precision": "fp32"})._engine(device="cpu").precision == "fp32"
    assert tiny_model(provenance={"auto_precision": "fp32"})._engine("bf16", device="cpu").precision == "bf16"
    fake_cpu({"avx512f"})
    assert tiny_model()._engine(device="cpu").precision == "fp32"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_engine_folds_a_copy_and_matches_the_model(precision):
    model = tiny_model()
    engine = model._engine(precision, device="cpu")
    assert engine.optimizations["batchnorm_folded"] > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in engine.network.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.network.modules())
    x = torch.rand(1, 3, 11, 14)
    with torch.no_grad():
        ref = model.network(x)
    y = engine(x)
    assert y.dtype == torch.float32 and y.shape == (1, 3, 44, 56)
    assert (y - ref).abs().max() < (1e-4 if precision == "fp32" else 0.02)


def test_engine_rejects_unknown_backend_and_bf16_onnxruntime():
    with pytest.raises(SurgeError, match="backend"):
        tiny_model().prepare(backend="tensorrt")
    with pytest.raises(SurgeError, match="fp32 only"):
        tiny_model().prepare("bf16", device="cpu", backend="onnxruntime")


class _SharedConv(nn.Module):
    """One conv used twice: once before a BatchNorm, once not. Folding would break the second use."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.conv(x)) + self.conv(x)


def test_conv_reused_without_batchnorm_is_not_folded():
    net = randomise_batchnorm(_SharedConv())
    assert fold_batchnorm(net) == 0
    fast, stats = optimize_for_inference(net)
    assert stats["batchnorm_folded"] == 0
