"""Published x4 results (PSNR-Y dB / SSIM-Y) of reference models, as data.

Source: the method spec ``../shared/docs/surge-method.md`` ("Published x4 results of
reference models"), which quotes the original papers' tables; all use the protocol of
:mod:`surge.evaluation.metrics` (Y channel, ``scale`` px border crop, MATLAB bicubic LR).
These are quoted, not measured here: `surge compare` prints them next to measured rows
and labels them as published.

Two bicubic rows exist because two tables are quoted in the literature: the VDSR-era
table that most papers copy (28.42/0.8104 on Set5), and the table that the authors of
the SelfExSR benchmark files published for those very files (28.42/0.8101), which this
package's evaluator reproduces to every printed digit (tests/test_eval.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

REFERENCE_SETS: tuple[str, ...] = ("Set5", "Set14", "BSD100", "Urban100", "Manga109")

# Other names of the same sets in folder layouts and papers.
SET_ALIASES: dict[str, str] = {"b100": "BSD100", "bsd100": "BSD100", "bsds100": "BSD100"}


@dataclass(frozen=True)
class Reference:
    """One published row: ``scores[set] = (psnr_y, ssim_y)``; a set it was not run on is absent."""

    model: str
    params: str  # as published ("57K", "1.5M"); "0" for interpolation
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)
    source: str = ""

    def score(self, set_name: str) -> tuple[float, float] | None:
        return self.scores.get(canonical_set(set_name))


def canonical_set(name: str) -> str:
    """The reference tables' name of a set (``B100`` -> ``BSD100``, ``set5`` -> ``Set5``)."""
    lowered = name.lower()
    if lowered in SET_ALIASES:
        return SET_ALIASES[lowered]
    for known in REFERENCE_SETS:
        if known.lower() == lowered:
            return known
    return name


_SPEC = "surge-method.md (published tables)"

BICUBIC = Reference(
    "Bicubic", "0",
    {
        "Set5": (28.42, 0.8104), "Set14": (26.00, 0.7027), "BSD100": (25.96, 0.6675),
        "Urban100": (23.14, 0.6577), "Manga109": (24.89, 0.7866),
    },
    _SPEC,
)
BICUBIC_SELFEXSR = Reference(
    "Bicubic (SelfExSR table)", "0",
    {"Set5": (28.42, 0.8101), "Set14": (25.99, 0.7023), "BSD100": (25.96, 0.6672), "Urban100": (23.14, 0.6573)},
    "SelfExSR README (Huang et al., CVPR 2015), computed on the benchmark files themselves",
)

REFERENCES: tuple[Reference, ...] = (
    BICUBIC,
    Reference("SRCNN", "57K", {
        "Set5": (30.48, 0.8628), "Set14": (27.50, 0.7513), "BSD100": (26.90, 0.7101),
        "Urban100": (24.52, 0.7221), "Manga109": (27.58, 0.8555)}, _SPEC),
    Reference("FSRCNN", "12K", {
        "Set5": (30.72, 0.8660), "Set14": (27.61, 0.7550), "BSD100": (26.98, 0.7150),
        "Urban100": (24.62, 0.7280)}, _SPEC),
    Reference("VDSR", "0.67M", {
        "Set5": (31.35, 0.8838), "Set14": (28.01, 0.7674), "BSD100": (27.29, 0.7251),
        "Urban100": (25.18, 0.7524)}, _SPEC),
    Reference("EDSR-baseline", "1.5M", {
        "Set5": (32.09, 0.8938), "Set14": (28.58, 0.7813), "BSD100": (27.57, 0.7357),
        "Urban100": (26.04, 0.7849), "Manga109": (30.35, 0.9067)}, _SPEC),
    Reference("CARN", "1.6M", {
        "Set5": (32.13, 0.8937), "Set14": (28.60, 0.7806), "BSD100": (27.58, 0.7349),
        "Urban100": (26.07, 0.7837), "Manga109": (30.47, 0.9084)}, _SPEC),
    Reference("IMDN", "0.7M", {
        "Set5": (32.21, 0.8948), "Set14": (28.58, 0.7811), "BSD100": (27.56, 0.7353),
        "Urban100": (26.04, 0.7838), "Manga109": (30.45, 0.9075)}, _SPEC),
    Reference("RRDB (ESRGAN, PSNR-oriented, DIV2K)", "16.7M", {
        "Set5": (32.60, 0.9002), "Set14": (28.88, 0.7896), "BSD100": (27.76, 0.7432),
        "Urban100": (26.73, 0.8072), "Manga109": (31.16, 0.9164)}, _SPEC),
    Reference("RCAN", "15.6M", {
        "Set5": (32.63, 0.9002), "Set14": (28.87, 0.7889), "BSD100": (27.77, 0.7436),
        "Urban100": (26.82, 0.8087), "Manga109": (31.22, 0.9173)}, _SPEC),
    Reference("SwinIR (DF2K)", "11.9M", {
        "Set5": (32.92, 0.9044), "Set14": (29.09, 0.7950), "BSD100": (27.92, 0.7489),
        "Urban100": (27.45, 0.8254), "Manga109": (32.03, 0.9260)}, _SPEC),
)


def find_reference(model: str) -> Reference:
    """A reference row by model name (case-insensitive, prefix of the row's name allowed)."""
    lowered = model.lower()
    rows = (*REFERENCES, BICUBIC_SELFEXSR)
    for row in rows:
        if row.model.lower() == lowered:
            return row
    matches = [row for row in rows if row.model.lower().startswith(lowered)]
    if len(matches) == 1:
        return matches[0]
    raise KeyError(f"no reference row for {model!r} (have: {', '.join(r.model for r in rows)})")
