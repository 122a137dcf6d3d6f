"""scripts/ablation.py end to end with tiny settings: runs, evaluates, writes the table and figure."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from surge.models import GENERATOR_PRESETS, SuRGeGenerator
from surge.models.files import save_model

REPO = Path(__file__).resolve().parents[1]


def test_ablation_script_tiny(tmp_path, shared_datasets):
    hr = tmp_path / "hr"
    hr.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray((rng.random((48, 40, 3)) * 255).astype(np.uint8)).save(hr / f"{i}.png")
    init = save_model(SuRGeGenerator(GENERATOR_PRESETS["surge-tiny"]), tmp_path / "init.safetensors")
    out = tmp_path / "out"
    rows = ["+ GW (SuRGe, dynamic weights)", "plain addition of skips"]
    extra = ['generator.preset="surge-tiny"', f'data.train_dirs=["{hr}"]', "data.hr_size=32", "data.batch_size=4",
             'data.val_dir=""', "critic.width=8", "critic.max_width=16", "critic.stages=2", "critic.hidden=16"]
    subprocess.run([sys.executable, str(REPO / "scripts" / "ablation.py"), "--psnr-weights", str(init),
                    "--gan-steps", "2", "--scratch-minutes", "0.02", "--sets", "Set5", "--data",
                    str(shared_datasets / "benchmark"), "--out", str(out), "--only", *rows, "--extra", *extra],
                   check=True, capture_output=True, cwd=REPO)
    table = (out / "ablation.md").read_text()
    for row in rows:
        assert row in table
    assert table.count("| loss terms |") == 1 and table.count("| generator |") == 1
    assert (out / "loss_curves.png").stat().st_size > 1000
