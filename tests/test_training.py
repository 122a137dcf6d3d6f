"""Trainer: configs, exact resume after SIGKILL, stop signals, NaN guard, data parallelism."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from surge.data.pairs import PairDataset, load_training_pairs
from surge.errors import ConfigError, DatasetError
from surge.training.checkpoint import load_checkpoint
from surge.training.config import load_config
from surge.training.trainer import Trainer, TrainingDiverged

from training_helpers import TINY_CRITIC, random_hr_folder, write_tiny_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory) -> Path:
    folder = random_hr_folder(tmp_path_factory.mktemp("hr"), 6, (40, 48), noise=(20, 24))
    (folder / "broken.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "small.png")
    return folder


def write_config(tmp_path, hr_dir, gan=True, steps=6, ckpt=2) -> Path:
    """This file's tiny run: tmp_path/tiny.toml, the tiny critic whatever the stage, outputs in tmp_path/runs."""
    return write_tiny_config(tmp_path / "tiny.toml", hr_dir, gan=gan, steps=steps, ckpt_every=ckpt,
                             out=tmp_path / "runs", critic=TINY_CRITIC)


def read_losses(run_dir: Path) -> list[tuple]:
    with (run_dir / "log.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("loss_g")]
    return [(int(r["step"]), r["loss_g"], r.get("loss_critic"), r.get("w_adv")) for r in rows]


def train_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "surge.train", *map(str, args)]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


# --- data -------------------------------------------------------------------------------
def test_unreadable_and_small_images_are_skipped_and_counted(hr_dir):
    images, _, report = load_training_pairs([hr_dir], None, min_size=32)
    assert report.loaded == 6 == len(images)
    assert len(report.skipped_unreadable) == 1 and len(report.skipped_small) == 1


def test_pairs_are_deterministic_and_lr_is_matlab_bicubic(hr_dir):
    from surge.imaging.bicubic import imresize

    images, _, _ = load_training_pairs([hr_dir], None, min_size=32)
    a, b = PairDataset(images, 32, seed=3), PairDataset(images, 32, seed=3)
    for k in (0, 5, 17):
        assert torch.equal(a[k][0], b[k][0]) and torch.equal(a[k][1], b[k][1])
    lr, hr = a[4]
    hr_u8 = (hr.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal((lr.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), imresize(hr_u8, 0.25))
    assert not torch.equal(a[4][1], PairDataset(images, 32, seed=4)[4][1])


def test_pairs_from_an_lr_folder_are_aligned_crops(tmp_path, hr_dir):
    from surge.imaging.bicubic import imresize

    lr_dir = tmp_path / "lr"
    lr_dir.mkdir()
    for path in sorted(hr_dir.glob("[0-9].png"))[:5]:
        hr = np.asarray(Image.open(path).convert("RGB"))
        Image.fromarray(imresize(hr, 0.25)).save(lr_dir / f"{path.stem}x4.png")  # DIV2K-style name
    # "5.png" has no LR: skipped and counted, like the broken file
    images, lrs, report = load_training_pairs([hr_dir], [lr_dir], min_size=32)
    assert len(images) == len(lrs) == 5 and len(report.skipped_unreadable) == 2
    ds = PairDataset(images, 32, seed=1, lr_images=lrs)
    for k in range(8):
        lr, hr = ds[k]
        hr_u8 = (hr.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        expect = imresize(hr_u8, 0.25).astype(int)
        got = (lr.permute(1, 2, 0).numpy() * 255).round().astype(int)
        # a crop of the whole-image LR equals the LR of the crop away from the crop's border
        assert np.abs(got[2:-2, 2:-2] - expect[2:-2, 2:-2]).max() <= 1


def test_lr_folder_count_must_match(tmp_path, hr_dir):
    with pytest.raises(DatasetError, match="one per HR folder"):
        load_training_pairs([hr_dir], [tmp_path, tmp_path], 32)


def test_missing_training_folder(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_training_pairs([tmp_path / "nope"], None, 32)


# --- configs ----------------------------------------------------------------------------
def test_shipped_configs_parse():
    for path in sorted((REPO / "configs").glob("*.toml")):
        load_config(path)


def test_config_errors_name_the_file_and_key(tmp_path, hr_dir):
    path = write_config(tmp_path, hr_dir)
    with pytest.raises(ConfigError, match=r"tiny\.toml: \[optim\]: unknown key\(s\) lr"):
        load_config(path, ["optim.lr=3"])
    with pytest.raises(ConfigError, match="hr_size"):
        load_config(path, ["data.hr_size=30"])
    with pytest.raises(ConfigError, match="psnr stage has no critic"):
        load_config(path, ["train.stage=psnr"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)
    assert load_config(path, ["train.steps=9", "optim.betas=[0.5, 0.9]"]).optim.betas == (0.5, 0.9)


def test_a_config_with_a_base_holds_only_its_differences(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "base.toml").write_text(
        '[data]\nhr_size = 32\nbatch_size = 2\n[data.degradation]\nclean_prob = 0.2\n'
        '[data.degradation.first]\njpeg_range = [40, 95]\nnoise_range = [1.0, 15.0]\n'
        '[loss]\nl1 = true\nadversarial = false\njs = false\ngw = false\n'
        '[train]\nstage = "psnr"\nsteps = 10\n'
    )
    (tmp_path / "sub" / "mid.toml").write_text(
        'base = "../base.toml"\n[data.degradation.first]\njpeg_range = [30, 60]\n[train]\nsteps = 20\n'
    )
    (tmp_path / "child.toml").write_text('base = "sub/mid.toml"\n[train]\nname = "child"\n')
    cfg = load_config(tmp_path / "child.toml")
    first = cfg.data.degradation.first
    assert first.jpeg_range == (30, 60) and first.noise_range == (1.0, 15.0)  # merged, not replaced
    assert cfg.data.degradation.clean_prob == 0.2 and cfg.data.hr_size == 32
    assert cfg.train.steps == 20 and cfg.train.name == "child"
    # The same values written out in one file give the same config.
    (tmp_path / "flat.toml").write_text(
        '[data]\nhr_size = 32\nbatch_size = 2\n[data.degradation]\nclean_prob = 0.2\n'
        '[data.degradation.first]\njpeg_range = [30, 60]\nnoise_range = [1.0, 15.0]\n'
        '[loss]\nl1 = true\nadversarial = false\njs = false\ngw = false\n'
        '[train]\nstage = "psnr"\nsteps = 20\nname = "child"\n'
    )
    assert load_config(tmp_path / "flat.toml").to_dict() == cfg.to_dict()
    # Nested tables can be overridden on the command line by their full path.
    over = load_config(tmp_path / "child.toml", ["data.degradation.first.jpeg_range=[50, 70]"])
    assert over.data.degradation.first.jpeg_range == (50, 70)
    with pytest.raises(ConfigError, match="data.hr_size is a value, not a table"):
        load_config(tmp_path / "child.toml", ["data.hr_size.x=1"])


@pytest.mark.parametrize("name, text, message", [
    ("c.toml", 'base = "missing.toml"\n', r"c\.toml: base 'missing.toml' not found"),
    ("c.toml", 'base = "c.toml"\n', r"c\.toml: base chain is a cycle \(c\.toml -> c\.toml\)"),
    ("c.toml", "base = 3\n", r"c\.toml: base must be the path of another config file"),
    # a run's config.json is a config too
    ("r.json", "[1, 2]", r"r\.json: a config must be a table of sections, got list"),
    ("r.json", '{"data": ', r"r\.json: not valid JSON"),
    ("r.json", '{"base": "a.toml"}', r"r\.json: a JSON config is a run's merged record and cannot name a base"),
    ("r.json", '{"optim": {"lr": 3}}', r"r\.json: \[optim\]: unknown key\(s\) lr"),
])
def test_bad_config_files_fail_naming_the_file(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / name)


def test_a_base_cycle_through_two_files_is_found(tmp_path):
    (tmp_path / "a.toml").write_text('base = "b.toml"\n')
    (tmp_path / "b.toml").write_text('base = "a.toml"\n')
    with pytest.raises(ConfigError, match=r"cycle \(a\.toml -> b\.toml -> a\.toml\)"):
        load_config(tmp_path / "a.toml")


# --- resume -----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("gan", [True, False])
def test_sigkill_then_resume_continues_exactly(tmp_path, hr_dir, gan):
    steps = 40
    ref_cfg = write_config(tmp_path, hr_dir, gan=gan, steps=steps, ckpt=3)
    subprocess.run(train_cmd(ref_cfg, "--run-dir", tmp_path / "ref"), check=True, env=ENV, capture_output=True)
    reference = read_losses(tmp_path / "ref")
    assert len(reference) == steps

    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(ref_cfg, "--run-dir", run_dir), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once a few checkpoints exist, mid-run
        if (run_dir / "log.csv").exists() and len(read_losses(run_dir)) >= 8:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(run_dir / "last.pt")["step"]
    assert 0 < killed_at < steps, "the run must be killed mid-way for this test to mean anything"

    subprocess.run(train_cmd(ref_cfg, "--resume", run_dir), check=True, env=ENV, capture_output=True)
    assert read_losses(run_dir) == reference
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*.tmp"))


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")),
                    reason="torch.compile's CPU backend (inductor) needs a C++ compiler (c++ or g++ on PATH)")
def test_a_compiled_run_stays_close_to_eager_keeps_the_weight_names_and_resumes_exactly(tmp_path, hr_dir):
    from surge.train import main as train_main

    cfg = write_config(tmp_path, hr_dir, gan=True, steps=4, ckpt=2)
    runs = {name: tmp_path / name for name in ("eager", "compiled", "resumed")}
    assert train_main([str(cfg), "--run-dir", str(runs["eager"])]) == 0
    torch._dynamo.utils.counters.clear()
    assert train_main([str(cfg), "--run-dir", str(runs["compiled"]), "train.compile=true"]) == 0
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it did compile
    eager, compiled = read_losses(runs["eager"]), read_losses(runs["compiled"])
    assert [r[0] for r in compiled] == [1, 2, 3, 4]
    for e, c in zip(eager, compiled):  # the same computation, rounded differently by fused kernels
        assert float(c[1]) == pytest.approx(float(e[1]), rel=1e-3, abs=1e-5), (e, c)
    names = {k: load_checkpoint(runs[k] / "last.pt")["generator"].keys() for k in ("eager", "compiled")}
    assert names["compiled"] == names["eager"] and not any("_orig_mod" in k for k in names["compiled"])

    assert train_main([str(cfg), "--run-dir", str(runs["resumed"]), "train.compile=true", "train.steps=2"]) == 0
    assert train_main(["unused.toml", "--resume", str(runs["resumed"]), "train.steps=4"]) == 0
    assert read_losses(runs["resumed"]) == compiled


def test_sigterm_saves_a_checkpoint_and_exits_130(tmp_path, hr_dir):
    cfg = write_config(tmp_path, hr_dir, gan=False, steps=100000, ckpt=100000)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(cfg, "--run-dir", run_dir), env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((run_dir / "log.csv").exists() and len(read_losses(run_dir)) >= 3):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    state = load_checkpoint(run_dir / "last.pt")
    assert state["step"] >= 3 and "resume with --resume" in err


@pytest.mark.slow
def test_existing_run_is_not_overwritten(tmp_path, hr_dir):
    cfg = write_config(tmp_path, hr_dir, gan=False, steps=2)
    subprocess.run(train_cmd(cfg, "--run-dir", tmp_path / "r"), check=True, env=ENV, capture_output=True)
    again = subprocess.run(train_cmd(cfg, "--run-dir", tmp_path / "r"), env=ENV, capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, hr_dir, monkeypatch):
    cfg = load_config(write_config(tmp_path, hr_dir, gan=False, steps=10, ckpt=1))
    from surge.losses import pixel

    real_l1, calls = pixel.l1_loss, {"n": 0}

    def l1_that_explodes(sr, hr):
        calls["n"] += 1
        loss = real_l1(sr, hr)
        return loss * float("nan") if calls["n"] == 4 else loss

    monkeypatch.setitem(pixel.PIXEL_LOSSES, "l1", l1_that_explodes)
    trainer = Trainer(cfg, tmp_path / "nan")
    with pytest.raises(TrainingDiverged, match="non-finite loss at step 4 .*l1.*last good checkpoint"):
        trainer.run()
    assert load_checkpoint(tmp_path / "nan" / "last.pt")["step"] == 3
    assert all(torch.isfinite(v).all() for v in load_checkpoint(tmp_path / "nan" / "last.pt")["generator"].values())


@pytest.mark.slow
def test_exported_weights_carry_provenance(tmp_path, hr_dir):
    import surge

    cfg = write_config(tmp_path, hr_dir, gan=False, steps=2)
    subprocess.run(train_cmd(cfg, "--run-dir", tmp_path / "r"), check=True, env=ENV, capture_output=True)
    model = surge.load_model(str(tmp_path / "r" / "last.safetensors"))
    assert model.provenance["steps"] == 2 and model.provenance["stage"] == "psnr"
    assert model.provenance["training_data"] == [hr_dir.name]
    # The run's merged record is itself a config: the same experiment, runnable again.
    assert load_config(tmp_path / "r" / "config.json").to_dict() == load_config(cfg).to_dict()


# --- data parallel ----------------------------------------------------------------------
@pytest.mark.slow
def test_two_process_ddp_run_resumes_in_a_single_process(tmp_path, hr_dir):
    cfg = write_config(tmp_path, hr_dir, gan=True, steps=4, ckpt=2)
    run_dir = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "surge.train", str(cfg), "--run-dir", str(run_dir)]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    # torchrun's own report (~2 kB) ends stderr; what the failed rank said comes before it.
    assert done.returncode == 0, done.stderr[-8000:]
    assert load_checkpoint(run_dir / "last.pt")["step"] == 4
    assert len(read_losses(run_dir)) == 4  # only rank 0 logs
    resumed = subprocess.run(train_cmd(cfg, "--resume", run_dir, "train.steps=6"), env=ENV,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_checkpoint(run_dir / "last.pt")["step"] == 6
