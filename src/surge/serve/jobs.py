"""Jobs: a bounded queue, one compute worker thread per device, and a store with TTL and cancellation.

A job owns a private folder (inside the server's 0700 temp folder) holding the upload and its
result; the folder goes when the job is deleted (the page deletes it once it has downloaded the
result, the synchronous endpoint once the response is sent) or ``ttl_s`` after the job finished.
Cancelling sets an event that the progress callback checks between tiles, so a running job stops
within one tile.
"""

from __future__ import annotations

import logging
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from surge.errors import SurgeError
from surge.serve.worker import FileResult, UpscaleOptions, UpscalerCache

log = logging.getLogger("surge.serve")

# process(job, device, progress) -> FileResult; the default runs the library pipeline. Tests inject
# one that blocks to fill the queue deterministically.
Process = Callable[["Job", str, Callable[[int, int], None]], FileResult]
FINISHED = ("done", "failed", "cancelled")


class Cancelled(Exception):
    """Raised by the progress callback of a cancelled job: the pipeline stops between tiles."""


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass
class Job:
    id: str
    folder: Path
    source: Path
    target: Path
    download_name: str
    options: UpscaleOptions
    upload_name: str = "image"  # the client's file name, for messages
    status: str = "queued"  # queued | running | done | failed | cancelled
    done_tiles: int = 0
    total_tiles: int = 0
    error: str | None = None
    model: str | None = None
    seconds: float | None = None
    warnings: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.monotonic)
    finished_at: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    finished_event: threading.Event = field(default_factory=threading.Event)
    version: int = 0  # bumped on every change, so progress streams send only news

    def public(self) -> dict:
        return {"id": self.id, "status": self.status, "done_tiles": self.done_tiles, "total_tiles": self.total_tiles,
                "error": self.error, "model": self.model, "seconds": self.seconds, "warnings": self.warnings,
                "filename": self.download_name}


def run_pipeline() -> Process:
    """The default compute step: the library pipeline, with each worker thread's own loaded models."""
    local = threading.local()

    def process(job: Job, device: str, progress: Callable[[int, int], None]) -> FileResult:
        if not hasattr(local, "cache"):
            local.cache = UpscalerCache()
        options = job.options if job.options.device == device else _with_device(job.options, device)
        return local.cache.get(options).process_file(job.source, job.target, progress=progress)

    return process


def _with_device(options: UpscaleOptions, device: str) -> UpscaleOptions:
    from dataclasses import replace

    return replace(options, device=device)


class JobStore:
    def __init__(self, root: Path, devices: list[str], capacity: int, ttl_s: float, process: Process | None = None):
        self.root = root
        self.capacity = capacity
        self.ttl_s = ttl_s
        self.devices = list(devices)
        self.process = process or run_pipeline()
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=capacity)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._recent_seconds: list[float] = []
        self.counts = {"done": 0, "failed": 0, "cancelled": 0}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, args=(d,), name=f"surge-compute-{d}", daemon=True)
                         for d in self.devices]
        self._threads.append(threading.Thread(target=self._sweep_loop, name="surge-sweep", daemon=True))
        for t in self._threads:
            t.start()

    # --- creating and finding -------------------------------------------------------

    def new_folder(self) -> tuple[str, Path]:
        job_id = secrets.token_urlsafe(12)
        folder = self.root / job_id
        folder.mkdir(mode=0o700)
        return job_id, folder

    def submit(self, job: Job) -> None:
        """Queue ``job``; QueueFull (its folder removed) when ``capacity`` jobs already wait."""
        with self._lock:
            self._jobs[job.id] = job
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.remove(job.id)
            raise QueueFull(self.retry_after()) from None

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        job = self.get(job_id)
        if job is not None and job.status not in FINISHED:
            job.cancel_event.set()
            self._update(job)
        return job

    def remove(self, job_id: str) -> bool:
        """Cancel the job if unfinished, forget it and delete its files."""
        with self._lock:
            job = self._jobs.pop(job_id, None)
        if job is None:
            return False
        job.cancel_event.set()
        shutil.rmtree(job.folder, ignore_errors=True)
        return True

    def stats(self) -> dict:
        with self._lock:
            statuses = [j.status for j in self._jobs.values()]
            return {"workers": len(self.devices), "capacity": self.capacity, "queued": self._queue.qsize(),
                    "running": statuses.count("running"), "jobs": len(statuses), **self.counts}

    def retry_after(self) -> int:
        """Seconds until a queue slot is likely free: the recent mean job time x waiting jobs per worker."""
        with self._lock:
            mean = sum(self._recent_seconds) / len(self._recent_seconds) if self._recent_seconds else 1.0
        return max(1, min(120, round(mean * (self._queue.qsize() + 1) / len(self.devices))))

    def wait_change(self, job: Job, seen: int, timeout: float) -> int:
        """Block until ``job.version`` differs from ``seen`` (or ``timeout``); the version now."""
        with self._changed:
            self._changed.wait_for(lambda: job.version != seen, timeout)
            return job.version

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel_event.set()
        for _ in self.devices:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass
        for t in self._threads:
            t.join(timeout=5)

    # --- workers ------------------------------------------------------------------

    def _update(self, job: Job, **changes) -> None:
        with self._changed:
            for key, value in changes.items():
                setattr(job, key, value)
            job.version += 1
            self._changed.notify_all()

    def _work(self, device: str) -> None:
        while not self._stop.is_set():
            job = self._queue.get()
            if job is None:
                return
            if job.cancel_event.is_set():
                self._finish(job, "cancelled", "cancelled before it started")
                continue
            self._update(job, status="running")

            def progress(done: int, total: int, job=job) -> None:
                self._update(job, done_tiles=done, total_tiles=total)
                if job.cancel_event.is_set():
                    raise Cancelled()

            try:
                result = self.process(job, device, progress)
            except Cancelled:
                self._finish(job, "cancelled", "cancelled")
                continue
            except SurgeError as exc:  # a model that does not load: said in words, like the CLI
                self._finish(job, "failed", str(exc))
                continue
            except Exception as exc:  # a bug or an unexpected library error: the job fails, the worker lives
                log.exception("job %s failed", job.id)
                self._finish(job, "failed", f"{type(exc).__name__}: {exc}")
                continue
            if job.cancel_event.is_set():
                self._finish(job, "cancelled", "cancelled")
            elif result.status == "done":
                with self._lock:
                    self._recent_seconds = [*self._recent_seconds[-19:], result.seconds]
                self._finish(job, "done", None, model=result.model, seconds=round(result.seconds, 3),
                             warnings=list(result.warnings))
            else:
                self._finish(job, "failed", result.error or "failed", model=result.model)

    def _finish(self, job: Job, status: str, error: str | None, **changes) -> None:
        if status == "cancelled":
            job.target.unlink(missing_ok=True)
        self._update(job, status=status, error=error, finished_at=time.monotonic(), **changes)
        with self._lock:
            self.counts[status] += 1
        job.finished_event.set()

    def _sweep_loop(self) -> None:
        while not self._stop.wait(min(30.0, max(0.05, self.ttl_s / 4))):
            self.sweep()

    def sweep(self) -> int:
        """Remove jobs that finished more than ``ttl_s`` ago; how many."""
        now = time.monotonic()
        with self._lock:
            old = [j.id for j in self._jobs.values() if j.finished_at is not None and now - j.finished_at > self.ttl_s]
        for job_id in old:
            self.remove(job_id)
        return len(old)
