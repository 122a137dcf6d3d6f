"""Trainer hardening: safe checkpoint loading, temp-file cleanup, config validation, disk full, precision."""

import errno
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from surge.errors import ConfigError, DatasetError, SurgeError
from surge.training import precision as precision_mod
from surge.training.checkpoint import atomic_torch_save, load_checkpoint
from surge.training.config import load_config
from surge.training.trainer import Trainer

from training_helpers import random_hr_folder, write_tiny_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory) -> Path:
    return random_hr_folder(tmp_path_factory.mktemp("hr"), 3, (40, 40))


@pytest.fixture
def config(tmp_path, hr_dir) -> Path:
    """Two PSNR steps, 2 a batch, a checkpoint every step, the default log interval; outputs in tmp_path/runs."""
    return write_tiny_config(tmp_path / "tiny.toml", hr_dir, out=tmp_path / "runs", data={"batch_size": 2},
                             train={"log_every": None})


# --- 1. checkpoints load without unpickling code ----------------------------------------
class CreatesAFile:
    """Unpickling this runs ``open(marker, "w")``: what a crafted last.pt could do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_refuses_a_checkpoint_that_would_run_code(tmp_path, config, capsys):
    from surge.train import main

    run_dir, marker = tmp_path / "run", tmp_path / "pwned"
    run_dir.mkdir()
    torch.save({"step": 1, "config": {}, "payload": CreatesAFile(marker)}, run_dir / "last.pt")
    assert main([str(config), "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert not marker.exists()
    assert len(err.splitlines()) == 1 and err.startswith("surge: error: ") and "last.pt: refused" in err


def test_checkpoints_are_plain_data_and_restore_every_rng(tmp_path, config):
    import random

    trainer = Trainer(load_config(config, ["train.steps=1"]), tmp_path / "run")
    trainer.run()
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)  # fails if anything is pickled
    assert state["step"] == 1 and isinstance(state["config"]["optim"]["betas"], list)
    from surge.training.checkpoint import rng_state, set_rng_state

    random.random(), np.random.normal(), torch.rand(1)  # numpy now caches a gaussian
    path = tmp_path / "rng.pt"
    atomic_torch_save({"rng": rng_state()}, path)
    expect = (random.random(), random.gauss(0, 1), np.random.normal(), np.random.rand(), torch.rand(3))
    set_rng_state(torch.load(path, weights_only=True)["rng"])
    got = (random.random(), random.gauss(0, 1), np.random.normal(), np.random.rand(), torch.rand(3))
    assert expect[:4] == got[:4] and torch.equal(expect[4], got[4])


# --- 2. only our own temp files are removed ---------------------------------------------
def test_stale_temp_cleanup_spares_user_files_and_records_the_runtime(tmp_path, config):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ours = [".last.pt.abc123.tmp", ".best.safetensors.k2j4_x9a.tmp", ".log.csv.q8w7e6r5.tmp"]
    users = ["notes.tmp", ".foo.tmp", "last.pt.tmp", ".last.pt.tmp", ".mylast.pt.abc123.tmp"]
    for name in ours + users:
        (run_dir / name).write_text("x")
    trainer = Trainer(load_config(config, ["train.steps=1"]), run_dir)
    trainer.run()
    left = {p.name for p in run_dir.iterdir()}
    assert not left & set(ours) and set(users) <= left
    # item 14: what precision this ran in, on which machine
    runtime = json.loads((run_dir / "runtime.json").read_text())
    assert [r["start_step"] for r in runtime] == [0]
    assert runtime[0]["precision"] == trainer.precision in ("fp32", "bf16")
    assert runtime[0]["cpu"] == precision_mod.cpu_name() and runtime[0]["cpu"]
    assert runtime[0]["cpu_id"] == json.loads(json.dumps(precision_mod.cpu_id()))
    assert trainer.provenance()["precision"] == trainer.precision


def test_a_resumed_run_appends_its_own_runtime_record(tmp_path, config):
    run_dir = tmp_path / "run"
    Trainer(load_config(config, ["train.steps=1"]), run_dir).run()
    Trainer(load_config(config, ["train.steps=2"]), run_dir, resume=True).run()
    assert [r["start_step"] for r in json.loads((run_dir / "runtime.json").read_text())] == [0, 1]


# --- 12. every config field is validated at load ----------------------------------------
BAD_VALUES = [
    ("optim.grad_clip=-1", r"optim\.grad_clip must be >= 0, got -1"),
    ("optim.min_lr_ratio=-0.5", r"optim\.min_lr_ratio must be in \[0, 1\], got -0\.5"),
    ("optim.min_lr_ratio=1.5", r"optim\.min_lr_ratio must be in \[0, 1\]"),
    ("optim.betas=[0.9, 1.0]", r"optim\.betas\[1\] must be in \[0, 1\), got 1\.0"),
    ("optim.betas=[-0.1, 0.9]", r"optim\.betas\[0\] must be in \[0, 1\)"),
    ("optim.betas=[0.9]", r"optim\.betas must be a list of 2 numbers"),
    ("optim.lr_g=0", r"optim\.lr_g must be a positive number"),
    ("optim.lr_d=inf", r"optim\.lr_d must be a positive number"),
    ("optim.warmup_steps=-3", r"optim\.warmup_steps must be >= 0"),
    ("optim.warmup_steps=2.5", r"optim\.warmup_steps must be an integer, got 2\.5"),
    ("optim.critic_steps=true", r"optim\.critic_steps must be an integer, got true"),
    ("optim.ema_decay=1", r"optim\.ema_decay must be in \[0, 1\)"),
    ("train.steps=true", r"train\.steps must be an integer, got true"),
    ("train.steps=100.0", r"train\.steps must be an integer, got 100\.0"),
    ("train.seed=-1", r"train\.seed must be in \[0, 2\*\*63\), got -1"),
    ("train.threads=-1", r"train\.threads must be >= 0, got -1"),
    ("train.max_minutes=-1", r"train\.max_minutes must be >= 0"),
    ("train.log_every=0", r"train\.log_every must be >= 1"),
    ("train.device=tpu", r'train\.device must be auto, cpu, cuda or cuda:N, got "tpu"'),
    ("train.precision=fp16", r'train\.precision must be one of "auto", "fp32", "bf16", "amp", got "fp16"'),
    ("train.name=../x", r"train\.name must be a plain folder name"),
    ("train.stage=true", r"train\.stage must be one of"),
    ("data.batch_size=2.0", r"data\.batch_size must be an integer, got 2\.0"),
    ("data.workers=-1", r"data\.workers must be >= 0"),
    ("data.augment=1", r"data\.augment must be true or false, got 1"),
    ("data.train_dirs=[]", r"data\.train_dirs must list at least one folder"),
    ("data.val_dir=3", r"data\.val_dir must be a string or empty, got 3"),
    ("generator.blocks0=true", r"generator\.blocks0 must be an integer, got true"),
    ("critic.width=8.0", r"critic\.width must be an integer, got 8\.0"),
    ("loss.tau=false", r"loss\.tau must be a number, got false"),
]


@pytest.mark.parametrize("override, message", BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_bad_config_values_fail_at_load_naming_file_and_key(config, override, message):
    with pytest.raises(ConfigError, match=r"^" + re.escape(str(config)) + ": " + message) as info:
        load_config(config, [override])
    assert "\n" not in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("override, message", [
    ("train.device=cuda", r'train\.device = "cuda" but CUDA is not available'),
    ("train.device=cuda:1", r'train\.device = "cuda:1" but CUDA is not available'),
    ("train.precision=amp", r'train\.precision = "amp" .* needs a CUDA device'),
])
def test_cuda_settings_fail_at_load_without_cuda(config, override, message):
    with pytest.raises(ConfigError, match=re.escape(str(config)) + ": " + message):
        load_config(config, [override])


def test_ints_are_accepted_where_numbers_are_expected(config):
    cfg = load_config(config, ["optim.grad_clip=1", "optim.betas=[0, 0.5]", "loss.l1_weight=2"])
    assert cfg.optim.grad_clip == 1.0 and isinstance(cfg.optim.grad_clip, float)
    assert cfg.optim.betas == (0.0, 0.5) and isinstance(cfg.loss.l1_weight, float)


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_a_bad_validation_set_fails_before_step_one(tmp_path, config, kind):
    val_dir = tmp_path / "val"
    if kind == "empty":
        val_dir.mkdir()
    run_dir = tmp_path / "run"
    trainer = Trainer(load_config(config, [f'data.val_dir="{val_dir}"']), run_dir)
    with pytest.raises(DatasetError, match=r"^data\.val_dir: .*val"):
        trainer.run()
    assert not (run_dir / "log.csv").exists() and not (run_dir / "last.pt").exists()


def test_checkpoint_is_saved_before_validation_runs(tmp_path, config, monkeypatch):
    calls = []

    def validate_then_crash(self):
        calls.append(self.step)
        if self.step == 2:
            raise RuntimeError("validation crashed")
        return 20.0

    monkeypatch.setattr(Trainer, "validate", validate_then_crash)
    run_dir = tmp_path / "run"
    trainer = Trainer(load_config(config, ["train.steps=3", "train.val_every=1"]), run_dir)
    with pytest.raises(RuntimeError, match="validation crashed"):
        trainer.run()
    assert calls == [1, 2] and load_checkpoint(run_dir / "last.pt")["step"] == 2


def test_validation_leaves_the_random_stream_alone(tmp_path, config, monkeypatch):
    from surge.training import validation

    val_dir = tmp_path / "Set2"
    val_dir.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(val_dir / f"{i}.png")
    real = validation.validate_psnr

    def validate_drawing_random_numbers(*args, **kwargs):
        torch.rand(7)
        return real(*args, **kwargs)

    monkeypatch.setattr(validation, "validate_psnr", validate_drawing_random_numbers)
    trainer = Trainer(load_config(config, [f'data.val_dir="{val_dir}"']), tmp_path / "run")
    before = torch.get_rng_state()
    assert np.isfinite(trainer.validate())
    assert torch.equal(before, torch.get_rng_state())


def test_last_checkpoint_knows_the_best_score_of_its_own_step(tmp_path, config, monkeypatch):
    scores = iter([1.0, 2.0])
    monkeypatch.setattr(Trainer, "validate", lambda self: next(scores))
    run_dir = tmp_path / "run"
    Trainer(load_config(config, ["train.val_every=1"]), run_dir).run()
    last, best = load_checkpoint(run_dir / "last.pt"), load_checkpoint(run_dir / "best.pt")
    assert last["step"] == best["step"] == 2 and last["best_psnr"] == best["best_psnr"] == 2.0


# --- 13. disk full ----------------------------------------------------------------------
def _write_then_fail(exc):
    def writer(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")  # the half-written temp file a full disk leaves
        raise exc

    return writer


TORCH_FULL = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")


@pytest.mark.parametrize("exc", [
    TORCH_FULL,
    RuntimeError("[enforce fail at inline_container.cc:445] . PytorchStreamWriter failed writing file data/0: file write failed"),
    OSError(errno.ENOSPC, "No space left on device"),
], ids=["torch-unexpected-pos", "torch-file-write-failed", "ENOSPC"])
def test_disk_full_during_a_checkpoint_keeps_the_old_one(tmp_path, monkeypatch, exc):
    path = tmp_path / "last.pt"
    atomic_torch_save({"step": 1}, path)
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _write_then_fail(exc))
    with pytest.raises(SurgeError, match=r"^" + re.escape(str(path)) + r": cannot write \(") as info:
        atomic_torch_save({"step": 2}, path)
    assert "\n" not in str(info.value)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_disk_full_during_a_model_save_keeps_the_old_file(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    from surge.errors import ModelFileError
    from surge.models import files
    from surge.models.config import GENERATOR_PRESETS
    from surge.models.generator import SuRGeGenerator

    path = tmp_path / "last.safetensors"
    net = SuRGeGenerator(GENERATOR_PRESETS["surge-tiny"])
    files.save_model(net, path)
    before = path.read_bytes()
    full = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    monkeypatch.setattr(files, "save_file", lambda state, tmp, metadata=None: _write_then_fail(full)(state, tmp))
    with pytest.raises(ModelFileError, match=r"last\.safetensors: cannot write \(I/O error: No space left on device"):
        files.save_model(net, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]


def test_other_errors_of_a_writer_are_not_disguised_as_a_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", _write_then_fail(RuntimeError("a bug in the writer")))
    with pytest.raises(RuntimeError, match="a bug in the writer"):
        atomic_torch_save({"step": 2}, tmp_path / "last.pt")
    assert not list(tmp_path.iterdir())


def test_training_stops_with_one_line_when_the_disk_fills(tmp_path, config, monkeypatch):
    real_save, calls = torch.save, []

    def save_until_full(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) > 1:
            return _write_then_fail(TORCH_FULL)(obj, path)
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_full)
    run_dir = tmp_path / "run"
    with pytest.raises(SurgeError, match=r"last\.pt: cannot write \(write failed, disk full\?"):
        Trainer(load_config(config), run_dir).run()
    assert load_checkpoint(run_dir / "last.pt")["step"] == 1
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]


# --- 14. precision ----------------------------------------------------------------------
@pytest.mark.parametrize("native, expect", [(False, "fp32"), (True, "bf16")])
def test_auto_precision_takes_bf16_only_where_the_cpu_has_it(monkeypatch, native, expect):
    monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda: native)
    assert precision_mod.resolve_precision("auto", torch.device("cpu")) == expect
    assert precision_mod.resolve_precision("fp32", torch.device("cpu")) == "fp32"


def test_explicit_bf16_without_native_bf16_warns_once_in_one_line(monkeypatch, caplog):
    monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="surge.train"):
        assert precision_mod.resolve_precision("bf16", torch.device("cpu")) == "bf16"
    (record,) = caplog.records
    assert "no native bf16" in record.getMessage() and "\n" not in record.getMessage()
    caplog.clear()
    monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda: True)
    with caplog.at_level(logging.WARNING, logger="surge.train"):
        precision_mod.resolve_precision("bf16", torch.device("cpu"))
    assert not caplog.records


def test_trainer_autocasts_in_the_resolved_precision(tmp_path, config, monkeypatch):
    monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda: True)
    assert Trainer(load_config(config), tmp_path / "a").precision == "bf16"
    monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda: False)
    trainer = Trainer(load_config(config), tmp_path / "b")
    assert trainer.precision == "fp32" and trainer.cfg.train.precision == "auto"


def test_shipped_configs_and_docs_do_not_force_bf16():
    for path in sorted((REPO / "configs").glob("*.toml")):
        assert load_config(path).train.precision == "auto", path.name  # merged onto any base
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        commands = "\n".join(re.findall(r"```(?:sh|bash)?\n(.*?)```", doc.read_text(), re.S))
        assert not re.search(r"precision[= ]+\"?bf16", commands), doc.name
