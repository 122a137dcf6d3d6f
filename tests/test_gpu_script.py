"""scripts/pack_data.py and scripts/gpu_train.sh end to end on CPU, with tiny synthetic data.

The real run needs a GPU (the device tool); here SURGE_GPU_TINY=1 swaps in the surge-tiny
generator, a tiny critic and 2 steps per stage, so every step of the script runs: packing,
both training stages, the copies to $OUT and `surge eval` of each stage.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import surge

from pack_helpers import pack, tiny_sources

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """train/A (RGB PNGs + a BMP), bench/Set5 and bench/Set14 (HR + LR_bicubic_X4; one grayscale pair)."""
    return tiny_sources(tmp_path_factory.mktemp("src"), odd_files=True)


def run_tiny(packed: Path, tmp_path: Path, **env_extra: str) -> subprocess.CompletedProcess:
    """scripts/gpu_train.sh with SURGE_GPU_TINY=1 on ``packed``; outputs in tmp_path/out, runs in tmp_path/runs."""
    env = {**os.environ, "OUT": str(tmp_path / "out"), "SURGE_PACK": str(packed), "SURGE_PYTHON": sys.executable,
           "SURGE_GPU_TINY": "1", "SURGE_RUNS": str(tmp_path / "runs"), "SURGE_SITE": str(tmp_path / "site"), **env_extra}
    return subprocess.run(["bash", str(REPO / "scripts" / "gpu_train.sh")], env=env, capture_output=True, text=True, timeout=180)


def test_pack_data_is_lossless_and_keeps_grayscale(sources, tmp_path):
    out = tmp_path / "pack"
    proc = pack(sources, out)
    assert proc.returncode == 0, proc.stderr
    assert "total:" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["files"]) == 6 + 4 + 4
    for entry in manifest["files"]:
        packed = out / entry["packed"]
        with Image.open(entry["source"]) as a, Image.open(packed) as b:
            assert a.mode == b.mode, entry
            assert np.array_equal(np.asarray(a), np.asarray(b)), entry
        assert packed.suffix == (".png" if a.mode == "L" else ".webp"), entry
    assert (out / "benchmark" / "Set14" / "HR" / "img1.png").is_file()  # grayscale kept as PNG
    assert (out / "train" / "A" / "bmp.webp").is_file()
    assert (out / "train" / "A" / "a.b.webp").is_file()
    # The evaluator pairs the packed files like the originals.
    from surge.evaluation.datasets import discover_set

    bench = discover_set(out / "benchmark" / "Set14")
    assert len(bench.pairs) == 2 and not bench.skipped

    again = pack(sources, out)  # never replaces a pack silently
    assert again.returncode == 2 and "already exists" in again.stderr
    over = pack(sources, tmp_path / "small", "--budget-mib", "0.001")
    assert over.returncode == 2 and "over the budget" in over.stderr
    assert not (tmp_path / "small").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_pack_data_unreadable_image_names_the_file(sources, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "pack_data.py"), str(bad), "--bench",
                           "--out", str(tmp_path / "pack")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "broken.png" in proc.stderr
    assert not (tmp_path / "pack").exists()


@pytest.mark.slow
def test_gpu_train_script_tiny_end_to_end(sources, tmp_path):
    packed = tmp_path / "pack"
    assert pack(sources, packed).returncode == 0
    out = tmp_path / "out"
    proc = run_tiny(packed, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(["surge-x4-gpu.safetensors", "surge-x4-gpu-psnr.safetensors", "eval-gan.json",
                            "eval-psnr.json", "log-gan.csv", "log-psnr.csv", "gpu_train.log"])
    model = surge.load_model(out / "surge-x4-gpu.safetensors")
    assert model.provenance["stage"] == "gan" and int(model.provenance["steps"]) == 2
    psnr_model = surge.load_model(out / "surge-x4-gpu-psnr.safetensors")
    assert psnr_model.provenance["stage"] == "psnr"
    for name in ("eval-gan.json", "eval-psnr.json"):
        scores = json.loads((out / name).read_text())
        assert "Set5" in json.dumps(scores) and "Set14" in json.dumps(scores)
    log = (out / "gpu_train.log").read_text()
    assert "stage 2: configs/paper-gan.toml" in log and "== done" in log
    assert "pack: 6 training images, 0 left out to fit its budget" in log  # the run's data, from manifest.json
    # Stage 2 started from stage 1's weights, as the config's init_from says.
    config = json.loads((tmp_path / "runs" / "paper-gan" / "config.json").read_text())
    assert config["train"]["init_from"].startswith(str(tmp_path / "runs" / "paper-psnr"))


def test_gpu_train_script_without_pack_fails_clearly(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "SURGE_PACK": str(tmp_path / "missing"),
           "SURGE_PYTHON": sys.executable, "SURGE_GPU_TINY": "1"}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_train.sh")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 3
    assert "packed data not found" in proc.stderr and str(tmp_path / "missing") in proc.stderr


def test_pack_data_packs_a_set_under_a_given_name(sources, tmp_path):
    degraded = tmp_path / "bench-v1"
    proc = subprocess.run([sys.executable, "-m", "surge", "degrade", "--data", str(sources / "bench"), "--sets", "Set5",
                           "-o", str(degraded)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "pack"
    proc = pack(sources, out, bench=(f"Set5-bench-v1={degraded / 'Set5'}",))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["benchmark_sets"] == ["Set5", "Set14", "Set5-bench-v1"]
    for stem in ("img0", "img1"):
        with Image.open(degraded / "Set5" / "LR_degraded_X4" / f"{stem}x4.png") as a, \
                Image.open(out / "benchmark" / "Set5-bench-v1" / "LR_degraded_X4" / f"{stem}x4.webp") as b:
            assert np.array_equal(np.asarray(a), np.asarray(b))
    # Two sets packed under one name are refused, as two folders of the same name are.
    clash = pack(sources, tmp_path / "clash", bench=(f"Set5={degraded / 'Set5'}",))
    assert clash.returncode == 2 and "benchmark/Set5" in clash.stderr


@pytest.mark.slow
def test_gpu_train_script_real_mode_tiny_end_to_end(sources, tmp_path):
    degraded = tmp_path / "bench-v1"
    subprocess.run([sys.executable, "-m", "surge", "degrade", "--data", str(sources / "bench"), "--sets", "Set5", "Set14",
                    "-o", str(degraded)], check=True, capture_output=True, timeout=60)
    packed = tmp_path / "pack"
    proc = pack(sources, packed, bench=(f"Set5-bench-v1={degraded / 'Set5'}", f"Set14-bench-v1={degraded / 'Set14'}"))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    proc = run_tiny(packed, tmp_path, SURGE_MODE="real")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(["surge-x4-gpu-real.safetensors", "surge-x4-gpu-real-psnr.safetensors", "eval-gan.json",
                            "eval-psnr.json", "log-gan.csv", "log-psnr.csv", "gpu_train.log"])
    assert surge.load_model(out / "surge-x4-gpu-real.safetensors").provenance["stage"] == "gan"
    for name in ("eval-gan.json", "eval-psnr.json"):
        text = (out / name).read_text()
        assert all(s in text for s in ("Set5", "Set14", "Set5-bench-v1", "Set14-bench-v1"))
    runs = tmp_path / "runs"
    psnr_config = json.loads((runs / "gpu-real-psnr" / "config.json").read_text())
    gan_config = json.loads((runs / "gpu-real-gan" / "config.json").read_text())
    # Trained on the training recipe's degradations, stage 2 from stage 1.
    assert psnr_config["data"]["degradation"] is not None and gan_config["data"]["degradation"] is not None
    assert psnr_config["train"]["init_from"] in ("", None)
    assert gan_config["train"]["init_from"].startswith(str(runs / "gpu-real-psnr"))


def test_gpu_train_script_real_mode_needs_bench_v1_packed(sources, tmp_path):
    packed = tmp_path / "pack"
    assert pack(sources, packed).returncode == 0
    proc = run_tiny(packed, tmp_path, SURGE_MODE="real")
    assert proc.returncode == 3
    assert "Set5-bench-v1: evaluation set not packed" in proc.stdout + proc.stderr
    assert not (tmp_path / "runs").exists()  # refused before any training


def test_gpu_train_script_refuses_an_unknown_mode(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "SURGE_MODE": "fast"}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_train.sh")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 3 and "SURGE_MODE=fast" in proc.stderr
