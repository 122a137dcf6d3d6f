"""The benchmark scripts run end to end on tiny settings (their figures come from full runs)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# torch.compile on CPU (inductor) builds C++: without a compiler the compiled row is not asked for
COMPILER = shutil.which("c++") or shutil.which("g++")

TINY_GAN = """
[data]
train_dirs = ["not-needed"]
hr_size = 32
batch_size = 3
[generator]
preset = "surge-tiny"
[critic]
width = 8
max_width = 16
stages = 2
hidden = 16
[loss]
l1 = true
[train]
name = "tiny-gan"
stage = "gan"
"""


@pytest.mark.slow
def test_train_step_benchmark_runs(tmp_path):
    config = tmp_path / "tiny-gan.toml"
    config.write_text(TINY_GAN)
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "train_step.py"), "--configs", str(config), "--batch", "0",
         "--hr-size", "0", "--repeats", "1", "--warmup", "0", "--device", "cpu", "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [(r["config"], r["precision"], r["batch"], r["hr_size"]) for r in rows] == [
        ("tiny-gan.toml", "fp32", 3, 32), ("tiny-gan.toml", "bf16", 3, 32)]
    phases = ("g_fwd", "g_bwd", "critic", "js", "gw", "optim", "other")
    for r in rows:
        # Every phase of a GAN step was reached, and the phases add up to the step.
        assert all(r[p] > 0 for p in phases if p != "other"), r
        assert abs(sum(r[p] for p in phases) - r["total"]) < 1e-9 * max(1.0, r["total"]) + 1e-12
        assert 0 < r["divergence_share"] < 100
        assert r["aten_ops"] > 100  # a GAN step of even the tiny networks dispatches hundreds
    table = proc.stdout.splitlines()
    assert any(line.startswith("| tiny-gan.toml | fp32 | 3 x 32 |") for line in table)
    assert "divergence share" in proc.stdout


def test_train_step_benchmark_bad_config_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "train_step.py"), "--configs", str(tmp_path / "missing.toml"),
         "--repeats", "1", "--warmup", "0", "--device", "cpu"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "missing.toml" in proc.stderr


def test_batch_upscale_benchmark_runs():
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "batch_upscale.py"), "--images", "2", "--size", "16x12",
         "--threads", "0", "2", "--rounds", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| 0 |") or line.startswith("| 2 |")]
    assert len(rows) == 2 and rows[0].endswith("| 1.00x |")


@pytest.mark.slow
def test_train_data_benchmark_runs(tmp_path):
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "train_data.py"), "--configs", "configs/cpu-real-psnr.toml",
         # batch 4 x 32 px: the shapes of test_training's compiled tiny run, whose compile inductor's
         # on-disk cache then serves here
         "configs/cpu-real-psnr.toml:bicubic", "--seconds", "2", "--rounds", "1", "--warmup", "1", "--batch", "4",
         "--hr-size", "32", "--workers", "0", "--set", 'generator.preset="surge-tiny"', "--threads", "1",
         *(["--compile", "first"] if COMPILER else []), "--profile-steps", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["degradation"] for r in rows] == [True, False]
    compiled = {"device+compile"} if COMPILER else set()
    assert set(rows[0]["pipelines"]) == {"loader", "device"} | compiled  # --compile first: the first config only
    assert set(rows[1]["pipelines"]) == {"loader", "device"}
    for r in rows:
        assert r["flops_per_step"] > 0
        assert all(p["steps"] >= 1 and p["step_per_s"] > 0 and p["warmup_s"] > 0 for p in r["pipelines"].values())
    assert "ratio to loader" in proc.stdout
    assert ("compiled (default) / eager (device)" in proc.stdout) == bool(COMPILER)
    if COMPILER:
        assert rows[0]["pipelines"]["device+compile"]["compile_mode"] == "default"
    # --profile-steps: the first config's device pipelines only, ranked by CPU time on a CPU
    profiled = {(i, name) for i, r in enumerate(rows) for name, p in r["pipelines"].items() if "profile" in p}
    assert profiled == {(0, "device")} | {(0, name) for name in compiled}
    prof = rows[0]["pipelines"]["device"]["profile"]
    assert prof["steps"] == 2 and prof["kernel_ms_per_step"] is None and prof["op_cpu_ms_per_step"] > 0
    assert prof["threads"] == "all" and prof["syncs_per_step"] is None  # the batch-making thread's operators too
    assert len(prof["top"]) == 10 and all(t["ms_per_step"] > 0 and t["calls_per_step"] > 0 for t in prof["top"])
    assert [t["ms_per_step"] for t in prof["top"]] == sorted((t["ms_per_step"] for t in prof["top"]), reverse=True)
    assert sum(t["share"] for t in prof["top"]) <= 1 + 1e-9
    assert any("convolution" in t["name"] for t in prof["top"])
    assert "device, under torch.profiler (2 steps" in proc.stdout


def test_device_batches_benchmark_runs(tmp_path):
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "device_batches.py"), "--configs", "configs/gpu-real-psnr.toml",
         "configs/gpu-real-psnr.toml:bicubic", "--batch", "2", "--small", "16", "--batches", "1", "--repeats", "1",
         "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(r["degradation"], r["hr_size"]) for r in rows] == [(True, 128), (True, 16), (False, 128), (False, 16)]
    assert all(r["plan_s"] > 0 and r["make_s"] > 0 and r["plan_make_s"] > 0 for r in rows)
    assert "| plan (numpy) | make (device work) |" in proc.stdout


@pytest.mark.slow
def test_ray_batch_benchmark_runs():
    pytest.importorskip("ray", reason="Ray is the optional extra surge-sr[ray]")
    gpu_json = REPO.parent / "shared" / "models" / "gpu-run-2026-12-04" / "infer-cuda.json"
    more = ["--gpu-json", str(gpu_json)] if gpu_json.exists() else []
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "ray_batch.py"), "--images", "3", "--size", "16x12", "--actors", "1",
         "--cpus", "2", *more],
        capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and not line.startswith("| run")]
    assert len(rows) == 5 and "Ray's overhead per image" in proc.stdout
    assert not more or "M images/hour" in proc.stdout
