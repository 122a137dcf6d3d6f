"""`surge compare` and the report helpers, on a tiny synthetic set."""

import json

import numpy as np
import pytest
from PIL import Image

from surge.cli.main import main
from surge.errors import DatasetError, SurgeError
from surge.evaluation.datasets import clear_cache
from surge.evaluation.reference import BICUBIC, REFERENCES, canonical_set, find_reference
from surge.evaluation.report import (
    CropSpec, ModelEntry, format_params, load_results_json, markdown_table, most_detailed_window,
)
from surge.evaluation.runner import evaluate
from test_eval import _broken_set, make_set  # tests/ is on sys.path (pytest rootdir-less import)


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()


@pytest.fixture
def bench(tmp_path):
    make_set(tmp_path / "bench", "SetA")
    make_set(tmp_path / "bench", "SetB", n=2, gray=False)
    return tmp_path / "bench"


def test_compare_writes_table_figure_and_reusable_results(bench, tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main(["compare", "--models", "bicubic", "surge-tiny", "--data", str(bench), "--sets", "SetA", "SetB",
               "--out", str(out), "--crops", "SetA/im1:4,8,24", "SetB/im0", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    md = (out / "comparison.md").read_text()
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"bicubic", "surge-tiny"}
    for model in results:
        assert results[model]["SetA"]["images"] == 4 and results[model]["SetB"]["images"] == 2
    bic = results["bicubic"]["SetA"]
    assert f"| **bicubic** | 0 | {bic['psnr_y']:.2f} / {bic['ssim_y']:.4f} |" in md
    assert "| **surge-tiny** |" in md
    assert "| SRCNN | 57K |" not in md  # no published row has SetA/SetB
    assert "![zoomed crops](crops.png)" in md
    with Image.open(out / "crops.png") as fig:
        assert fig.format == "PNG" and fig.width > 400 and fig.height > 300
    assert not list(out.glob(".*.tmp"))

    # Reusing the scores: nothing is re-evaluated, and the table is identical.
    capsys.readouterr()
    out2 = tmp_path / "cmp2"
    rc = main(["compare", "--models", "bicubic", "--results", str(out / "results.json"), "--data", str(bench),
               "--sets", "SetA", "SetB", "--out", str(out2), "--quiet"])
    assert rc == 0
    assert "evaluating" not in capsys.readouterr().out
    md2 = (out2 / "comparison.md").read_text()
    assert f"{bic['psnr_y']:.2f} / {bic['ssim_y']:.4f}" in md2
    assert "| **surge-tiny** |" in md2 and "from results.json" in md2


def test_compare_with_published_sets_shows_reference_rows(tmp_path, capsys):
    make_set(tmp_path / "bench", "Set5", n=1, gray=False)
    rc = main(["compare", "--models", "bicubic", "--data", str(tmp_path / "bench"), "--sets", "Set5",
               "--out", str(tmp_path / "cmp"), "--quiet"])
    assert rc == 0
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    for ref in REFERENCES:
        psnr, ssim = ref.scores["Set5"]
        assert f"| {ref.model} | {ref.params} | {psnr:.2f} / {ssim:.4f} | published |" in md
    rc = main(["compare", "--models", "bicubic", "--data", str(tmp_path / "bench"), "--sets", "Set5",
               "--out", str(tmp_path / "cmp2"), "--no-reference", "--quiet"])
    assert "published" not in (tmp_path / "cmp2" / "comparison.md").read_text().split("|---|")[-1]


def test_compare_flags_incomplete_sets(tmp_path, capsys):
    _broken_set(tmp_path / "bench")
    rc = main(["compare", "--models", "bicubic", "--data", str(tmp_path / "bench"), "--sets", "Tiny",
               "--out", str(tmp_path / "cmp"), "--crops", "Tiny/ok", "--quiet"])
    assert rc == 1
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "(1/5 images)*" in md and "mean over 1 of 5 images" in md and "im0" in md


@pytest.mark.parametrize(("crop", "message"), [
    ("SetA/nope", "no image 'nope'"),
    ("SetA/im0:40,40,24", "window exceeds the 40x48 HR image"),
    ("SetA", "expected SET/IMAGE"),
    ("SetA/im0:1,2", "three integers"),
])
def test_bad_crops_are_one_line_errors(bench, tmp_path, capsys, crop, message):
    rc = main(["compare", "--models", "bicubic", "--data", str(bench), "--sets", "SetA",
               "--out", str(tmp_path / "cmp"), "--crops", crop, "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("surge: error:") and err.count("\n") == 1


def test_compare_needs_models_or_results(tmp_path, capsys):
    assert main(["compare", "--data", str(tmp_path)]) == 2
    assert "--models" in capsys.readouterr().err


def test_load_results_json_accepts_eval_output_and_rejects_garbage(bench, tmp_path):
    results = evaluate("bicubic", bench, ["SetA"])
    eval_json = tmp_path / "e.json"
    eval_json.write_text(json.dumps({k: v.to_dict() for k, v in results.items()}))
    [entry] = load_results_json(eval_json)
    assert entry.name == "bicubic" and entry.params == 0
    assert entry.result("SetA").psnr_y == pytest.approx(results["SetA"].psnr_y)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="bad.json: not a readable JSON"):
        load_results_json(bad)
    bad.write_text(json.dumps({"SetA": {"psnr_y": 1}}))
    with pytest.raises(DatasetError, match="bad.json"):
        load_results_json(bad)
    with pytest.raises(DatasetError, match="not found"):
        load_results_json(tmp_path / "missing.json")


def test_markdown_table_rows():
    md = markdown_table([ModelEntry("x", {}, params=1_234_567)], ["Set5", "Urban100"], references=[BICUBIC])
    lines = md.splitlines()
    assert lines[0] == "| model | params | Set5 | Urban100 | source |"
    assert lines[2] == "| **x** | 1.23M | - | - | measured |"
    assert lines[3] == "| Bicubic | 0 | 28.42 / 0.8104 | 23.14 / 0.6577 | published |"


def test_crop_spec_and_detail_window():
    assert CropSpec.parse("Set5/butterfly:10,20,64") == CropSpec("Set5", "butterfly", 10, 20, 64)
    assert str(CropSpec.parse("Set14/img_001")) == "Set14/img_001"
    with pytest.raises(SurgeError):
        CropSpec.parse("Set5/b:1,2,3")
    img = np.full((64, 80, 3), 128, np.uint8)
    img[30:46, 50:66] = np.random.default_rng(0).integers(0, 256, (16, 16, 3))
    x, y = most_detailed_window(img, 16)
    assert abs(x - 50) <= 1 and abs(y - 30) <= 1


def test_reference_lookup_and_params():
    assert find_reference("bicubic") is BICUBIC
    assert find_reference("swinir").params == "11.9M"
    with pytest.raises(KeyError):
        find_reference("nonexistent")
    assert canonical_set("B100") == "BSD100" and canonical_set("set14") == "Set14"
    assert [format_params(n) for n in (0, 5_779, 57_000, 1_500_000, None)] == ["0", "5.8K", "57K", "1.50M", "?"]
