"""scripts/pack_data.py --fit: training images left out deterministically to fit a byte budget."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from script_loader import REPO

# registered in sys.modules, which its dataclass needs (script_loader.load_script does not register)
_spec = importlib.util.spec_from_file_location("pack_data", REPO / "scripts" / "pack_data.py")
pd = sys.modules.setdefault("pack_data", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(pd)
MIB = 2**20


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """train/A (3 images), train/B (5, of different sizes), bench/S (HR + LR_bicubic_X4)."""
    root = tmp_path_factory.mktemp("src")
    rng = np.random.default_rng(1)

    def save(path, h, w):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(path)  # noise: bytes ~ pixels

    for i in range(3):
        save(root / "train" / "A" / f"a{i}.png", 16, 16)
    for i, side in enumerate((24, 12, 20, 16, 28)):
        save(root / "train" / "B" / f"b{i}.png", side, side)
    save(root / "bench" / "S" / "HR" / "x.png", 16, 16)
    save(root / "bench" / "S" / "LR_bicubic_X4" / "xx4.png", 4, 4)
    return root


def _pack(sources, out, budget_mib, fit=True):
    return pd.pack([sources / "train" / "A", sources / "train" / "B"], [("S", sources / "bench" / "S")],
                   out, budget_mib, force=False, fit=fit)


def _sizes(out):
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def full(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "pack"
    return out, _pack(sources, out, 60.0, fit=False)


def test_without_fit_everything_is_packed(full):
    out, manifest = full
    assert manifest["left_out"] == [] and len(manifest["files"]) == 10
    assert _sizes(out) <= manifest["budget_bytes"]


def test_fit_keeps_first_folder_whole_then_a_sorted_prefix(sources, full, tmp_path):
    _, whole = full
    sizes = {f["source"]: f["bytes"] for f in whole["files"]}
    order = [str(sources / "train" / "A" / f"a{i}.png") for i in range(3)] + \
            [str(sources / "train" / "B" / f"b{i}.png") for i in range(5)]
    # room for everything but b2..b4 (manifest.json is counted at its largest, every image listed)
    manifest_most = len(json.dumps(whole | {"fit": True}, indent=1).encode())
    budget = whole["total_bytes"] + manifest_most - sum(sizes[s] for s in order[5:])
    m = _pack(sources, tmp_path / "p", budget / MIB)
    packed = [f["source"] for f in m["files"]]
    assert [s for s in packed if "/train/" in s] == order[:5]
    assert [e["source"] for e in m["left_out"]] == order[5:]
    assert [e["packed"] for e in m["left_out"]] == ["train/B/b2", "train/B/b3", "train/B/b4"]
    assert sum(1 for s in packed if "/bench/" in s) == 2  # the benchmark set is whole
    on_disk = sorted(str(p.relative_to(tmp_path / "p")) for p in (tmp_path / "p").rglob("*") if p.is_file())
    assert on_disk == sorted([f["packed"] for f in m["files"]] + ["manifest.json"])
    assert _sizes(tmp_path / "p") <= m["budget_bytes"]
    # the same sources and budget give the same choice
    again = _pack(sources, tmp_path / "q", budget / MIB)
    assert again["left_out"] == m["left_out"] and [f["source"] for f in again["files"]] == packed


def test_fit_is_never_over_budget(sources, full, tmp_path):
    _, whole = full
    bench = sum(f["bytes"] for f in whole["files"] if "/bench/" in f["source"])
    kept = []
    for k, extra in enumerate(range(4000, whole["total_bytes"] - bench + 6000, 900)):
        out = tmp_path / f"p{k}"
        try:
            m = _pack(sources, out, (bench + extra) / MIB)
        except pd.PackError as exc:
            assert "not one training image fits" in str(exc) and not out.exists()
            continue
        assert _sizes(out) <= m["budget_bytes"]
        assert len(m["files"]) + len(m["left_out"]) == 10
        kept.append(len(m["files"]))
    assert kept == sorted(kept) and kept[-1] == 10 and kept[0] < 10  # more budget, never fewer images


def test_a_wholly_left_out_folder_leaves_no_empty_folder(sources, full, tmp_path):
    _, whole = full
    a_and_bench = sum(f["bytes"] for f in whole["files"] if "/train/B/" not in f["source"])
    m = _pack(sources, tmp_path / "p", (a_and_bench + len(json.dumps(whole, indent=1)) + 60) / MIB)
    assert len(m["left_out"]) == 5 and not (tmp_path / "p" / "train" / "B").exists()
    assert (tmp_path / "p" / "train" / "A").is_dir()


def test_benchmarks_alone_over_budget_is_refused(sources, full, tmp_path):
    _, whole = full
    bench = sum(f["bytes"] for f in whole["files"] if "/bench/" in f["source"])
    with pytest.raises(pd.PackError, match="benchmark sets alone"):
        _pack(sources, tmp_path / "p", bench / 2 / MIB)
    assert not (tmp_path / "p").exists()
    assert not list(tmp_path.glob(".p.*"))  # no staging folder left behind


def test_cli_fit_reports_the_left_out_images(sources, full, tmp_path):
    _, whole = full
    cmd = [sys.executable, str(REPO / "scripts" / "pack_data.py"), str(sources / "train" / "A"),
           str(sources / "train" / "B"), "--bench", str(sources / "bench" / "S"), "--out", str(tmp_path / "p"),
           "--budget-mib", str((whole["total_bytes"] + 1000) / MIB)]
    over = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert over.returncode == 2 and "--fit" in over.stderr  # without --fit: refused, the way out named
    proc = subprocess.run(cmd + ["--fit"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert m["fit"] and m["left_out"]
    assert f"left out to fit the budget: {len(m['left_out'])} training images" in proc.stdout
