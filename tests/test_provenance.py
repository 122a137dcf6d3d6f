"""Every weights file a run writes describes that file: its tag, step, own validation score, lineage."""

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from surge.evaluation.datasets import clear_cache
from surge.evaluation.runner import evaluate_set
from surge.models.files import load_model_file, read_provenance, total_steps
from surge.training.config import load_config
from surge.training.trainer import Trainer

CONFIG = """
[data]
train_dirs = ["{hr}"]
hr_size = 32
batch_size = 2
val_dir = "{val}"
[generator]
preset = "surge-tiny"
[optim]
lr_g = 0.05
schedule = "constant"
ema_decay = 0.0
[loss]
l1 = true
adversarial = false
js = false
gw = false
[train]
name = "{name}"
stage = "psnr"
steps = {steps}
seed = {seed}
init_from = {init}
log_every = 1
val_every = {val_every}
ckpt_every = {ckpt_every}
threads = 1
out_dir = "{out}"
"""


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for sub, n in (("hr", 4), ("val", 2)):
        (root / sub).mkdir()
        for i in range(n):
            small = (rng.random((12, 10, 3)) * 255).astype(np.uint8)
            Image.fromarray(small).resize((40, 48), Image.BICUBIC).save(root / sub / f"{i}.png")
    return root


def _run(tmp_path, folders, name, steps, init=None, seed=0, val_every=2, ckpt_every=2) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(CONFIG.format(hr=folders / "hr", val=folders / "val", name=name, steps=steps, seed=seed,
                                  init=f'"{init}"' if init else '""', val_every=val_every, ckpt_every=ckpt_every,
                                  out=tmp_path / "runs"))
    cfg = load_config(path)
    Trainer(cfg, tmp_path / name).run()
    return tmp_path / name


def _logged_scores(run_dir: Path) -> dict[int, float]:
    with (run_dir / "log.csv").open() as f:
        return {int(r["step"]): float(r["val_psnr_y"]) for r in csv.DictReader(f) if r.get("val_psnr_y")}


def _score_of(path: Path, val_dir: Path) -> float:
    clear_cache()
    module, _ = load_model_file(path)
    return evaluate_set(module, val_dir).psnr_y


def test_each_file_carries_its_own_tag_step_and_score(tmp_path, folders):
    # lr 0.05 without EMA: the validation score moves a lot between steps, so the run's best
    # and its last weights differ and a file that carried the run's best score would be caught.
    run = _run(tmp_path, folders, "a", steps=5, val_every=2, ckpt_every=2)
    logged = _logged_scores(run)
    assert sorted(logged) == [2, 4, 5]
    last, best = read_provenance(run / "last.safetensors"), read_provenance(run / "best.safetensors")
    assert (last["tag"], last["steps"]) == ("last", 5) and (best["tag"], best["steps"])[0] == "best"
    best_step = max(logged, key=logged.get)
    assert best["steps"] == best_step and best["val_psnr_y"] == pytest.approx(logged[best_step], abs=1e-4)
    assert last["val_psnr_y"] == pytest.approx(logged[5], abs=1e-4)
    # The scores are those of the very weights in each file, measured again here.
    assert last["val_psnr_y"] == pytest.approx(_score_of(run / "last.safetensors", folders / "val"), abs=1e-6)
    assert best["val_psnr_y"] == pytest.approx(_score_of(run / "best.safetensors", folders / "val"), abs=1e-6)
    assert last["val_set"] == "val" and last["config"]["train"]["name"] == "a"
    assert last["init_from"] is None and last["lineage"] == [] and last["total_steps"] == 5


def test_a_file_written_between_validations_has_no_score(tmp_path, folders):
    path = tmp_path / "b.toml"
    path.write_text(CONFIG.format(hr=folders / "hr", val=folders / "val", name="b", steps=10, seed=0, init='""',
                                  val_every=2, ckpt_every=1, out=tmp_path / "runs"))
    trainer = Trainer(load_config(path), tmp_path / "b")
    real_step = trainer.train_step

    def step_then_stop_at_3(lr, hr):  # as if Ctrl-C came during step 3: saved, not validated
        trainer._stop_requested = trainer.step == 2
        return real_step(lr, hr)

    trainer.train_step = step_then_stop_at_3
    result = trainer.run()
    assert result.interrupted and result.step == 3
    last = read_provenance(tmp_path / "b" / "last.safetensors")
    assert last["steps"] == 3 and last["val_psnr_y"] is None
    assert read_provenance(tmp_path / "b" / "best.safetensors")["val_psnr_y"] == pytest.approx(_logged_scores(tmp_path / "b")[2], abs=1e-4)


def test_lineage_records_every_ancestor_and_steps_add_up(tmp_path, folders):
    first = _run(tmp_path, folders, "first", steps=4, val_every=100, ckpt_every=100)
    second = _run(tmp_path, folders, "second", steps=3, init=first / "last.safetensors", seed=1,
                  val_every=100, ckpt_every=100)
    third = _run(tmp_path, folders, "third", steps=2, init=second / "best.safetensors", seed=2,
                 val_every=100, ckpt_every=100)
    prov = read_provenance(third / "last.safetensors")
    assert prov["init_from"] == str(second / "best.safetensors")
    assert [e["config"]["train"]["name"] for e in prov["lineage"]] == ["first", "second"]
    assert [e["steps"] for e in prov["lineage"]] == [4, 3]
    assert [e["tag"] for e in prov["lineage"]] == ["last", "best"]
    assert prov["lineage"][1]["init_from"] == str(first / "last.safetensors")
    assert all("lineage" not in e and e["wall_seconds"] >= 0 for e in prov["lineage"])
    assert prov["total_steps"] == total_steps(prov) == 4 + 3 + 2

    # Resuming a run whose start file has gone (another machine, a carried travel state): the lineage
    # its checkpoint recorded when the file was there is kept, so the total stays exact.
    (first / "last.safetensors").unlink()
    resumed = Trainer(load_config(tmp_path / "second.toml"), second, resume=True)
    resumed._t0 = 0.0
    prov = resumed.provenance("last")
    assert [e["steps"] for e in prov["lineage"]] == [4] and prov["total_steps"] == 4 + 3
    # A checkpoint without a recorded lineage (written before checkpoints kept it): the lineage says
    # the file is gone, and the total is unknown, not guessed.
    from surge.training.checkpoint import atomic_torch_save, load_checkpoint

    state = load_checkpoint(second / "last.pt")
    del state["lineage"]
    atomic_torch_save(state, second / "last.pt")
    resumed = Trainer(load_config(tmp_path / "second.toml"), second, resume=True)
    resumed._t0 = 0.0
    prov = resumed.provenance("last")
    assert "no such model file" in prov["lineage"][0]["unavailable"] and prov["total_steps"] is None
