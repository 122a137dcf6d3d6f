"""`surge upscale --ray` / surge.inference.ray_batch: outputs identical to the plain command, the
manifest, reruns after a killed run, actor deaths retried, pyarrow filesystems.

Ray runs locally with 2 CPUs (one cluster for the module, shut down at its end); Ray leaves
session logs under /tmp/ray."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from surge.cli.main import main
from surge.inference import ray_batch
from surge.inference.ray_batch import MANIFEST_NAME, Manifest, RETRIES, target_name, upscale_with_ray

from cli_helpers import save_noise

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is the optional extra surge-sr[ray]")
    from ray import cloudpickle

    # Workers cannot import this test module: classes defined here travel by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _save(path: Path, size=(16, 12), seed=0, **save_args) -> None:
    save_noise(path, size[1], size[0], seed, **save_args)  # size as Pillow gives it: (width, height)


def _photo_folder(root: Path) -> Path:
    """PNGs, a web-quality JPEG (another model), a sub-folder, and two broken files."""
    src = root / "in"
    _save(src / "a.png")
    _save(src / "b.png", seed=1, size=(12, 16))
    _save(src / "web.jpg", seed=2, quality=50)
    _save(src / "sub" / "c.png", seed=3)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    good = src / "sub" / "cut.jpg"
    _save(good, seed=4, size=(32, 32), quality=95)
    good.write_bytes(good.read_bytes()[:200])  # truncated
    return src


def _outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST_NAME}


def _manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / MANIFEST_NAME).read_text().splitlines()]


def _plain(src: Path, out: Path, *more: str) -> int:
    return main(["upscale", str(src), "-o", str(out), "--recursive", "--device", "cpu", "--quiet", *more])


# --- without a cluster ---------------------------------------------------------------------


def test_without_ray_the_flag_is_a_one_line_error_naming_the_extra(tmp_path, capsys, monkeypatch):
    _save(tmp_path / "a.png")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["surge: error: --ray needs Ray, an optional dependency: pip install 'surge-sr[ray]'"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["-o", "OUT/x.png", "--ray"], "give a folder, not a file name"),
    (["-o", "-", "--ray"], "not stdin/stdout"),
    (["-o", "OUT", "--ray", "IN"], "took"),  # --ray swallowed an input as its address
])
def test_ray_refuses_what_it_cannot_do(tmp_path, capsys, argv, message):
    _save(tmp_path / "IN" / "a.png")
    _save(tmp_path / "b.png")
    argv = [str(tmp_path / a) if a in ("OUT", "OUT/x.png", "IN") else a for a in argv]
    assert main(["upscale", str(tmp_path / "b.png"), *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("more", [{}, {"ext": "same"}, {"ext": "jpg", "suffix": "-big"}, {"outscale": 2.5}])
def test_target_names_are_the_plain_commands(tmp_path, more):
    from surge.inference.pipeline import UpscaleOptions, plan_jobs

    for name in ("a.png", "b.JPG", "c.gif", "d.tiff"):
        _save(tmp_path / "in" / name)
    options = UpscaleOptions(**more)
    jobs, _ = plan_jobs([tmp_path / "in"], tmp_path / "out", options)
    assert len(jobs) == 4
    for job in jobs:
        assert target_name(job.source.name, options) == job.target.name


def test_manifest_keeps_the_latest_row_per_input_and_drops_a_torn_line(tmp_path):
    rows = [{"input": "a", "status": "failed"}, {"input": "b", "status": "done"}, {"input": "a", "status": "done"}]
    (tmp_path / MANIFEST_NAME).write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"input": "c", "sta')
    manifest = Manifest(str(tmp_path), ray_batch._Location())
    manifest.compact()
    assert _manifest(tmp_path) == [{"input": "b", "status": "done"}, {"input": "a", "status": "done"}]
    manifest.add({"input": "c", "status": "done"})  # appended and flushed at once
    assert _manifest(tmp_path)[-1] == {"input": "c", "status": "done"}
    manifest.close()


# --- on a local Ray ------------------------------------------------------------------------


@pytest.mark.slow
def test_ray_outputs_are_byte_identical_to_plain_upscale_with_a_manifest_row_per_input(tmp_path, local_ray, capsys):
    src = _photo_folder(tmp_path)
    assert _plain(src, tmp_path / "plain") == 1  # the broken files
    capsys.readouterr()
    assert _plain(src, tmp_path / "ray", "--ray", "--ray-actors", "2") == 1
    err = capsys.readouterr().err
    plain, ray_out = _outputs(tmp_path / "plain"), _outputs(tmp_path / "ray")
    assert sorted(plain) == ["a_x4.png", "b_x4.png", "sub/c_x4.png", "web_x4.png"]
    assert ray_out == plain
    rows = {Path(r["input"]).name: r for r in _manifest(tmp_path / "ray")}
    assert sorted(rows) == ["a.png", "b.png", "broken.png", "c.png", "cut.jpg", "web.jpg"]
    assert {n: r["status"] for n, r in rows.items()} == {
        "a.png": "done", "b.png": "done", "c.png": "done", "web.jpg": "done", "broken.png": "failed", "cut.jpg": "failed"}
    assert rows["a.png"]["model"] == "surge-x4" and rows["web.jpg"]["model"] == "surge-x4-real"  # per-file choice
    assert rows["c.png"]["output"] == str(tmp_path / "ray" / "sub" / "c_x4.png")
    for name in ("broken.png", "cut.jpg"):
        assert name in rows[name]["error"] and f"surge: error: {rows[name]['input']}" in err
    assert all(r["seconds"] > 0 for r in rows.values() if r["status"] == "done")

    # A rerun does nothing new and leaves one row per input (the failures are tried again).
    assert _plain(src, tmp_path / "ray", "--ray") == 1
    again = _manifest(tmp_path / "ray")
    assert sorted(Path(r["input"]).name for r in again) == sorted(rows)
    assert {Path(r["input"]).name: r["seconds"] for r in again if r["status"] == "done"} == \
        {n: r["seconds"] for n, r in rows.items() if r["status"] == "done"}  # earlier rows kept
    assert _outputs(tmp_path / "ray") == plain


def test_pyarrow_filesystems_give_the_same_outputs(tmp_path, local_ray):
    from pyarrow import fs as pafs

    src = tmp_path / "in"
    _save(src / "a.png")
    _save(src / "sub" / "b.jpg", seed=1, quality=50)
    (src / "sub" / "bad.png").write_bytes(b"nope")
    assert _plain(src, tmp_path / "plain", "--model", "bicubic") == 1
    plain = _outputs(tmp_path / "plain")
    # file:// URIs go through the remote path: download to a temp folder, upload under a temp name, move.
    assert _plain(f"file://{src}", f"file://{tmp_path}/uri", "--model", "bicubic", "--ray") == 1
    assert _outputs(tmp_path / "uri") == plain
    assert {Path(r["input"]).name: r["status"] for r in _manifest(tmp_path / "uri")} == {
        "a.png": "done", "b.jpg": "done", "bad.png": "failed"}
    assert all(r["input"].startswith("file://") for r in _manifest(tmp_path / "uri"))
    bad = next(r for r in _manifest(tmp_path / "uri") if r["status"] == "failed")
    assert bad["error"].startswith(f"file://{src}/sub/bad.png") and "surge-ray-" not in bad["error"]
    # A filesystem object (here a sub-tree of the local one): paths are inside it.
    subtree = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    summary = upscale_with_ray(["in"], "tree", ray_batch.UpscaleOptions(model="bicubic", device="cpu"),
                               recursive=True, filesystem=subtree)
    assert (summary.done, summary.failed, summary.manifest) == (2, 1, "tree/" + MANIFEST_NAME)
    assert _outputs(tmp_path / "tree") == plain
    assert {r["output"] for r in _manifest(tmp_path / "tree") if r["status"] == "done"} == {"tree/a_x4.png", "tree/sub/b_x4.png"}


class _DiesOnce:
    """Kills its own process (as an OOM kill or a crash would) on b.png the first time, and on
    poison.png every time; an Upscaler otherwise."""

    def __init__(self, options):
        from surge.inference.ray_batch import Upscaler

        self.upscaler = Upscaler(options)

    def process_file(self, source, target, progress=None):
        marker = source.parent / f".{source.name}.killed"
        if source.name == "poison.png" or (source.name == "b.png" and not marker.exists()):
            with open(marker, "a") as f:
                f.write("x")
            os._exit(1)
        return self.upscaler.process_file(source, target)


def _without_ray_remote_args(map_batches):
    """``Dataset.map_batches`` as Ray 2.64 will have it: ``**ray_remote_args`` (deprecated in 2.60) removed."""
    import functools
    import inspect

    named = {n for n, p in inspect.signature(map_batches).parameters.items() if p.kind != p.VAR_KEYWORD}

    @functools.wraps(map_batches)
    def call(*args, **kwargs):
        extra = sorted(set(kwargs) - named)
        if extra:
            raise TypeError(f"map_batches() got unexpected keyword arguments {extra}")
        return map_batches(*args, **kwargs)

    return call


@pytest.mark.slow
def test_an_actor_killed_mid_run_is_restarted_and_its_file_retried(tmp_path, local_ray, monkeypatch):
    # The retry bound must not rest on ray_remote_args (max_task_retries), which Ray 2.64 removes.
    monkeypatch.setattr(local_ray.data.Dataset, "map_batches", _without_ray_remote_args(local_ray.data.Dataset.map_batches))
    src = tmp_path / "in"
    for i, name in enumerate(("a.png", "b.png", "c.png", "poison.png")):
        _save(src / name, seed=i)
    assert _plain(src, tmp_path / "plain", "--model", "bicubic") == 0
    options = ray_batch.UpscaleOptions(model="bicubic", device="cpu")
    summary = upscale_with_ray([src], tmp_path / "ray", options, actors=1, make_upscaler=_DiesOnce)
    assert (summary.done, summary.skipped, summary.failed) == (3, 0, 1)
    assert (src / ".b.png.killed").read_text() == "x"  # it did die once
    assert (src / ".poison.png.killed").read_text() == "x" * (RETRIES + 1)  # tried, then given up
    out = _outputs(tmp_path / "ray")
    plain = _outputs(tmp_path / "plain")
    assert out == {k: v for k, v in plain.items() if k != "poison_x4.png"}
    rows = {Path(r["input"]).name: r for r in _manifest(tmp_path / "ray")}
    assert rows["b.png"]["status"] == "done" and rows["poison.png"]["status"] == "failed"
    assert "worker died 4 times" in rows["poison.png"]["error"]
    assert len(_manifest(tmp_path / "ray")) == 4


_STALLING_RUN = """
import sys, time
from pathlib import Path
from surge.inference.ray_batch import Upscaler, UpscaleOptions, upscale_with_ray

class Stalls:  # one file that never ends: the run is killed while an actor works on it
    def __init__(self, options):
        self.upscaler = Upscaler(options)
    def process_file(self, source, target, progress=None):
        if source.name == "d.png":
            time.sleep(600)
        return self.upscaler.process_file(source, target)

import ray
ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
upscale_with_ray([sys.argv[1]], sys.argv[2], UpscaleOptions(model="bicubic", device="cpu"), actors=2, make_upscaler=Stalls)
"""


@pytest.mark.slow
def test_a_run_killed_mid_way_and_rerun_finishes_with_no_duplicates_or_partial_files(tmp_path, local_ray):
    src = tmp_path / "in"
    names = ("a.png", "b.png", "c.png", "d.png", "e.png")
    for i, name in enumerate(names):
        _save(src / name, seed=i, size=(40, 32))
    assert _plain(src, tmp_path / "plain", "--model", "bicubic") == 0
    out = tmp_path / "ray"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(_STALLING_RUN))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script), str(src), str(out)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            manifest = out / MANIFEST_NAME
            if manifest.exists() and len(manifest.read_text().splitlines()) >= 4:
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the first run ended by itself"
        assert len((out / MANIFEST_NAME).read_text().splitlines()) == 4  # the other actor did the rest
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started, mid-file
        proc.wait()
    first = _manifest(out)
    assert sorted(Path(r["input"]).name for r in first) == ["a.png", "b.png", "c.png", "e.png"]
    assert sorted(_outputs(out)) == ["a_x4.png", "b_x4.png", "c_x4.png", "e_x4.png"]  # nothing of d, no temp files

    summary = upscale_with_ray([src], out, ray_batch.UpscaleOptions(model="bicubic", device="cpu"))
    assert (summary.done, summary.skipped, summary.failed) == (1, 4, 0)
    rows = _manifest(out)
    assert sorted(Path(r["input"]).name for r in rows) == list(names)  # one row per input
    assert rows[:4] == first  # the first run's rows, kept
    assert _outputs(out) == _outputs(tmp_path / "plain")


@pytest.mark.slow
def test_an_existing_cluster_is_joined_by_its_address(tmp_path):
    """`ray start --head` (its own temp folder, so no other Ray on the machine finds it), then
    `surge upscale --ray=HOST:PORT` in another process."""
    import socket
    import tempfile

    pytest.importorskip("ray", reason="Ray is the optional extra surge-sr[ray]")
    src = tmp_path / "in"
    _save(src / "a.png")
    _save(src / "b.jpg", seed=1, quality=50)
    assert _plain(src, tmp_path / "plain", "--model", "bicubic") == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    ray_cli = [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]
    temp = tempfile.mkdtemp(prefix="srg", dir="/tmp")  # short: Ray's socket paths live under it
    head = subprocess.Popen([*ray_cli, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", f"--temp-dir={temp}", "--node-ip-address=127.0.0.1"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cmd = [sys.executable, "-m", "surge.cli.main", "upscale", str(src), "-o", str(tmp_path / "out"), "--model", "bicubic",
               "--device", "cpu", f"--ray=127.0.0.1:{port}"]
        for _ in range(60):  # the head takes a while to listen
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(1)
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "2 upscaled, 0 skipped, 0 failed" in run.stderr
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)
    assert _outputs(tmp_path / "out") == _outputs(tmp_path / "plain")
    assert {Path(r["input"]).name: r["model"] for r in _manifest(tmp_path / "out")} == {"a.png": "bicubic", "b.jpg": "bicubic"}
