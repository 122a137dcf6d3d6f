"""Run a model over benchmark sets and measure PSNR-Y / SSIM-Y with the papers' protocol.

The Python API used by ``surge eval`` and by training-time validation:

* :func:`evaluate_set` (one set folder -> :class:`SetResult`),
* :func:`evaluate` (several sets under a root -> ``{set name: SetResult}``).

Both accept a model name or file, an :class:`~surge.inference.runtime.SRModel` (``surge.load_model``)
or a bare ``nn.Module`` (the trainer's generator:
it is run in eval mode under ``inference_mode`` and put back in its previous mode, never
moved or converted). The model is prepared once; decoded images are cached across calls
(:mod:`surge.evaluation.datasets`).

Precision defaults to fp32 (not the engine's "auto", which picks bf16 on CPUs that have
it): a score must not depend on the machine that measured it. ``device`` applies to models
the runner loads; a bare ``nn.Module`` runs where its parameters are.

Per image: uint8 LR -> float [0, 1] NCHW -> network on the whole image (benchmark images
are small, so no tiling) -> clamp to [0, 1] -> ``floor(255 x + 0.5)`` to uint8 (MATLAB's
``im2uint8`` rounding: half away from zero) -> metrics against the uint8 HR.

The built-in ``bicubic`` model goes through this same path (float32 MATLAB bicubic, one
rounding at the end) and measures Set5 28.4189/0.8102, Set14 25.9944/0.7024, BSD100
25.9575/0.6673. MATLAB's own ``imresize`` on the uint8 LR also rounds between the height
and width passes; wrapped with :meth:`Predictor.from_function` (``imresize(lr, 4)``) it
gives 28.4177/0.8101, 25.9933/0.7023, 25.9565/0.6672, the SelfExSR table to every digit.
Both are within 0.01 dB / 0.001 of the published bicubic rows.

Grayscale LR (Set14 ``bridge``): the channel is replicated to RGB, the network runs, and the
gray SR is the BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` of the RGB output (weights that
sum to one, so a network that keeps R = G = B returns exactly that value). A gray image
is its own Y, as in the MATLAB protocol; the 16-235 YCbCr scaling is not applied to it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from surge.atomic import atomic_output as _atomic_output
from surge.errors import DatasetError, ImageReadError, ImageWriteError, SurgeError
from surge.evaluation import metrics, perceptual
from surge.evaluation.datasets import BenchmarkSet, Skipped, discover_set, find_set, load_pair
from surge.inference.ensemble import SelfEnsemble
from surge.inference.runtime import SRModel, load_model

DEFAULT_SETS = ("Set5", "Set14", "BSD100")
# Scores measured only when asked for (--rgb, --metrics); absent from the JSON otherwise.
_OPTIONAL_SCORES = ("psnr_rgb", "niqe", "vif")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


# ---------------------------------------------------------------------------------------
# Results


@dataclass
class ImageResult:
    psnr_y: float
    ssim_y: float
    seconds: float
    psnr_rgb: float | None = None
    niqe: float | None = None  # of the SR image alone (lower is better)
    vif: float | None = None

    def to_dict(self) -> dict:
        out = {"psnr_y": _json_float(self.psnr_y), "ssim_y": _json_float(self.ssim_y), "seconds": round(self.seconds, 6)}
        for key in _OPTIONAL_SCORES:
            if getattr(self, key) is not None:
                out[key] = _json_float(getattr(self, key))
        return out


@dataclass
class SetResult:
    """Scores of one model on one set; means are over ``images`` of ``total`` images.

    ``complete`` is False when any image was skipped: the means are then over a smaller
    set than the one published results use, and every report flags it.
    """

    name: str
    model: str
    per_image: dict[str, ImageResult] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    y_convention: str = "matlab"
    crop: int = 4
    lr_source: str = "files"
    params: int | None = None  # parameter count of the model's network (0 for bicubic)
    # Images whose PSNR/SSIM were measured but one perceptual metric could not be (too small).
    unmeasured: list[Skipped] = field(default_factory=list)

    @property
    def images(self) -> int:
        return len(self.per_image)

    @property
    def total(self) -> int:
        return len(self.per_image) + len(self.skipped)

    @property
    def complete(self) -> bool:
        return not self.skipped and self.images > 0

    def _mean(self, key: str) -> float:
        values = [getattr(r, key) for r in self.per_image.values()]
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else math.nan

    @property
    def psnr_y(self) -> float:
        """Mean of per-image PSNR-Y (the papers' average; not the PSNR of the mean MSE)."""
        return self._mean("psnr_y")

    @property
    def ssim_y(self) -> float:
        return self._mean("ssim_y")

    @property
    def psnr_rgb(self) -> float | None:
        if not any(r.psnr_rgb is not None for r in self.per_image.values()):
            return None
        return self._mean("psnr_rgb")

    @property
    def niqe(self) -> float | None:
        return self._optional_mean("niqe")

    @property
    def vif(self) -> float | None:
        return self._optional_mean("vif")

    def _optional_mean(self, key: str) -> float | None:
        if not any(getattr(r, key) is not None for r in self.per_image.values()):
            return None
        return self._mean(key)

    @property
    def seconds_per_image(self) -> float:
        """Model time per image (LR tensor in -> uint8 SR out), without decoding or metrics."""
        return self._mean("seconds")

    def coverage(self) -> str:
        """"14/14", or "13/14*" when images were skipped."""
        return f"{self.images}/{self.total}" + ("" if self.complete else "*")

    def to_dict(self) -> dict:
        out = {
            "psnr_y": _json_float(self.psnr_y),
            "ssim_y": _json_float(self.ssim_y),
            "images": self.images,
            "total": self.total,
            "complete": self.complete,
            "model": self.model,
            "y_convention": self.y_convention,
            "crop": self.crop,
            "lr_source": self.lr_source,
            "params": self.params,
            "seconds_per_image": _json_float(self.seconds_per_image),
            "skipped": {s.name: s.reason for s in self.skipped},
            **({"unmeasured": {s.name: s.reason for s in self.unmeasured}} if self.unmeasured else {}),
            "per_image": {name: r.to_dict() for name, r in self.per_image.items()},
        }
        for key in _OPTIONAL_SCORES:
            if getattr(self, key) is not None:
                out[key] = _json_float(getattr(self, key))
        return out

    @classmethod
    def from_dict(cls, name: str, data: dict, model: str | None = None) -> "SetResult":
        """Rebuild a result from :meth:`to_dict` output (``surge eval --json``)."""
        try:
            per_image = {
                k: ImageResult(
                    psnr_y=_from_json_float(v["psnr_y"], k, "psnr_y"),
                    ssim_y=_from_json_float(v["ssim_y"], k, "ssim_y"),
                    seconds=float(v.get("seconds", math.nan)),
                    **{key: _from_json_float(v[key], k, key) for key in _OPTIONAL_SCORES if key in v},
                )
                for k, v in data["per_image"].items()
            }
            skipped = [Skipped(k, str(v)) for k, v in data.get("skipped", {}).items()]
            unmeasured = [Skipped(k, str(v)) for k, v in data.get("unmeasured", {}).items()]
            return cls(
                name=name, model=model or str(data.get("model", "?")), per_image=per_image, skipped=skipped,
                y_convention=str(data.get("y_convention", "matlab")), crop=int(data.get("crop", 4)),
                lr_source=str(data.get("lr_source", "files")),
                params=int(data["params"]) if data.get("params") is not None else None, unmeasured=unmeasured,
            )
        except DatasetError as exc:
            raise DatasetError(f"set {name!r}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DatasetError(f"set {name!r}: malformed result entry ({exc.__class__.__name__}: {exc})") from None


def _json_float(x: float | None) -> float | None:
    # JSON has no inf/nan: an infinite PSNR (SR identical to HR) or an empty mean is null.
    if x is None or not math.isfinite(x):
        return None
    return float(x)


# Scores that are infinite when the SR equals the HR; _json_float writes that as null.
_MAY_BE_INFINITE = ("psnr_y", "psnr_rgb")


def _from_json_float(x, image: str = "?", key: str = "psnr_y") -> float:
    """A score read back from JSON: a number (null or Infinity only for PSNR, meaning SR == HR);
    anything else (true, "25", NaN) is a DatasetError naming the image, never a guess."""
    if x is None and key in _MAY_BE_INFINITE:
        return math.inf
    if isinstance(x, bool) or not isinstance(x, (int, float)) or math.isnan(x) or (math.isinf(x) and key not in _MAY_BE_INFINITE):
        raise DatasetError(f"image {image!r}: {key} is {json.dumps(x) if isinstance(x, (bool, type(None))) else repr(x)}, not a valid score")
    return float(x)


# ---------------------------------------------------------------------------------------
# Running a model on one uint8 image


def lr_to_tensor(lr: np.ndarray) -> torch.Tensor:
    """uint8 HxW or HxWx3 -> float32 (1, 3, h, w) in [0, 1]; gray is replicated to RGB."""
    x = torch.tensor(lr, dtype=torch.float32).div_(255.0)  # a copy: cached arrays are read-only
    x = x.unsqueeze(0).expand(3, -1, -1) if x.ndim == 2 else x.permute(2, 0, 1)
    return x.unsqueeze(0).contiguous()


def sr_to_uint8(sr: torch.Tensor, gray: bool = False) -> np.ndarray:
    """(1, 3, H, W) float -> uint8 HxWx3 (or HxW BT.601 luma if ``gray``): clamp, round half up."""
    y = np.clip(sr[0].detach().to(torch.float32).cpu().numpy().astype(np.float64), 0.0, 1.0)
    y = np.tensordot(_LUMA, y, axes=([0], [0])) if gray else np.moveaxis(y, 0, -1)
    return np.floor(y * 255.0 + 0.5).astype(np.uint8)


class Predictor:
    """A prepared model: uint8 LR image -> uint8 SR image, ``scale`` times larger."""

    def __init__(
        self,
        model: str | os.PathLike | SRModel | nn.Module,
        precision: str = "fp32",
        device: str | torch.device | None = "auto",
        self_ensemble: bool = False,
    ):
        """``device`` applies to a model loaded here by name; an SRModel runs on its own.
        ``self_ensemble`` averages the eight flips and rotations (``surge.inference.ensemble``);
        the name then says so ("<model> +x8"), as papers mark such results."""
        self._module: nn.Module | None = None
        self._function: Callable[[np.ndarray], np.ndarray] | None = None
        if isinstance(model, nn.Module):
            self._engine = None
            self._module = model
        else:
            if not isinstance(model, SRModel):
                model = load_model(str(model), device=device or "auto")
            self._engine = model._engine(precision)
        if self_ensemble:
            if self._engine is None:
                raise SurgeError("self-ensemble needs a surge model (an SRModel or a name), not a bare module")
            self._engine = SelfEnsemble(self._engine)
        if self._engine is not None:
            self.name = self._engine.model.name + (f" +x{SelfEnsemble.factor}" if self_ensemble else "")
            self.scale = int(self._engine.scale)
        else:
            self.name = type(self._module).__name__
            scale = getattr(self._module, "scale", None) or getattr(getattr(self._module, "config", None), "scale", None)
            self.scale = int(scale or 4)

    @property
    def model(self) -> SRModel | None:
        """The SRModel being measured (None for a bare module or a wrapped function)."""
        return self._engine.model if self._engine is not None else None

    def describe(self) -> str:
        """"surge-x4 (x4, fp32 on cpu)": what is being measured, for logs and tables."""
        if self._engine is not None:
            ensemble = f", self-ensemble x{SelfEnsemble.factor}" if isinstance(self._engine, SelfEnsemble) else ""
            name = self._engine.model.name
            return f"{name} (x{self.scale}, {self._engine.precision} on {self._engine.device}{ensemble})"
        return f"{self.name} (x{self.scale})"

    @property
    def params(self) -> int | None:
        """Parameter count of the network (None for a wrapped function)."""
        module = self._engine.model.network if self._engine is not None else self._module
        if module is None:
            return None
        return sum(p.numel() for p in module.parameters())

    @classmethod
    def from_function(cls, fn: Callable[[np.ndarray], np.ndarray], name: str, scale: int = 4) -> "Predictor":
        """Wrap a uint8 -> uint8 image function (e.g. MATLAB-exact ``imresize(lr, 4)``, or
        another method's saved outputs) so the runner measures it like a model."""
        self = cls.__new__(cls)
        self._engine, self._module, self._function = None, None, fn
        self.name, self.scale = name, int(scale)
        return self

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """Float (B, C, h, w) in [0, 1] -> float (B, C, s*h, s*w) on the host, unclamped."""
        if self._engine is not None:
            return self._engine(x)
        module = self._module
        was_training = module.training
        param = next(iter(module.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
        try:
            module.eval()
            with torch.inference_mode():
                return module(x.to(device)).float().cpu()
        finally:
            module.train(was_training)

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        expected = (lr.shape[0] * self.scale, lr.shape[1] * self.scale)
        if self._function is not None:
            sr = np.asarray(self._function(lr))
            if sr.dtype != np.uint8 or sr.shape[:2] != expected or sr.ndim != lr.ndim:
                raise SurgeError(f"{self.name}: returned {sr.dtype} {sr.shape} for LR {lr.shape}, expected uint8 {expected}")
            return sr
        out = self.run(lr_to_tensor(lr))
        if tuple(out.shape[-2:]) != expected or out.ndim != 4 or out.shape[1] != 3:
            raise SurgeError(
                f"model {self.name}: returned shape {tuple(out.shape)} for a {lr.shape[1]}x{lr.shape[0]} input, "
                f"expected (1, 3, {expected[0]}, {expected[1]})"
            )
        return sr_to_uint8(out, gray=lr.ndim == 2)


# ---------------------------------------------------------------------------------------
# Evaluation


def evaluate_set(
    model: str | os.PathLike | SRModel | nn.Module | Predictor,
    set_dir: str | os.PathLike | BenchmarkSet,
    *,
    crop: int | None = None,
    y_convention: metrics.YConvention = "matlab",
    rgb: bool = False,
    perceptual_metrics: Sequence[str] = (),
    save_sr: str | os.PathLike | None = None,
    progress: bool = False,
    precision: str = "fp32",
    device: str | torch.device | None = "auto",
) -> SetResult:
    """Evaluate one set folder; images that cannot be measured are listed in ``skipped``.

    ``crop`` defaults to the model's scale. ``save_sr``: folder to write ``<name>.png`` SR
    images into (never over an input file). ``rgb`` adds PSNR over RGB.
    ``perceptual_metrics``: any of ``"niqe"``, ``"vif"`` (:mod:`surge.evaluation.perceptual`),
    measured with the same border crop; an image too small for one of them is skipped.
    """
    extra = perceptual.check_metric_names(perceptual_metrics)
    predictor = model if isinstance(model, Predictor) else Predictor(model, precision, device)
    scale = predictor.scale
    bench = set_dir if isinstance(set_dir, BenchmarkSet) else discover_set(set_dir, scale)
    if bench.scale != scale:
        raise DatasetError(f"{bench.root}: set was discovered for x{bench.scale} but model {predictor.name} is x{scale}")
    crop = scale if crop is None else int(crop)
    out_dir = Path(save_sr) if save_sr is not None else None
    if out_dir is not None:
        refuse_sr_inside_sets([out_dir], [bench])
    inputs = {p.resolve() for pair in bench.pairs for p in (pair.hr_path, pair.lr_path) if p is not None}
    result = SetResult(
        bench.name, predictor.name, skipped=list(bench.skipped), y_convention=y_convention, crop=crop,
        lr_source=bench.lr_source, params=predictor.params,
    )
    smallest = metrics.min_measurable_size(crop)
    bar = tqdm(bench.pairs, desc=f"{bench.name:>8}", unit="img", disable=None if progress else True, leave=False)
    for pair in bar:
        try:
            lr, hr = load_pair(pair, scale)
        except (DatasetError, ImageReadError) as exc:
            result.skipped.append(Skipped(pair.name, str(exc)))
            continue
        if min(hr.shape[:2]) < smallest:
            result.skipped.append(
                Skipped(pair.name, f"{pair.hr_path}: {hr.shape[1]}x{hr.shape[0]} px is too small to measure "
                                   f"(needs {smallest} px: {crop} px border crop + {metrics.SSIM_WINDOW} px SSIM window)")
            )
            continue
        # A perceptual metric that needs a larger image is left out for this image alone (and
        # reported); its PSNR/SSIM are still measured.
        fits = tuple(m for m in extra if min(hr.shape[:2]) >= perceptual.min_size([m], crop))
        for m in extra:
            if m not in fits:
                result.unmeasured.append(
                    Skipped(pair.name, f"{pair.hr_path}: {hr.shape[1]}x{hr.shape[0]} px is too small for {m.upper()} "
                                       f"(needs {perceptual.min_size([m], crop)} px with a {crop} px border crop); "
                                       "PSNR/SSIM measured")
                )
        start = time.perf_counter()
        sr = predictor(lr)
        seconds = time.perf_counter() - start
        psnr, ssim = metrics.psnr_ssim_y(sr, hr, crop, y_convention)
        result.per_image[pair.name] = ImageResult(
            psnr_y=psnr,
            ssim_y=ssim,
            seconds=seconds,
            psnr_rgb=metrics.psnr_rgb(sr, hr, crop) if rgb else None,
            **perceptual.measure(fits, sr, hr, crop, y_convention),
        )
        if out_dir is not None:
            save_png(sr, out_dir / f"{pair.name}.png", protect=inputs)
    bar.close()
    return result


def resolve_sets(data_root: str | os.PathLike, sets: Sequence[str], scale: int = 4) -> list[BenchmarkSet]:
    """Find every requested set before any work starts, so a typo fails in a second."""
    if not sets:
        raise DatasetError("no sets given")
    return [discover_set(find_set(data_root, name), scale) for name in sets]


def evaluate(
    model: str | os.PathLike | SRModel | nn.Module | Predictor,
    data_root: str | os.PathLike,
    sets: Sequence[str] = DEFAULT_SETS,
    *,
    save_sr: str | os.PathLike | None = None,
    on_set_done: Callable[[SetResult], None] | None = None,
    precision: str = "fp32",
    device: str | torch.device | None = "auto",
    **kwargs,
) -> dict[str, SetResult]:
    """Evaluate ``model`` on each of ``sets`` under ``data_root``: ``{set name: SetResult}``.

    Keys are the set folders' names (``set5`` finds and reports ``Set5``).
    The model is prepared once; ``save_sr`` gets one sub-folder per set; other keyword
    arguments go to :func:`evaluate_set`.
    """
    predictor = model if isinstance(model, Predictor) else Predictor(model, precision, device)
    benches = resolve_sets(data_root, sets, predictor.scale)
    if save_sr is not None:
        refuse_sr_inside_sets([Path(save_sr) / b.name for b in benches], benches)
    results: dict[str, SetResult] = {}
    for bench in benches:
        if bench.name in results:
            continue  # the same set asked for twice
        out = Path(save_sr) / bench.name if save_sr is not None else None
        result = evaluate_set(predictor, bench, save_sr=out, **kwargs)
        results[bench.name] = result
        if on_set_done is not None:
            on_set_done(result)
    return results


def psnr_y_by_variant(models: Sequence[str], roots: dict[str, Path], sets: Sequence[str]) -> dict:
    """``{model: {variant: {set: PSNR-Y}}}`` for every model (fp32 on CPU, loaded once) on the
    same sets under each variant's root folder; bicubic is always included, first. For scripts
    that rebuild a benchmark in several versions (scripts/bench_components.py, jpeg_sweep.py)."""
    results: dict = {}
    for model in dict.fromkeys(["bicubic", *models]):
        predictor = Predictor(load_model(model, device="cpu"), "fp32")
        results[model] = {}
        for variant, root in roots.items():
            scores = evaluate(predictor, root, sets, progress=False)
            results[model][variant] = {name: r.psnr_y for name, r in scores.items()}
        print(f"  {model}: " + "; ".join(f"{v} " + " / ".join(f"{x:.2f}" for x in by_set.values())
                                         for v, by_set in results[model].items()), file=sys.stderr, flush=True)
    return results


def results_to_dict(results: dict[str, SetResult]) -> dict:
    return {name: r.to_dict() for name, r in results.items()}


def all_complete(results: Iterable[SetResult]) -> bool:
    return all(r.complete for r in results)


# ---------------------------------------------------------------------------------------
# Output files


def atomic_output(path: str | os.PathLike):
    """:func:`surge.atomic.atomic_output` raising :class:`ImageWriteError`."""
    return _atomic_output(path, ImageWriteError)


def refuse_sr_inside_sets(out_dirs: Iterable[Path], benches: Sequence[BenchmarkSet]) -> None:
    """Refuse, before any work, SR folders inside a set being read: an HR-only set would take
    the saved PNGs for ground truth next time, and the LR folders for more inputs."""
    roots = [b.root.resolve() for b in benches]
    for out in out_dirs:
        target = Path(out).resolve()
        for root in roots:
            if target == root or root in target.parents:
                raise ImageWriteError(f"{out}: SR images would be written inside the benchmark set folder {root} "
                                      "(a later eval would read them as benchmark images); choose a folder outside it")


def refuse_output_over_inputs(path: str | os.PathLike, benches: Sequence[BenchmarkSet], others: Iterable[Path] = ()) -> None:
    """Refuse an output path that is (or, through a link, resolves to) a file of the sets or ``others``."""
    target = _file_id(Path(path))
    if target is None:
        return  # does not exist yet: it cannot be an input
    candidates = [p for b in benches for p in b.root.rglob("*")]
    candidates += [p for b in benches for pair in b.pairs for p in (pair.hr_path, pair.lr_path) if p is not None]
    for candidate in [*candidates, *map(Path, others)]:
        if _file_id(candidate) == target:
            raise ImageWriteError(f"{path}: is the input file {candidate}; refusing to overwrite it (choose another output path)")


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if path.is_file() else None


def save_png(img: np.ndarray, path: str | os.PathLike, protect: Collection[Path] = frozenset()) -> Path:
    """Write a uint8 image as PNG atomically; refuse to replace a file in ``protect``."""
    path = Path(path)
    if path.resolve() in protect:
        raise ImageWriteError(f"{path}: refusing to overwrite an input image (choose another --save-sr folder)")
    with atomic_output(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")
    return path


def write_json(data: dict, path: str | os.PathLike) -> Path:
    """Write JSON atomically (temp file in the same folder, then ``os.replace``)."""
    path = Path(path)
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, allow_nan=False)
            f.write("\n")
    return path
