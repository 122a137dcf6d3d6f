"""Travel states (surge.training.travel): a checkpoint in bounded safetensors parts that resumes.

A device call returns files of at most 16 MiB; here the part limit is a few KiB, so a tiny GAN run's
state (generator, EMA, critic, both Adams) spreads over many parts, tensors cut across them.
"""

import json
from pathlib import Path

import pytest
import torch

import surge
from surge.train import main as train_main
from surge.training import travel
from surge.training.checkpoint import load_checkpoint
from surge.training.travel import TravelStateError

from training_helpers import TINY_CRITIC, random_hr_folder, write_tiny_config

PART = 64 * 1024  # bytes: the surge-tiny generator alone is ~100 KB in float32; the plan in part 0 ~50 KB


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory) -> Path:
    return random_hr_folder(tmp_path_factory.mktemp("hr"), 5, (48, 40), noise=(12, 10))


def _config(folder: Path, hr_dir: Path, steps: int) -> Path:
    """A GAN run with the tiny critic and EMA, no periodic checkpoint; the run folder is given on the command line."""
    return write_tiny_config(folder / f"tiny-{steps}.toml", hr_dir, gan=True, steps=steps, ckpt_every=1000,
                             critic=TINY_CRITIC, optim={"ema_decay": 0.9})


def _train(run_dir: Path, config: Path, *extra: str) -> None:
    assert train_main([str(config), "--run-dir", str(run_dir), *extra]) == 0


def _resume(run_dir: Path, *extra: str) -> None:
    assert train_main(["unused.toml", "--resume", str(run_dir), *extra]) == 0


def _losses(run_dir: Path) -> dict[int, str]:
    import csv

    with (run_dir / "log.csv").open() as f:
        return {int(r["step"]): r["loss_g"] for r in csv.DictReader(f) if r.get("loss_g")}


@pytest.fixture(scope="module")
def three_steps(tmp_path_factory, hr_dir) -> Path:
    """A run folder after 3 of 6 GAN steps (with EMA, critic and both Adams)."""
    root = tmp_path_factory.mktemp("three")
    _train(root / "run", _config(root, hr_dir, 3))
    return root / "run"


def _tensors(obj, prefix=""):
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}/{i}")


def _without_tensors(obj):
    if isinstance(obj, torch.Tensor):
        return "T"
    if isinstance(obj, dict):
        return {k: _without_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_without_tensors(v) for v in obj)
    return obj


def test_exact_profile_round_trips_bit_for_bit_in_parts_under_the_limit(three_steps, tmp_path):
    state = load_checkpoint(three_steps / "last.pt")
    paths = travel.save_travel_state(state, tmp_path, {"note": "x"}, profile="exact", part_bytes=PART)
    assert len(paths) >= 3
    assert all(p.stat().st_size <= PART for p in paths)
    back, info = travel.load_travel_state(tmp_path)
    assert info["profile"] == "exact" and info["note"] == "x" and info["dropped"] == []
    assert _without_tensors(back) == _without_tensors(state)  # numbers, strings, int dict keys, tuples
    ours, theirs = dict(_tensors(back)), dict(_tensors(state))
    assert ours.keys() == theirs.keys()
    for key, t in theirs.items():
        assert ours[key].dtype == t.dtype and ours[key].shape == t.shape and torch.equal(ours[key], t), key
    assert isinstance(back["opt_g"]["state"], dict) and all(isinstance(k, int) for k in back["opt_g"]["state"])
    assert isinstance(back["opt_g"]["param_groups"][0]["betas"], tuple)


def test_compact_profile_rounds_ema_and_moments_once_and_keeps_the_rest_exact(three_steps, tmp_path):
    state = load_checkpoint(three_steps / "last.pt")
    exact_bytes = travel.estimate_bytes(state, "exact")
    paths = travel.save_travel_state(state, tmp_path, profile="compact", part_bytes=PART)
    assert all(p.stat().st_size <= PART for p in paths)
    back, info = travel.load_travel_state(paths[0])  # any part names the whole state
    assert info["dtypes"] == {"weights": "float32", "ema": "float16", "moments": "bfloat16"}
    assert travel.estimate_bytes(state, "compact") < 0.7 * exact_bytes
    for name, t in state["generator"].items():
        assert torch.equal(back["generator"][name], t)
    for name, t in state["ema"].items():
        assert back["ema"][name].dtype == torch.float32
        torch.testing.assert_close(back["ema"][name], t, rtol=1e-3, atol=1e-5)
        assert torch.equal(back["ema"][name], t.half().float())
    for idx, s in state["opt_g"]["state"].items():
        assert torch.equal(back["opt_g"]["state"][idx]["step"], s["step"])  # never rounded
        assert torch.equal(back["opt_g"]["state"][idx]["exp_avg_sq"], s["exp_avg_sq"].bfloat16().float())
    assert torch.equal(back["rng"]["torch"], state["rng"]["torch"]) and back["step"] == state["step"] == 3


def test_lean_and_minimal_profiles_are_warm_restarts(three_steps, tmp_path):
    state = load_checkpoint(three_steps / "last.pt")
    travel.save_travel_state(state, tmp_path / "lean", profile="lean", part_bytes=PART)
    lean, info = travel.load_travel_state(tmp_path / "lean")
    assert info["dropped"] == ["moments"] and "warm restart" in info["restore"]
    assert lean["opt_g"]["state"] == {} and lean["opt_d"]["state"] == {}
    assert lean["opt_g"]["param_groups"] == state["opt_g"]["param_groups"]
    assert lean["sched_g"] == state["sched_g"]  # the schedule's position survives
    travel.save_travel_state(state, tmp_path / "min", profile="minimal", part_bytes=PART)
    minimal, info = travel.load_travel_state(tmp_path / "min")
    assert info["dropped"] == ["ema", "moments"]
    for name, t in state["generator"].items():
        assert torch.equal(minimal["generator"][name], t.half().to(t.dtype) if t.is_floating_point() else t)
        assert torch.equal(minimal["ema"][name], minimal["generator"][name])  # the EMA restarts from the weights
    sizes = [travel.estimate_bytes(state, p) for p in travel.PROFILES]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0] / 4


def test_auto_profile_is_the_most_faithful_that_fits(three_steps):
    state = load_checkpoint(three_steps / "last.pt")
    sizes = {p: travel._layout(state, None, p, PART).size() for p in travel.PROFILES}
    assert sizes["exact"] > sizes["compact"] > sizes["lean"] > sizes["minimal"]
    assert travel.choose_profile(state, 10 * travel.MIB) == "exact"
    assert travel.choose_profile(state, sizes["compact"], part_bytes=PART, max_parts=64) == "compact"
    assert travel.choose_profile(state, sizes["compact"] - 1, part_bytes=PART, max_parts=64) == "lean"
    # too few files allowed for the larger profiles
    lean_parts = len(travel._layout(state, None, "lean", PART).parts)
    assert travel.choose_profile(state, 10 * travel.MIB, part_bytes=PART, max_parts=lean_parts) in ("lean", "minimal")
    with pytest.raises(TravelStateError, match="no travel-state profile fits"):
        travel.choose_profile(state, 1000)


def test_missing_corrupt_and_mixed_parts_are_clear_errors(three_steps, tmp_path):
    state = load_checkpoint(three_steps / "last.pt")
    paths = travel.save_travel_state(state, tmp_path / "s", profile="exact", part_bytes=PART)
    # corrupt: flip a byte in the tensor data (the end of the file)
    data = bytearray(paths[1].read_bytes())
    data[-10] ^= 0xFF
    bad = tmp_path / "bad"
    bad.mkdir()
    for p in paths:
        (bad / p.name).write_bytes(p.read_bytes())
    (bad / paths[1].name).write_bytes(bytes(data))
    with pytest.raises(TravelStateError, match=rf"{paths[1].name}: corrupt part"):
        travel.load_travel_state(bad)
    # truncated
    (bad / paths[1].name).write_bytes(paths[1].read_bytes()[:100])
    with pytest.raises(TravelStateError, match=rf"{paths[1].name}: "):
        travel.load_travel_state(bad)
    # missing
    (bad / paths[1].name).unlink()
    with pytest.raises(TravelStateError, match=rf"missing {paths[1].name} of {len(paths)} part"):
        travel.load_travel_state(bad)
    # a part of another save
    other = travel.save_travel_state(state, tmp_path / "o", profile="exact", part_bytes=PART)
    (bad / paths[1].name).write_bytes(other[1].read_bytes())
    with pytest.raises(TravelStateError, match="part of another save"):
        travel.load_travel_state(bad)
    with pytest.raises(TravelStateError, match="no travel state"):
        travel.load_travel_state(tmp_path / "nothing")
    # a new, smaller save over an old one removes the old one's extra parts
    fewer = travel.save_travel_state(state, tmp_path / "s", profile="minimal", part_bytes=PART)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [p.name for p in fewer]


def test_a_carried_exact_state_resumes_like_an_uninterrupted_run(three_steps, hr_dir, tmp_path):
    """Two 'device calls' of 3 steps, the state travelling between them, equal one run of 6 steps;
    the step counter and the lineage of sessions continue."""
    _train(tmp_path / "ref", _config(tmp_path, hr_dir, 6))
    reference = _losses(tmp_path / "ref")
    out = tmp_path / "out"
    _, packed = travel.pack_run(three_steps, out, profile="auto", part_bytes=PART, max_parts=64)
    assert packed["profile"] == "exact" and packed["step"] == 3
    assert [(e["start_step"], e["end_step"], e["restored"]) for e in packed["lineage"]] == [(0, 3, "none")]

    second = tmp_path / "second"
    unpacked = travel.unpack_state(out, second)
    assert unpacked["step"] == 3
    _resume(second, "train.steps=6")
    resumed = _losses(second)
    assert {s: resumed[s] for s in (4, 5, 6)} == {s: reference[s] for s in (4, 5, 6)}
    assert load_checkpoint(second / "last.pt")["step"] == 6

    _, again = travel.pack_run(second, tmp_path / "out2", profile="compact", part_bytes=PART, max_parts=64)
    lineage = again["lineage"]
    assert [(e["session"], e["start_step"], e["end_step"], e["steps"], e["restored"]) for e in lineage] == [
        (0, 0, 3, 3, "none"), (1, 3, 6, 3, "exact")]
    assert lineage[0]["run"] == lineage[1]["run"]
    assert all(e["device"] and e["started"] for e in lineage)
    with pytest.raises(TravelStateError, match="a run already exists"):
        travel.unpack_state(out, second)

    # Shipped weights from it: float16 storage, said in the provenance, loaded as float32.
    weights = travel.export_weights(tmp_path / "out2", tmp_path / "w16.safetensors", dtype="float16")
    model = surge.load_model(weights, device="cpu")
    p = model.provenance
    assert p["steps"] == 6 and p["total_steps"] == 6 and p["ema"] is True
    assert p["storage"].startswith("float16") and [e["steps"] for e in p["sessions"]] == [3, 3]
    assert all(t.dtype == torch.float32 for t in model.network.state_dict().values() if t.is_floating_point())
    ema = load_checkpoint(second / "last.pt")["ema"]
    for name, t in model.network.state_dict().items():
        if t.is_floating_point():
            assert torch.equal(t, ema[name].half().float()), name
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} == {"F16"}


def test_a_warm_restart_continues_the_step_count_and_schedule(three_steps, tmp_path):
    out = tmp_path / "out"
    _, packed = travel.pack_run(three_steps, out, profile="minimal", part_bytes=PART, max_parts=64)
    # its EMA was dropped: an export holds the (rounded) weights and says they are not an EMA
    weights = travel.export_weights(out, tmp_path / "m.safetensors", dtype="float32")
    assert surge.load_model(weights, device="cpu").provenance["ema"] is False
    with pytest.raises(TravelStateError, match="EMA was dropped"):
        travel.export_weights(out, tmp_path / "e.safetensors", which="ema")
    run = tmp_path / "warm"
    travel.unpack_state(out, run)
    _resume(run, "train.steps=5")
    state = load_checkpoint(run / "last.pt")
    assert state["step"] == 5 and state["sched_g"]["last_epoch"] == 5
    carried = json.loads((run / travel.CARRY_FILE).read_text())
    assert carried["profile"] == "minimal" and "warm restart" in carried["losses"][0]
    _, again = travel.pack_run(run, tmp_path / "out2", profile="exact")
    assert [e["restored"] for e in again["lineage"]] == ["none", "minimal"]
    assert sum(e["steps"] for e in again["lineage"]) == 5
    # what was rounded stays on record through later saves and exports
    weights = travel.export_weights(run, tmp_path / "w.safetensors", dtype="bfloat16")
    provenance = surge.load_model(weights, device="cpu").provenance
    assert provenance["storage"].startswith("bfloat16") and "minimal" in provenance["rounding"][0]


def test_repack_only_loses_and_fits_a_budget(three_steps, tmp_path):
    state = load_checkpoint(three_steps / "last.pt")
    travel.save_travel_state(state, tmp_path / "c", profile="compact", part_bytes=PART)
    budget = travel._layout(state, None, "lean", PART).size() + 2000  # + 2000: the info grows by a line
    result = travel.repack(tmp_path / "c", tmp_path / "small", budget_bytes=budget, part_bytes=PART, max_parts=64)
    assert result["profile"] in ("lean", "minimal") and result["bytes"] <= budget
    _, info = travel.load_travel_state(tmp_path / "small")
    assert "repacked from compact" in info["losses"][-1]
    with pytest.raises(TravelStateError, match="cannot become exact"):
        travel.repack(tmp_path / "c", tmp_path / "x", profile="exact")


def test_command_line_errors_are_one_line(tmp_path, capsys):
    assert travel.main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("surge: error: ") and err.count("\n") == 1 and str(tmp_path) in err
