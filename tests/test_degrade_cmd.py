"""`surge degrade`: a reproducible real-world benchmark in a layout `surge eval` reads."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from surge.cli.main import main
from surge.evaluation.datasets import discover_set, load_pair

REPO = Path(__file__).resolve().parents[1]


def make_set(root: Path, name: str = "Tiny") -> Path:
    """HR images of sizes that are not multiples of 4, one grayscale, plus the set's own bicubic LR folder."""
    rng = np.random.default_rng(0)
    hr_dir = root / name / "HR"
    hr_dir.mkdir(parents=True)
    for stem, shape in (("a", (50, 42, 3)), ("b", (37, 61, 3)), ("g", (44, 36))):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(hr_dir / f"{stem}.png")
    (root / name / "LR_bicubic_X4").mkdir()  # ignored: degrade reads HR only
    return root / name


def pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(folder).as_posix(): np.asarray(Image.open(p)) for p in sorted(folder.rglob("*.png"))}


def degrade(data: Path, out: Path, *extra) -> int:
    return main(["degrade", "--data", str(data), "--sets", "Tiny", "-o", str(out), *map(str, extra)])


def test_output_is_deterministic_and_read_by_eval_discovery(tmp_path, capsys):
    make_set(tmp_path / "data")
    assert degrade(tmp_path / "data", tmp_path / "o1") == 0
    assert degrade(tmp_path / "data", tmp_path / "o2") == 0
    first, second = pixels(tmp_path / "o1" / "Tiny"), pixels(tmp_path / "o2" / "Tiny")
    assert sorted(first) == ["HR/a.png", "HR/b.png", "HR/g.png", "LR_degraded_X4/ax4.png", "LR_degraded_X4/bx4.png", "LR_degraded_X4/gx4.png"]
    assert all(np.array_equal(first[k], second[k]) for k in first)
    recipe = json.loads((tmp_path / "o1" / "Tiny" / "recipe.json").read_text())
    assert recipe["name"] == "bench-v1" and recipe["seed"] == 0 and sorted(recipe["images"]) == ["a", "b", "g"]

    bench = discover_set(tmp_path / "o1" / "Tiny")
    assert not bench.skipped and [p.lr_path.parent.name for p in bench.pairs] == ["LR_degraded_X4"] * 3
    for pair in bench.pairs:
        lr, hr = load_pair(pair)  # sizes pair exactly: HR was cropped to a multiple of 4
        assert hr.shape[:2] == (4 * lr.shape[0], 4 * lr.shape[1]) and lr.ndim == hr.ndim
    assert lr.ndim == 2  # the grayscale image stays grayscale
    src = np.asarray(Image.open(tmp_path / "data" / "Tiny" / "HR" / "b.png"))
    np.testing.assert_array_equal(first["HR/b.png"], src[:36, :60])


def test_seed_changes_the_lr_and_eval_runs_on_the_output(tmp_path, capsys):
    make_set(tmp_path / "data")
    degrade(tmp_path / "data", tmp_path / "o1")
    degrade(tmp_path / "data", tmp_path / "o2", "--seed", 1)
    a, b = pixels(tmp_path / "o1" / "Tiny"), pixels(tmp_path / "o2" / "Tiny")
    assert np.array_equal(a["HR/a.png"], b["HR/a.png"]) and not np.array_equal(a["LR_degraded_X4/ax4.png"], b["LR_degraded_X4/ax4.png"])
    scores = tmp_path / "scores.json"
    assert main(["eval", "--model", "bicubic", "--data", str(tmp_path / "o1"), "--sets", "Tiny", "--quiet", "--json", str(scores)]) == 0
    result = json.loads(scores.read_text())["Tiny"]
    assert result["complete"] and result["images"] == 3 and result["lr_source"] == "files"  # the degraded LR, not bicubic from HR


def test_rerun_replaces_its_own_output_but_never_inputs_or_foreign_folders(tmp_path, capsys):
    data = tmp_path / "data"
    set_dir = make_set(data)
    before = pixels(set_dir)
    assert degrade(data, tmp_path / "out") == 0
    (tmp_path / "out" / "Tiny" / "stale.txt").write_text("from an older run")
    assert degrade(data, tmp_path / "out", "--overwrite") == 0  # a previous `surge degrade` output is replaced whole
    assert not (tmp_path / "out" / "Tiny" / "stale.txt").exists()
    capsys.readouterr()

    assert degrade(data, data) == 2  # would write into the input set
    assert degrade(data, set_dir / "HR") == 2  # inside it
    foreign = tmp_path / "foreign" / "Tiny"
    foreign.mkdir(parents=True)
    (foreign / "keep.png").write_bytes(b"x")
    assert degrade(data, tmp_path / "foreign") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("surge: error: ") for line in err)
    assert "overlap the input set" in err[0] and "not written by `surge degrade`" in err[2]
    assert (foreign / "keep.png").read_bytes() == b"x"
    after = pixels(set_dir)
    assert sorted(after) == sorted(before) and all(np.array_equal(before[k], after[k]) for k in before)


def test_an_existing_output_needs_overwrite(tmp_path, capsys):
    """Issue 22: a rerun silently replaced the earlier benchmark files and recipe.json."""
    data = tmp_path / "data"
    make_set(data)
    assert degrade(data, tmp_path / "out") == 0
    recipe = tmp_path / "out" / "Tiny" / "recipe.json"
    recipe.write_text(recipe.read_text().replace('"seed": 0', '"seed": 0, "note": "mine"'))
    before = pixels(tmp_path / "out" / "Tiny")
    capsys.readouterr()
    assert degrade(data, tmp_path / "out", "--seed", 1) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err and "Tiny" in err
    assert '"note": "mine"' in recipe.read_text()
    after = pixels(tmp_path / "out" / "Tiny")
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert degrade(data, tmp_path / "out", "--seed", 1, "--overwrite") == 0
    assert json.loads(recipe.read_text())["seed"] == 1


def test_a_bad_image_fails_the_set_without_leaving_anything(tmp_path, capsys):
    data = tmp_path / "data"
    make_set(data)
    (data / "Tiny" / "HR" / "broken.png").write_bytes(b"not a png")
    assert degrade(data, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("surge: error: ") and "broken.png" in err and "\n" not in err
    assert list((tmp_path / "out").iterdir()) == []  # no set folder, no temp folder


def test_unknown_set_is_refused_before_writing(tmp_path, capsys):
    make_set(tmp_path / "data")
    assert main(["degrade", "--data", str(tmp_path / "data"), "--sets", "Tiny", "Nope", "-o", str(tmp_path / "out")]) == 2
    assert "Nope" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_bench_v1_set5_reproduces_the_published_recipe(shared_datasets, tmp_path, capsys):
    """Rerunning the published benchmark gives the pixels recorded in docs/results/real-world/."""
    published = json.loads((REPO / "docs" / "results" / "real-world" / "bench-v1-Set5.json").read_text())
    out = tmp_path / "deg"
    assert main(["degrade", "--data", str(shared_datasets / "benchmark"), "--sets", "Set5", "-o", str(out)]) == 0
    recipe = json.loads((out / "Set5" / "recipe.json").read_text())
    for key in ("name", "steps", "parameters", "seed", "lr_folder"):
        assert recipe[key] == published[key]
    assert recipe["images"] == published["images"]  # parameters and pixel hashes, image by image
