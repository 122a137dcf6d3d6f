"""The HTTP API and the page: ``create_app(settings)``.

FastAPI (on Starlette, served by uvicorn) rather than bare Starlette: the API's OpenAPI document
(``/openapi.json``) is generated from the same typed parameters that validate requests, so it
cannot drift from the code; multipart parsing, body-size limits and file responses are Starlette's.
Its bundled ``/docs`` page loads Swagger UI from a CDN, so it is switched off: the page served
here loads nothing from elsewhere (its Content-Security-Policy says so).
"""


import asyncio
import contextlib
import hmac
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

import surge
from surge.serve.jobs import FINISHED, Job, JobStore, Process, QueueFull
from surge.serve.settings import LOOPBACK_NAMES, ServeSettings
from surge.serve.uploads import ACCEPTED, UploadRejected, check_budget, recognise
from surge.serve.worker import UpscaleOptions

STATIC = Path(__file__).parent / "static"
FORMATS = ("png", "jpg", "webp", "tif", "bmp", "avif", "heic", "same")
MEDIA_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "tif": "image/tiff", "bmp": "image/bmp",
               "avif": "image/avif", "heic": "image/heic"}
# Multipart framing and the option fields, on top of the image itself.
FORM_OVERHEAD = 64 * 1024
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
Format = Literal["png", "jpg", "webp", "tif", "bmp", "avif", "heic", "same"]


def create_app(settings: ServeSettings, process: Process | None = None) -> FastAPI:
    """The app for ``settings``. ``process`` replaces the compute step (tests use it to hold the
    worker and fill the queue); by default each job runs the library's file pipeline."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # 0700: other local users cannot read uploads or results.
        root = Path(tempfile.mkdtemp(prefix="surge-serve-", dir=settings.work_dir))
        app.state.store = JobStore(root, settings.devices, settings.queue_size, settings.ttl_s, process)
        try:
            yield
        finally:
            app.state.store.close()
            shutil.rmtree(root, ignore_errors=True)

    app = FastAPI(title="surge", version=surge.__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="4x image super-resolution over HTTP. All /api routes take `Authorization: Bearer "
                              "<token>` when the server was started with --token.",
                  form_limits={"max_files": 1, "max_fields": 8, "max_part_size": 1024})
    app.state.settings = settings
    app.add_middleware(_Guard, loopback=settings.loopback, max_upload_mb=settings.max_upload_mb)
    models = _model_names(settings)

    def store(request: Request) -> JobStore:
        return request.app.state.store

    def require_token(request: Request) -> None:
        if settings.token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), settings.token.encode()):
            reason = "missing" if not given else "wrong"
            raise HTTPException(401, f"{reason} token: send Authorization: Bearer <the token surge serve was started with>",
                                headers={"WWW-Authenticate": "Bearer"})

    authorised = [Depends(require_token)]

    def form_options(
        model: Annotated[str | None, Form(description="a name from GET /api/models; empty or 'auto': the server's default")] = None,
        scale: Annotated[float | None, Form(gt=0, le=8, description="final scale vs the input (CLI -s); default 4")] = None,
        format: Annotated[Format, Form(description="output format; 'same' keeps the input's")] = "png",
        quality: Annotated[int, Form(ge=1, le=100, description="JPEG/WebP/AVIF/HEIC quality")] = 95,
    ) -> dict:
        if model in (None, "", "auto"):
            chosen = settings.model
        elif model in models:
            chosen = models[model]
        else:  # never a path: only names this server lists
            raise HTTPException(422, f"unknown model {model!r}; GET /api/models lists this server's models")
        return {"model": chosen, "scale": scale, "format": format, "quality": quality}

    async def new_job(request: Request, image: UploadFile, options: dict) -> Job:
        jobs = store(request)
        name = _display_name(image.filename)
        job_id, folder = jobs.new_folder()
        try:
            upload = folder / "upload"
            await run_in_threadpool(_save, image, upload)
            header = await run_in_threadpool(recognise, upload, name)
            ext = ACCEPTED[header.format] if options["format"] == "same" else options["format"]
            _check_writable_format(ext)
            check_budget(header, name, settings.limits(), options["scale"], ext)
            source = upload.rename(folder / f"input.{ACCEPTED[header.format]}")
        except UploadRejected as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPException(exc.status, str(exc)) from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        scale = options["scale"]
        job = Job(id=job_id, folder=folder, source=source, target=folder / f"result.{ext}",
                  download_name=f"{Path(name).stem}_x{scale or 4:g}.{ext}",
                  options=UpscaleOptions(model=options["model"], outscale=scale, ext=ext, quality=options["quality"],
                                         tile=settings.tile, precision=settings.precision, max_pixels=settings.max_pixels,
                                         max_output_pixels=settings.max_output_pixels, max_memory=settings.max_memory,
                                         overwrite=True),
                  upload_name=name)
        try:
            jobs.submit(job)
        except QueueFull as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
        return job

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", summary="Liveness, limits and queue state (no token needed)")
    async def healthz(request: Request) -> dict:
        return {"status": "ok", "version": surge.__version__, "token_required": settings.token is not None,
                "max_upload_mb": settings.max_upload_mb, "max_pixels": settings.max_pixels,
                "max_output_pixels": settings.max_output_pixels,
                "queue": store(request).stats()}

    @app.get("/api/models", dependencies=authorised, summary="Models this server runs, and the output formats it writes")
    async def list_models() -> dict:
        from surge.inference.image_io import avif_available, heif_available
        from surge.models.registry import available_models

        described = {row["name"]: row["description"] for row in available_models()}
        writable = [f for f in FORMATS if (f != "heic" or heif_available()) and (f != "avif" or avif_available())]
        default = "auto" if settings.model is None else Path(settings.model).name
        return {"default": default,
                "models": [{"name": n, "description": described.get(n, "")} for n in models],
                "formats": writable}

    upload_limit = settings.max_upload_bytes + FORM_OVERHEAD

    @app.post("/api/upscale", dependencies=authorised, max_body_size=upload_limit, response_class=FileResponse, summary="Upscale one image and return it",
              responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()},
                               "description": "the image, with the CLI's metadata (Software tag, ICC profile, EXIF)"},
                         413: {"description": "file or pixel count over the limits"},
                         415: {"description": "not an image, or a format not accepted"},
                         422: {"description": "bad options, or the image could not be upscaled (message says why)"},
                         503: {"description": "queue full; retry after the Retry-After header's seconds"}})
    async def upscale(request: Request, image: Annotated[UploadFile, File(description="the image")],
                      options: Annotated[dict, Depends(form_options)]):
        jobs = store(request)
        job = await new_job(request, image, options)
        while not job.finished_event.is_set():
            if await request.is_disconnected():  # the client went away: stop computing for nobody
                jobs.remove(job.id)
                return Response(status_code=499)
            await asyncio.sleep(0.05)
        if job.status != "done":
            jobs.remove(job.id)
            raise HTTPException(422, _public_error(job))
        return _result_response(job, BackgroundTask(jobs.remove, job.id))

    @app.post("/api/jobs", dependencies=authorised, status_code=202, max_body_size=upload_limit, summary="Queue an image; poll or stream its progress",
              responses={413: {}, 415: {}, 503: {"description": "queue full; see Retry-After"}})
    async def create_job(request: Request, image: Annotated[UploadFile, File()],
                         options: Annotated[dict, Depends(form_options)]) -> dict:
        job = await new_job(request, image, options)
        return _job_json(job)

    @app.get("/api/jobs/{job_id}", dependencies=authorised, summary="A job's state and progress (tiles done of total)")
    async def get_job(request: Request, job_id: str) -> dict:
        return _job_json(_find(store(request), job_id))

    @app.get("/api/jobs/{job_id}/events", dependencies=authorised, summary="Progress as server-sent events until the job ends",
             response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
    async def job_events(request: Request, job_id: str) -> StreamingResponse:
        job = _find(store(request), job_id)

        async def events():
            seen, idle = -1, 0.0
            while True:
                if job.version != seen:
                    seen = job.version
                    yield f"data: {json.dumps(_job_json(job))}\n\n"
                    idle = 0.0
                    if job.status in FINISHED:
                        return
                elif idle > 15:
                    yield ": keep-alive\n\n"
                    idle = 0.0
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.05)
                idle += 0.05

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @app.get("/api/jobs/{job_id}/result", dependencies=authorised, summary="The finished image (409 until the job is done)",
             response_class=FileResponse, responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}})
    async def job_result(request: Request, job_id: str):
        job = _find(store(request), job_id)
        if job.status != "done":
            detail = _public_error(job) if job.status in FINISHED else f"job is {job.status}"
            raise HTTPException(409, detail)
        return _result_response(job)

    @app.get("/api/jobs/{job_id}/source", dependencies=authorised, summary="The upload as PNG, for browsers that cannot show its format",
             responses={200: {"content": {"image/png": {}}}})
    async def job_source(request: Request, job_id: str) -> Response:
        job = _find(store(request), job_id)
        data = await run_in_threadpool(_png_preview, job.source, settings.max_pixels)
        return Response(data, media_type="image/png")

    @app.delete("/api/jobs/{job_id}", dependencies=authorised, status_code=204, summary="Cancel a job and delete its files")
    async def delete_job(request: Request, job_id: str) -> Response:
        if not store(request).remove(job_id):
            raise HTTPException(404, "no such job (finished jobs are deleted after their TTL)")
        return Response(status_code=204)

    return app


def _model_names(settings: ServeSettings) -> dict[str, str]:
    """Name a request may give -> what the pipeline loads: trained models that are installed, and
    the operator's --model (a file is offered under its file name)."""
    from surge.models.registry import available_models

    names = {r["name"]: r["name"] for r in available_models() if r["available"] and not r["kind"].startswith("preset")}
    if settings.model is not None:
        names.setdefault(Path(settings.model).name, settings.model)
    return names


def _save(image: UploadFile, path: Path) -> None:
    with open(path, "xb") as f:
        shutil.copyfileobj(image.file, f, 1024 * 1024)
    if path.stat().st_size == 0:
        raise UploadRejected(415, f"{_display_name(image.filename)}: empty file (0 bytes)")


def _display_name(name: str | None) -> str:
    """The client's file name, for messages and the download name only (never opened): its last
    component, with anything but letters, digits, '.', '-', '_' and spaces replaced."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^\w.\- ]", "_", base).strip(" .")[:120]
    return base or "image"


def _check_writable_format(ext: str) -> None:
    from surge.inference.image_io import avif_available, heif_available

    if ext == "heic" and not heif_available():
        raise UploadRejected(422, "HEIC output needs the optional pillow-heif package on the server (pip install 'surge-sr[heif]')")
    if ext == "avif" and not avif_available():
        raise UploadRejected(422, "AVIF output needs Pillow built with AVIF on the server")


def _find(jobs: JobStore, job_id: str) -> Job:
    job = jobs.get(job_id)
    if job is None:
        raise HTTPException(404, "no such job (finished jobs are deleted after their TTL)")
    return job


def _public_error(job: Job) -> str:
    """The job's error with the server's temp paths replaced by the client's file names."""
    message = job.error or job.status
    for path, name in ((job.source, job.upload_name), (job.target, job.download_name), (job.folder, "")):
        message = message.replace(str(path), name)
    return message


def _job_json(job: Job) -> dict:
    data = job.public()
    data["error"] = _public_error(job) if job.error else None
    base = f"/api/jobs/{job.id}"
    data["urls"] = {"self": base, "events": f"{base}/events", "result": f"{base}/result", "source": f"{base}/source"}
    return data


def _result_response(job: Job, background: BackgroundTask | None = None) -> FileResponse:
    ext = job.target.suffix[1:]
    headers = {"X-Surge-Model": job.model or "", "X-Surge-Seconds": f"{job.seconds or 0:.3f}", "Cache-Control": "no-store"}
    return FileResponse(job.target, media_type=MEDIA_TYPES.get(ext, "application/octet-stream"),
                        filename=job.download_name, headers=headers, background=background)


def _png_preview(source: Path, max_pixels: int) -> bytes:
    import io

    from surge.inference.image_io import array_to_pil, quantise, read_image

    array, _ = read_image(source, max_pixels=max_pixels)
    if array.dtype.kind != "u" or array.dtype.itemsize != 1:
        scale = 65535.0 if array.dtype.kind == "u" else 1.0
        array = quantise(array.astype("float32") / scale, "uint8")
    buf = io.BytesIO()
    array_to_pil(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class _Guard:
    """Pure ASGI middleware: security headers on every response; on a loopback server, only
    loopback Host names (DNS rebinding); state-changing requests from another origin refused
    (no CORS: a page elsewhere must not drive this server with the user's browser); a declared
    body over the upload limit refused in words before it is read (a body that grows past it while
    streaming is cut off by FastAPI's own limit)."""

    def __init__(self, app, loopback: bool, max_upload_mb: float):
        self.app, self.loopback, self.max_upload_mb = app, loopback, max_upload_mb

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        refusal = None
        if self.loopback and _host_name(host) not in LOOPBACK_NAMES:
            refusal = f"Host {host!r} refused: this server answers only to {', '.join(LOOPBACK_NAMES)}"
        elif scope["method"] not in ("GET", "HEAD", "OPTIONS") and "origin" in headers:
            if headers["origin"] != f"{scope.get('scheme', 'http')}://{host}":
                refusal = f"cross-origin request from {headers['origin']} refused"
        if refusal is not None:
            return await JSONResponse({"detail": refusal}, status_code=403)(scope, receive, send)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_upload_mb * 2**20 + FORM_OVERHEAD:
            detail = f"upload of {int(length) / 2**20:.1f} MB exceeds this server's limit of {self.max_upload_mb:g} MB"
            return await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                extra = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                         (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[1:].split("]")[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
