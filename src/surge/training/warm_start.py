"""The bundled weights a fresh run of an experiment can start from (a warm start).

A device session that carries no state would train a shipped model's experiment from random
weights again. The bundled file of that experiment is its latest result (float16 weights: what the
travel state's ``minimal`` profile keeps, without EMA or optimizer moments), so starting from it
(``train.init_from``) keeps the steps already spent; its provenance lineage says so in the files
the new run writes.

    python -m surge.training.warm_start CONFIG [section.key=value ...]

prints that file's path, or nothing where no bundled model was trained by the same experiment
(``train.name``) with the same ``[generator]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from surge.errors import SurgeError
from surge.models.files import read_provenance
from surge.models.registry import BUNDLED, bundled_path
from surge.training.config import ExperimentConfig, load_config


def _plain(value):
    return json.loads(json.dumps(value))  # tuples -> lists, as the provenance's JSON holds them


def bundled_start(cfg: ExperimentConfig) -> Path | None:
    """The bundled weights trained by ``cfg``'s experiment with ``cfg``'s generator, if any."""
    want = _plain(dataclasses.asdict(cfg.generator))
    for name in BUNDLED:
        path = bundled_path(name)
        if path is None:
            continue
        try:
            provenance = read_provenance(path)
        except SurgeError:
            continue  # an unreadable file is not a start; `surge models` reports it
        config = provenance.get("config") or {}
        if provenance.get("experiment") == cfg.train.name and _plain(config.get("generator")) == want:
            return path
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m surge.training.warm_start", description=__doc__.splitlines()[0])
    p.add_argument("config", help="experiment TOML file")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, as `surge train` takes them")
    args = p.parse_args(argv)
    try:
        path = bundled_start(load_config(args.config, args.overrides, runnable_here=False))
    except SurgeError as exc:
        print(f"surge: error: {exc}", file=sys.stderr)
        return 2
    if path is not None:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
