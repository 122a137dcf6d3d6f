"""surge.training.warm_start: the bundled weights a fresh run of the same experiment starts from."""

import subprocess
import sys

import pytest

from surge.models.registry import bundled_path
from surge.training.config import load_config
from surge.training.warm_start import bundled_start

from script_loader import REPO

GPU_REAL = REPO / "configs" / "gpu-real-psnr.toml"


def _config(path, *overrides):
    return load_config(path, overrides, runnable_here=False)


@pytest.fixture(autouse=True)
def _bundled():
    if bundled_path("surge-x4-real-psnr") is None:
        pytest.skip("the bundled surge-x4-real-psnr weights are not installed")


def test_the_gpu_real_psnr_experiment_starts_from_its_shipped_model():
    assert bundled_start(_config(GPU_REAL)) == bundled_path("surge-x4-real-psnr")


@pytest.mark.parametrize("override", ["generator.blocks0=8", 'train.name="another"', "generator.width0=32"])
def test_another_generator_or_experiment_has_no_warm_start(override):
    assert bundled_start(_config(GPU_REAL, override)) is None


def test_the_command_prints_the_path_or_nothing():
    cmd = [sys.executable, "-m", "surge.training.warm_start", str(GPU_REAL)]
    found = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == str(bundled_path("surge-x4-real-psnr"))
    none = subprocess.run([*cmd, "generator.blocks0=8"], capture_output=True, text=True, check=True)
    assert none.stdout == ""
    bad = subprocess.run([*cmd[:-1], str(REPO / "configs" / "missing.toml")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("surge: error: ") and "missing.toml" in bad.stderr
