"""scripts/device_session.sh end to end on CPU (SURGE_DRY_RUN=1): every phase, the limits of what a
device call returns, and a second call that continues the first one's carried state.

The real call needs a GPU (the device tool); the dry run swaps in the surge-tiny generator, 64 px
crops, 4 steps per call and a 32 px inference benchmark, on a tiny packed data set.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import surge

from pack_helpers import pack, tiny_sources

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "device_session.sh"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Path:
    """A packed tiny data set (train/A, Set5, Set14) and a folder of stand-in CUDA tests."""
    root = tmp_path_factory.mktemp("session")
    proc = pack(tiny_sources(root / "src"), root / "pack", timeout=120)
    assert proc.returncode == 0, proc.stderr
    tests = root / "ctests"
    tests.mkdir()
    (tests / "test_gpu.py").write_text(
        "import pytest\npytestmark = pytest.mark.cuda\n\ndef test_ok():\n    assert True\n\n"
        "@pytest.mark.skip(reason='stands in for a test that needs a GPU')\ndef test_skipped():\n    pass\n")
    (tests / "test_cpu.py").write_text("def test_not_selected():\n    assert False, 'ran without the cuda mark'\n")
    return root


def run_session(setup: Path, name: str, carry: Path | None = None, **env_extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = setup / name
    env = {**os.environ, "OUT": str(out), "SURGE_DRY_RUN": "1", "SURGE_PYTHON": sys.executable,
           "SURGE_PACK": str(setup / "pack"), "SURGE_CARRY": str(carry or setup / "no-carry"),
           "SURGE_TEST_PATHS": str(setup / "ctests"), "SURGE_RUNS": str(setup / f"runs-{name}"), **env_extra}
    proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)
    return proc, out


def check_limits(out: Path) -> None:
    """What the device tool brings back: at most 8 flat files, each <= 16 MiB, <= 64 MiB together."""
    files = list(out.iterdir())
    assert all(f.is_file() for f in files)
    assert len(files) <= 8
    assert all(f.stat().st_size <= 16 * 2**20 for f in files)
    assert sum(f.stat().st_size for f in files) <= 64 * 2**20
    summary = json.loads((out / "summary.json").read_text())
    assert summary["limits"]["ok"] is True and summary["limits"]["count"] == len(files)


@pytest.mark.slow
def test_dry_run_then_a_second_call_continues_the_carried_state(setup):
    proc, out = run_session(setup, "first")
    summary = json.loads((out / "summary.json").read_text())
    phases = summary["phases"]
    # The benchmarks' fixed matmul/conv references can outlast their dry-run timeouts on a loaded
    # 2-core machine: that must be recorded as a timeout, and must not stop the training phase.
    failed = {k for k, v in phases.items() if v["status"] not in ("ok", "skipped")}
    assert failed <= {"inference", "throughput"}, phases
    assert all(phases[k]["status"] == "timeout" for k in failed), phases
    assert proc.returncode == (1 if failed else 0), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert {"environment", "tests", "inference", "throughput", "training"} <= summary.keys()
    assert summary["environment"]["device"] == "cpu" and summary["environment"]["modules"]["torch"][0].isdigit()
    assert {k: summary["tests"][k] for k in ("passed", "failed", "skipped")} == {"passed": 1, "failed": 0, "skipped": 1}
    inference = summary["inference"]
    if inference["status"] == "ok":
        assert {(r["model"], r["variant"]) for r in inference["rows"]} == {("surge", "fp32-eager"), ("surge", "auto")}
    else:
        assert inference["status"] == "timeout" and "rows" in inference
    if phases["throughput"]["status"] == "ok":  # loader vs device data, clean and real-world LR
        rows = summary["throughput"]["rows"]
        assert [r["degradation"] for r in rows] == [True, False]
        assert all(set(r["pipelines"]) == {"loader", "device"} for r in rows)
        assert rows[0]["pipelines"]["device"]["profile"]["steps"] == 2  # where the training config's step goes
        host = summary["data_host"]["rows"]  # the making thread's host time per batch, plan and device work
        assert [r["degradation"] for r in host] == [True, True, False, False]
        assert all(r["plan_make_s"] > 0 for r in host)
    assert summary["pack"]["train_images"] == 4 and summary["pack"]["left_out"] == []  # from manifest.json
    training = summary["training"]
    assert (training["start_step"], training["end_step"], training["steps"], training["total_steps"]) == (0, 4, 4, 4)
    assert training["state"]["profile"] == "exact" and training["resumed"] is False
    assert training["init_from"] == "none (a dry run's tiny generator matches no bundled model)"
    # auto: a dry run's throughput phase times no compiled row, so the run stays eager, and says why
    assert training["compile"] == "false (no compiled row timed in this session)"
    assert "train.compile=false" in (out / "session.log").read_text()
    assert "train.compile_mode=\"reduce-overhead\"" in (out / "session.log").read_text()
    assert training["val_psnr_y"] and training["val_psnr_y"][-1][0] == 4
    assert training["eval"]["Set5"]["images"] == 2
    check_limits(out)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["summary.json", "session.log", "train-log.csv", "gpu-real-psnr.safetensors",
                            *training["state"]["files"]])
    model = surge.load_model(out / "gpu-real-psnr.safetensors", device="cpu")
    assert model.provenance["storage"].startswith("float16") and model.provenance["steps"] == 4
    log = (out / "session.log").read_text()
    assert "tests: pytest -m cuda" in log and "inference 1/1: benchmarks/infer.py --device cpu" in log

    # Second call: the returned state parts carried in; tests and inference skipped to save time.
    # SURGE_CONFIG names another experiment: with a carried state, the throughput phase must time
    # the state's own (the one training resumes), or the compile choice is made for the wrong model.
    carry = setup / "carry"
    carry.mkdir()
    for name in training["state"]["files"]:
        shutil.copy(out / name, carry / name)
    proc, out2 = run_session(setup, "second", carry=carry, SURGE_SKIP="tests inference",
                             SURGE_CONFIG="configs/cpu-psnr.toml")
    again = json.loads((out2 / "summary.json").read_text())
    assert again["phases"]["throughput"]["status"] in ("ok", "timeout"), again["phases"]
    assert proc.returncode == (0 if again["phases"]["throughput"]["status"] == "ok" else 1), proc.stdout[-3000:]
    assert again["tests"] == {"status": "skipped"} and again["phases"]["inference"]["status"] == "skipped"
    carried_config = str(setup / "runs-second" / "run" / "config.json")
    if again["phases"]["throughput"]["status"] == "ok":
        specs = [carried_config, carried_config + ":bicubic"]
        assert [(r["config"], r["degradation"]) for r in again["throughput"]["rows"]] == list(zip(specs, (True, False)))
        assert sorted({r["config"] for r in again["data_host"]["rows"]}) == specs
    t2 = again["training"]
    assert t2["resumed"] is True and t2["init_from"] == "resumed (the carried state)"
    assert (t2["start_step"], t2["end_step"], t2["steps"], t2["total_steps"]) == (4, 8, 4, 8)
    assert [(e["session"], e["start_step"], e["end_step"], e["restored"]) for e in t2["lineage"]] == [
        (0, 0, 4, "none"), (1, 4, 8, "exact")]
    assert t2["lineage"][0] == training["lineage"][0]  # the first session's record travels unchanged
    check_limits(out2)
    provenance = surge.load_model(out2 / "gpu-real-psnr.safetensors", device="cpu").provenance
    assert provenance["steps"] == 8 and [s["steps"] for s in provenance["sessions"]] == [4, 4]


@pytest.mark.slow
def test_a_fresh_start_begins_from_the_weights_surge_init_from_names(setup, tmp_path):
    from surge.models.files import save_model
    from surge.models.generator import SuRGeGenerator
    from surge.training.config import load_config

    # the dry run's generator
    generator = load_config(REPO / "configs" / "gpu-real-psnr.toml", ['generator.preset="surge-tiny"'],
                            runnable_here=False).generator
    start = save_model(SuRGeGenerator(generator), tmp_path / "start.safetensors",
                       provenance={"experiment": "earlier", "steps": 7})
    proc, out = run_session(setup, "warm", SURGE_SKIP="tests inference throughput", SURGE_INIT_FROM=str(start))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    training = json.loads((out / "summary.json").read_text())["training"]
    assert training["init_from"] == f"{start} (SURGE_INIT_FROM)"
    provenance = surge.load_model(out / "gpu-real-psnr.safetensors", device="cpu").provenance
    assert [(e.get("experiment"), e.get("steps")) for e in provenance["lineage"]] == [("earlier", 7)]
    assert provenance["steps"] == 4 and provenance["init_from"] == str(start)

    proc, out = run_session(setup, "warm-missing", SURGE_SKIP="tests inference throughput",
                            SURGE_INIT_FROM=str(tmp_path / "gone.safetensors"))
    summary = json.loads((out / "summary.json").read_text())
    assert proc.returncode == 1 and summary["phases"]["training"]["status"] == "failed"
    assert summary["training"]["note"] == f"SURGE_INIT_FROM: {tmp_path / 'gone.safetensors'}: no such weights file"


@pytest.mark.slow
def test_a_hung_cuda_test_and_a_corrupt_carried_state_fail_only_their_phases(setup, tmp_path):
    # The CUDA tests cut off by their timeout (no junit report) still report what finished, from
    # pytest -v's lines; a carried state that cannot be unpacked fails training alone.
    tests = tmp_path / "ctests"
    tests.mkdir()
    (tests / "test_gpu.py").write_text(
        "import time\nimport pytest\npytestmark = pytest.mark.cuda\n\n"
        "def test_a_ok():\n    pass\n\ndef test_b_broken():\n    assert False\n\n"
        "def test_c_hangs():\n    time.sleep(120)\n")
    carry = tmp_path / "carry"
    carry.mkdir()
    (carry / "state-00.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    proc, out = run_session(setup, "corrupt", carry=carry, SURGE_SKIP="inference throughput",
                            SURGE_TEST_PATHS=str(tests), SURGE_TEST_TIMEOUT="12")
    assert proc.returncode == 1
    summary = json.loads((out / "summary.json").read_text())
    t = summary["tests"]
    assert summary["phases"]["tests"]["status"] == "timeout"
    assert (t["status"], t["passed"], t["failed"], t["finished"]) == ("timeout", 1, 1, 2), t
    assert len(t["failures"]) == 1 and t["failures"][0].endswith("test_gpu.py::test_b_broken")
    assert "counted from pytest -v" in t["report"]
    assert summary["training"]["status"] == "failed" and "could not be unpacked" in summary["training"]["note"]
    assert "state-00.safetensors" in (out / "session.log").read_text()  # the error names the file
    check_limits(out)


def test_missing_pack_is_a_clear_error(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "SURGE_PACK": str(tmp_path / "missing"),
           "SURGE_PYTHON": sys.executable, "SURGE_DRY_RUN": "1"}
    proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert "packed data not found" in proc.stdout and str(tmp_path / "missing") in proc.stdout


@pytest.mark.slow
def test_the_file_limit_is_enforced(setup):
    """With 4 files already in $OUT the weights, logs and summary make 8: the state has no room, and
    is refused rather than written past the limit; the call says so."""
    out = setup / "crowded"
    out.mkdir()
    for i in range(4):
        (out / f"extra-{i}.txt").write_text("x")
    proc, out = run_session(setup, "crowded", SURGE_SKIP="tests inference throughput")
    assert proc.returncode == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["phases"]["training"]["status"] == "failed"
    assert not list(out.glob("state-*.safetensors"))
    assert len(list(out.iterdir())) == 8 and summary["limits"]["ok"] is True
    assert "no travel-state profile fits" in (out / "session.log").read_text()
    assert "in 0 file(s)" in (out / "session.log").read_text()
