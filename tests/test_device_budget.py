"""scripts/device_budget.py on a temporary git repository: what a device call would carry."""

import shutil
import subprocess
import sys

import pytest

from script_loader import REPO, load_script

budget = load_script("scripts/device_budget.py")
MIB = 2**20

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "r"
    r.mkdir()
    _git(r, "init", "-q")
    (r / ".gitignore").write_text("/.pack/\n/.whl/\n")  # 15 bytes
    (r / "a.txt").write_bytes(b"x" * 1000)
    (r / "sub").mkdir()
    (r / "sub" / "b.bin").write_bytes(b"y" * 3000)
    _git(r, "add", ".gitignore", "a.txt", "sub/b.bin")
    (r / "new.txt").write_bytes(b"z" * 500)  # untracked, not ignored: travels
    (r / ".pack" / "train").mkdir(parents=True)
    (r / ".pack" / "train" / "i.webp").write_bytes(b"p" * 7000)
    (r / ".pack" / "manifest.json").write_bytes(b"m" * 100)
    (r / ".whl").mkdir()  # ignored and not carried: must not count
    (r / ".whl" / "w.whl").write_bytes(b"w" * 9000)
    return r


def test_sums_tracked_untracked_and_carry(repo):
    rows = dict(budget.measure(repo, [".pack", ".carry"]))
    assert rows["tracked files (git ls-files)"] == 15 + 1000 + 3000
    assert rows["untracked, not ignored"] == 500
    assert rows["carry .pack"] == 7100
    assert rows["carry .carry"] == 0  # absent: nothing travels
    assert sum(rows.values()) == 11615  # .whl, ignored and not named, is left out


def test_deleted_tracked_file_counts_nothing(repo):
    (repo / "sub" / "b.bin").unlink()
    assert dict(budget.measure(repo, []))["tracked files (git ls-files)"] == 1015


def test_exit_status_and_left(repo, capsys):
    args = ["--repo", str(repo), "--carry", ".pack", ".whl"]
    # total 20615 bytes; limit 0.02 MiB (20971 bytes), margin 0: fits with 356 bytes left
    assert budget.main(args + ["--limit-mib", "0.02", "--margin-mib", "0"]) == 0
    out = capsys.readouterr().out
    assert "20,615 B" in out and "OVER" not in out
    # the margin takes it over
    assert budget.main(args + ["--limit-mib", "0.02", "--margin-mib", "0.001"]) == 1
    captured = capsys.readouterr()
    assert "OVER" in captured.out and "over the 0.02 MiB limit" in captured.err
    assert budget.main(args + ["--limit-mib", "1", "--margin-mib", "0.5", "--left"]) == 0
    assert capsys.readouterr().out.strip() == f"{int((0.5 - 20615 / MIB) * 100) / 100:.2f}" == "0.48"


def test_not_a_repository_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "device_budget.py"), "--repo", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"device_budget: error: {tmp_path}: not a git work tree")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_carry_path_outside_the_repository_is_refused(repo, capsys):
    assert budget.main(["--repo", str(repo), "--carry", "../elsewhere"]) == 2
    assert "must be relative to the repository root" in capsys.readouterr().err
