"""Bulk upscaling on a Ray cluster (``surge upscale ... --ray [ADDRESS]``, :func:`upscale_with_ray`).

Ray Data does the scheduling: the planned (input, output) pairs become a dataset of one-row
blocks, mapped by a pool of actors that each hold a loaded :class:`Upscaler` (one per GPU, or N
CPU actors) and run the same per-file pipeline as ``surge upscale``, so outputs have the same
names, bytes, metadata and per-file model. Results stream back to the driver, which appends
one row per input to ``OUT/surge-manifest.jsonl`` as they arrive (flushed per row).

Failure model:
- A file that cannot be read or upscaled is a ``failed`` row with its one-line error; the run goes on.
- An actor that dies (crash, OOM kill, lost node) is restarted by Ray and its file retried, up to
  ``RETRIES`` times; an input that kills its actor every time becomes a ``failed`` row. The count
  is kept by a small ledger actor of the run (attempts that began and never ended), not by Ray's
  ``max_task_retries``: Ray Data only takes that as a ``ray_remote_args`` keyword, deprecated in
  Ray 2.60 and removed in 2.64, so the pool runs with Ray Data's own unbounded retries.
- Outputs are published atomically (a temp name, then a rename / move), so a killed run leaves
  no half-written output; a rerun skips outputs that exist (without ``overwrite``) and does the rest.
- The manifest holds one row per input: it is rewritten atomically (latest row per input) when a
  run starts and when it ends; in between rows are appended, so a killed run keeps what finished.

Inputs and the output may be local paths or URIs that ``pyarrow.fs`` understands (``s3://``,
``gs://``, ``file://``...; credentials are the user's), or paths in a given ``filesystem``.
Remote inputs are downloaded into a private temp folder on the worker; remote outputs are
uploaded under a temp name and then moved into place.
"""

from __future__ import annotations

import json
import logging
import math
import os
import posixpath
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from surge.errors import SurgeError
from surge.inference.image_io import IMAGE_EXTENSIONS
from surge.inference.pipeline import FileResult, UpscaleOptions, Upscaler, output_path, plan_jobs

MANIFEST_NAME = "surge-manifest.jsonl"
MANIFEST_FIELDS = ("input", "output", "model", "status", "error", "seconds")
# Attempts after the first for a file whose actor died; then it is a failed row (a poison input
# must not loop forever, nor take the run down).
RETRIES = 3
# A remote manifest cannot be appended to: it is rewritten at most this often (and at the end).
REMOTE_MANIFEST_EVERY_S = 30.0
# Beyond this many files, blocks hold several (a million one-row blocks would swamp the object store).
MAX_BLOCKS = 20_000
NEEDS_RAY = "--ray needs Ray, an optional dependency: pip install 'surge-sr[ray]'"

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass
class RaySummary:
    done: int
    skipped: int
    failed: int
    manifest: str
    errors: list[str]  # problems found while planning (missing inputs, clashes), not per-file rows


def import_ray():
    """``ray`` and ``ray.data``, or a one-line SurgeError naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401 - ray without [data] lacks it
    except ImportError:
        raise SurgeError(NEEDS_RAY) from None
    return ray


# --- locations: local paths, URIs, paths in a given pyarrow filesystem ----------------


class _Location:
    """Resolves a path string to (pyarrow filesystem or None for local, path in it)."""

    def __init__(self, filesystem=None):
        self.filesystem = filesystem
        self._cache: dict[str, object] = {}

    def resolve(self, text: str):
        if self.filesystem is not None:
            return self.filesystem, text
        if not _URI.match(text):
            return None, text
        from pyarrow import fs as pafs

        scheme, rest = text.split("://", 1)
        key = f"{scheme}://{rest.split('/', 1)[0]}"  # one filesystem object per bucket or host
        if key in self._cache:
            # Object stores: the path is bucket/key (from_uri would build a new client, maybe asking the region).
            return self._cache[key], rest if scheme in ("s3", "gs", "gcs") else pafs.FileSystem.from_uri(text)[1]
        filesystem, path = pafs.FileSystem.from_uri(text)
        self._cache[key] = filesystem
        return filesystem, path

    def join(self, base: str, *parts: str) -> str:
        """``base`` / parts, keeping a URI a URI."""
        parts = [p for p in parts if p not in ("", ".")]
        if self.filesystem is not None or _URI.match(base):
            return posixpath.join(base, *parts)
        return str(Path(base, *parts))


def target_name(source_name: str, options: UpscaleOptions) -> str:
    """The output file name ``surge upscale`` gives an input named ``source_name``."""
    return output_path(Path(source_name), Path(), options).name


def _plan(inputs: list[str], out: str, options: UpscaleOptions, recursive: bool, where: _Location):
    """(jobs as (input, output) strings, errors). Local inputs into a local folder are planned by
    the pipeline's ``plan_jobs`` (the plain command's rules); anything on a pyarrow filesystem here."""
    local = [i for i in inputs if where.resolve(i)[0] is None]
    remote = [i for i in inputs if where.resolve(i)[0] is not None]
    out_fs, _ = where.resolve(out)
    jobs, errors = [], []
    if local and out_fs is None:
        planned, messages = plan_jobs([Path(i) for i in local], Path(out), options, recursive)
        jobs += [(str(j.source), str(j.target)) for j in planned]
        errors += messages
    else:
        remote = inputs if out_fs is not None else remote
    for given in remote:
        found, error = _list_files(given, out, recursive, where)
        if error:
            errors.append(error)
        for relative_dir, name, path in found:
            jobs.append((path, where.join(out, relative_dir, target_name(name, options))))
    return _refuse_clashes(jobs, errors)


def _list_files(given: str, out: str, recursive: bool, where: _Location):
    """[(relative folder, file name, input string)] for a file or folder on any filesystem."""
    from pyarrow import fs as pafs

    filesystem, path = where.resolve(given)
    if filesystem is None:
        filesystem, path = pafs.LocalFileSystem(), os.path.abspath(given)
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.File:
        return [("", posixpath.basename(path), given)], None
    if info.type != pafs.FileType.Directory:
        return [], f"{given}: no such file or folder"
    out_fs, out_path = where.resolve(out)
    skip = out_path.rstrip("/") + "/" if out_fs is not None and type(out_fs) is type(filesystem) else None
    found = []
    for entry in filesystem.get_file_info(pafs.FileSelector(path, recursive=recursive)):
        name = entry.base_name
        if entry.type != pafs.FileType.File or name.startswith(".") or posixpath.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
            continue
        if skip and (entry.path + "/").startswith(skip):  # earlier outputs in an input folder
            continue
        relative = posixpath.relpath(posixpath.dirname(entry.path), path.rstrip("/") or "/")
        found.append((relative, name, where.join(given, relative, name)))
    if not found:
        return [], f"{given}: no image files found ({', '.join(IMAGE_EXTENSIONS)})"
    return sorted(found), None


def _refuse_clashes(jobs: list[tuple[str, str]], errors: list[str]):
    taken: dict[str, str] = {}
    inputs = {s for s, _ in jobs}
    kept = []
    for source, target in jobs:
        if target in inputs:
            errors.append(f"{source}: output {target} would overwrite an input; refused (change -o or --suffix)")
        elif target in taken:
            errors.append(f"{source}: output {target} is also the output of {taken[target]}; refused (use --ext same or rename)")
        else:
            taken[target] = source
            kept.append((source, target))
    return kept, errors


def _exists(paths: list[str], where: _Location) -> list[bool]:
    """Which of ``paths`` exist (one listing call per remote filesystem)."""
    from pyarrow import fs as pafs

    result = [False] * len(paths)
    by_fs: dict[int, tuple[object, list[tuple[int, str]]]] = {}
    for index, text in enumerate(paths):
        filesystem, path = where.resolve(text)
        if filesystem is None:
            result[index] = os.path.exists(path)
        else:
            by_fs.setdefault(id(filesystem), (filesystem, []))[1].append((index, path))
    for filesystem, entries in by_fs.values():
        for (index, _), info in zip(entries, filesystem.get_file_info([p for _, p in entries])):
            result[index] = info.type != pafs.FileType.NotFound
    return result


# --- the manifest --------------------------------------------------------------------


class Manifest:
    """``OUT/surge-manifest.jsonl``: one JSON row per input, the latest kept.

    Rows are appended and flushed as files finish (a killed run keeps every finished row; a
    torn last line is dropped on reading); :meth:`compact` rewrites the file atomically with
    one row per input, at the start and the end of a run. A remote manifest (no appends on
    object stores) is rewritten every REMOTE_MANIFEST_EVERY_S seconds and at the end.
    """

    def __init__(self, out: str, where: _Location):
        self.where = where
        self.path = where.join(out, MANIFEST_NAME)
        self.filesystem, self.fs_path = where.resolve(self.path)
        self.rows: dict[str, dict] = {}
        self._file = None
        self._synced = time.monotonic()
        for line in self._read().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a killed run
            if isinstance(row, dict) and "input" in row:
                self.rows.pop(row["input"], None)  # the latest row goes last
                self.rows[row["input"]] = row

    def _read(self) -> str:
        from pyarrow import fs as pafs

        try:
            if self.filesystem is None:
                return Path(self.fs_path).read_text(encoding="utf-8") if os.path.exists(self.fs_path) else ""
            if self.filesystem.get_file_info(self.fs_path).type == pafs.FileType.NotFound:
                return ""
            with self.filesystem.open_input_stream(self.fs_path) as f:
                return f.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SurgeError(f"{self.path}: cannot read the manifest ({exc})") from None

    def add(self, row: dict) -> None:
        self.rows.pop(row["input"], None)  # the latest row goes last
        self.rows[row["input"]] = row
        if self.filesystem is None:
            if self._file is None:
                self._file = open(self.fs_path, "a", encoding="utf-8")
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()
        elif time.monotonic() - self._synced > REMOTE_MANIFEST_EVERY_S:
            self.compact()

    def compact(self) -> None:
        """Rewrite the manifest atomically: one row per input."""
        if self._file is not None:
            self._file.close()
            self._file = None
        text = "".join(json.dumps(row) + "\n" for row in self.rows.values())
        if self.filesystem is None:
            from surge.atomic import atomic_output

            with atomic_output(self.fs_path) as tmp:
                Path(tmp).write_text(text, encoding="utf-8")
        else:
            _upload_atomically(self.filesystem, self.fs_path, text.encode("utf-8"))
        self._synced = time.monotonic()

    def close(self) -> None:
        self.compact()


def _upload_atomically(filesystem, path: str, data: bytes | None = None, local: str | None = None) -> None:
    """Write ``data`` (or the file ``local``) to ``path`` on ``filesystem`` under a temp name, then move it."""
    folder = posixpath.dirname(path)
    filesystem.create_dir(folder, recursive=True)
    tmp = posixpath.join(folder, f".{posixpath.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with filesystem.open_output_stream(tmp) as f:
            if local is None:
                f.write(data)
            else:
                with open(local, "rb") as src:
                    shutil.copyfileobj(src, f, 1 << 20)
        filesystem.move(tmp, path)
    except BaseException:
        try:
            filesystem.delete_file(tmp)
        except OSError:
            pass
        raise


# --- the actor -----------------------------------------------------------------------


def _row(result: FileResult, source: str, target: str, seconds: float) -> dict:
    return {"input": source, "output": target, "model": result.model, "status": result.status,
            "error": result.error, "seconds": round(seconds, 4), "warnings": list(result.warnings or [])}


def _died_message(source: str, deaths: int) -> str:
    return f"{source}: its worker died {deaths} times (crash, out of memory or lost node); not retried further"


class _Ledger:
    """Attempts per input that began and never ended, i.e. how often a file's actor died on it.

    A handle to one Ray actor of the run; every UDF call waits for its answer, so an attempt
    that ended is never counted as a death (a fire-and-forget message could die with its actor).
    A finished file that is redone (its block retried after a later file killed the actor)
    ends again and is not counted.
    """

    def __init__(self, ray):
        @ray.remote(num_cpus=0)
        class Open:
            def __init__(self):
                self.open: dict[str, int] = {}

            def begin(self, key: str) -> int:
                before = self.open.get(key, 0)
                self.open[key] = before + 1
                return before

            def end(self, key: str) -> None:
                self.open[key] -= 1

        self._actor = Open.remote()  # the handle travels to the pool's actors with the UDF class

    def begin(self, key: str) -> int:
        return import_ray().get(self._actor.begin.remote(key))

    def end(self, key: str) -> None:
        import_ray().get(self._actor.end.remote(key))


def _actor_class(options: UpscaleOptions, filesystem, make_upscaler: Callable, ledger: _Ledger):
    """The Ray Data UDF class, its settings in the closure (pickled with the class) rather than
    in constructor arguments; each actor builds its own upscaler and loads its models once."""

    class UpscaleActor:
        def __init__(self):
            self.upscaler = make_upscaler(options)
            if hasattr(self.upscaler, "load"):
                self.upscaler.load()  # once per actor (and per restart), not in the first file's time
            self.where = _Location(filesystem)

        def __call__(self, batch: dict) -> dict:
            rows = [self.one(str(s), str(t)) for s, t in zip(batch["input"], batch["output"])]
            return {key: [row[key] for row in rows] for key in (*MANIFEST_FIELDS, "warnings")}

        def one(self, source: str, target: str) -> dict:
            start = time.perf_counter()
            deaths = ledger.begin(source)
            if deaths > RETRIES:
                return _row(FileResult(Path(source), Path(target), None, "failed", _died_message(source, deaths)),
                            source, target, 0.0)
            try:
                return self._one(source, target, start)
            finally:  # an attempt that raised ended too: only a dead actor leaves one open
                ledger.end(source)

        def _one(self, source: str, target: str, start: float) -> dict:
            src_fs, src_path = self.where.resolve(source)
            dst_fs, dst_path = self.where.resolve(target)
            if src_fs is None and dst_fs is None:
                result = self.upscaler.process_file(Path(src_path), Path(dst_path))
                return _row(result, source, target, time.perf_counter() - start)
            with tempfile.TemporaryDirectory(prefix="surge-ray-") as tmp:
                return self._through_temp(source, target, src_fs, src_path, dst_fs, dst_path, Path(tmp), start)

        def _through_temp(self, source, target, src_fs, src_path, dst_fs, dst_path, tmp: Path, start) -> dict:
            from pyarrow import fs as pafs

            def failed(message):
                return _row(FileResult(Path(source), Path(target), None, "failed", message), source, target,
                            time.perf_counter() - start)

            if dst_fs is not None and not options.overwrite:
                if dst_fs.get_file_info(dst_path).type != pafs.FileType.NotFound:
                    return _row(FileResult(Path(source), Path(target), None, "skipped", f"{source}: {target} exists (use --overwrite)"),
                                source, target, time.perf_counter() - start)
            local_source = Path(src_path)
            if src_fs is not None:
                local_source = tmp / "in" / posixpath.basename(src_path)  # keeps the name: format and stem
                local_source.parent.mkdir()
                try:
                    with src_fs.open_input_stream(src_path) as f, open(local_source, "wb") as o:
                        shutil.copyfileobj(f, o, 1 << 20)
                except OSError as exc:
                    return failed(f"{source}: cannot read ({exc})")
            local_target = Path(dst_path) if dst_fs is None else tmp / "out" / posixpath.basename(dst_path)
            result = self.upscaler.process_file(local_source, local_target)
            row = _row(result, source, target, 0.0)
            if row["error"]:  # name the file as the user gave it, not the temp copy
                row["error"] = row["error"].replace(str(local_source), source).replace(str(local_target), target)
            if result.status == "done" and dst_fs is not None:
                try:
                    _upload_atomically(dst_fs, dst_path, local=str(local_target))
                except OSError as exc:
                    return failed(f"{target}: cannot write ({exc})")
            row["seconds"] = round(time.perf_counter() - start, 4)
            return row

    return UpscaleActor


# --- the driver ----------------------------------------------------------------------


def _start_ray(ray, address: str | None, quiet: bool) -> bool:
    """Connect to ``address``, or start a local Ray for this run; True if this call started it."""
    if ray.is_initialized():
        return False
    kwargs = {"logging_level": "ERROR" if quiet else "WARNING", "log_to_driver": not quiet}
    if not address:
        kwargs["include_dashboard"] = False  # its extra packages are not part of ray[data]
    try:
        ray.init(address=address or "local", **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise SurgeError(f"--ray {address or ''}: cannot start or reach Ray ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return True


def _actor_resources(ray, options: UpscaleOptions, actors: int | None) -> tuple[int, dict]:
    """(pool size, resources per actor): one actor per GPU (several share a GPU if more are
    asked for), else ``actors`` CPU actors (default one per 4 CPUs) splitting a node's CPUs."""
    total = ray.cluster_resources()
    gpus = int(total.get("GPU", 0))
    if options.device.startswith("cuda") and gpus == 0:
        raise SurgeError(f"--device {options.device}: the Ray cluster has no GPUs")
    if gpus and options.device != "cpu":
        count = actors or gpus
        share = 1.0 / math.ceil(count / gpus)  # Ray's fractional GPUs: k actors on one device
        return count, {"num_gpus": share, "num_cpus": 1}
    cpus = int(total.get("CPU", 1))
    node_cpus = max([int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")] or [cpus])
    count = actors or max(1, cpus // 4)
    return count, {"num_cpus": max(1, min(node_cpus, cpus // count))}


def upscale_with_ray(
    inputs: Iterable[str | os.PathLike],
    output: str | os.PathLike,
    options: UpscaleOptions | None = None,
    *,
    recursive: bool = False,
    address: str | None = None,
    actors: int | None = None,
    filesystem=None,
    on_row: Callable[[dict], None] | None = None,
    quiet: bool = True,
    make_upscaler: Callable[[UpscaleOptions], object] = Upscaler,
) -> RaySummary:
    """Upscale files and folder trees on Ray, writing into the folder ``output``.

    ``inputs``/``output``: local paths or ``pyarrow.fs`` URIs; with ``filesystem`` (a pyarrow
    FileSystem) all of them are paths in it. ``address``: an existing cluster ("auto",
    "ray://host:10001", "host:6379"); None starts a local Ray for the run (or uses the one this
    process already started). ``actors``: the pool size (default: one per GPU, else one per 4
    CPUs). ``on_row`` sees each manifest row as it is written. ``make_upscaler`` builds each
    actor's per-file processor from ``options`` (default :class:`Upscaler`).
    """
    options = options or UpscaleOptions()
    ray = import_ray()
    where = _Location(filesystem)
    inputs, output = [os.fspath(i) for i in inputs], os.fspath(output)
    jobs, errors = _plan(inputs, output, options, recursive, where)
    out_fs, out_path = where.resolve(output)
    if out_fs is None:
        from surge.inference.image_io import check_writable_dir

        check_writable_dir(out_path)
    else:
        out_fs.create_dir(out_path, recursive=True)
    # Model and option errors once, here, before any work (a CPU copy: this machine may have no GPU).
    Upscaler(replace(options, device="cpu")).load()
    manifest = Manifest(output, where)
    done = skipped = failed = 0
    started = False
    try:
        manifest.compact()  # one row per input, and no torn line to append after
        exists = _exists([t for _, t in jobs], where) if not options.overwrite else [False] * len(jobs)
        todo = []
        for (source, target), present in zip(jobs, exists):
            if not present:
                todo.append((source, target))
                continue
            skipped += 1
            earlier = manifest.rows.get(source)
            if earlier is None or earlier.get("output") != target or earlier.get("status") not in ("done", "skipped"):
                row = {"input": source, "output": target, "model": None, "status": "skipped",
                       "error": f"{source}: {target} exists (use --overwrite)", "seconds": 0.0, "warnings": []}
                _report(row, manifest, on_row)
        if todo:
            started = _start_ray(ray, address, quiet)
            d, s, f = _run_pool(ray, todo, options, actors, filesystem, make_upscaler, manifest, on_row, quiet)
            done, skipped, failed = done + d, skipped + s, failed + f
    finally:
        manifest.close()
        if started:
            ray.shutdown()
    return RaySummary(done, skipped, failed, manifest.path, errors)


def _run_pool(ray, todo, options, actors, filesystem, make_upscaler, manifest: Manifest, on_row, quiet) -> tuple[int, int, int]:
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = not quiet
    # Ray Data logs each execution's plan at INFO on stderr; the manifest and our lines say what happened.
    logging.getLogger("ray.data").setLevel(logging.ERROR if quiet else logging.WARNING)
    context.max_errored_blocks = -1  # a block Ray gives up on: failed rows, not a failed run
    count, resources = _actor_resources(ray, options, actors)
    items = [{"input": s, "output": t} for s, t in todo]
    # One file per block up to MAX_BLOCKS files: a retry then redoes one file, and each row comes
    # back as soon as its file is done (a block's rows return together).
    dataset = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS))
    # Ray Data restarts dead actors and retries their tasks without end; _Ledger bounds the retries per file.
    dataset = dataset.map_batches(
        _actor_class(options, filesystem, make_upscaler, _Ledger(ray)),
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=count, max_tasks_in_flight_per_actor=1),
        **resources,
    )
    done = skipped = failed = 0
    seen: set[str] = set()
    for row in _rows(dataset):
        if row["input"] in seen:  # a retried file whose earlier attempt reported after all
            continue
        seen.add(row["input"])
        done += row["status"] == "done"
        skipped += row["status"] == "skipped"
        failed += row["status"] == "failed"
        _report(row, manifest, on_row)
    for source, target in todo:
        if source not in seen:  # its block was given up by Ray (an error outside the per-file pipeline)
            row = {"input": source, "output": target, "model": None, "status": "failed",
                   "error": f"{source}: its worker failed outside the upscaling (see Ray's log); no result",
                   "seconds": 0.0, "warnings": []}
            failed += 1
            _report(row, manifest, on_row)
    return done, skipped, failed


def _rows(dataset):
    """The dataset's rows as plain dicts, each as soon as it is computed. (iter_rows()' prefetch
    holds a finished row until the next one arrives: a slow file would delay a fast one's row.)"""
    for batch in dataset.iter_batches(batch_size=None, prefetch_batches=0, batch_format="numpy"):
        for values in zip(*batch.values()):
            yield {key: _plain(value) for key, value in zip(batch, values)}


def _report(row: dict, manifest: Manifest, on_row) -> None:
    manifest.add(row)
    if on_row is not None:
        on_row(row)


def _plain(value):
    """numpy scalars/arrays from Ray Data -> JSON-able Python values."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
