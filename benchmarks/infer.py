#!/usr/bin/env python
"""Inference speed, memory and fidelity of SuRGe and peer architectures, in one run.

    .venv/bin/python benchmarks/infer.py --markdown docs/results/inference.md
    .venv/bin/python benchmarks/infer.py --device cuda --markdown docs/results/inference-cuda.md
    .venv/bin/python benchmarks/infer.py --quick          # smoke test, ~1 min

Prints, side by side for every model x variant: output megapixels/s, effective GFLOP/s
(the model's *nominal* FLOPs -- the unmodified fp32 network's, counted by torch's flop
counter -- divided by wall time, so exact rewrites that skip work count as speed), the
ratio to this machine's fp32 and bf16 matmul throughput measured in the same run, peak RSS,
and fidelity on Set5 against the fp32 eager output of the same weights. Then tiled upscaling
at 0.25, 1, 4 and 8 output megapixels through the default path (time and peak RSS).

How it measures, and why:

* Every row runs in its own child process, so peak RSS (``VmHWM``) is that row's alone and
  one row's allocator state or compiled code cannot help another. The parent imports no
  torch.
* Timing: the best of repeated calls on a (1, 3, S, S) input (S = ``--lr-size``), after the
  Set5 pass has warmed the process up. The machine may be shared, so each call's CPU stall
  (Linux PSI: time this machine's runnable threads waited for a CPU) is recorded, and a
  row repeats until ``--repeats`` calls were uncontended (stall < 5% of the call) or
  ``--row-budget`` seconds have passed. The matmul peak is sampled the same way in every
  child, and the run's peak is the best sample of all: the ratios are conservative.
* Weights: SuRGe's are random, but its BatchNorm statistics are calibrated on a few T91
  crops (``../shared/datasets``), so activations have a trained network's scale (with
  default BN statistics a random SuRGe outputs a flat grey and every precision looks
  perfect). Peers are random init, for speed only. Denormals are flushed to zero in every
  row (torch and ONNX Runtime alike), because random-init RRDBNet produces fp32 denormals
  that are ~50x slower on x86 and would make its fp32 rows meaningless.
* Fidelity: PSNR-Y (float Y, 4 px border crop) of each variant's output against the fp32
  eager output on the 5 Set5 LR images; and the change of PSNR-Y against the HR images
  (quantised 8-bit output, MATLAB Y). With untrained weights the second number is tiny by
  construction; the first bounds what any trained model can lose (see the notes printed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets"
SURGE = "surge"
PEERS = ("rrdbnet", "srvgg-compact", "edsr-baseline")
MODEL_LABELS = {
    "surge": "SuRGe (paper config)",
    "rrdbnet": "RRDBNet (Real-ESRGAN x4plus)",
    "srvgg-compact": "SRVGGNetCompact (realesr-general-x4v3)",
    "edsr-baseline": "EDSR-baseline",
}

# key -> (label, compute dtype, SuRGe only?)
CPU_VARIANTS = {
    "fp32-eager": ("fp32 eager (NCHW)", "fp32", False),
    "fp32-cl": ("fp32 channels_last", "fp32", False),
    "fp32-opt": ("fp32 channels_last + BN folded + sub-pixel", "fp32", True),
    "bf16-autocast": ("bf16 autocast, channels_last", "bf16", False),
    "bf16": ("bf16 weights and activations, channels_last", "bf16", False),
    "bf16-bnfold": ("bf16 + BN folded", "bf16", True),
    "auto": ("**Engine default** (auto: bf16 where the CPU has it natively, else fp32) + BN folded + sub-pixel", "auto", True),
    "compile": ("torch.compile (inductor, freezing) of the default", "auto", False),
    "onnxruntime": ("ONNX Runtime fp32 (exported inference graph)", "fp32", False),
}
CUDA_VARIANTS = {
    "fp32-eager": ("fp32 eager (NCHW)", "fp32", False),
    "fp32-cl": ("fp32 channels_last", "fp32", False),
    "bf16": ("bf16 weights and activations, channels_last", "bf16", False),
    "fp16": ("fp16 weights and activations, channels_last", "fp16", False),
    "auto": ("**Engine default** (auto = fp16) + BN folded + sub-pixel", "auto", False),
    "cudagraph": ("default + CUDA graph", "auto", False),
    "compile": ("torch.compile (inductor) of the default", "auto", False),
    "onnxruntime": ("ONNX Runtime fp32 (CUDA provider)", "fp32", False),
}


# =========================================================================== child side


def _child(spec: dict) -> dict:
    import torch

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.set_flush_denormal(True)
    kind = spec["kind"]
    if kind == "machine":
        return _machine()
    if kind == "matmul":
        return _matmul(spec)
    if kind == "prepare":
        return _prepare(spec)
    if kind == "row":
        return _row(spec)
    if kind == "scale":
        return _scale(spec)
    raise ValueError(kind)


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# A timed call counts as clean when other processes kept runnable threads of this machine
# waiting (Linux PSI "some" CPU stall) for less than this fraction of its wall time.
CLEAN_STALL = 0.05


def _cpu_stall_us() -> int | None:
    """System-wide CPU stall time so far (PSI), in microseconds; None where unsupported."""
    try:
        return int(Path("/proc/pressure/cpu").read_text().split("total=", 1)[1].split()[0])
    except (OSError, IndexError, ValueError):
        return None


def _timed(call, device: str, clean_wanted: int, budget: float, max_runs: int = 20) -> tuple[list[float], list[float]]:
    """Wall times of repeated calls and their CPU-stall fractions.

    Repeats until ``clean_wanted`` calls ran without contention, or ``budget`` seconds have
    passed (at least 2 calls either way): on a shared machine this keeps retrying slow rows
    until one gets a quiet spell, instead of reporting whoever happened to be running.
    """
    times: list[float] = []
    stalls: list[float] = []
    started = time.perf_counter()
    while len(times) < max_runs:
        _sync(device)
        s0, t = _cpu_stall_us(), time.perf_counter()
        call()
        _sync(device)
        dt, s1 = time.perf_counter() - t, _cpu_stall_us()
        times.append(dt)
        stalls.append((s1 - s0) / 1e6 / dt if s0 is not None and s1 is not None else 0.0)
        clean = sum(s < CLEAN_STALL for s in stalls)
        if len(times) >= 2 and (clean >= clean_wanted or time.perf_counter() - started > budget):
            break
    return times, stalls


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _machine() -> dict:
    import torch

    from surge.inference.optimize import cpu_flags, cpu_has_native_bf16

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "native_bf16": cpu_has_native_bf16(),
        "bf16_flags": sorted(f for f in cpu_flags() if "bf16" in f or f.startswith("amx")),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    return info


def _matmul(spec: dict) -> dict:
    """Best-of GFLOP/s of large square matmuls, per dtype: the machine's attainable peak."""
    import torch

    device = spec["device"]
    n = spec.get("size") or (8192 if device.startswith("cuda") else 2048)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if device.startswith("cuda"):
        dtypes["fp16"] = torch.float16
    out = {}
    for name, dtype in dtypes.items():
        a = torch.randn(n, n, dtype=dtype, device=device)
        b = torch.randn(n, n, dtype=dtype, device=device)
        a @ b
        times, _ = _timed(lambda: a @ b, device, spec.get("repeats", 8), 5.0)
        out[name] = 2 * n**3 / min(times) / 1e9
        if spec.get("conv"):
            out[f"conv_{name}"] = _conv_reference(dtype, device, spec.get("repeats", 8), spec.get("conv_size") or 256)
    return out


def _conv_reference(dtype, device: str, repeats: int, side: int = 256) -> float:
    """GFLOP/s of one large 3x3 conv (128 -> 128 channels, side^2 (256^2), channels_last, oneDNN/cuDNN).

    Not the issue's yardstick (that is matmul), but convs this size can beat the library's
    matmul, so it shows how close to the machine's practical conv peak a model runs.
    """
    import torch

    conv = torch.nn.Conv2d(128, 128, 3, padding=1, bias=False).to(device, dtype).to(memory_format=torch.channels_last)
    x = torch.randn(1, 128, side, side, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        conv(x)
        times, _ = _timed(lambda: conv(x), device, repeats, 10.0)
    return 2 * 128 * 128 * 9 * side * side / min(times) / 1e9


def _load_model(name: str, workdir: Path):
    """The SRModel of a benchmark row: same weights in every child (seeded, calibrated)."""
    import torch

    import surge
    from peers import build_peer  # benchmarks/peers.py: this script's folder is on sys.path

    torch.manual_seed(0)
    if name in PEERS:
        return surge.SRModel(name=name, network=build_peer(name), scale=4, source="peer, random init",
                             precisions=("fp32", "bf16", "fp16"), trained=False)
    model = surge.load_model(name, device="cpu")
    state = workdir / f"{name}.pt"
    if state.exists():
        model.network.load_state_dict(torch.load(state))
    return model


def _calibrate_batchnorm(network, data: Path, crops: int = 4, size: int = 48) -> bool:
    """Set BN running statistics from real LR crops (cumulative average); False if no data."""
    import numpy as np
    import torch
    from PIL import Image

    files = sorted((data / "train" / "T91").glob("*"))[:crops]
    if len(files) < crops:
        return False
    batch = []
    for f in files:
        arr = np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255.0
        batch.append(torch.from_numpy(arr[:size, :size].copy()).permute(2, 0, 1))
    bns = [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if not bns:
        return False
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    network.train()
    with torch.no_grad():
        network(torch.stack(batch))
    network.eval()
    for m in bns:
        m.momentum = 0.1
    return True


def _flops(network, x) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        network(x)
    return float(counter.get_total_flops())


def _prepare(spec: dict) -> dict:
    import torch

    workdir = Path(spec["workdir"])
    model = _load_model(spec["model"], workdir)
    calibrated = False
    if spec["model"] == SURGE and spec.get("data"):
        calibrated = _calibrate_batchnorm(model.network, Path(spec["data"]))
        torch.save(model.network.state_dict(), workdir / f"{spec['model']}.pt")
    x = torch.rand(1, 3, 16, 16)
    nominal = _flops(model.network, x) / 256
    fast = model._engine("fp32", "cpu").network  # the inference copy surge.upscale runs
    executed = _flops(fast, x) / 256
    return {
        "params": sum(p.numel() for p in model.network.parameters()),
        "mflop_per_px": nominal / 1e6,
        "mflop_per_px_executed": executed / 1e6,
        "bn_calibrated": calibrated,
    }


class _CudaGraphRunner:
    """Replays one captured forward pass for a fixed input shape (falls back to eager)."""

    def __init__(self, network, device: str):
        self.network, self.device = network, device
        self.graphs: dict = {}

    def _capture(self, shape):
        import torch

        static_in = torch.zeros(shape, device=self.device).contiguous(memory_format=torch.channels_last)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(2):
                self.network(static_in)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            static_out = self.network(static_in)
        return graph, static_in, static_out

    def __call__(self, x):
        shape = tuple(x.shape)
        if shape not in self.graphs:
            self.graphs[shape] = self._capture(shape)
        graph, static_in, static_out = self.graphs[shape]
        static_in.copy_(x)
        graph.replay()
        return static_out.float().cpu()


def _runner(model, variant: str, device: str):
    """A callable fp32 host (1, 3, h, w) -> fp32 host output, plus notes, for one variant."""
    import torch

    from surge.inference._engine import Engine
    from surge.inference.onnx_backend import OnnxSession, export_to_bytes
    from surge.inference.optimize import optimize_for_inference, to_compute_dtype

    notes: dict = {}
    if variant == "fp32-eager":
        net = model.network.to(device).eval()

        def run(x):
            with torch.inference_mode():
                return net(x.to(device)).float().cpu()

        return run, notes
    if variant == "bf16-autocast":
        net = model.network.to(device).eval().to(memory_format=torch.channels_last)

        def run(x):
            with torch.inference_mode(), torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
                return net(x.to(device).contiguous(memory_format=torch.channels_last)).float().cpu()

        return run, notes
    if variant == "bf16-bnfold":
        net, _ = optimize_for_inference(model.network, subpixel=False)
        net = to_compute_dtype(net.to(device), torch.bfloat16).to(memory_format=torch.channels_last)

        def run(x):
            with torch.inference_mode():
                return net(x.to(device).contiguous(memory_format=torch.channels_last)).float().cpu()

        return run, notes
    if variant in ("fp32-cl", "bf16", "fp16"):
        precision = "fp32" if variant == "fp32-cl" else variant
        engine = Engine(model, precision, device, optimize=False)
        return engine, {"precision": engine.precision}
    if variant == "fp32-opt":
        engine = model._engine("fp32", device)
        return engine, {"precision": engine.precision}
    if variant in ("auto", "cudagraph", "compile"):
        engine = model._engine("auto", device)  # what model(x) and surge.upscale run by default
        notes["precision"] = engine.precision
        if variant == "auto":
            return engine, notes
        if variant == "cudagraph":
            return _CudaGraphRunner(engine.network, device), notes
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # constant-fold weights, prepack them for oneDNN
        compiled = torch.compile(engine.network, dynamic=False)

        def run(x):
            with torch.inference_mode():
                return compiled(x.to(device).contiguous(memory_format=torch.channels_last)).float().cpu()

        run.eager = engine  # type: ignore[attr-defined]
        return run, notes
    if variant == "onnxruntime":
        # Same graph as Engine(backend="onnxruntime"), with denormals flushed like the torch rows.
        net, _ = optimize_for_inference(model.network)
        session = OnnxSession(export_to_bytes(net.cpu()), device, flush_denormals=True)
        return session, {"precision": "fp32"}
    raise ValueError(f"unknown variant {variant}")


def _set5(data: Path, limit: int | None):
    import numpy as np
    import torch
    from PIL import Image

    folder = data / "benchmark" / "Set5"
    pairs = []
    # Smallest first, so that a limit keeps the cheap images.
    hr_paths = sorted((folder / "HR").glob("*.png"), key=lambda p: (_png_pixels(p), p.name))
    for hr_path in hr_paths[:limit]:
        lr_path = folder / "LR_bicubic_X4" / f"{hr_path.stem}x4.png"
        lr = np.asarray(Image.open(lr_path).convert("RGB"), dtype=np.float32) / 255.0
        hr = np.asarray(Image.open(hr_path).convert("RGB"))
        pairs.append((hr_path.stem, torch.from_numpy(lr).permute(2, 0, 1)[None].contiguous(), hr))
    return pairs


def _png_pixels(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as img:
        return img.width * img.height


def _fidelity(run, spec: dict, workdir: Path) -> dict:
    """PSNR-Y vs the fp32 eager output, and PSNR-Y vs HR, averaged over Set5."""
    import numpy as np

    from surge.evaluation.metrics import psnr_y

    pairs = _set5(Path(spec["data"]), spec.get("set5_images"))
    if not pairs:
        return {}
    ref_psnr, hr_psnr = [], []
    for stem, lr, hr in pairs:
        sr = run(lr)[0].clamp(0, 1).permute(1, 2, 0).numpy()
        ref_file = workdir / f"{spec['model']}-{stem}.npy"
        if spec["variant"] == "fp32-eager":
            np.save(ref_file, sr)
        else:
            ref_psnr.append(psnr_y(sr, np.load(ref_file), crop=4, y_convention="float"))
        hr_psnr.append(psnr_y((sr * 255.0 + 0.5).astype(np.uint8), hr, crop=4))
    out = {"psnr_vs_hr": float(np.mean(hr_psnr)), "set5_images": len(pairs)}
    if ref_psnr:
        out["psnr_vs_fp32"] = float(np.mean(ref_psnr))  # inf where bit-identical
    return out


def _row(spec: dict) -> dict:
    import torch

    device, size = spec["device"], spec["lr_size"]
    workdir = Path(spec["workdir"])
    model = _load_model(spec["model"], workdir)
    t0 = time.perf_counter()
    run, notes = _runner(model, spec["variant"], device)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    result: dict = dict(notes)
    if spec["variant"] == "compile":
        y = run(x)  # compiles for this shape
        result["compile_s"] = time.perf_counter() - t0
        result["compiled_vs_eager_max_abs"] = float((y - run.eager(x)).abs().max())
        fidelity_run = run.eager  # dynamic=False would recompile per Set5 size (minutes)
    else:
        result["setup_s"] = time.perf_counter() - t0
        fidelity_run = run
    if spec.get("data"):
        result.update(_fidelity(fidelity_run, spec, workdir))
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times, stalls = _timed(lambda: run(x), device, spec["repeats"], spec["row_budget"])
    best = min(range(len(times)), key=times.__getitem__)
    result.update(seconds=times[best], stall=stalls[best], runs=len(times),
                  clean_runs=sum(s < CLEAN_STALL for s in stalls), all_seconds=times, peak_rss_mb=_peak_rss_mb())
    if device.startswith("cuda"):
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    # A matmul sample in every row: the run's peak is the best of all of them (conservative).
    result["matmul"] = _matmul({"device": device, "repeats": 4, "size": spec.get("matmul_size")})
    return result


def _scale(spec: dict) -> dict:
    import numpy as np

    import surge
    from surge.inference.upscale import _resolve_tile

    model = surge.load_model(_load_model(spec["model"], Path(spec["workdir"])), device=spec["device"])
    side = round(math.sqrt(spec["megapixels"] * 1e6 / 16))
    rng = np.random.default_rng(0)
    surge.upscale(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), model=model, tile=None)  # warm-up, builds the engine
    image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    overlap = model.receptive_radius
    engine = model._engine()
    tile = _resolve_tile("auto", engine, side, side, overlap)  # what surge.upscale will use, for the table

    def run():
        return surge.upscale(image, model=model, tile="auto")

    times, stalls = _timed(run, spec["device"], 1, 0.0, max_runs=1)
    if stalls[0] >= CLEAN_STALL and times[0] < 60:  # contended: one more try, keep the better
        more = _timed(run, spec["device"], 1, 0.0, max_runs=1)
        times, stalls = times + more[0], stalls + more[1]
    best = min(range(len(times)), key=times.__getitem__)
    seconds = times[best]
    return {
        "stall": stalls[best], "runs": len(times), "out_megapixels": (4 * side) ** 2 / 1e6,
        "lr_side": side, "tile": tile,
        "overlap": overlap, "seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "precision": engine.precision,
    }


# =========================================================================== parent side


def _call(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {proc.returncode}: {tail[:300]}"}


def _load() -> str:
    parts = []
    try:
        parts.append("load avg " + " / ".join(f"{v:.1f}" for v in os.getloadavg()))
    except OSError:
        pass
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        parts.append("CPU pressure " + some.split()[2].replace("avg60=", "avg60 ") + "%")
    except (OSError, IndexError):
        pass
    return ", ".join(parts)


def _fmt(value, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "identical"
    return f"{value:.{digits}f}{suffix}"


def _bound_db(psnr_vs_fp32: float | None, model_psnr: float = 30.0) -> tuple[float, float] | None:
    """|ΔPSNR| of a model at ``model_psnr`` dB when its output moves by an error whose PSNR
    against the original output is ``psnr_vs_fp32``: (typical: error uncorrelated with the
    model's error, worst case: fully aligned). From MSE' = MSE + e (uncorrelated) and
    RMSE' <= RMSE + rmse_e (triangle inequality)."""
    if psnr_vs_fp32 is None:
        return None
    if math.isinf(psnr_vs_fp32):
        return (0.0, 0.0)
    ratio = 10 ** ((model_psnr - psnr_vs_fp32) / 20)  # rmse_e / rmse_model
    return (10 * math.log10(1 + ratio**2), 20 * math.log10(1 + ratio))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--models", nargs="+", default=[SURGE, *PEERS], choices=[SURGE, *PEERS])
    parser.add_argument("--variants", nargs="+", help="subset of variant keys (default: all for the device)")
    parser.add_argument("--lr-size", type=int, default=128, help="LR side of the throughput input (default 128 -> 512x512 out)")
    parser.add_argument("--repeats", type=int, default=3, help="uncontended timed calls wanted per row (best is reported)")
    parser.add_argument("--row-budget", type=float, default=40.0, help="stop repeating a row after this many seconds (>= 2 calls)")
    parser.add_argument("--scaling", type=float, nargs="*", default=[0.25, 1, 4, 8], help="output megapixels for the tiled runs")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared datasets folder (Set5 fidelity, BN calibration)")
    parser.add_argument("--set5-images", type=int, help="use only the N smallest Set5 images")
    parser.add_argument("--threads", type=int, help="torch/ONNX Runtime threads (default: torch's default)")
    parser.add_argument("--matmul-size", type=int, help="side of the reference matmuls (default 2048, 8192 on CUDA)")
    parser.add_argument("--conv-size", type=int, help="side of the reference 3x3 conv's input (default 256)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument("--quick", action="store_true", help="smoke test: small input, SuRGe + one peer, 1 Set5 image")
    parser.add_argument("--markdown", type=Path, help="also write the report to this markdown file")
    parser.add_argument("--json", type=Path, help="also write raw results as JSON")
    parser.add_argument("--note", action="append", help="a line for the report's header (run conditions); repeatable")
    parser.add_argument("--from-json", type=Path, help="re-render the report of an earlier --json run (no measuring)")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    args.date = datetime.date.today().isoformat()

    if args.child:
        result = _child(json.loads(args.child))
        print("RESULT " + json.dumps(result))
        return 0

    if args.from_json:
        return _rerender(parser, args)
    if args.quick:
        args.models, args.lr_size, args.repeats = [SURGE, "srvgg-compact"], 32, 2
        args.scaling, args.set5_images, args.no_compile = [0.02, 0.08], 1, True
    cuda = args.device.startswith("cuda")
    variants = CUDA_VARIANTS if cuda else CPU_VARIANTS
    chosen = [v for v in variants if (not args.variants or v in args.variants) and not (args.no_compile and v == "compile")]
    if "fp32-eager" not in chosen:
        chosen.insert(0, "fp32-eager")  # the reference of every ratio and fidelity figure
    data = args.data if (args.data / "benchmark" / "Set5").is_dir() else None
    workdir = Path(tempfile.mkdtemp(prefix="surge-bench-"))
    base = {"device": args.device, "threads": args.threads, "workdir": str(workdir)}
    started = time.time()
    load_before = _load()

    def log(msg: str) -> None:
        print(f"[{time.time() - started:6.0f} s] {msg}", file=sys.stderr, flush=True)

    machine = _call({**base, "kind": "machine"}, 300)
    log(f"machine: {machine}")
    matmul = [_call({**base, "kind": "matmul", "conv": True, "size": args.matmul_size, "conv_size": args.conv_size}, 600)]
    log(f"matmul GFLOP/s: {matmul[0]}")
    prep, rows = {}, []
    for name in args.models:
        prep[name] = _call({**base, "kind": "prepare", "model": name, "data": str(data) if data else None}, 600)
        log(f"{name}: {prep[name]}")
        for variant in chosen:
            if variants[variant][2] and name != SURGE:
                continue
            spec = {**base, "kind": "row", "model": name, "variant": variant, "lr_size": args.lr_size,
                    "repeats": args.repeats, "row_budget": args.row_budget,
                    "data": str(data) if data else None, "set5_images": args.set5_images,
                    "matmul_size": args.matmul_size}
            row = {"model": name, "variant": variant, **_call(spec, 1800)}
            rows.append({**row, "spec": spec})
            if "matmul" in row:
                matmul.append(row["matmul"])
            log(f"{name} {variant}: " + json.dumps({k: v for k, v in row.items() if k != "all_seconds"}))
    # Rows that never got an uncontended call (someone else was busy): run them once more.
    for i, row in enumerate(rows):
        if row.get("clean_runs", 1) == 0 and "spec" in row:
            again = {"model": row["model"], "variant": row["variant"], "retried": True, **_call(row["spec"], 1800)}
            log(f"retry {row['model']} {row['variant']}: seconds {again.get('seconds')} (was {row['seconds']:.3f})")
            if "matmul" in again:
                matmul.append(again["matmul"])
            if again.get("seconds", math.inf) < row["seconds"]:
                rows[i] = {**again, "spec": row["spec"]}
    matmul.append(_call({**base, "kind": "matmul", "conv": True, "size": args.matmul_size, "conv_size": args.conv_size}, 600))
    samples = [m for m in matmul if "error" not in m]
    peak = {k: max(m.get(k, 0.0) for m in samples) for k in dict.fromkeys(k for m in samples for k in m)}
    log(f"matmul GFLOP/s (best of {len(matmul)} samples): {peak}")
    scaling = []
    for mp in args.scaling:
        res = _call({**base, "kind": "scale", "model": SURGE, "megapixels": mp}, 1800)
        scaling.append({"megapixels": mp, **res})
        log(f"scaling {mp} MP: {res}")
    load_after = _load()

    report = _report(args, machine, peak, prep, rows, scaling, variants, load_before, load_after, time.time() - started)
    _write_report(args, report)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "matmul": peak, "prepare": prep,
                                         "rows": [{k: v for k, v in r.items() if k != "spec"} for r in rows],
                                         "scaling": scaling, "load_before": load_before, "load_after": load_after,
                                         "wall_s": time.time() - started, "argv": args.argv, "date": args.date},
                                        indent=1))
    return 0


def _write_report(args, report: str) -> None:
    print(report)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.markdown.with_name(f".{args.markdown.name}.tmp")
        tmp.write_text(report)
        os.replace(tmp, args.markdown)


def _rerender(parser: argparse.ArgumentParser, args) -> int:
    """The report of a saved run, with the current --note lines and --markdown target."""
    saved = json.loads(args.from_json.read_text())
    old = parser.parse_args(saved["argv"])
    old.argv, old.date, old.note = saved["argv"], saved.get("date", "?"), args.note or old.note
    if old.quick:
        old.lr_size, old.repeats = 32, 2
    old.markdown = args.markdown
    cuda = old.device.startswith("cuda")
    report = _report(old, saved["machine"], saved["matmul"], saved["prepare"], saved["rows"], saved["scaling"],
                     CUDA_VARIANTS if cuda else CPU_VARIANTS, saved["load_before"], saved["load_after"], saved["wall_s"])
    _write_report(old, report)
    return 0


def _report(args, machine, peak, prep, rows, scaling, variants, load_before, load_after, wall) -> str:
    cuda = args.device.startswith("cuda")
    out_mp = (4 * args.lr_size) ** 2 / 1e6
    lines = [
        "# Inference speed, memory and fidelity",
        "",
        f"Generated by `benchmarks/infer.py` on {args.date} in {wall / 60:.1f} min "
        f"(`{' '.join(['python', 'benchmarks/infer.py', *args.argv])}`).",
        "",
        f"- Machine: {machine.get('cpu')}, {machine.get('cores')} logical cores, torch {machine.get('torch')} "
        f"({machine.get('torch_threads')} thread{'s' if machine.get('torch_threads') != 1 else ''}), "
        f"onnxruntime {machine.get('onnxruntime')}; "
        f"native bf16: **{machine.get('native_bf16')}** (flags: {', '.join(machine.get('bf16_flags') or []) or 'none'})"
        + (f"; GPU: {machine.get('cuda')}" if cuda else "") + ".",
        f"- Matmul throughput measured in this run (best sample of {args.matmul_size or ('8192' if cuda else '2048')}^2 "
        "matmuls, sampled at the start, the end and in every row's process): "
        + ", ".join(f"{k} **{v:.0f} GFLOP/s**" for k, v in peak.items() if not k.startswith("conv_")) + ". "
        f"For scale, one large 3x3 conv (128 -> 128 channels at {getattr(args, 'conv_size', None) or 256}^2, channels_last) runs at "
        + (", ".join(f"{k[5:]} {v:.0f}" for k, v in peak.items() if k.startswith("conv_")) or "n/a")
        + " GFLOP/s: big convs can outrun the BLAS matmul, so ratios above 100% are possible.",
        f"- Load: before {load_before or 'n/a'}; after {load_after or 'n/a'}. The machine is shared: every time is the "
        f"best of repeated calls, repeated until {args.repeats} ran uncontended (CPU stall < {CLEAN_STALL:.0%}) or "
        f"{args.row_budget:.0f} s passed; column *runs* = calls (uncontended), *stall* = CPU stall during the best call.",
        f"- Throughput input: 1 x 3 x {args.lr_size} x {args.lr_size} LR -> {4 * args.lr_size}^2 output "
        f"({out_mp:.2f} MP). *eff. GFLOP/s* = nominal FLOPs of the unmodified network / time.",
        *[f"- {note}" for note in args.note or []],
        "",
    ]
    ref_by_model = {r["model"]: r for r in rows if r["variant"] == "fp32-eager" and "seconds" in r}
    header = ("| model | variant | precision | ms / image | out MP/s | eff. GFLOP/s | x fp32 eager | % fp32 matmul "
              "| % bf16 matmul | peak RSS MB | PSNR-Y vs fp32 eager (dB) | ΔPSNR-Y vs HR (dB) | runs | stall |"
              + (" peak CUDA MB |" if cuda else " GPU out MP/s |"))
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        label = variants[r["variant"]][0]
        name = MODEL_LABELS[r["model"]]
        if "error" in r:
            lines.append(f"| {name} | {label} | | error: {r['error']} |" + " |" * 11)
            continue
        seconds = r["seconds"]
        flops = prep[r["model"]]["mflop_per_px"] * 1e6 * args.lr_size**2
        gflops = flops / seconds / 1e9
        ref = ref_by_model.get(r["model"])
        speedup = ref["seconds"] / seconds if ref else None
        dpsnr = r["psnr_vs_hr"] - ref["psnr_vs_hr"] if ref and "psnr_vs_hr" in r and "psnr_vs_hr" in ref else None
        vs_fp32 = r.get("psnr_vs_fp32") if r["variant"] != "fp32-eager" else None
        lines.append(
            f"| {name} | {label} | {r.get('precision', variants[r['variant']][1])} | {seconds * 1e3:.0f} | {out_mp / seconds:.3f} "
            f"| {gflops:.0f} | {_fmt(speedup, 2)} | {100 * gflops / peak.get('fp32', math.nan):.0f}% "
            f"| {100 * gflops / peak.get('bf16', math.nan):.0f}% | {r['peak_rss_mb']:.0f} "
            f"| {'reference' if r['variant'] == 'fp32-eager' else _fmt(vs_fp32)} | {'reference' if r['variant'] == 'fp32-eager' else _fmt(dpsnr, 3)} "
            f"| {r['runs']} ({r['clean_runs']}){' retried' if r.get('retried') else ''} | {100 * r['stall']:.0f}% |"
            + (f" {r.get('peak_cuda_mb', 0):.0f} |" if cuda else " pending (no GPU lent) |")
        )
    lines += ["", "Per model (nominal = unmodified network, executed = the Engine's inference copy):", ""]
    for name, p in prep.items():
        if "error" in p:
            lines.append(f"- {MODEL_LABELS[name]}: error {p['error']}")
            continue
        lines.append(f"- {MODEL_LABELS[name]}: {p['params']:,} parameters, {p['mflop_per_px']:.1f} MFLOP per LR pixel nominal, "
                     f"{p['mflop_per_px_executed']:.1f} executed" + ("; BatchNorm statistics calibrated on 4 T91 crops" if p.get("bn_calibrated") else ""))
    compile_rows = [r for r in rows if r["variant"] == "compile" and "compile_s" in r]
    for r in compile_rows:
        lines.append(f"- torch.compile, {MODEL_LABELS[r['model']]}: compile {r['compile_s']:.0f} s; compiled vs eager max |diff| "
                     f"{r['compiled_vs_eager_max_abs']:.1e} on the timing input (fidelity columns: the eager network it compiles).")

    lines += _targets(rows, prep, peak, args, cuda)
    lines += ["", "## Tiled upscaling: time and peak memory vs image size", "",
              "Default path (`surge.upscale`, Engine auto precision, `tile=\"auto\"`, overlap = receptive radius) on "
              "random 8-bit RGB images; one call each, each size in its own process.", "",
              "*work* = LR pixels the network runs on (tiles with their context) / LR pixels of the image.", "",
              "| output MP | LR input | tile (LR px) | work | seconds | s per output MP | peak RSS MB | stall |",
              "|---|---|---|---|---|---|---|---|"]
    for s in scaling:
        if "error" in s:
            lines.append(f"| {s['megapixels']} | error: {s['error']} | | | | | | |")
            continue
        lines.append(f"| {s['out_megapixels']:.2f} | {s['lr_side']}^2 | {s['tile'] or 'untiled'} "
                     f"| {_tiling_work(s['lr_side'], s['tile'], s['overlap']):.2f}x | {s['seconds']:.1f} "
                     f"| {s['seconds'] / s['out_megapixels']:.1f} | {s['peak_rss_mb']:.0f} | {100 * s['stall']:.0f}% |")
    lines += ["", "## Notes", "",
              "- *PSNR-Y vs fp32 eager*: mean over Set5 of PSNR-Y (float Y, 4 px crop) of the variant's output against the fp32 "
              "eager output of the same weights. *ΔPSNR-Y vs HR*: change of the usual Set5 PSNR-Y (8-bit output, MATLAB Y) "
              "against fp32 eager; with untrained weights it is not informative (the model is far from HR, so small errors "
              "barely move it). **The trained-model figure is pending**: no trained weights exist yet. The PSNR against the "
              "fp32 output bounds it: for a model at 30 dB, an output change at P dB moves PSNR by 10·log10(1 + 10^((30-P)/10)) "
              "dB if uncorrelated with the model's error (rounding noise is), and by at most 20·log10(1 + 10^((30-P)/20)) dB.",
              "- SuRGe's weights are random, with BatchNorm statistics calibrated on real crops so that activations (hence "
              "rounding errors) have a realistic scale; with default statistics its output is a flat grey and every precision "
              "would look exact. Peers are random init, for speed only; their fidelity numbers say little.",
              "- Denormals are flushed to zero in every row (random-init RRDBNet produces fp32 denormals, ~50x slower on x86).",
              "- *sub-pixel*: SuRGe's nearest-x2-upsample -> 9x9 conv pairs computed as a 5x5 conv with 4x channels + pixel "
              "shuffle at low resolution (exact; `surge.inference.optimize`). Effective GFLOP/s count the nominal FLOPs, so this "
              "saving shows up as speed.",
              ]
    if not cuda:
        lines.append("- **GPU column pending**: no GPU was lent to this run. `python benchmarks/infer.py --device cuda` runs "
                     "the same rows on CUDA (fp32, channels_last, bf16, fp16, CUDA graphs, torch.compile, "
                     "ONNX Runtime's CUDA provider where installed) and reports peak CUDA memory.")
    return "\n".join(lines) + "\n"


def _tiling_work(side: int, tile: int | None, overlap: int) -> float:
    """Compute spent on context: sum of tile-with-context areas over the image area."""
    from surge.inference.tiling import plan_tiles  # the parent is done measuring: torch may load now

    tiles = plan_tiles(side, side, tile, overlap)
    return sum(t.context_shape[0] * t.context_shape[1] for t in tiles) / (side * side)


def _targets(rows, prep, peak, args, cuda) -> list[str]:
    """The issue's targets, evaluated on this run's numbers."""
    by = {(r["model"], r["variant"]): r for r in rows if "seconds" in r}
    ref, best = by.get((SURGE, "fp32-eager")), by.get((SURGE, "auto"))
    if not ref or not best:
        return []
    flops = prep[SURGE]["mflop_per_px"] * 1e6 * args.lr_size**2
    speedup = ref["seconds"] / best["seconds"]
    dtype = best.get("precision", "fp32")
    ratio = flops / best["seconds"] / 1e9 / peak.get(dtype, peak.get("fp32"))
    executed = prep[SURGE]["mflop_per_px_executed"] * 1e6 * args.lr_size**2 / best["seconds"] / 1e9
    conv = peak.get(f"conv_{dtype}")
    out = ["", "## Targets (issue 5), from this run", "",
           f"- Default SuRGe path ({dtype}) vs fp32 eager: **{speedup:.2f}x** (target >= 2x: "
           f"{'met' if speedup >= 2 else 'NOT met'}).",
           f"- Default SuRGe path, effective GFLOP/s / {dtype} matmul: **{100 * ratio:.0f}%** (target >= 60%: "
           f"{'met' if ratio >= 0.6 else 'NOT met'}); counting only the FLOPs it executes: "
           f"{100 * executed / peak.get(dtype, peak.get('fp32')):.0f}%"
           + (f" (and {100 * executed / conv:.0f}% of the large {dtype} 3x3 conv)." if conv else ".")]
    if "psnr_vs_fp32" in best:
        typical, worst = _bound_db(best["psnr_vs_fp32"])
        out.append(f"- Default path vs fp32 on Set5: {_fmt(best['psnr_vs_fp32'])} dB PSNR-Y; for a trained model at 30 dB that is "
                   f"~{typical:.4f} dB typical, <= {worst:.3f} dB worst case (target <= 0.05 dB; trained-model figure pending).")
    return out


if __name__ == "__main__":
    sys.exit(main())
