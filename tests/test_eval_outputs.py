"""`surge eval` never writes over its inputs or into the sets it reads, and never merges two images."""

import os

import numpy as np
import pytest
from PIL import Image

from surge.cli.main import main
from surge.errors import DatasetError, ImageWriteError
from surge.evaluation import evaluate
from surge.evaluation.datasets import clear_cache, discover_set
from surge.imaging.bicubic import imresize
from surge.models.config import GENERATOR_PRESETS
from surge.models.files import save_model
from surge.models.generator import SuRGeGenerator


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()


def _hr(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (40, 36, 3), dtype=np.uint8)


def _set(root, name="Tiny", layout="selfexsr", n=2):
    set_dir = root / name
    for i in range(n):
        hr = _hr(i)
        if layout == "selfexsr":
            (set_dir / "HR").mkdir(parents=True, exist_ok=True)
            (set_dir / "LR_bicubic_X4").mkdir(parents=True, exist_ok=True)
            Image.fromarray(hr).save(set_dir / "HR" / f"im{i}.png")
            Image.fromarray(imresize(hr, 0.25)).save(set_dir / "LR_bicubic_X4" / f"im{i}x4.png")
        else:  # HR only, images directly in the set folder
            set_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(hr).save(set_dir / f"im{i}.png")
    return set_dir


def _eval(tmp_path, *extra, model="bicubic"):
    return main(["eval", "--model", model, "--data", str(tmp_path / "bench"), "--sets", "Tiny", "--quiet", *extra])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("surge: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("target", ["HR/im0.png", "LR_bicubic_X4/im1x4.png"])
def test_json_over_an_input_image_is_refused(tmp_path, capsys, target):
    set_dir = _set(tmp_path / "bench")
    victim = set_dir / target
    before = victim.read_bytes()
    assert _eval(tmp_path, "--json", str(victim)) == 2
    err = _one_line_error(capsys)
    assert "is the input file" in err and target.split("/")[-1] in err
    assert victim.read_bytes() == before


def test_json_through_a_link_to_an_input_is_refused(tmp_path, capsys):
    set_dir = _set(tmp_path / "bench")
    victim = set_dir / "HR" / "im0.png"
    before = victim.read_bytes()
    (tmp_path / "scores.json").symlink_to(victim)
    os.link(victim, tmp_path / "hard.json")
    for name in ("scores.json", "hard.json"):
        assert _eval(tmp_path, "--json", str(tmp_path / name)) == 2
        assert "is the input file" in _one_line_error(capsys)
    assert victim.read_bytes() == before


def test_json_over_the_model_file_is_refused(tmp_path, capsys):
    _set(tmp_path / "bench")
    weights = save_model(SuRGeGenerator(GENERATOR_PRESETS["surge-tiny"]), tmp_path / "m.safetensors")
    before = weights.read_bytes()
    assert _eval(tmp_path, "--json", str(weights), model=str(weights)) == 2
    assert "m.safetensors: is the input file" in _one_line_error(capsys)
    assert weights.read_bytes() == before


@pytest.mark.parametrize("where", ["bench", "bench/Tiny", "bench/Tiny/sr"])
def test_save_sr_inside_a_set_being_read_is_refused(tmp_path, capsys, where):
    set_dir = _set(tmp_path / "bench", layout="flat")
    before = sorted(p.relative_to(set_dir) for p in set_dir.rglob("*"))
    assert _eval(tmp_path, "--save-sr", str(tmp_path / where)) == 2
    assert "inside the benchmark set folder" in _one_line_error(capsys)
    assert sorted(p.relative_to(set_dir) for p in set_dir.rglob("*")) == before
    # What the refusal prevents: the next eval of the HR-only set would score the SR images as HR.
    assert discover_set(set_dir).total == 2


def test_save_sr_into_one_set_while_reading_another_is_refused_before_any_work(tmp_path):
    _set(tmp_path / "bench", "A")
    _set(tmp_path / "bench", "B", layout="flat")
    calls = []
    from surge.evaluation.runner import Predictor

    fn = Predictor.from_function(lambda lr: calls.append(1) or imresize(lr, 4), "fn")
    with pytest.raises(ImageWriteError, match="inside the benchmark set folder"):
        evaluate(fn, tmp_path / "bench", ["A", "B"], save_sr=tmp_path / "bench" / "B" / "out")
    assert not calls and not (tmp_path / "bench" / "B" / "out").exists()


def test_save_sr_and_json_elsewhere_still_work(tmp_path, capsys):
    _set(tmp_path / "bench", layout="flat")
    assert _eval(tmp_path, "--save-sr", str(tmp_path / "sr"), "--json", str(tmp_path / "s.json")) == 0, capsys.readouterr().err
    assert len(list((tmp_path / "sr" / "Tiny").glob("*.png"))) == 2 and (tmp_path / "s.json").is_file()


@pytest.mark.parametrize("layout", ["selfexsr", "flat"])
def test_two_images_with_the_same_stem_are_reported(tmp_path, capsys, layout):
    set_dir = _set(tmp_path / "bench", layout=layout)
    hr_dir = set_dir / "HR" if layout == "selfexsr" else set_dir
    Image.fromarray(_hr(7)).save(hr_dir / "im0.bmp")
    with pytest.raises(DatasetError, match=r"im0\.bmp and im0\.png: two images named 'im0'"):
        discover_set(set_dir)
    assert _eval(tmp_path) == 2
    err = _one_line_error(capsys)
    assert "im0.bmp" in err and "im0.png" in err


def test_two_lr_candidates_for_one_hr_are_named(tmp_path, capsys):
    set_dir = _set(tmp_path / "bench")
    (set_dir / "LR_bicubic_X4" / "im0x4.png").rename(set_dir / "LR_bicubic_X4" / "im0x4.bmp")
    Image.open(set_dir / "LR_bicubic_X4" / "im0x4.bmp").save(set_dir / "LR_bicubic_X4" / "im0x4.tif")
    bench = discover_set(set_dir)
    assert [p.name for p in bench.pairs] == ["im1"]
    assert [s.name for s in bench.skipped] == ["im0"]
    assert "im0x4.bmp and im0x4.tif are all LR candidates" in bench.skipped[0].reason
    assert _eval(tmp_path) == 1
