"""What ``surge serve`` was started with: one typed record shared by the app, the queue and the CLI."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from surge.inference.limits import DEFAULT_MAX_OUTPUT_PIXELS, Limits, default_max_memory

# Inputs a server that takes uploads from a page accepts unless its operator says otherwise
# (--max-pixels): a 16 MP phone photo. At x4 the output limit (DEFAULT_MAX_OUTPUT_PIXELS, 179 MP)
# binds first, from about 11 MP of input.
DEFAULT_MAX_PIXELS = 16_000_000
DEFAULT_MAX_UPLOAD_MB = 50
# Host names a browser may send for a loopback server; anything else in the Host header is a
# DNS-rebinding page talking to it through a name it controls.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None  # None: the CLI's per-file choice (default model, real-world one for compressed JPEGs)
    devices: list[str] = field(default_factory=lambda: ["auto"])  # one compute worker each
    max_pixels: int = DEFAULT_MAX_PIXELS  # input pixels, all frames together
    max_output_pixels: int | None = DEFAULT_MAX_OUTPUT_PIXELS  # one output frame
    max_memory: int | str | None = "auto"  # estimated peak bytes of one file; "auto": 3/4 of the available RAM
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    token: str | None = None
    queue_size: int = 16  # jobs waiting (not running); beyond it: 503 with Retry-After
    ttl_s: float = 600.0  # a finished job's files are removed this long after it finished
    tile: int | str | None = "auto"
    precision: str = "auto"
    work_dir: Path | None = None  # parent of the private temp folder (default: the system's temp dir)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    def limits(self) -> Limits:
        """The per-file budget uploads are checked against (the pipeline checks it again, with the
        tiles' working set, when the job runs); "auto" memory is what is available now."""
        memory = default_max_memory() if self.max_memory == "auto" else self.max_memory
        return Limits(self.max_pixels, self.max_output_pixels, memory)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
