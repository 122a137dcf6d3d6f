"""How the generator's loss terms are combined, and the switches that select them.

The paper combines its three terms convexly with weights recomputed every step:
``w = softmax([L_adv, L_JS, L_GW] / tau)``, ``tau = 0.1``, ``L_G = sum_k w_k L_k``. The softmax
puts the most weight on the currently *largest* term, so whichever term lags is emphasised.

That compares losses in different units, and a Wasserstein critic's scores have no fixed offset,
so ``L_adv = -E[D(G(x))]`` and with it ``w_adv`` drift with an arbitrary constant (measured:
docs/method-notes.md). ``"dynamic-invariant"`` (:func:`invariant_weights`) keeps the softmax but
feeds it unit-free, offset-free values: each term divided by its running scale, and for the
adversarial term the critic's Wasserstein estimate ``E[D(y)] - E[D(G(x))]`` instead of
``L_adv``. The weights then do not change when the critic's scores are shifted by a constant or
when any one term is multiplied by a positive factor.

Term names used as dictionary keys everywhere: ``"adv"``, ``"js"``, ``"gw"``, ``"l1"``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal, Mapping

import torch

from surge.errors import ConfigError
from surge.losses.divergence import JS_MODES
from surge.losses.pixel import PIXEL_LOSSES

TERMS: tuple[str, ...] = ("adv", "js", "gw", "l1")
Combination = Literal["dynamic", "fixed", "dynamic-invariant"]
COMBINATIONS: tuple[str, ...] = ("dynamic", "fixed", "dynamic-invariant")


def dynamic_weights(losses: Mapping[str, torch.Tensor], tau: float = 0.1) -> dict[str, torch.Tensor]:
    """``softmax(stack(losses) / tau)`` computed on the DETACHED loss values.

    The weights are a schedule, not something to optimise. Were they differentiable (as in the
    reference release, whose ``dwloss`` applies the softmax to the live losses; the method
    description gives only the formula), then ``d L_G / d L_j = w_j (1 + (L_j - L_G) / tau)``:
    any term more than ``tau`` below the weighted mean gets a *negative* coefficient, i.e. the
    optimiser is rewarded for increasing that loss to shift weight onto it and lower ``L_G``.
    Detached, ``d L_G / d L_j = w_j >= 0``: every term is always pushed down.

    Returns one detached 0-d tensor per key (float32, on the losses' device), summing to 1.
    """
    if not losses:
        raise ValueError("dynamic_weights: no loss terms given")
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"dynamic_weights: tau must be a positive number, got {tau!r}")
    names = list(losses)
    for name in names:
        if losses[name].numel() != 1:
            raise ValueError(f"dynamic_weights: loss {name!r} is not a scalar (shape {tuple(losses[name].shape)})")
    values = torch.stack([losses[name].detach().reshape(()).float() for name in names])
    weights = torch.softmax(values / tau, dim=0)
    return {name: weights[k] for k, name in enumerate(names)}


@dataclass
class RunningScale:
    """Per-term running scale: a bias-corrected exponential moving average of ``|value|``.

    Plain Python floats, so that :meth:`state_dict` goes into a ``weights_only`` checkpoint.
    Linear in the values: scaling one term's values by ``c > 0`` scales its running scale by
    ``c`` exactly (up to float64 rounding), at every step, warm-up included.
    """

    decay: float = 0.99
    steps: int = 0
    ema: dict[str, float] = field(default_factory=dict)

    def update(self, values: Mapping[str, float]) -> dict[str, float]:
        """Add one step's values; returns the bias-corrected scales (the values' own step included)."""
        if set(values) != set(self.ema) and self.steps:
            raise ValueError(f"RunningScale: terms {sorted(values)} differ from the running ones {sorted(self.ema)}")
        self.steps += 1
        for name, value in values.items():
            self.ema[name] = self.decay * self.ema.get(name, 0.0) + (1 - self.decay) * abs(float(value))
        correction = 1 - self.decay**self.steps  # Adam's: the average starts at 0
        return {name: self.ema[name] / correction for name in values}

    def state_dict(self) -> dict:
        return {"decay": float(self.decay), "steps": int(self.steps), "ema": {k: float(v) for k, v in self.ema.items()}}

    def load_state_dict(self, state: Mapping) -> None:
        self.decay, self.steps = float(state["decay"]), int(state["steps"])
        self.ema = {str(k): float(v) for k, v in state["ema"].items()}


def invariant_weights(
    signals: Mapping[str, torch.Tensor | float],
    scales: RunningScale,
    tau: float = 0.1,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """``softmax([s_k / scale_k] / tau)`` with ``scale_k`` the running scale of ``|s_k|``; updates ``scales``.

    ``s_k / scale_k`` is about 1 for a term at its usual level (negative for a signal below 0), so
    the softmax emphasises whichever term is currently *high relative to its own history*: the
    paper's "lagging term", without comparing losses in different units. Give offset-free
    signals (for the adversarial term the critic's Wasserstein estimate, not ``-E[D(G(x))]``).
    A signal that is exactly 0 at every step so far has scale 0 and counts as 0.

    Returns one detached float32 0-d tensor per key on ``device``, summing to 1.
    """
    if not signals:
        raise ValueError("invariant_weights: no signals given")
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"invariant_weights: tau must be a positive number, got {tau!r}")
    values = {name: float(v) for name, v in signals.items()}
    bad = [name for name, v in values.items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"invariant_weights: non-finite signal for {', '.join(bad)}")
    running = scales.update(values)
    normalised = torch.tensor(
        [values[n] / running[n] if running[n] > 0 else 0.0 for n in values], dtype=torch.float64
    )
    weights = torch.softmax(normalised / tau, dim=0).to(device=device, dtype=torch.float32)
    return {name: weights[k] for k, name in enumerate(values)}


def combine_losses(
    losses: Mapping[str, torch.Tensor],
    mode: Combination = "dynamic",
    tau: float = 0.1,
    fixed_weights: Mapping[str, float] | None = None,
    *,
    scales: RunningScale | None = None,
    signals: Mapping[str, torch.Tensor | float] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of the given loss terms; returns ``(total, weights)``.

    ``losses`` holds only the terms in use (a disabled or zero-weighted term is simply absent).
    ``mode="dynamic"``: weights from :func:`dynamic_weights` (convex, detached).
    ``mode="fixed"``: ``fixed_weights[name]`` for each term, used as given (not normalised);
    a term without a fixed weight is a :class:`~surge.errors.ConfigError`, extra keys are ignored.
    ``mode="dynamic-invariant"``: weights from :func:`invariant_weights` with the running state
    ``scales`` (required; updated); the signal of each term is its detached loss, except where
    ``signals`` gives one; ``"adv"`` must be given there (the critic's Wasserstein estimate).
    ``scales`` and ``signals`` are ignored by the other modes.
    ``weights`` holds detached 0-d tensors, for logging.
    """
    if not losses:
        raise ValueError("combine_losses: no loss terms given")
    if mode == "dynamic":
        weights = dynamic_weights(losses, tau)
    elif mode == "dynamic-invariant":
        weights = invariant_weights(_invariant_signals(losses, signals), _required(scales), tau,
                                    device=next(iter(losses.values())).device)
    elif mode == "fixed":
        fixed_weights = fixed_weights or {}
        missing = [name for name in losses if name not in fixed_weights]
        if missing:
            raise ConfigError(f"fixed loss combination: no weight for term(s) {', '.join(missing)}")
        device = next(iter(losses.values())).device
        weights = {name: torch.full((), float(fixed_weights[name]), device=device) for name in losses}
    else:
        raise ConfigError(f"loss combination must be one of {', '.join(COMBINATIONS)}, got {mode!r}")
    total = sum(weights[name].to(loss.dtype) * loss.reshape(()) for name, loss in losses.items())
    return total, weights


def _invariant_signals(
    losses: Mapping[str, torch.Tensor], signals: Mapping[str, torch.Tensor | float] | None
) -> dict[str, torch.Tensor | float]:
    signals = signals or {}
    if "adv" in losses and "adv" not in signals:
        raise ValueError(
            "dynamic-invariant combination: the adversarial term needs the critic's Wasserstein estimate "
            "E[D(real)] - E[D(fake)] as signals['adv'] (-E[D(fake)] has an arbitrary offset)"
        )
    return {name: signals[name] if name in signals else losses[name].detach() for name in losses}


def _required(scales: RunningScale | None) -> RunningScale:
    if scales is None:
        raise ValueError("dynamic-invariant combination needs its running state (scales=RunningScale(...))")
    return scales


@dataclass(frozen=True)
class LossConfig:
    """Which generator terms are used and how they are combined. Defaults: the paper's objective.

    - ``adversarial``, ``js``, ``gw``: the WGAN-GP term ``-E[D(G(x))]``, ``JS(SR, HR)`` and
      ``GW(LR, SR)``. With ``adversarial`` off no critic is needed.
    - ``l1``: add the L1 fidelity term (not in the paper's final objective); ``l1_in_combination``
      puts it inside the convex combination as a fourth member, otherwise it is added separately
      as ``l1_weight * L1`` (``l1_weight`` is used only then).
    - ``pixel``: the fidelity function of that term, ``"l1"`` (default), ``"mse"`` or
      ``"charbonnier"`` (:mod:`surge.losses.pixel`). The term keeps the key ``"l1"`` in logs,
      weights and checkpoints whichever function it uses, so runs stay comparable and resumable.
    - ``combination``: ``"dynamic"`` (softmax of the detached losses / ``tau``, the paper's),
      ``"dynamic-invariant"`` (softmax of each term over its running scale / ``tau``, the
      adversarial term taken as the critic's Wasserstein estimate: :func:`invariant_weights`;
      ``scale_decay`` is the running scale's EMA decay) or ``"fixed"`` (``fixed_weights``: one
      non-negative weight per combined term; a term with weight 0 is skipped entirely).
      ``fixed_weights`` must be empty unless ``"fixed"``.
    - ``gp_weight``: lambda of the critic's gradient penalty (10 in the release).
    - ``js_mode``, ``js_temperature``, ``js_bins``: see :func:`surge.losses.js_divergence`.
    - ``gw_normalize``: divide each GW distance matrix by its maximum (the method's definition).
    """

    adversarial: bool = True
    js: bool = True
    gw: bool = True
    l1: bool = False
    l1_in_combination: bool = False
    l1_weight: float = 1.0
    pixel: str = "l1"
    combination: Combination = "dynamic"
    tau: float = 0.1
    fixed_weights: dict[str, float] = field(default_factory=dict)
    scale_decay: float = 0.99
    gp_weight: float = 10.0
    js_mode: str = "normalized"
    js_temperature: float = 1.0
    js_bins: int = 64
    gw_normalize: bool = True

    def __post_init__(self) -> None:
        for name in ("adversarial", "js", "gw", "l1", "l1_in_combination", "gw_normalize"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"loss.{name} must be true or false, got {getattr(self, name)!r}")
        if self.combination not in COMBINATIONS:
            raise ConfigError(f"loss.combination must be one of {', '.join(COMBINATIONS)}, got {self.combination!r}")
        _check_number("tau", self.tau, positive=True)
        _check_number("scale_decay", self.scale_decay, positive=True)
        if self.scale_decay >= 1:
            raise ConfigError(f"loss.scale_decay must be below 1, got {self.scale_decay!r}")
        _check_number("gp_weight", self.gp_weight)
        _check_number("l1_weight", self.l1_weight)
        _check_number("js_temperature", self.js_temperature, positive=True)
        if self.js_mode not in JS_MODES:
            raise ConfigError(f"loss.js_mode must be one of {', '.join(JS_MODES)}, got {self.js_mode!r}")
        if isinstance(self.js_bins, bool) or not isinstance(self.js_bins, int) or self.js_bins < 2:
            raise ConfigError(f"loss.js_bins must be an integer >= 2, got {self.js_bins!r}")
        if self.pixel not in PIXEL_LOSSES:
            raise ConfigError(f"loss.pixel must be one of {', '.join(PIXEL_LOSSES)}, got {self.pixel!r}")
        if self.pixel != "l1" and not self.l1:
            raise ConfigError(f"loss.pixel = {self.pixel!r} needs loss.l1 = true (the pixel term)")
        if self.l1_in_combination and not self.l1:
            raise ConfigError("loss.l1_in_combination needs loss.l1 = true")
        if self.l1 and not self.l1_in_combination and self.l1_weight == 0:
            raise ConfigError("loss.l1_weight is 0: set loss.l1 = false to drop the L1 term")
        if not isinstance(self.fixed_weights, Mapping):
            raise ConfigError(f"loss.fixed_weights must be a mapping of term -> weight, got {self.fixed_weights!r}")
        object.__setattr__(self, "fixed_weights", dict(self.fixed_weights))  # private copy
        combined = self._combined_terms()
        if self.combination == "fixed":
            unknown = sorted(set(self.fixed_weights) - set(TERMS))
            if unknown:
                raise ConfigError(
                    f"loss.fixed_weights: unknown term(s) {', '.join(unknown)}; terms are {', '.join(TERMS)}"
                )
            unused = sorted(set(self.fixed_weights) - set(combined))
            if unused:
                raise ConfigError(f"loss.fixed_weights: weight given for disabled term(s) {', '.join(unused)}")
            missing = [name for name in combined if name not in self.fixed_weights]
            if missing:
                raise ConfigError(f"loss.fixed_weights: no weight for enabled term(s) {', '.join(missing)}")
            for name, value in self.fixed_weights.items():
                _check_number(f"fixed_weights.{name}", value)
        elif self.fixed_weights:
            raise ConfigError("loss.fixed_weights is only used with loss.combination = 'fixed'")
        if not self.combination_terms() and not self.separate_l1:
            raise ConfigError("loss: no generator loss term is enabled (or all fixed weights are 0)")

    def _combined_terms(self) -> tuple[str, ...]:
        enabled = {"adv": self.adversarial, "js": self.js, "gw": self.gw, "l1": self.l1 and self.l1_in_combination}
        return tuple(name for name in TERMS if enabled[name])

    def combination_terms(self) -> tuple[str, ...]:
        """Terms inside the (dynamic or fixed) combination, fixed weight-0 terms left out."""
        terms = self._combined_terms()
        if self.combination == "fixed":
            terms = tuple(name for name in terms if self.fixed_weights[name] != 0)
        return terms

    @property
    def separate_l1(self) -> bool:
        """Whether L1 is added outside the combination, as ``l1_weight * L1``."""
        return self.l1 and not self.l1_in_combination

    def active_terms(self) -> tuple[str, ...]:
        """Every term the trainer must compute for the generator step."""
        return self.combination_terms() + (("l1",) if self.separate_l1 else ())

    @property
    def needs_critic(self) -> bool:
        return "adv" in self.combination_terms()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "LossConfig":
        from surge.models.config import dataclass_from_dict

        return dataclass_from_dict(cls, dict(data) if isinstance(data, Mapping) else data, "loss config")


def generator_objective(
    losses: Mapping[str, torch.Tensor],
    config: LossConfig,
    *,
    scales: RunningScale | None = None,
    signals: Mapping[str, torch.Tensor | float] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The generator's total loss under ``config``: the combination plus a separate L1 if configured.

    ``losses`` must hold exactly ``config.active_terms()``. The returned weights hold the
    combination weights and, for a separate L1, ``"l1"`` = ``l1_weight``. ``scales`` and
    ``signals``: see :func:`combine_losses` (used only by ``"dynamic-invariant"``; make the
    state with :func:`running_state`).
    """
    expected = set(config.active_terms())
    if set(losses) != expected:
        raise ValueError(
            f"generator_objective: got terms {sorted(losses)}, config needs {sorted(expected)}"
        )
    combined = {name: losses[name] for name in config.combination_terms()}
    total: torch.Tensor | None = None
    weights: dict[str, torch.Tensor] = {}
    if combined:
        total, weights = combine_losses(combined, config.combination, config.tau, config.fixed_weights,
                                        scales=scales, signals=signals)
    if config.separate_l1:
        l1 = losses["l1"]
        term = config.l1_weight * l1
        total = term if total is None else total + term
        # filled on the device: a tensor made from a Python number on CUDA is a pageable copy
        # that waits for the GPU (every step)
        weights["l1"] = torch.full((), float(config.l1_weight), device=l1.device)
    assert total is not None  # LossConfig guarantees at least one term
    return total, weights


def running_state(config: LossConfig) -> RunningScale | None:
    """The state a training run keeps for ``config``'s combination (None when it needs none)."""
    return RunningScale(config.scale_decay) if config.combination == "dynamic-invariant" else None


def _check_number(name: str, value, positive: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > 0 if positive else value >= 0)
    if not ok:
        need = "a positive number" if positive else "a non-negative number"
        raise ConfigError(f"loss.{name} must be {need}, got {value!r}")
