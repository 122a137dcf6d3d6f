"""``surge serve``: the local web page and HTTP API (``surge.serve``) on ``--host:--port``.

Loopback by default; any other address needs ``--token`` (every /api request must then send
``Authorization: Bearer <token>``). Needs the optional ``serve`` extra (FastAPI, uvicorn,
python-multipart).
"""

from __future__ import annotations

import argparse
import os
import sys

from surge.cli.argtypes import add_limit_arguments, positive, positive_number, tile_size
from surge.errors import SurgeError


def add_parser(p: argparse.ArgumentParser) -> None:
    from surge import PRECISIONS
    from surge.serve.settings import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_MB

    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--port", default=8000, type=int, help="(default: %(default)s)")
    p.add_argument("--model", default=None, metavar="NAME|FILE",
                   help="default model for requests that name none (default: the CLI's per-file choice: the default "
                        "model, and its real-world counterpart for JPEGs of quality <= 85)")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda[:N][,...]",
                   help="compute device; a comma-separated list runs one worker per device (default: %(default)s)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--tile", default="auto", type=tile_size, metavar="N|auto|0",
                   help="LR tile size; progress is reported per tile (default: auto, from free memory)")
    add_limit_arguments(p, DEFAULT_MAX_PIXELS, memory_available="when each upload arrives")
    p.add_argument("--max-upload-mb", default=DEFAULT_MAX_UPLOAD_MB, type=positive_number, metavar="MB",
                   help="refuse larger uploads (default: %(default)s)")
    p.add_argument("--token", default=None,
                   help="require Authorization: Bearer TOKEN on /api (needed to listen beyond loopback); "
                        "or set SURGE_SERVE_TOKEN, which keeps it out of the process list")
    p.add_argument("--queue", default=16, type=positive, metavar="N",
                   help="jobs that may wait for a worker; more are answered 503 with Retry-After (default: %(default)s)")
    p.add_argument("--ttl", default=600, type=positive, metavar="SECONDS",
                   help="finished jobs' files are deleted this long after they finished (default: %(default)s)")


def settings_from_args(args):
    from surge.serve.settings import ServeSettings, is_loopback

    token = args.token or os.environ.get("SURGE_SERVE_TOKEN") or None
    if not is_loopback(args.host) and not token:
        raise SurgeError(f"--host {args.host}: listening beyond this machine needs --token (or SURGE_SERVE_TOKEN); "
                         "anyone who can reach the port could otherwise use it")
    if not 0 <= args.port <= 65535:
        raise SurgeError(f"--port {args.port}: expected 0-65535")
    devices = compute_devices(args.device)
    return ServeSettings(host=args.host, port=args.port, model=args.model, devices=devices, precision=args.precision, tile=args.tile,
                         max_pixels=args.max_pixels, max_output_pixels=args.max_output_pixels, max_memory=args.max_memory,
                         max_upload_mb=args.max_upload_mb, token=token,
                         queue_size=args.queue, ttl_s=float(args.ttl))


def compute_devices(text: str) -> list[str]:
    """One entry per compute worker: the listed devices; "auto" is every CUDA GPU when there are
    several (a worker each), else the library's own choice."""
    if text.strip() == "auto":
        import torch

        count = torch.cuda.device_count()
        return [f"cuda:{i}" for i in range(count)] if count > 1 else ["auto"]
    return [d.strip() for d in text.split(",") if d.strip()] or ["auto"]


def run(args) -> int:
    try:
        import uvicorn

        from surge.serve.app import create_app
    except ImportError as exc:
        raise SurgeError(f"surge serve needs the optional web packages ({exc.name} is missing): pip install 'surge-sr[serve]'") from None
    settings = settings_from_args(args)
    if settings.model is not None:  # a bad --model fails now, not on the first request
        import surge

        surge.load_model(settings.model, device="cpu")
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"surge: serving on http://{shown}:{settings.port}/ (Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
    return 0
