"""scripts/device_prepare.py: wheel, state and the largest pack that fits, as one command."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from script_loader import REPO
from training_helpers import random_hr_folder, write_tiny_config

SCRIPT = REPO / "scripts" / "device_prepare.py"
MIB = 2**20
WHEEL = "pot-0.9.6.post1-cp312-cp312-manylinux_2_17_x86_64.whl"


@pytest.fixture()
def tree(tmp_path):
    """A git work tree as the tool would carry it (one tracked file, the repo's ignore rules) and
    noise images (incompressible: bytes grow with pixels) to pack."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".gitignore").write_text("/.pack/\n/.whl/\n/.carry/\n/.bench-v1/\n")
    (repo / "code.bin").write_bytes(b"x" * 200_000)
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.org", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "tree"], check=True)
    rng = np.random.default_rng(0)
    for folder, count in (("A", 3), ("B", 5)):
        for i in range(count):
            path = tmp_path / "train" / folder / f"{folder.lower()}{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(path)
    for sub, side in (("HR", 32), ("LR_bicubic_X4", 8)):
        (tmp_path / "bench" / "S" / sub).mkdir(parents=True)
        Image.fromarray((rng.random((side, side, 3)) * 255).astype(np.uint8)).save(tmp_path / "bench" / "S" / sub / "x.png")
    return repo


def _wheel(repo, size=100_000):
    (repo / ".whl").mkdir()
    (repo / ".whl" / WHEEL).write_bytes(b"w" * size)


def _earlier_carry(repo):
    """A .carry/ an earlier prepare left (its content a marker: nothing here reads it as a state)."""
    (repo / ".carry").mkdir()
    (repo / ".carry" / "state-00.safetensors").write_bytes(b"earlier")


def _prepare(repo, *args):
    train = [repo.parent / "train" / "A", repo.parent / "train" / "B"]
    cmd = [sys.executable, str(SCRIPT), "--repo", str(repo), "--no-download", "--jobs", "1",
           "--train", *map(str, train), "--bench", f"S={repo.parent / 'bench' / 'S'}", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _carried_bytes(repo, *paths):
    tracked = sum((repo / n).stat().st_size for n in (".gitignore", "code.bin"))
    return tracked + sum(p.stat().st_size for x in paths for p in (repo / x).rglob("*") if p.is_file())


def test_the_pack_fills_what_the_tree_and_wheel_leave_and_the_call_is_printed(tree):
    _wheel(tree)
    # 0.5 MiB margin + tree (~0.19 MiB) + wheel (~0.1 MiB) + room for about half the ~12 kB images
    limit = 0.5 + (200_000 + 100_000 + 60_000) / MIB
    done = _prepare(tree, "--limit-mib", f"{limit:.4f}")
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads((tree / ".pack" / "manifest.json").read_text())
    assert manifest["left_out"], "the budget was chosen so that not every training image fits"
    assert any("a0" in str(f) for f in manifest["files"]), "packing order: the first folder first"
    assert _carried_bytes(tree, ".pack", ".whl") <= (limit - 0.5) * MIB
    assert 'carry:     [".pack", ".whl"]' in done.stdout and "bash scripts/device_session.sh" in done.stdout
    assert not (tree / ".carry").exists()


def test_a_generous_limit_packs_everything(tree):
    _wheel(tree)
    done = _prepare(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads((tree / ".pack" / "manifest.json").read_text())
    assert manifest["left_out"] == [] and len(manifest["files"]) == 8 + 2


def test_a_missing_wheel_without_download_is_one_line_naming_the_folder(tree):
    done = _prepare(tree)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"device_prepare: error: {tree / '.whl'}: no POT==0.9.6.post1 wheel there and --no-download given")
    assert not (tree / ".pack").exists()


def test_no_room_for_data_is_refused_before_packing(tree):
    _wheel(tree, size=400_000)
    done = _prepare(tree, "--limit-mib", "0.7")
    assert done.returncode == 2
    assert "leave -" in done.stderr and "--state-mib" in done.stderr
    assert not (tree / ".pack").exists()


def test_a_state_folder_without_a_travel_state_is_refused_and_a_stale_carry_is_kept(tree):
    _wheel(tree)
    _earlier_carry(tree)
    empty = tree.parent / "returned"
    empty.mkdir()
    done = _prepare(tree, "--state", empty)
    assert done.returncode == 2
    assert f"{empty}: not a folder holding a travel state" in done.stderr
    assert (tree / ".carry" / "state-00.safetensors").read_bytes() == b"earlier"


def test_a_fresh_start_removes_an_earlier_carried_state(tree):
    _wheel(tree)
    _earlier_carry(tree)
    done = _prepare(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (tree / ".carry").exists()
    assert 'carry:     [".pack", ".whl"]' in done.stdout


def test_a_returned_state_is_repacked_into_carry_within_its_budget(tree, tmp_path):
    from surge.train import main as train_main
    from surge.training import travel
    from surge.training.checkpoint import load_checkpoint

    hr = random_hr_folder(tmp_path / "hr", 4, (40, 48), noise=(20, 24))
    config = write_tiny_config(tmp_path / "tiny.toml", hr, steps=2)
    assert train_main([str(config), "--run-dir", str(tmp_path / "run")]) == 0
    returned = tmp_path / "returned"  # what a device call gives back: the exact state in parts
    travel.save_travel_state(load_checkpoint(tmp_path / "run" / "last.pt"), returned, profile="exact")
    lean = travel._layout(load_checkpoint(tmp_path / "run" / "last.pt"), None, "lean", 16 * MIB).size()
    budget = math.ceil(lean / MIB * 10_000) / 10_000  # lean fits, compact (EMA and moments kept) does not
    _wheel(tree)
    done = _prepare(tree, "--state", returned, "--state-mib", f"{budget:.4f}")
    assert done.returncode == 0, done.stdout + done.stderr
    state, info = travel.load_travel_state(tree / ".carry")
    assert info["profile"] == "lean" and state["step"] == 2
    assert sum(p.stat().st_size for p in (tree / ".carry").iterdir()) <= budget * MIB
    assert 'carry:     [".pack", ".whl", ".carry"]' in done.stdout


def test_a_state_that_cannot_be_repacked_leaves_the_earlier_carry_as_it_was(tree):
    _wheel(tree)
    _earlier_carry(tree)
    broken = tree.parent / "returned"
    broken.mkdir()
    (broken / "state-00.safetensors").write_bytes(b"not a safetensors file")
    done = _prepare(tree, "--state", broken)
    assert done.returncode == 2 and "device_prepare: error: state failed" in done.stderr
    assert (tree / ".carry" / "state-00.safetensors").read_bytes() == b"earlier"
    assert sorted(p.name for p in tree.iterdir() if p.name.startswith(".carry")) == [".carry"]  # no staging left
