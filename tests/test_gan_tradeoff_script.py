"""scripts/gan_tradeoff.py: the target rule, and end to end with a tiny GAN run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from surge.models.files import read_provenance

from script_loader import load_script

REPO = Path(__file__).resolve().parents[1]
gan_tradeoff = load_script("scripts/gan_tradeoff.py")


def _scores(psnr, niqe):
    return {"psnr_y": psnr, "ssim_y": 0.7, "niqe": niqe}


def test_target_needs_both_conditions_on_every_target_set():
    ref = {"Set14": _scores(28.0, 6.6), "BSD100": _scores(27.2, 6.9)}
    sets = ["Set14", "BSD100"]
    good = {"Set14": _scores(27.1, 5.6), "BSD100": _scores(26.3, 5.85)}
    d = gan_tradeoff.deltas(ref, good, sets)
    assert d["Set14"] == pytest.approx((-0.9, -1.0))
    assert gan_tradeoff.meets_target(d, sets, niqe_gain=1.0, max_drop=1.0)
    too_lossy = {**good, "BSD100": _scores(26.1, 5.0)}  # NIQE fine, PSNR drop 1.1 dB
    assert not gan_tradeoff.meets_target(gan_tradeoff.deltas(ref, too_lossy, sets), sets, 1.0, 1.0)
    too_little = {**good, "Set14": _scores(27.9, 5.7)}  # PSNR fine, NIQE only 0.9 lower
    assert not gan_tradeoff.meets_target(gan_tradeoff.deltas(ref, too_little, sets), sets, 1.0, 1.0)
    missing = {"Set14": good["Set14"]}
    assert not gan_tradeoff.meets_target(gan_tradeoff.deltas(ref, missing, sets), sets, 1.0, 1.0)


def test_selection_takes_the_most_natural_candidate_within_the_psnr_budget():
    ref = {"val": _scores(30.0, 7.0)}
    candidates = {"step300": {"val": _scores(28.8, 5.0)},       # lowest NIQE but 1.2 dB down: not eligible
                  "step300-a0.5": {"val": _scores(29.4, 6.1)},
                  "step300-a0.7": {"val": _scores(29.1, 5.8)},
                  "step450-a0.5": {"val": _scores(29.6, 6.3)}}
    assert gan_tradeoff.select(ref, candidates, "val", max_drop=1.0) == "step300-a0.7"
    assert gan_tradeoff.select(ref, candidates, "val", max_drop=0.5) == "step450-a0.5"
    assert gan_tradeoff.select(ref, candidates, "val", max_drop=0.1) is None
    assert gan_tradeoff.candidate_name(450, 1.0) == "step450" and gan_tradeoff.candidate_name(450, 0.6) == "step450-a0.6"


def _selection_set(root: Path) -> Path:
    """A two-image set (HR only: LR made by bicubic), large enough for NIQE, as the selection set."""
    import numpy as np
    from PIL import Image

    hr = root / "Tiny" / "HR"
    hr.mkdir(parents=True)
    y, x = np.mgrid[0:128, 0:128]
    for i in range(2):
        rng = np.random.default_rng(i)
        base = 0.5 + 0.4 * np.sin(x / (5.0 + 3 * i)) * np.cos(y / 7.0)
        rgb = np.stack([base, base ** 2, 1 - base], axis=-1) + rng.normal(0, 0.02, (128, 128, 3))
        Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(hr / f"{i}.png")
    return root


@pytest.mark.slow
def test_gan_tradeoff_script_tiny(tmp_path, tiny_gan_run):
    # Reported and selection sets are two synthetic 128 px images (large enough for NIQE): the
    # script's logic, not its figures, is under test, and it needs no ../shared datasets.
    init, overrides = tiny_gan_run
    out, run_dir = tmp_path / "out", tmp_path / "run"
    data = _selection_set(tmp_path / "data")
    extra = [f'train.init_from="{init}"', *overrides, 'loss.combination="dynamic-invariant"']
    base = [sys.executable, str(REPO / "scripts" / "gan_tradeoff.py"), "configs/cpu-gan.toml", "--run-dir", str(run_dir),
            "--reference", str(init), "--sets", "Tiny", "--target-sets", "Tiny",
            "--data", str(data), "--out", str(out), "--extra", *extra]
    subprocess.run([*base, "--steps", "1", "2"], check=True, capture_output=True, cwd=REPO)
    for n in (1, 2):
        assert read_provenance(run_dir / "snapshots" / f"step{n}.safetensors")["steps"] == n
        assert json.loads((out / "records" / f"step{n}.json").read_text())["Tiny"]["niqe"] > 0
    table = (out / "tradeoff.md").read_text()
    assert [line.split(" |")[0] for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()] == \
        ["| 0", "| 1", "| 2"]
    assert (out / "tradeoff.png").stat().st_size > 1000

    # Extending the curve trains only the new steps (the run resumes from step 2) and keeps the old points.
    before = (out / "records" / "step1.json").read_bytes()
    subprocess.run([*base, "--steps", "1", "2", "3"], check=True, capture_output=True, cwd=REPO)
    assert (out / "records" / "step1.json").read_bytes() == before
    assert read_provenance(run_dir / "snapshots" / "step3.safetensors")["steps"] == 3
    log_steps = [line.split(",")[0] for line in (run_dir / "log.csv").read_text().splitlines()[1:]]
    assert log_steps == ["1", "2", "3"]

    # Asking for a step the run has already passed is an error, not a mislabelled point.
    (out / "records" / "step2.json").unlink()
    (run_dir / "snapshots" / "step2.safetensors").unlink()
    bad = subprocess.run([*base, "--steps", "2"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode != 0 and not (out / "records" / "step2.json").exists()
    assert "already at step 3; step 2 has no snapshot" in bad.stderr

    # --alphas: interpolations of each snapshot are scored on the selection set only, one is chosen
    # there, and only the chosen one is scored on the reported sets.
    sel = [*base, "--steps", "1", "3", "--alphas", "0.5", "--select-data", str(_selection_set(tmp_path / "select")),
           "--select-set", "Tiny", "--select-max-psnr-drop", "100"]
    done = subprocess.run(sel, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    names = {"step1", "step1-a0.5", "step3", "step3-a0.5"}
    assert {p.stem[7:] for p in (out / "records").glob("select-step*.json")} == names
    assert read_provenance(run_dir / "snapshots" / "step3-a0.5.safetensors")["interpolation"]["alpha"] == 0.5
    table = (out / "tradeoff.md").read_text()
    chosen = table.split("Chosen: **")[1].split("**")[0]
    assert chosen in names and f"| **{chosen}** |" in table
    assert json.loads((out / "records" / f"{chosen}.json").read_text())["Tiny"]["niqe"] > 0
    scored = {p.stem for p in (out / "records").glob("step*-a*.json")}
    assert scored <= {chosen}  # the other interpolations never saw the reported sets


def test_make_val_photos_writes_rgb_hr_that_surge_eval_reads(tmp_path):
    import numpy as np
    from PIL import Image

    from surge.evaluation.datasets import discover_set

    make_val_photos = load_script("scripts/make_val_photos.py")
    train = tmp_path / "train"
    train.mkdir()
    for i in range(5):
        Image.fromarray(np.full((41, 37), 40 * i, np.uint8)).save(train / f"{i}.png")  # gray, odd sizes
    assert make_val_photos.main(["--out", str(tmp_path / "out"), "--train-dir", str(train), "--every", "2"]) == 0
    hr = tmp_path / "out" / "select25" / "HR"
    names = sorted(p.stem for p in hr.iterdir())
    assert names == sorted([*make_val_photos.PHOTOS, "train-0", "train-2", "train-4"])
    for path in hr.iterdir():
        with Image.open(path) as im:
            assert im.mode == "RGB"
    found = discover_set(tmp_path / "out" / "select25")
    assert (len(found.pairs), found.skipped, found.lr_source) == (len(names), [], "bicubic from HR")
