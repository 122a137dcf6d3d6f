"""How the generator's loss terms are combined, and the switches that select them.

The paper combines its three terms convexly with weights recomputed every step:
``w = softmax([L_adv, L_JS, L_GW] / tau)``, ``tau = 0.1``, ``L_G = sum_k w_k L_k``. The softmax
puts the most weight on the currently *largest* term, so whichever term lags is emphasised.

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

TERMS: tuple[str, ...] = ("adv", "js", "gw", "l1")
Combination = Literal["dynamic", "fixed"]


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


def combine_losses(
    losses: Mapping[str, torch.Tensor],
    mode: Combination = "dynamic",
    tau: float = 0.1,
    fixed_weights: Mapping[str, float] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of the given loss terms; returns ``(total, weights)``.

    ``losses`` holds only the terms in use (a disabled or zero-weighted term is simply absent).
    ``mode="dynamic"``: weights from :func:`dynamic_weights` (convex, detached).
    ``mode="fixed"``: ``fixed_weights[name]`` for each term, used as given (not normalised);
    a term without a fixed weight is a :class:`~surge.errors.ConfigError`, extra keys are ignored.
    ``weights`` holds detached 0-d tensors, for logging.
    """
    if not losses:
        raise ValueError("combine_losses: no loss terms given")
    if mode == "dynamic":
        weights = dynamic_weights(losses, tau)
    elif mode == "fixed":
        fixed_weights = fixed_weights or {}
        missing = [name for name in losses if name not in fixed_weights]
        if missing:
            raise ConfigError(f"fixed loss combination: no weight for term(s) {', '.join(missing)}")
        device = next(iter(losses.values())).device
        weights = {name: torch.tensor(float(fixed_weights[name]), device=device) for name in losses}
    else:
        raise ConfigError(f"loss combination must be 'dynamic' or 'fixed', got {mode!r}")
    total = sum(weights[name].to(loss.dtype) * loss.reshape(()) for name, loss in losses.items())
    return total, weights


@dataclass(frozen=True)
class LossConfig:
    """Which generator terms are used and how they are combined. Defaults: the paper's objective.

    - ``adversarial``, ``js``, ``gw``: the WGAN-GP term ``-E[D(G(x))]``, ``JS(SR, HR)`` and
      ``GW(LR, SR)``. With ``adversarial`` off no critic is needed.
    - ``l1``: add the L1 fidelity term (not in the paper's final objective); ``l1_in_combination``
      puts it inside the convex combination as a fourth member, otherwise it is added separately
      as ``l1_weight * L1`` (``l1_weight`` is used only then).
    - ``combination``: ``"dynamic"`` (softmax of the detached losses / ``tau``) or ``"fixed"``
      (``fixed_weights``: one non-negative weight per combined term; a term with weight 0 is
      skipped entirely). ``fixed_weights`` must be empty with ``"dynamic"``.
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
    combination: Combination = "dynamic"
    tau: float = 0.1
    fixed_weights: dict[str, float] = field(default_factory=dict)
    gp_weight: float = 10.0
    js_mode: str = "normalized"
    js_temperature: float = 1.0
    js_bins: int = 64
    gw_normalize: bool = True

    def __post_init__(self) -> None:
        for name in ("adversarial", "js", "gw", "l1", "l1_in_combination", "gw_normalize"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"loss.{name} must be true or false, got {getattr(self, name)!r}")
        if self.combination not in ("dynamic", "fixed"):
            raise ConfigError(f"loss.combination must be 'dynamic' or 'fixed', got {self.combination!r}")
        _check_number("tau", self.tau, positive=True)
        _check_number("gp_weight", self.gp_weight)
        _check_number("l1_weight", self.l1_weight)
        _check_number("js_temperature", self.js_temperature, positive=True)
        if self.js_mode not in JS_MODES:
            raise ConfigError(f"loss.js_mode must be one of {', '.join(JS_MODES)}, got {self.js_mode!r}")
        if isinstance(self.js_bins, bool) or not isinstance(self.js_bins, int) or self.js_bins < 2:
            raise ConfigError(f"loss.js_bins must be an integer >= 2, got {self.js_bins!r}")
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
    losses: Mapping[str, torch.Tensor], config: LossConfig
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The generator's total loss under ``config``: the combination plus a separate L1 if configured.

    ``losses`` must hold exactly ``config.active_terms()``. The returned weights hold the
    combination weights and, for a separate L1, ``"l1"`` = ``l1_weight``.
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
        total, weights = combine_losses(combined, config.combination, config.tau, config.fixed_weights)
    if config.separate_l1:
        l1 = losses["l1"]
        term = config.l1_weight * l1
        total = term if total is None else total + term
        weights["l1"] = torch.tensor(float(config.l1_weight), device=l1.device)
    assert total is not None  # LossConfig guarantees at least one term
    return total, weights


def _check_number(name: str, value, positive: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > 0 if positive else value >= 0)
    if not ok:
        need = "a positive number" if positive else "a non-negative number"
        raise ConfigError(f"loss.{name} must be {need}, got {value!r}")
