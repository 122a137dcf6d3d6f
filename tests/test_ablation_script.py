"""scripts/ablation.py end to end with tiny settings: runs, evaluates, writes the table and figure."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_ablation_script_tiny(tmp_path, shared_datasets, tiny_gan_run):
    init, extra = tiny_gan_run
    out = tmp_path / "out"
    rows = ["+ GW (SuRGe, invariant weights)", "plain addition of skips"]
    base = [sys.executable, str(REPO / "scripts" / "ablation.py"), "--psnr-weights", str(init),
            "--gan-steps", "2", "--scratch-minutes", "0.02", "--sets", "Set5", "--data",
            str(shared_datasets / "benchmark"), "--out", str(out), "--extra", *extra]
    subprocess.run([*base, "--only", *rows], check=True, capture_output=True, cwd=REPO)
    table = (out / "ablation.md").read_text()
    for row in rows:
        assert row in table
    assert table.count("| loss terms |") == 1 and table.count("| generator |") == 1
    assert (out / "loss_curves.png").stat().st_size > 1000

    # A later invocation adds a seed repeat of one row; the table keeps the earlier runs.
    subprocess.run([*base, "--only", rows[0], "--seeds", "1"], check=True, capture_output=True, cwd=REPO)
    table = (out / "ablation.md").read_text()
    assert f"| loss terms | {rows[0]} | 0 |" in table and f"| loss terms | {rows[0]} | 1 |" in table
    assert f"| generator | {rows[1]} | 0 |" in table
    assert "Weight of the adversarial term" in table and f"| {rows[0]} | 1 |" in table
    assert "Set5 PSNR-Y / SSIM-Y / NIQE" in table
    # Only the row with two seeds gets a mean/spread line.
    summary = table.split("Mean over seeds")[1].split("Weight of the adversarial term")[0]
    assert f"| {rows[0]} | 2 |" in summary and rows[1] not in summary
    config = json.loads((out / "runs" / "gw-surge-invariant-weights-seed1" / "config.json").read_text())
    assert config["train"]["seed"] == 1 and config["loss"]["combination"] == "dynamic-invariant"
    records = sorted(p.name for p in (out / "records").iterdir())
    assert len(records) == 3 and all((out / "records" / r / "log.csv").stat().st_size > 0 for r in records)
    assert all(json.loads((out / "records" / r / "eval.json").read_text()) for r in records)

    # --table-only rebuilds the table from records/ alone (the run folders are not committed).
    shutil.rmtree(out / "runs")
    (out / "ablation.md").unlink()
    subprocess.run([*base, "--table-only"], check=True, capture_output=True, cwd=REPO)
    assert (out / "ablation.md").read_text() == table
    assert not (out / "runs").exists()
