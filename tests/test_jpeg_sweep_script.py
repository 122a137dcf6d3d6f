"""scripts/jpeg_sweep.py: clean LR re-encoded at JPEG qualities, scored per model."""

import json

import numpy as np
import pytest
from PIL import Image

from script_loader import load_script
from surge.cli.main import main
from surge.imaging.bicubic import imresize

sweep = load_script("scripts/jpeg_sweep.py")


def _smooth(rng, h, w):
    small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


@pytest.fixture
def data(tmp_path):
    """Tiny/HR with LR files (one image), Other/ HR only (LR made from HR)."""
    rng = np.random.default_rng(0)
    for name, stems in (("Tiny", ("a",)), ("Other", ("b", "c"))):
        (tmp_path / "data" / name / "HR").mkdir(parents=True)
        for stem in stems:
            hr = _smooth(rng, 64, 72)
            Image.fromarray(hr).save(tmp_path / "data" / name / "HR" / f"{stem}.png")
            if name == "Tiny":
                (tmp_path / "data" / name / "LR_bicubic_X4").mkdir()
                Image.fromarray(imresize(hr, 0.25)).save(tmp_path / "data" / name / "LR_bicubic_X4" / f"{stem}x4.png")
    return tmp_path / "data"


def test_versions_are_the_clean_lr_and_its_jpeg_encodings(data, tmp_path):
    versions = sweep.build_versions(data, ["Tiny", "Other"], [30, 90], tmp_path / "work")
    assert versions == ["clean", "q30", "q90"]
    clean = np.asarray(Image.open(tmp_path / "work" / "clean" / "Tiny" / "LR_degraded_X4" / "ax4.png"))
    np.testing.assert_array_equal(clean, np.asarray(Image.open(data / "Tiny" / "LR_bicubic_X4" / "ax4.png")))
    hr = np.asarray(Image.open(data / "Other" / "HR" / "b.png"))
    made = np.asarray(Image.open(tmp_path / "work" / "clean" / "Other" / "LR_degraded_X4" / "bx4.png"))
    np.testing.assert_array_equal(made, imresize(hr, 0.25))
    q30 = np.asarray(Image.open(tmp_path / "work" / "q30" / "Tiny" / "LR_degraded_X4" / "ax4.png")).astype(int)
    q90 = np.asarray(Image.open(tmp_path / "work" / "q90" / "Tiny" / "LR_degraded_X4" / "ax4.png")).astype(int)
    assert np.abs(q30 - clean).mean() > np.abs(q90 - clean).mean() > 0


def test_end_to_end_scores_match_surge_eval_and_data_is_untouched(data, tmp_path, capsys):
    before = {p: p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file()}
    out_json = tmp_path / "sweep.json"
    assert sweep.main(["--data", str(data), "--sets", "Tiny", "Other", "--qualities", "30", "90",
                       "--models", "bicubic", "--json", str(out_json)]) == 0
    table = capsys.readouterr().out
    assert "| model | clean | q30 | q90 |" in table and "| bicubic | **" in table
    scores = json.loads(out_json.read_text())["psnr_y"]["bicubic"]
    assert scores["clean"]["Other"] > scores["q90"]["Other"] > scores["q30"]["Other"]
    # The clean version is the set as `surge eval` scores it.
    assert main(["eval", "--model", "bicubic", "--data", str(data), "--sets", "Tiny", "Other", "--device", "cpu",
                 "--quiet", "--json", str(tmp_path / "eval.json")]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    for name in ("Tiny", "Other"):
        assert scores["clean"][name] == pytest.approx(evaluated[name]["psnr_y"], abs=1e-9)
    assert {p: p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file()} == before


def test_qualities_out_of_range_are_refused(data):
    with pytest.raises(SystemExit):
        sweep.main(["--data", str(data), "--sets", "Tiny", "--qualities", "0", "--models", "bicubic"])
