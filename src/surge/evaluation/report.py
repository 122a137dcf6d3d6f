"""Human-readable outputs of evaluations: the `surge eval` table, the markdown comparison
with published rows, and the zoomed-crop figure of `surge compare`.

Every table shows how many of a set's images a mean covers ("13/14*") and lists the
skipped images: a mean over a silently smaller set is not comparable with published
numbers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from surge.evaluation.metrics import rgb_to_y
from surge.evaluation.reference import REFERENCES, Reference, canonical_set
from surge.evaluation.runner import SetResult, atomic_output
from surge.safetext import printable

# ---------------------------------------------------------------------------------------
# Plain-text table of `surge eval`


def _fmt(x: float | None, digits: int) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if math.isinf(x):
        return "inf"
    return f"{x:.{digits}f}"


def format_eval_table(results: dict[str, SetResult], rgb: bool = False) -> str:
    """The table `surge eval` prints: set, images, PSNR-Y, SSIM-Y[, PSNR-RGB][, NIQE][, VIF], s/image.

    NIQE and VIF columns appear when any set was measured with them.
    """
    perceptual = [(key, label, digits) for key, label, digits in (("niqe", "NIQE", 3), ("vif", "VIF", 4))
                  if any(getattr(r, key) is not None for r in results.values())]
    header = ["set", "images", "PSNR-Y", "SSIM-Y"] + (["PSNR-RGB"] if rgb else []) + [p[1] for p in perceptual] + ["s/img"]
    rows = []
    for name, r in results.items():
        row = [printable(name), r.coverage(), _fmt(r.psnr_y, 2), _fmt(r.ssim_y, 4)]
        if rgb:
            row.append(_fmt(r.psnr_rgb, 2))
        row.extend(_fmt(getattr(r, key), digits) for key, _, digits in perceptual)
        row.append(_fmt(r.seconds_per_image, 3))
        rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def format_skipped(results: dict[str, SetResult]) -> str:
    """Lines naming every skipped image and why; empty when every image was measured."""
    lines = []
    for name, r in results.items():
        name = printable(name)
        if r.unmeasured:
            lines.append(f"* {name}: some images could not be measured with every metric (those means are over fewer images)")
            lines.extend(printable(f"    not measured {s.name}: {s.reason}") for s in r.unmeasured)
        if r.complete:
            continue
        if r.images == 0:
            lines.append(f"* {name}: no image could be measured ({r.total} in the set); no mean is reported")
        else:
            lines.append(f"* {name}: mean over {r.images} of {r.total} images, NOT comparable with published results")
        lines.extend(printable(f"    skipped {s.name}: {s.reason}") for s in r.skipped)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Markdown comparison


@dataclass
class ModelEntry:
    """One measured column of a comparison: a model and its results per set."""

    name: str
    results: dict[str, SetResult] = field(default_factory=dict)
    params: int | None = None
    origin: str = "measured"  # or the JSON file the results came from

    def result(self, set_name: str) -> SetResult | None:
        for key, r in self.results.items():
            if canonical_set(key) == canonical_set(set_name):
                return r
        return None


def format_params(n: int | None) -> str:
    if n is None:
        return "?"
    if n == 0:
        return "0"
    if n < 1_000_000:
        return f"{n / 1000:.1f}K" if n < 10_000 else f"{n / 1000:.0f}K"
    return f"{n / 1e6:.2f}M"


def markdown_table(
    entries: Sequence[ModelEntry],
    sets: Sequence[str],
    references: Sequence[Reference] = REFERENCES,
) -> str:
    """Measured models and published rows side by side, PSNR-Y / SSIM-Y per set."""
    head = "| model | params | " + " | ".join(sets) + " | source |"
    sep = "|---|---|" + "---|" * len(sets) + "---|"
    lines = [head, sep]
    footnotes = []
    for e in entries:
        cells = []
        for s in sets:
            r = e.result(s)
            if r is None or r.images == 0:
                cells.append("-")
                continue
            cell = f"{_fmt(r.psnr_y, 2)} / {_fmt(r.ssim_y, 4)}"
            if not r.complete:
                cell += f" ({r.images}/{r.total} images)*"
                footnotes.append(
                    f"\\* {e.name} on {s}: mean over {r.images} of {r.total} images (skipped: "
                    + ", ".join(x.name for x in r.skipped) + "); not comparable with published rows."
                )
            cells.append(cell)
        lines.append(f"| **{e.name}** | {format_params(e.params)} | " + " | ".join(cells) + f" | {e.origin} |")
    for ref in references:
        cells = []
        for s in sets:
            score = ref.score(s)
            cells.append("-" if score is None else f"{score[0]:.2f} / {score[1]:.4f}")
        if all(c == "-" for c in cells):
            continue
        lines.append(f"| {ref.model} | {ref.params} | " + " | ".join(cells) + " | published |")
    out = "\n".join(lines)
    if footnotes:
        out += "\n\n" + "\n".join(footnotes)
    return out


def markdown_report(
    entries: Sequence[ModelEntry],
    sets: Sequence[str],
    figure: str | None = None,
    references: Sequence[Reference] = REFERENCES,
    protocol: str = "",
) -> str:
    parts = [
        "# x4 super-resolution: measured vs published",
        "",
        "PSNR-Y (dB) / SSIM-Y. Bold rows were measured by `surge compare`/`surge eval`; the others are "
        "quoted from the papers (method spec), not re-run.",
    ]
    if protocol:
        parts += ["", f"Protocol: {protocol}"]
    parts += ["", markdown_table(entries, sets, references)]
    if figure:
        parts += ["", f"![zoomed crops]({figure})"]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------
# Crops


@dataclass(frozen=True)
class CropSpec:
    """``Set/image:x,y,size``: a size x size HR-pixel square whose top-left corner is (x, y)."""

    set_name: str
    image: str
    x: int | None = None
    y: int | None = None
    size: int | None = None

    @classmethod
    def parse(cls, text: str) -> "CropSpec":
        from surge.errors import SurgeError

        where, _, box = text.partition(":")
        set_name, slash, image = where.partition("/")
        if not slash or not set_name or not image:
            raise SurgeError(f"--crops {text!r}: expected SET/IMAGE[:X,Y,SIZE], e.g. Set5/butterfly:100,80,64")
        if not box:
            return cls(set_name, image)
        try:
            x, y, size = (int(v) for v in box.split(","))
        except ValueError:
            raise SurgeError(f"--crops {text!r}: X,Y,SIZE must be three integers") from None
        if x < 0 or y < 0 or size < 4:
            raise SurgeError(f"--crops {text!r}: X and Y must be >= 0 and SIZE >= 4")
        return cls(set_name, image, x, y, size)

    def __str__(self) -> str:
        box = f":{self.x},{self.y},{self.size}" if self.size is not None else ""
        return f"{self.set_name}/{self.image}{box}"


def most_detailed_window(hr: np.ndarray, size: int, margin: int = 8) -> tuple[int, int]:
    """Top-left (x, y) of the size x size window with the most luma gradient energy.

    The default crop when none is given: flat sky shows nothing about a model. Windows
    start ``margin`` px inside the image (borders are cropped from the metrics anyway).
    """
    H, W = hr.shape[:2]
    margin = max(0, min(margin, (H - size) // 2, (W - size) // 2))
    x, y = _max_energy_window(hr[margin : H - margin, margin : W - margin], size)
    return x + margin, y + margin


def _max_energy_window(hr: np.ndarray, size: int) -> tuple[int, int]:
    y = rgb_to_y(hr)
    gy, gx = np.gradient(y)
    energy = gx * gx + gy * gy
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    H, W = y.shape
    window = (
        integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    )[: H - size + 1, : W - size + 1]
    r, c = np.unravel_index(int(np.argmax(window)), window.shape)
    return int(c), int(r)


@dataclass
class CropPanel:
    title: str
    pixels: np.ndarray  # uint8 HxW or HxWx3


def save_crop_figure(rows: Sequence[tuple[str, Sequence[CropPanel]]], path: str | os.PathLike) -> Path:
    """A grid of zoomed crops (one row per crop, one column per image), written atomically.

    Pixels are shown with nearest-neighbour zoom so that blur and artefacts stay visible.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed; safe to call repeatedly
    import matplotlib.pyplot as plt

    path = Path(path)
    n_rows = len(rows)
    n_cols = max(len(panels) for _, panels in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.4 * n_cols, 2.7 * n_rows), squeeze=False)
    for r, (label, panels) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(panels):
                ax.axis("off")
                continue
            p = panels[c]
            ax.imshow(p.pixels, cmap="gray" if p.pixels.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
            ax.set_title(p.title, fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.tight_layout()
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)
    return Path(path)


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file atomically (temp file in the same folder, then ``os.replace``)."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return Path(path)


# ---------------------------------------------------------------------------------------
# Reading saved results


def load_results_json(path: str | os.PathLike) -> list[ModelEntry]:
    """Model entries from a `surge eval --json` file ({set: result}) or a `surge compare`
    ``results.json`` ({model: {set: result}}); DatasetError naming the file if malformed."""
    import json

    from surge.errors import DatasetError

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: results file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable JSON results file ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, dict):
        kinds = {list: "a JSON array", str: "a JSON string", bool: "true/false", type(None): "null"}
        kind = kinds.get(type(data), "a JSON number")
        raise DatasetError(f"{path}: expected a JSON object of results ({{set: result}}, from `surge eval --json`), got {kind}")
    if not data:
        raise DatasetError(f"{path}: holds no results (an empty JSON object); give a `surge eval --json` file")

    def entry(name: str | None, sets: dict) -> ModelEntry:
        if not isinstance(sets, dict) or not all(isinstance(v, dict) for v in sets.values()):
            raise DatasetError(f"{path}: expected {{set: result}} objects")
        try:
            results = {s: SetResult.from_dict(s, v, name) for s, v in sets.items()}
        except DatasetError as exc:
            raise DatasetError(f"{path}: {exc}") from None
        first = next(iter(results.values()))
        return ModelEntry(name or first.model, results, first.params, origin=f"from {path.name}")

    if all(isinstance(v, dict) and "per_image" in v for v in data.values()):
        return [entry(None, data)]
    return [entry(model, sets) for model, sets in data.items()]
