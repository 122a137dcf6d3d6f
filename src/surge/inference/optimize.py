"""Inference-only graph rewrites and precision choice.

Everything here works on a *copy* of a network (:func:`optimize_for_inference`), so a model
that a trainer is still using is never touched. Two exact rewrites (equal in real arithmetic;
float rounding differs by ~1e-6) make the SuRGe generator cheaper to run:

* **BatchNorm folding.** In eval mode ``BN(conv(x)) = conv'(x)`` with
  ``w' = w * g / sqrt(var + eps)`` and ``b' = (b - mean) * g / sqrt(var + eps) + beta``; the
  BatchNorm becomes ``Identity``. Pairs are found by tracing the network with ``torch.fx``
  (a BN qualifies only when every call of it reads one conv whose output nothing else
  reads), so the rule is the data flow, not module names.
* **Sub-pixel rewrite of "nearest x2 upsample, then a k x k conv"**, for the pairs an
  architecture declares in its ``inference_hints()`` (SuRGe: ``U0 -> C1`` and ``U1 -> out``). A conv of radius ``r`` over a nearest-upsampled map reads, for each of the
  4 output phases, only ``ceil(r/2)`` low-resolution pixels each side, so it equals a
  low-resolution conv with ``4 * c_out`` channels followed by ``pixel_shuffle(2)``. For the
  9x9 head kernels that is 3.2x fewer multiply-adds (34 -> ~26 MFLOP per LR pixel for the
  paper generator) and a better shape for the 3-channel output conv. The per-channel PReLU
  between the upsample and the conv commutes with nearest upsampling, so it moves to low
  resolution too.

Precision: :func:`auto_precision` picks bf16 on a CPU only where the CPU *has* native bf16
arithmetic (AVX512-BF16 or AMX on x86, the bf16 extension on arm64; read from
``/proc/cpuinfo`` and checked with oneDNN), fp16 on CUDA GPUs with tensor cores (bf16 second
on sm80+), and fp32 otherwise -- and only if the model allows it (``SRModel.precisions``)
and its file's provenance does not veto it (``provenance["auto_precision"] = "fp32"``,
written by whoever measured that a trained model loses more than 0.05 dB Set5 PSNR-Y in
reduced precision).
"""

from __future__ import annotations

import copy
import functools
import math
import platform
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from surge.models.inference_hints import InferenceHints

from surge.errors import SurgeError

# Reduced precision names -> torch dtypes.
REDUCED_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# What a model file's provenance may say under this key to limit "auto".
PROVENANCE_KEY = "auto_precision"


class OptimizationError(SurgeError):
    """An inference rewrite changed a network's output: a bug, never silently ignored."""


# --------------------------------------------------------------------------- BatchNorm


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm into the conv that feeds it (in place; adds a bias)."""
    if bn.running_mean is None or bn.running_var is None:
        raise OptimizationError("cannot fold a BatchNorm without running statistics")
    with torch.no_grad():
        w = conv.weight
        scale = torch.rsqrt(bn.running_var.double() + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.double()
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
        shift = bn.bias.double() if bn.bias is not None else torch.zeros_like(scale)
        new_bias = (bias - bn.running_mean.double()) * scale + shift
        conv.weight.copy_((w.double() * scale.view(-1, 1, 1, 1)).to(w.dtype))
        if conv.bias is None:
            conv.bias = nn.Parameter(new_bias.to(w.dtype), requires_grad=False)
        else:
            conv.bias.copy_(new_bias.to(w.dtype))


def _conv_bn_pairs(network: nn.Module) -> list[tuple[str, str]]:
    """(conv path, BN path) pairs that can be folded, found from the traced data flow.

    A pair qualifies when every call of the BN reads the output of that one conv, and every
    call of the conv feeds only that BN (a conv or BN module reused elsewhere is left alone,
    since folding would change its other uses).
    """
    try:
        graph = torch.fx.symbolic_trace(network).graph
    except Exception as exc:  # untraceable custom code: report, do not guess
        raise OptimizationError(f"cannot trace {type(network).__name__} to find conv->BatchNorm pairs ({exc})") from None
    modules = dict(network.named_modules())
    calls: dict[str, list[torch.fx.Node]] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls.setdefault(node.target, []).append(node)

    def feeds_only(conv_node: torch.fx.Node, bn_path: str) -> bool:
        users = list(conv_node.users)
        return len(users) == 1 and users[0].op == "call_module" and users[0].target == bn_path

    pairs = []
    for bn_path, bn_calls in calls.items():
        if not isinstance(modules.get(bn_path), nn.BatchNorm2d):
            continue
        sources = [call.args[0] if call.args else None for call in bn_calls]
        if not all(isinstance(src, torch.fx.Node) and src.op == "call_module" for src in sources):
            continue
        conv_paths = {src.target for src in sources}
        if len(conv_paths) != 1:
            continue
        (conv_path,) = conv_paths
        if isinstance(modules.get(conv_path), nn.Conv2d) and all(feeds_only(c, bn_path) for c in calls[conv_path]):
            pairs.append((conv_path, bn_path))
    return pairs


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


def fold_batchnorm(network: nn.Module) -> int:
    """Fold every foldable conv->BatchNorm pair of an eval-mode network in place; returns the count."""
    if network.training:
        raise OptimizationError("BatchNorm folding needs an eval-mode network (call .eval() first)")
    pairs = _conv_bn_pairs(network)
    for conv_path, bn_path in pairs:
        fold_conv_bn(network.get_submodule(conv_path), network.get_submodule(bn_path))
        _set_submodule(network, bn_path, nn.Identity())
    return len(pairs)


# --------------------------------------------------------------------------- sub-pixel rewrite


class SubpixelConv(nn.Module):
    """``conv_k(nearest_upsample_x2(z))`` computed as ``pixel_shuffle(conv_k'(z), 2)``.

    Built from the original conv by :meth:`from_upsampled_conv`; exact up to float rounding.
    """

    def __init__(self, conv: nn.Conv2d, out_channels: int):
        super().__init__()
        self.conv = conv
        self.out_channels = out_channels

    @classmethod
    def from_upsampled_conv(cls, conv: nn.Conv2d) -> "SubpixelConv":
        k = conv.kernel_size[0]
        if not _is_plain_same_conv(conv):
            raise OptimizationError(f"sub-pixel rewrite needs a square, stride-1, same-padded, ungrouped conv, got {conv}")
        r = k // 2
        r2 = math.ceil(r / 2)
        k2 = 2 * r2 + 1
        cout, cin = conv.out_channels, conv.in_channels
        w = conv.weight.detach().double()
        w2 = torch.zeros(cout, 2, 2, cin, k2, k2, dtype=torch.float64, device=w.device)
        for py in range(2):
            for dy in range(-r, r + 1):
                a = (py + dy) // 2
                for px in range(2):
                    for dx in range(-r, r + 1):
                        b = (px + dx) // 2
                        w2[:, py, px, :, a + r2, b + r2] += w[:, :, dy + r, dx + r]
        new = nn.Conv2d(cin, 4 * cout, k2, padding=r2, bias=conv.bias is not None, device=w.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            # pixel_shuffle reads channel o*4 + py*2 + px into out[o, 2i+py, 2j+px].
            new.weight.copy_(w2.reshape(4 * cout, cin, k2, k2).to(conv.weight.dtype))
            if conv.bias is not None:
                new.bias.copy_(conv.bias.detach().repeat_interleave(4))
        return cls(new, cout)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(z), 2)


class LowResConvAct(nn.Module):
    """``act(conv(h))`` at the input resolution: an ``Upsample2x`` whose upsample moved into
    the :class:`SubpixelConv` that follows it."""

    def __init__(self, conv: nn.Module, act: nn.Module):
        super().__init__()
        self.conv = conv
        self.act = act

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(h))


def _is_plain_same_conv(conv: nn.Module) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and conv.kernel_size[0] == conv.kernel_size[1]
        and conv.kernel_size[0] % 2 == 1
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding == (conv.kernel_size[0] // 2,) * 2
        and conv.padding_mode == "zeros"
    )


def _is_per_channel_pointwise(act: nn.Module) -> bool:
    return isinstance(act, (nn.PReLU, nn.ReLU, nn.LeakyReLU, nn.Identity))


def _hints(network: nn.Module) -> InferenceHints | None:
    hook = getattr(network, "inference_hints", None)
    return hook() if callable(hook) else None


def subpixel_rewrite(network: nn.Module) -> int:
    """Rewrite the (upsample, conv) pairs the network declares in its ``inference_hints()``
    in place; returns how many. A declared pair whose modules do not have the required
    form (Upsample2x with a per-channel activation, plain same-padded conv) is left alone.
    """
    from surge.models.generator import Upsample2x

    hints = _hints(network)
    done = 0
    for up_path, conv_path in hints.subpixel_pairs if hints else ():
        up, conv = network.get_submodule(up_path), network.get_submodule(conv_path)
        if not (isinstance(up, Upsample2x) and _is_per_channel_pointwise(up.act) and _is_plain_same_conv(conv)):
            continue
        _set_submodule(network, up_path, LowResConvAct(up.conv, up.act))
        _set_submodule(network, conv_path, SubpixelConv.from_upsampled_conv(conv))
        done += 1
    return done


# --------------------------------------------------------------------------- mixed precision


class _CastInput(nn.Module):
    """Runs ``module`` on its input cast to ``dtype`` (keeps an island at another precision)."""

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.module = module
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.to(self.dtype))


def to_compute_dtype(network: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast a network's body to ``dtype`` while it keeps an fp32 interface (in place).

    A network with ``inference_hints()`` keeps the modules and parameters it lists in fp32
    and has its input modules cast the fp32 input on entry (for SuRGe: the output conv,
    tanh and bicubic residual stay fp32). Other networks are cast whole and wrapped to
    take and return fp32.
    """
    if dtype == torch.float32:
        return network
    hints = _hints(network)
    if hints is None:
        return _Fp32Interface(network.to(dtype), dtype)
    network.to(dtype)
    for name in hints.fp32_parameters:
        param = network.get_parameter(name)
        param.data = param.data.float()
    for path in hints.input_modules:
        _set_submodule(network, path, _CastInput(network.get_submodule(path), dtype))
    for path in hints.fp32_modules:
        _set_submodule(network, path, _CastInput(network.get_submodule(path).float(), torch.float32))
    return network


class _Fp32Interface(nn.Module):
    def __init__(self, network: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.network = network
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.to(self.dtype)).float()


# --------------------------------------------------------------------------- entry point


def optimize_for_inference(
    network: nn.Module,
    *,
    fold_bn: bool = True,
    subpixel: bool = True,
    verify: bool = True,
    tolerance: float = 1e-4,
) -> tuple[nn.Module, dict[str, int]]:
    """An eval-mode copy of ``network`` with the exact rewrites applied.

    ``verify`` runs the original and the copy once on a small random input (about 50 ms for
    the paper generator) and raises :class:`OptimizationError` if they differ by more than
    ``tolerance``: a rewrite that assumed the wrong data flow must fail loudly.
    Returns ``(copy, {"batchnorm_folded": n, "subpixel_rewrites": m})``.
    """
    original = network
    net = copy.deepcopy(network).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    stats = {"batchnorm_folded": 0, "subpixel_rewrites": 0}
    if fold_bn and any(isinstance(m, nn.BatchNorm2d) for m in net.modules()):
        stats["batchnorm_folded"] = fold_batchnorm(net)
    if subpixel:
        stats["subpixel_rewrites"] = subpixel_rewrite(net)
    if verify and any(stats.values()):
        check_equivalent(original, net, tolerance)
    return net, stats


def check_equivalent(reference: nn.Module, candidate: nn.Module, tolerance: float = 1e-4, size: int = 12) -> float:
    """Max abs difference of two networks on a random (1, C, size, size) input; raises above tolerance."""
    in_channels = getattr(getattr(reference, "config", None), "in_channels", 3)
    device = next((p.device for p in reference.parameters()), torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, in_channels, size, size, generator=gen).to(device)
    was_training = reference.training
    reference.eval()
    try:
        with torch.inference_mode():
            want = reference(x).float()
            diff = (want - candidate(x).float()).abs().max().item()
    finally:
        reference.train(was_training)
    if not bool(torch.isfinite(want).all()):  # the weights, not the rewrite
        raise OptimizationError(f"{type(reference).__name__}: the network itself outputs NaN or inf on a plain input; "
                                "its weights are damaged (a diverged run?)")
    if not diff <= tolerance:  # also catches NaN
        raise OptimizationError(
            f"inference rewrite of {type(reference).__name__} changed its output by {diff:.3g} (> {tolerance:g}); "
            "this is a bug, please report it"
        )
    return diff


# --------------------------------------------------------------------------- precision choice


@functools.cache
def cpuinfo() -> dict[str, str]:
    """The first value of each key in /proc/cpuinfo (empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags ("flags" on x86, "Features" on arm64)."""
    info = cpuinfo()
    return frozenset((info.get("flags") or info.get("Features") or "").split())


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True where the CPU has bf16 dot-product instructions and oneDNN will use them.

    x86: AVX512-BF16 (Cooper Lake, Zen 4+) or AMX-BF16 (Sapphire Rapids+), read from
    /proc/cpuinfo, and oneDNN's own check. arm64: the ``bf16`` feature (Neoverse V1+, Apple
    M2+ report it) -- only trusted together with oneDNN's check. Without these bf16 is
    emulated and slower than fp32, so "auto" must not pick it.
    """
    mkldnn = getattr(torch.backends, "mkldnn", None)
    if mkldnn is None or not mkldnn.is_available():
        return False
    try:
        onednn_ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn_ok = False
    flags = cpu_flags()
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        # oneDNN's check also accepts plain AVX512 (emulated bf16), so require the flag.
        return onednn_ok and bool(flags & {"avx512_bf16", "amx_bf16"})
    if machine in ("aarch64", "arm64"):
        return onednn_ok and "bf16" in flags
    return False


def native_precisions(device: torch.device) -> tuple[str, ...]:
    """Reduced precisions that are fast (native) on ``device``, best first."""
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        # fp16 first: same tensor-core speed as bf16 and 3 more mantissa bits.
        return ("fp16", "bf16") if major >= 8 else ("fp16",) if major >= 7 else ()
    if device.type == "cpu":
        return ("bf16",) if cpu_has_native_bf16() else ()
    return ()


def auto_precision(allowed: tuple[str, ...], device: torch.device, provenance: dict | None = None) -> str:
    """The precision "auto" resolves to for a model on ``device``.

    ``allowed`` is the model's ``precisions``; ``provenance[PROVENANCE_KEY]`` (a precision
    name or a list of them) further limits what auto may pick, e.g. ``"fp32"`` for a trained
    model measured to lose more than 0.05 dB Set5 PSNR-Y in bf16. Explicit precisions are
    not affected by the veto.
    """
    permitted = set(allowed)
    veto = (provenance or {}).get(PROVENANCE_KEY)
    if veto is not None:
        permitted &= {veto} if isinstance(veto, str) else set(veto)
    for name in native_precisions(device):
        if name in permitted:
            return name
    return "fp32"
