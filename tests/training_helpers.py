"""A tiny training run for tests: random HR images and a `surge train` config written from keyword overrides."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

# The critic the GAN-stage tests train beside surge-tiny: a few KB of weights.
TINY_CRITIC = {"width": 8, "max_width": 16, "stages": 2, "hidden": 16}


def random_hr_folder(folder: Path, count: int, size: tuple[int, int], noise: tuple[int, int] | None = None) -> Path:
    """``count`` random RGB PNGs ``0.png``... of ``size`` (h, w) in ``folder`` (made if missing), seeded 0.

    With ``noise`` (h, w), uniform noise of that size upsampled bicubically (smooth, like a photo);
    without, uniform noise at full size.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = (rng.random((*(noise or size), 3)) * 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        if noise:
            image = image.resize(size[::-1], Image.BICUBIC)
        image.save(folder / f"{i}.png")
    return folder


def tiny_config(hr: Path, *, gan: bool = False, steps: int = 2, ckpt_every: int = 1, out: Path | None = None,
                **sections: dict) -> dict:
    """A surge-tiny run on ``hr`` (32 px crops, 4 a batch, no validation set, one thread), as a config dict.

    ``gan`` switches stage and losses; ``out`` sets train.out_dir. Each keyword in ``sections`` names a
    config section whose keys are added or replaced, or dropped where the value is None.
    """
    config = {
        "data": {"train_dirs": [str(hr)], "hr_size": 32, "batch_size": 4, "val_dir": ""},
        "generator": {"preset": "surge-tiny"},
        "loss": {"l1": True, "adversarial": gan, "js": gan, "gw": gan},
        "train": {"name": "tiny", "stage": "gan" if gan else "psnr", "steps": steps, "log_every": 1,
                  "ckpt_every": ckpt_every, "val_every": 1000, "threads": 1},
    }
    if out is not None:
        config["train"]["out_dir"] = str(out)
    for name, keys in sections.items():
        section = config.setdefault(name, {})
        for key, value in keys.items():
            if value is None:
                section.pop(key, None)
            else:
                section[key] = value
    return config


def write_tiny_config(path: Path, hr: Path, **options) -> Path:
    """:func:`tiny_config` written to ``path`` as TOML; returns ``path``."""
    path.write_text(to_toml(tiny_config(hr, **options)))
    return path


def to_toml(config: dict) -> str:
    """One level of ``[section]`` tables of strings, numbers, booleans and flat lists (all a config here needs)."""
    lines = []
    for name, section in config.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_value(value)}" for key, value in section.items()]
    return "\n".join(lines) + "\n"


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r} here")
