"""scripts/bench_components.py: bench-v1 rebuilt with steps left out, and scored."""

import json

import numpy as np
import pytest
from PIL import Image

from script_loader import load_script
from surge.cli.main import main
from surge.data.degradations import bench_v1, bench_v1_params

components = load_script("scripts/bench_components.py")


@pytest.mark.parametrize("shape", [(48, 40, 3), (36, 44)])
def test_the_bench_v1_variant_is_bench_v1_and_each_left_out_step_changes_the_lr(shape):
    hr = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    params = bench_v1_params(0, "Tiny/x")
    variants = {k: bench_v1(hr, params, noise=n, jpeg=j).astype(int) for k, (n, j) in components.VARIANTS.items()}
    np.testing.assert_array_equal(variants["bench-v1"], bench_v1(hr, params))
    for name in ("blur", "blur+noise", "blur+jpeg"):
        assert np.abs(variants[name] - variants["bench-v1"]).max() > 0, name
    assert variants["blur"].shape == variants["bench-v1"].shape


def test_end_to_end_on_a_tiny_degraded_set(tmp_path, capsys):
    rng = np.random.default_rng(1)
    (tmp_path / "data" / "Tiny" / "HR").mkdir(parents=True)
    for stem in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (48, 52, 3), dtype=np.uint8)).save(tmp_path / "data" / "Tiny" / "HR" / f"{stem}.png")
    assert main(["degrade", "--data", str(tmp_path / "data"), "--sets", "Tiny", "-o", str(tmp_path / "deg")]) == 0
    before = {p: p.read_bytes() for p in sorted((tmp_path / "deg").rglob("*")) if p.is_file()}
    capsys.readouterr()
    out_json = tmp_path / "scores.json"
    assert components.main(["--data", str(tmp_path / "deg"), "--sets", "Tiny", "--models", "bicubic",
                            "--json", str(out_json)]) == 0
    table = capsys.readouterr().out
    assert "| bicubic |" in table and "blur+jpeg" in table
    scores = json.loads(out_json.read_text())
    assert set(scores["bicubic"]) == set(components.VARIANTS)
    assert scores["bicubic"]["blur"]["Tiny"] != scores["bicubic"]["bench-v1"]["Tiny"]
    assert {p: p.read_bytes() for p in sorted((tmp_path / "deg").rglob("*")) if p.is_file()} == before
    with pytest.raises(SystemExit, match="no recipe.json"):
        components.main(["--data", str(tmp_path / "data"), "--sets", "Tiny", "--models", "bicubic"])
