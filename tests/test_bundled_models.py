"""The bundled models: golden outputs, Set5 re-scores, provenance that describes each file, packaging.

Golden outputs (tests/data/golden/<model>.npz) hold a fixed 32x32 LR input (MATLAB-bicubic x1/4 of
a 128x128 crop of scikit-image's astronaut) and the model's fp32 SR of it. Regenerate them with
`python scripts/make_golden.py` only when a bundled model's weights change on purpose or a
deliberate change of the numerics moves outputs by more than the tolerance (say so in the commit);
a failure here otherwise means silent numeric drift.
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from skimage import data

import surge
from surge.evaluation import evaluate
from surge.imaging.bicubic import imresize
from surge.models.config import GENERATOR_PRESETS
from surge.models.files import read_provenance, save_model, total_steps
from surge.models.generator import SuRGeGenerator
from surge.models.registry import bundled_path

from script_loader import load_script

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "golden"
TOLERANCE = 1e-4  # max abs difference on [0, 1], fp32 on CPU (rewrites and threads move outputs by ~5e-7)
# The training chain of each bundled model, oldest run first (docs/models.md).
CHAINS = {
    "surge-x4-psnr": ["cpu-psnr", "cpu-psnr-ft"],
    "surge-x4": ["cpu-psnr", "cpu-psnr-ft", "cpu-gan-invariant"],
    "surge-x4-real": ["cpu-psnr", "cpu-psnr-ft", "cpu-real-psnr", "cpu-real-gan"],
    "surge-x4-real-psnr": ["gpu-real-psnr"],  # session 9: trained from random weights on an H200
}
# Where each run's record (config.json, log.csv) is kept: the shipped models' training folders,
# then the real-world sessions' folders (runs that were experiments first).
RECORD_DIRS = [REPO / "docs" / "results" / "training", *sorted((REPO / "docs" / "results" / "real-world").glob("session*"))]


def _record_dir(run: str) -> Path:
    for root in RECORD_DIRS:
        if (root / run / "log.csv").is_file():
            return root / run
    raise AssertionError(f"no record folder with a log.csv for run {run!r} under {[str(r) for r in RECORD_DIRS]}")
SHIPPED = [name for name in CHAINS if bundled_path(name) is not None]


def _lr() -> np.ndarray:
    return imresize(np.ascontiguousarray(data.astronaut()[40:168, 176:304]), 0.25)


def _sr(run, lr: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float().div(255)
    with torch.inference_mode():
        return run(x)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("name", SHIPPED)
def test_golden_output(name):
    golden = np.load(GOLDEN / f"{name}.npz")
    lr = _lr()
    assert lr.shape == (32, 32, 3) and np.array_equal(lr, golden["lr"]), "the golden input itself changed"
    model = surge.load_model(name, device="cpu", precision="fp32")
    for run in (model, model.network):  # the public path (with inference rewrites) and the network as loaded
        err = np.abs(_sr(run, lr) - golden["sr"]).max()
        assert err <= TOLERANCE, f"{name}: SR differs from tests/data/golden/{name}.npz by {err:.2e} (> {TOLERANCE})"


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_set5_rescore_matches_the_recorded_figures(name, shared_datasets):
    recorded = json.loads((REPO / "docs" / "results" / f"{name}.json").read_text())["Set5"]
    model = surge.load_model(name, device="cpu", precision="fp32")
    result = evaluate(model, shared_datasets / "benchmark", ["Set5"])["Set5"]
    assert result.complete and result.images == recorded["images"] == 5
    assert abs(result.psnr_y - recorded["psnr_y"]) <= 1e-3, (result.psnr_y, recorded["psnr_y"])
    assert abs(result.ssim_y - recorded["ssim_y"]) <= 1e-4, (result.ssim_y, recorded["ssim_y"])


def _log(run: str) -> tuple[int, dict[int, float]]:
    with (_record_dir(run) / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    return max(int(r["step"]) for r in rows if r["loss_g"]), {int(r["step"]): float(r["val_psnr_y"]) for r in rows if r["val_psnr_y"]}


@pytest.mark.parametrize("name", SHIPPED)
def test_bundled_provenance_describes_that_file(name):
    prov = read_provenance(bundled_path(name))
    runs = [*prov["lineage"], prov]
    assert [r["experiment"] for r in runs] == CHAINS[name]
    for parent, child in zip(runs, runs[1:]):  # a run folder's file, or a bundled model's
        start = Path(child["init_from"])
        if "growth" in parent:  # grown by scripts/grow_generator.py into a file of its own, then trained
            growth = parent["growth"]
            assert Path(growth["source"]).name in ("last.safetensors", "best.safetensors"), growth
            assert growth["to_blocks"][0] == child["config"]["generator"]["blocks0"] > growth["from_blocks"][0]
            assert growth["to_blocks"][1] == child["config"]["generator"]["blocks1"]
            continue
        assert start.parent.name == parent["experiment"] or read_provenance(bundled_path(start.stem))["experiment"] == parent["experiment"]
    assert runs[0]["init_from"] is None
    for r in runs:  # each run's steps, and its own validation score at its last step, as its log records them
        last_step, val = _log(r["experiment"])
        assert (r["tag"], r["steps"]) == ("last", last_step)
        if "interpolation" in r:  # blended weights: the run's validation score was measured on other weights
            assert r["val_psnr_y"] is None
        else:  # None where the run stopped on its time budget between validations
            assert r["val_psnr_y"] == (pytest.approx(val[last_step], abs=1e-4) if last_step in val else None)
        recorded_config = json.loads((_record_dir(r["experiment"]) / "config.json").read_text())
        assert r["config"] == recorded_config
        assert ("lineage" in r) == (r is prov)
    assert prov["total_steps"] == total_steps(prov) == sum(r["steps"] for r in runs)
    assert prov["total_steps"] == {"surge-x4-psnr": 7000, "surge-x4": 7600, "surge-x4-real": 8402, "surge-x4-real-psnr": 3400}[name]  # the model card's figures
    if "interpolation" in prov:  # a blend of a bundled model and the last run's weights (surge interpolate)
        blend = prov["interpolation"]
        assert (blend["b"]["experiment"], blend["b"]["steps"]) == (prov["experiment"], prov["steps"])
        parent = read_provenance(bundled_path(Path(blend["a"]["file"]).stem))
        assert (blend["a"]["experiment"], blend["a"]["steps"]) == (parent["experiment"], parent["steps"])
        assert 0 < blend["alpha"] < 1
    recorded = json.loads((REPO / "docs" / "results" / f"{name}.json").read_text())
    for set_name, r in recorded.items():
        assert prov["scores"][set_name]["psnr_y"] == pytest.approx(r["psnr_y"], abs=1e-4)
        assert prov["scores"][set_name]["ssim_y"] == pytest.approx(r["ssim_y"], abs=1e-5)
    # Validation ran on Set5: the file's own score is its Set5 score, not the run's best.
    if prov["val_psnr_y"] is not None:
        assert prov["val_psnr_y"] == pytest.approx(prov["scores"]["Set5"]["psnr_y"], abs=1e-3)


# --- scripts/package_model.py ----------------------------------------------------------------


def _script(name: str):
    return load_script(f"scripts/{name}.py")


def _tensors(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _record(folder: Path, name: str, steps: int, init_from=None) -> Path:
    folder.mkdir(parents=True)
    config = {"data": {"train_dirs": ["x/T91"], "val_dir": "x/Set5", "batch_size": 2, "hr_size": 32},
              "optim": {"ema_decay": 0.999}, "loss": {"l1": True}, "train": {"name": name, "stage": "psnr", "init_from": init_from}}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "run.json").write_text(json.dumps({"tag": "last", "steps": steps, "wall_seconds": 10 * steps}))
    rows = [{"step": s, "loss_g": 0.1, "val_psnr_y": ""} for s in range(1, steps + 1)] + [{"step": steps, "loss_g": "", "val_psnr_y": 20.5 + steps}]
    with (folder / "log.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["step", "loss_g", "val_psnr_y"])
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_package_model_keeps_weights_and_rebuilds_provenance_from_records(tmp_path):
    package = _script("package_model")
    torch.manual_seed(0)
    source = save_model(SuRGeGenerator(GENERATOR_PRESETS["surge-tiny"]), tmp_path / "run.safetensors",
                        provenance={"tag": "last", "steps": 3, "val_psnr_y": 20.0})
    first = tmp_path / "first.safetensors"
    assert package.main([str(source), "m", "--out", str(first), "--machine", "cpu"]) == 0
    src, out = _tensors(source), _tensors(first)
    assert all(out[k].dtype == torch.float16 and torch.equal(out[k], src[k].half()) for k in src)
    assert read_provenance(first) == {"tag": "last", "steps": 3, "val_psnr_y": 20.0, "machine": "cpu", "storage": "float16"}

    a = _record(tmp_path / "rec" / "a", "a", 4)
    b = _record(tmp_path / "rec" / "b", "b", 2, init_from="runs/a/last.safetensors")
    again = tmp_path / "again.safetensors"
    assert package.main([str(first), "m", "--out", str(again), "--records", str(a), str(b)]) == 0
    redone = _tensors(again)
    assert all(torch.equal(redone[k].view(torch.int16), out[k].view(torch.int16)) for k in out)  # bit-identical
    prov = read_provenance(again)
    assert (prov["experiment"], prov["steps"], prov["val_psnr_y"], prov["init_from"]) == ("b", 2, 22.5, "runs/a/last.safetensors")
    assert [(e["experiment"], e["steps"], e["val_psnr_y"], e["wall_seconds"]) for e in prov["lineage"]] == [("a", 4, 24.5, 40)]
    assert prov["total_steps"] == 6 and prov["val_set"] == "Set5"

    (b / "run.json").write_text(json.dumps({"tag": "last", "steps": 5, "wall_seconds": 1}))
    with pytest.raises(SystemExit, match="run.json says 5 steps but log.csv ends at step 2"):
        package.main([str(first), "m", "--out", str(again), "--records", str(a), str(b)])
    (b / "run.json").write_text(json.dumps({"tag": "last", "steps": 2, "wall_seconds": 1}))
    with pytest.raises(SystemExit, match="is not a file of run 'b'"):
        package.main([str(first), "m", "--out", str(again), "--records", str(b), str(a)])


def test_info_shows_the_lineage_on_one_line(capsys):
    from surge.cli.main import main

    if "surge-x4" not in SHIPPED:
        pytest.skip("surge-x4 weights not installed")
    assert main(["info", "surge-x4"]) == 0
    out = capsys.readouterr().out
    assert "lineage:                  cpu-psnr (4400 steps) -> cpu-psnr-ft (2600 steps)\n" in out
    assert "total_steps:              7600" in out
