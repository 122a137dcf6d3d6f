"""The "dynamic-invariant" loss combination: invariant to the critic's offset and to each term's scale.

Tolerance: weights agree to 1e-6 absolute at every step (from the first: the running scales are
linear in the values, warm-up included), except through a real critic in float32, where
``(d_real + c) - (d_fake + c)`` rounds differently from ``d_real - d_fake``: an untrained tiny
critic's Wasserstein estimate is ~1e-3, so float32 rounding of scores near c = 1 (~1e-7) moves
the normalised signal by ~1e-4 and a weight by up to ~1e-4 / tau: 1e-3 there.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from surge.errors import ConfigError
from surge.losses import adversarial
from surge.losses.combine import (
    LossConfig,
    RunningScale,
    combine_losses,
    generator_objective,
    invariant_weights,
    running_state,
)
from surge.training.checkpoint import atomic_torch_save
from surge.training.config import ExperimentConfig
from surge.training.trainer import Trainer

TAU = 0.1


def _sequence(steps: int = 40, seed: int = 0) -> list[dict[str, float]]:
    """Plausible per-step values: critic scores drifting away from 0, JS ~1e-2, GW ~1e-3."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(steps):
        d_fake = -0.05 * t + rng.normal(0, 0.3)
        d_real = d_fake + 0.5 + rng.normal(0, 0.2)
        rows.append({"d_real": d_real, "d_fake": d_fake, "js": 0.02 * (1 + 0.3 * rng.random()),
                     "gw": 1e-3 * (1 + 0.5 * rng.random())})
    return rows


def _weights_over(rows, mode: str, offset: float = 0.0, factors=None) -> list[dict[str, float]]:
    """Run the combination the trainer's way over ``rows``; D's scores shifted by ``offset``,
    term k's values multiplied by ``factors[k]`` (its loss and its weighting signal)."""
    factors = {"adv": 1.0, "js": 1.0, "gw": 1.0, **(factors or {})}
    config = LossConfig(combination=mode)
    scales = running_state(config)
    out = []
    for row in rows:
        d_real = torch.tensor(row["d_real"], dtype=torch.float64) + offset
        d_fake = torch.tensor(row["d_fake"], dtype=torch.float64) + offset
        losses = {"adv": -d_fake * factors["adv"], "js": torch.tensor(row["js"] * factors["js"], dtype=torch.float64),
                  "gw": torch.tensor(row["gw"] * factors["gw"], dtype=torch.float64)}
        signals = {"adv": (d_real - d_fake) * factors["adv"]}
        _, weights = generator_objective(losses, config, scales=scales, signals=signals)
        out.append({k: float(v) for k, v in weights.items()})
    return out


def _max_diff(a, b) -> float:
    return max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in x)


def test_an_offset_of_the_critic_leaves_the_weights_unchanged_and_moves_the_papers():
    rows = _sequence()
    base = _weights_over(rows, "dynamic-invariant")
    for offset in (-50.0, 3.0, 1e3):
        assert _max_diff(base, _weights_over(rows, "dynamic-invariant", offset=offset)) < 1e-6
    # The paper's weights follow the offset: the defect this mode removes.
    paper = _weights_over(rows, "dynamic")
    assert _max_diff(paper, _weights_over(rows, "dynamic", offset=3.0)) > 0.5


@pytest.mark.parametrize("term", ["adv", "js", "gw"])
@pytest.mark.parametrize("factor", [1e-3, 7.0, 1e4])
def test_scaling_one_term_leaves_the_weights_unchanged(term, factor):
    rows = _sequence(seed=1)
    base = _weights_over(rows, "dynamic-invariant")
    assert _max_diff(base, _weights_over(rows, "dynamic-invariant", factors={term: factor})) < 1e-6


def test_the_weights_follow_each_terms_level_relative_to_its_own_history():
    scales = RunningScale(decay=0.9)
    for _ in range(50):
        w = invariant_weights({"a": 1.0, "b": 1e-3}, scales, TAU)
    assert float(w["a"]) == pytest.approx(0.5, abs=1e-6)  # both at their usual level
    w = invariant_weights({"a": 1.0, "b": 1.2e-3}, scales, TAU)  # b 20% above its running scale
    assert float(w["b"]) > 0.8
    assert float(w["a"] + w["b"]) == pytest.approx(1.0, abs=1e-6)


def test_papers_mode_is_unchanged():
    """``softmax(detached losses / tau)`` and ``sum w_k L_k``, exactly, whatever state is passed."""
    g = torch.Generator().manual_seed(0)
    losses = {"adv": torch.randn((), generator=g, requires_grad=True), "js": torch.rand((), generator=g),
              "gw": torch.rand((), generator=g) * 1e-3}
    expected_w = torch.softmax(torch.stack([losses[k].detach().float() for k in losses]) / TAU, dim=0)
    expected_total = sum(expected_w[i] * losses[k] for i, k in enumerate(losses))
    config = LossConfig()
    assert config.combination == "dynamic" and running_state(config) is None
    for kwargs in ({}, {"scales": RunningScale(), "signals": {"adv": 123.0}}):
        total, weights = generator_objective(losses, config, **kwargs)
        assert torch.equal(total, expected_total)
        assert torch.equal(torch.stack([weights[k] for k in losses]), expected_w)
        total2, _ = combine_losses(losses, "dynamic", TAU, **kwargs)
        assert torch.equal(total2, expected_total)


def test_gradients_reach_every_term_with_the_invariant_weights():
    losses = {"adv": torch.tensor(-2.0, requires_grad=True), "js": torch.tensor(0.1, requires_grad=True)}
    total, weights = combine_losses(losses, "dynamic-invariant", TAU, scales=RunningScale(), signals={"adv": 0.4})
    total.backward()
    for name, loss in losses.items():
        assert loss.grad == pytest.approx(float(weights[name]))  # detached weights: dL/dL_k = w_k


def test_missing_wasserstein_or_state_is_an_error():
    losses = {"adv": torch.tensor(1.0), "js": torch.tensor(0.1)}
    with pytest.raises(ValueError, match="Wasserstein"):
        combine_losses(losses, "dynamic-invariant", scales=RunningScale())
    with pytest.raises(ValueError, match="running state"):
        combine_losses(losses, "dynamic-invariant", signals={"adv": 0.5})


def test_config_names_the_mode_and_checks_the_decay():
    config = LossConfig.from_dict({"combination": "dynamic-invariant", "scale_decay": 0.9})
    assert isinstance(running_state(config), RunningScale) and running_state(config).decay == 0.9
    with pytest.raises(ConfigError, match="loss.combination must be one of dynamic, fixed, dynamic-invariant"):
        LossConfig(combination="invariant")
    for bad in (1.0, 0.0, -0.5, float("nan")):
        with pytest.raises(ConfigError, match="loss.scale_decay"):
            LossConfig(combination="dynamic-invariant", scale_decay=bad)


def test_running_scale_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    scales = RunningScale(0.95)
    for row in _sequence(5):
        invariant_weights({"adv": row["d_real"] - row["d_fake"], "js": row["js"]}, scales)
    path = tmp_path / "state.pt"
    torch.save({"loss_scales": scales.state_dict()}, path)
    restored = RunningScale()
    restored.load_state_dict(torch.load(path, weights_only=True)["loss_scales"])
    assert restored == scales
    a = invariant_weights({"adv": 0.3, "js": 0.02}, scales)
    b = invariant_weights({"adv": 0.3, "js": 0.02}, restored)
    assert all(torch.equal(a[k], b[k]) for k in a)


# --- through the trainer ----------------------------------------------------------------

def _cfg(tmp_path: Path, combination: str) -> ExperimentConfig:
    return ExperimentConfig.from_dict({
        "data": {"train_dirs": [str(tmp_path / "hr")], "hr_size": 16, "batch_size": 4, "val_dir": ""},
        "generator": {"width0": 4, "width1": 4, "blocks0": 1, "blocks1": 1, "head_kernel": 3, "body_kernel": 3},
        "critic": {"width": 4, "max_width": 8, "stages": 1, "pool_size": 2, "hidden": 8},
        "loss": {"adversarial": True, "js": True, "gw": False, "l1": True, "combination": combination},
        "train": {"stage": "gan", "steps": 20, "precision": "fp32", "seed": 3, "out_dir": str(tmp_path)},
    })


def _shift_critic(trainer: Trainer, offset: float) -> None:
    last = [m for m in trainer.d_module.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.bias += offset


def _run(trainer: Trainer, steps: int = 4) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(steps):
        lr, hr = torch.rand(4, 3, 4, 4, generator=g), torch.rand(4, 3, 16, 16, generator=g)
        rows.append(trainer.train_step(lr, hr))
        trainer.step += 1
    return rows


def test_trainer_weights_ignore_the_critics_offset_and_state_is_checkpointed(tmp_path):
    runs = {}
    for offset in (0.0, 1.0):
        trainer = Trainer(_cfg(tmp_path, "dynamic-invariant"), tmp_path / f"run{offset}")
        _shift_critic(trainer, offset)
        runs[offset] = _run(trainer)
        assert trainer.loss_scales.steps == 4 and set(trainer.loss_scales.ema) == {"adv", "js"}
    assert len({round(r["w_adv"], 2) for r in runs[0.0]}) > 1  # the weights do move between steps
    for a, b in zip(runs[0.0], runs[1.0]):
        assert a["loss_adv"] - b["loss_adv"] == pytest.approx(1.0, abs=1e-3)  # the raw term moved with the offset...
        assert a["w_adv"] == pytest.approx(b["w_adv"], abs=1e-3)  # ...its weight did not
        assert a["w_adv"] + a["w_js"] == pytest.approx(1.0, abs=1e-6)
    # The running scales go into the checkpoint and come back on resume.
    trainer.run_dir.mkdir(parents=True)
    atomic_torch_save(trainer.state_dict(), trainer.run_dir / "last.pt")  # what Trainer.run writes
    state = torch.load(trainer.run_dir / "last.pt", weights_only=True)
    assert state["loss_scales"] == trainer.loss_scales.state_dict()
    resumed = Trainer(_cfg(tmp_path, "dynamic-invariant"), trainer.run_dir, resume=True)
    assert resumed.loss_scales == trainer.loss_scales


def test_trainer_in_the_papers_mode_keeps_no_state_and_follows_the_offset(tmp_path):
    runs = {}
    for offset in (0.0, 1.0):
        trainer = Trainer(_cfg(tmp_path, "dynamic"), tmp_path / f"run{offset}")
        assert trainer.loss_scales is None
        _shift_critic(trainer, offset)
        runs[offset] = _run(trainer, steps=2)
    assert abs(runs[0.0][0]["w_adv"] - runs[1.0][0]["w_adv"]) > 0.5
    assert trainer.state_dict()["loss_scales"] is None
