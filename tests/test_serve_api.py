"""`surge serve`'s HTTP API through Starlette's TestClient: every endpoint, every bad input."""

import io
import json
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

pytest.importorskip("fastapi", reason="surge serve needs the 'serve' extra (fastapi, uvicorn, python-multipart)")
from fastapi.testclient import TestClient  # noqa: E402

from surge.cli.main import main  # noqa: E402
from surge.serve.app import create_app  # noqa: E402
from surge.serve.jobs import FileResult  # noqa: E402
from surge.serve.settings import ServeSettings  # noqa: E402

BASE = "http://127.0.0.1:8000"
SOFTWARE = 305  # EXIF Software tag


def _client(process=None, **overrides) -> TestClient:
    # 32 px tiles: the smallest the pipeline uses as given (smaller ones give the same output, slower).
    settings = ServeSettings(**{"model": "bicubic", "devices": ["cpu"], "tile": 32, **overrides})
    return TestClient(create_app(settings, process=process), base_url=BASE)


@pytest.fixture
def client():
    with _client() as c:
        yield c


def _image(h=12, w=16, fmt="PNG", seed=0, **save) -> bytes:
    arr = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **save)
    return buf.getvalue()


def _smooth(h: int, w: int) -> bytes:
    """A large image that compresses to a small PNG (a gradient): cheap to upload, many tiles."""
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (h + w)], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _post(c, data: bytes, name="photo.png", path="/api/upscale", **fields):
    return c.post(path, files={"image": (name, data, "application/octet-stream")}, data={k: str(v) for k, v in fields.items()})


def _root(c) -> Path:
    return c.app.state.store.root


# --- health, models, OpenAPI ---------------------------------------------------------------


def test_healthz_reports_limits_and_queue(client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["token_required"] is False
    assert body["max_pixels"] == ServeSettings().max_pixels
    assert body["queue"] == {"workers": 1, "capacity": 16, "queued": 0, "running": 0, "jobs": 0, "done": 0, "failed": 0, "cancelled": 0}


def test_models_lists_trained_models_only(client):
    body = client.get("/api/models").json()
    names = [m["name"] for m in body["models"]]
    assert "bicubic" in names and body["default"] == "bicubic"
    assert not any(n.startswith("surge-tiny") or n == "surge" for n in names)  # untrained presets are not offered
    assert "png" in body["formats"] and "same" in body["formats"]


def test_openapi_documents_every_endpoint_and_no_cdn_docs_page(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/api/upscale", "/api/models", "/healthz", "/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/events",
                 "/api/jobs/{job_id}/result"):
        assert path in paths
    ref = paths["/api/upscale"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    assert {"image", "model", "scale", "format", "quality"} <= set(spec["components"]["schemas"][ref.split("/")[-1]]["properties"])
    assert {"413", "415", "503"} <= set(paths["/api/upscale"]["post"]["responses"])
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN


def test_page_and_static_files_are_served_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for name in ("app.js", "app.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert "http" not in page.text.replace('lang="en"', "")  # nothing loaded from elsewhere


# --- POST /api/upscale -------------------------------------------------------------------------


def test_upscale_returns_the_x4_png_with_the_software_tag(client):
    r = _post(client, _image())
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-surge-model"] == "bicubic"
    assert 'filename="photo_x4.png"' in r.headers["content-disposition"]
    out = Image.open(io.BytesIO(r.content))
    assert out.size == (64, 48)
    assert out.info["Software"].startswith("surge ") and "(bicubic)" in out.info["Software"]
    assert list(_root(client).iterdir()) == []  # the job's files went with the response


def test_upscale_keeps_icc_and_exif_like_the_cli(client):
    exif = Image.Exif()
    exif[315] = "A. Photographer"  # Artist
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    r = _post(client, _image(fmt="JPEG", quality=95, exif=exif.tobytes(), icc_profile=icc), name="cam.jpg", format="same")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    out = Image.open(io.BytesIO(r.content))
    assert out.format == "JPEG" and out.size == (64, 48)
    assert out.info.get("icc_profile") == icc
    assert out.getexif()[315] == "A. Photographer"
    assert "surge" in out.getexif()[SOFTWARE]


@pytest.mark.parametrize("scale, fmt, size, pil", [(2, "webp", (32, 24), "WEBP"), (1.5, "jpg", (24, 18), "JPEG"), (4, "tif", (64, 48), "TIFF")])
def test_upscale_scale_and_format(client, scale, fmt, size, pil):
    r = _post(client, _image(), scale=scale, format=fmt, quality=80)
    assert r.status_code == 200, r.text
    out = Image.open(io.BytesIO(r.content))
    assert (out.format, out.size) == (pil, size)


@pytest.mark.parametrize("fmt, ext", [("JPEG", "jpg"), ("WEBP", "webp"), ("TIFF", "tif"), ("AVIF", "avif"), ("HEIF", "heic")])
def test_accepted_input_formats_are_recognised_by_content_not_name(client, fmt, ext):
    if fmt == "HEIF":
        pytest.importorskip("pillow_heif", reason="HEIC needs pillow-heif (the 'heif' extra)")
        from surge.inference.image_io import heif_available

        heif_available()
    data = _image(fmt=fmt)
    r = _post(client, data, name="no-extension", format="same")  # the name says nothing
    assert r.status_code == 200, r.text
    assert Image.open(io.BytesIO(r.content)).size == (64, 48)
    assert r.headers["content-disposition"].endswith(f'_x4.{ext}"')


def test_a_model_name_that_is_a_path_is_refused_not_opened(client, tmp_path):
    weights = tmp_path / "x.safetensors"
    weights.write_bytes(b"not weights")
    for model in (str(weights), "../weights/surge-x4.safetensors", "surge-tiny"):
        r = _post(client, _image(), model=model)
        assert r.status_code == 422 and "unknown model" in r.json()["detail"]


def test_bad_options_are_422_in_words(client):
    for fields in ({"scale": 0}, {"scale": 100}, {"format": "gif"}, {"quality": 0}, {"scale": "x"}):
        r = _post(client, _image(), **fields)
        assert r.status_code == 422, fields
    assert client.post("/api/upscale", data={"scale": "2"}).status_code == 422  # no image field


def test_garbage_is_415_naming_the_file(client):
    r = _post(client, b"this is not an image" * 50, name="notes.png")
    assert r.status_code == 415
    assert r.json()["detail"] == "notes.png: not a recognised image file"


def test_empty_upload_is_refused(client):
    r = _post(client, b"", name="empty.png")
    assert r.status_code == 415 and "empty file" in r.json()["detail"]


def test_an_unsupported_image_type_is_415(client):
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, format="PPM")
    r = _post(client, buf.getvalue(), name="x.png")
    assert r.status_code == 415 and "PPM images are not accepted" in r.json()["detail"]


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_refused_from_its_header(client):
    bomb = _png_declaring(100_000, 100_000)
    assert len(bomb) < 200
    start = time.perf_counter()
    r = _post(client, bomb, name="bomb.png")
    assert r.status_code == 413
    assert r.json()["detail"] == "bomb.png: 100000x100000 = 10000000000 pixels exceeds the limit of 16000000 (max_pixels)"
    assert time.perf_counter() - start < 5  # 30 GB of pixels were never decoded


def test_input_output_and_memory_budgets_from_the_header():
    with _client(max_pixels=100, max_output_pixels=2000) as c:
        r = _post(c, _image(h=12, w=16), name="a.png")
        assert r.status_code == 413 and r.json()["detail"] == "a.png: 16x12 = 192 pixels exceeds the limit of 100 (max_pixels)"
        r = _post(c, _image(h=8, w=10), name="b.png", scale=8)
        assert r.status_code == 413 and r.json()["detail"].startswith("b.png: the output would be 80x64 = 5,120 pixels")
        assert _post(c, _image(h=8, w=10)).status_code == 200  # x4: 40x32 = 1280
    with _client(max_memory=10_000) as c:
        r = _post(c, _image(h=12, w=16), name="c.png")
        assert r.status_code == 413 and "c.png: 16x12 -> 64x48 needs about" in r.json()["detail"]
    with _client(max_pixels=500) as c:  # all frames count when the output keeps them
        frames = [Image.fromarray(np.full((8, 10, 3), 30 * i, dtype=np.uint8)) for i in range(8)]
        buf = io.BytesIO()
        frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
        assert _post(c, buf.getvalue(), name="d.gif", format="png").status_code == 413  # 8 x 80 px
        assert _post(c, buf.getvalue(), name="d.gif", format="jpg").status_code == 200  # the first frame only


def test_an_upload_over_the_size_limit_is_413_and_not_kept():
    with _client(max_upload_mb=0.05) as c:
        noise = _image(h=256, w=256)  # ~197 KB of PNG noise
        r = _post(c, noise)
        assert r.status_code == 413 and "exceeds this server's limit of 0.05 MB" in r.json()["detail"]
        assert list(_root(c).iterdir()) == []
        assert _post(c, _image()).status_code == 200


def _chunks(data: bytes):
    for i in range(0, len(data), 8192):
        yield data[i : i + 8192]


def test_an_upload_without_a_length_is_cut_off_at_the_limit():
    with _client(max_upload_mb=0.05) as c:
        boundary = "b0undary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n".encode()
                + _image(h=256, w=256) + f"\r\n--{boundary}--\r\n".encode())
        r = c.post("/api/upscale", content=_chunks(body), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert "content-length" not in r.request.headers
        assert r.status_code == 413
        assert list(_root(c).iterdir()) == []


def test_a_truncated_image_fails_in_words_without_server_paths(client):
    data = _image(h=64, w=64)
    r = _post(client, data[: len(data) // 2], name="cut.png")
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail.startswith("cut.png: truncated or corrupt image data"), detail
    assert str(_root(client)) not in detail


# --- tokens, hosts, origins ------------------------------------------------------------------


def test_token_required_on_the_api_wrong_or_missing_is_401():
    with _client(token="s3cret-token") as c:
        assert c.get("/healthz").json()["token_required"] is True
        assert c.get("/").status_code == 200  # the page itself asks for the token
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}, {"Authorization": "Basic s3cret-token"}):
            r = c.get("/api/models", headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert ("missing" if not headers else "wrong") in r.json()["detail"]
            assert c.post("/api/upscale", headers=headers, files={"image": ("a.png", _image())}).status_code == 401
            assert c.post("/api/jobs", headers=headers, files={"image": ("a.png", _image())}).status_code == 401
            assert c.get("/api/jobs/nope", headers=headers).status_code == 401
        good = {"Authorization": "Bearer s3cret-token"}
        assert c.get("/api/models", headers=good).status_code == 200
        assert c.post("/api/upscale", headers=good, files={"image": ("a.png", _image())}).status_code == 200


def test_beyond_loopback_needs_a_token(capsys):
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "needs --token" in capsys.readouterr().err


def test_loopback_server_refuses_other_host_names(client):
    assert client.get("/healthz", headers={"Host": "attacker.example:8000"}).status_code == 403
    assert client.get("/healthz", headers={"Host": "localhost:8000"}).status_code == 200
    assert client.get("/healthz", headers={"Host": "[::1]:8000"}).status_code == 200


def test_no_cors_and_cross_origin_posts_refused(client):
    r = _post(client, _image())
    assert "access-control-allow-origin" not in r.headers
    pre = client.options("/api/upscale", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in pre.headers
    r = client.post("/api/upscale", headers={"Origin": "https://evil.example"}, files={"image": ("a.png", _image())})
    assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
    r = client.post("/api/upscale", headers={"Origin": BASE}, files={"image": ("a.png", _image())})
    assert r.status_code == 200


# --- jobs ---------------------------------------------------------------------------------------


def test_job_lifecycle_progress_result_delete(client):
    r = _post(client, _image(h=96, w=96), path="/api/jobs", name="big.png")
    assert r.status_code == 202
    job = r.json()
    assert job["status"] in ("queued", "running") and job["filename"] == "big_x4.png"
    events = []
    with client.stream("GET", job["urls"]["events"]) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert events[-1]["status"] == "done" and events[-1]["model"] == "bicubic"
    tiles = [e["done_tiles"] for e in events if e["total_tiles"]]
    assert events[-1]["total_tiles"] == 9 and tiles == sorted(tiles)  # 96x96 in 32x32 tiles
    state = client.get(job["urls"]["self"]).json()
    assert state["status"] == "done" and state["done_tiles"] == 9
    for _ in range(2):  # GET changes nothing: the result can be fetched again
        result = client.get(job["urls"]["result"])
        assert result.status_code == 200 and Image.open(io.BytesIO(result.content)).size == (384, 384)
    assert client.get(job["urls"]["source"]).headers["content-type"] == "image/png"
    assert client.delete(job["urls"]["self"]).status_code == 204
    assert client.get(job["urls"]["self"]).status_code == 404
    assert client.get(job["urls"]["result"]).status_code == 404
    assert client.delete(job["urls"]["self"]).status_code == 404
    assert list(_root(client).iterdir()) == []


def test_a_failed_job_reports_why(client):
    data = _image(h=64, w=64)
    job = _post(client, data[:300], path="/api/jobs", name="cut.png").json()
    for _ in range(200):
        state = client.get(job["urls"]["self"]).json()
        if state["status"] == "failed":
            break
        time.sleep(0.05)
    assert state["error"].startswith("cut.png: truncated or corrupt"), state
    r = client.get(job["urls"]["result"])
    assert r.status_code == 409 and r.json()["detail"].startswith("cut.png:")


def test_private_folder_and_ttl():
    with _client(ttl_s=0.3) as c:
        root = _root(c)
        assert root.stat().st_mode & 0o777 == 0o700
        job = _post(c, _image(), path="/api/jobs").json()
        for _ in range(100):
            if c.get(job["urls"]["self"]).json()["status"] == "done":
                break
            time.sleep(0.05)
        assert len(list(root.iterdir())) == 1
        time.sleep(1.0)
        assert c.get(job["urls"]["self"]).status_code == 404
        assert list(root.iterdir()) == []
    assert not root.exists()  # and the whole folder goes with the server


class _Gate:
    """A compute step that holds each job until released: fills the queue deterministically."""

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Semaphore(0)

    def __call__(self, job, device, progress):
        self.started.release()
        for i in range(1000):
            progress(i, 1000)  # raises once the job is cancelled
            if self.release.wait(0.01):
                break
        job.target.write_bytes(job.source.read_bytes())
        return FileResult(job.source, job.target, "gate", "done", None, 0.01)


def test_a_full_queue_answers_503_with_retry_after():
    gate = _Gate()
    with _client(process=gate, queue_size=1) as c:
        first = _post(c, _image(), path="/api/jobs").json()
        assert gate.started.acquire(timeout=10)  # the worker holds the first job
        second = _post(c, _image(), path="/api/jobs")
        assert second.status_code == 202  # it waits in the one queue slot
        for path in ("/api/jobs", "/api/upscale"):
            r = _post(c, _image(), path=path)
            assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
            assert "queue is full" in r.json()["detail"]
        assert len(list(_root(c).iterdir())) == 2  # refused uploads leave nothing behind
        gate.release.set()
        for job in (first, second.json()):
            for _ in range(200):
                if c.get(f"/api/jobs/{job['id']}").json()["status"] == "done":
                    break
                time.sleep(0.02)
            assert c.get(f"/api/jobs/{job['id']}").json()["status"] == "done"
        assert _post(c, _image(), path="/api/jobs").status_code == 202


def test_delete_cancels_a_running_job_between_tiles():
    gate = _Gate()
    with _client(process=gate) as c:
        job = _post(c, _image(), path="/api/jobs").json()
        assert gate.started.acquire(timeout=10)
        handle = c.app.state.store.get(job["id"])
        assert c.delete(f"/api/jobs/{job['id']}").status_code == 204
        assert handle.finished_event.wait(5)
        assert handle.status == "cancelled" and handle.done_tiles < 1000
        assert c.get("/healthz").json()["queue"]["cancelled"] == 1


def test_delete_cancels_a_real_upscale_between_tiles():
    with _client() as c:  # 1024x1024 in 32x32 tiles: 1024 of them
        job = _post(c, _smooth(1024, 1024), path="/api/jobs").json()
        handle = c.app.state.store.get(job["id"])
        for _ in range(500):
            if handle.done_tiles > 0:
                break
            time.sleep(0.01)
        assert c.delete(f"/api/jobs/{job['id']}").status_code == 204
        assert handle.finished_event.wait(10)
        assert handle.status == "cancelled"
        assert 0 < handle.done_tiles < handle.total_tiles == 1024
        assert not handle.folder.exists()


def test_an_animated_gif_comes_back_as_an_animated_png(client):
    frames = [Image.fromarray(np.full((8, 10, 3), (60 * i, 20, 200 - 60 * i), dtype=np.uint8)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=[40, 60, 80], loop=0)
    r = _post(client, buf.getvalue(), name="anim.gif", format="png")
    assert r.status_code == 200, r.text
    out = Image.open(io.BytesIO(r.content))
    assert out.format == "PNG" and out.n_frames == 3 and out.size == (40, 32)


def test_requests_with_other_scales_reuse_the_workers_loaded_model():
    from surge.serve.worker import UpscalerCache, UpscaleOptions

    cache = UpscalerCache()
    a = cache.get(UpscaleOptions(model="bicubic", outscale=2, device="cpu"))
    b = cache.get(UpscaleOptions(model="bicubic", outscale=3, quality=50, device="cpu"))
    assert a.options != b.options and a.model("bicubic") is b.model("bicubic")
    assert cache.get(UpscaleOptions(model="bicubic", precision="fp32", device="cpu")).model("bicubic") is not a.model("bicubic")


def test_one_worker_per_device(monkeypatch):
    import torch

    from surge.cli.serve_cmd import compute_devices

    assert compute_devices("cpu") == ["cpu"]
    assert compute_devices("cuda:0, cuda:1") == ["cuda:0", "cuda:1"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert compute_devices("auto") == ["auto"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert compute_devices("auto") == ["cuda:0", "cuda:1", "cuda:2"]
    gate = _Gate()
    with _client(process=gate, devices=["cpu", "cpu"]) as c:  # two workers take two jobs at once
        assert c.get("/healthz").json()["queue"]["workers"] == 2
        for _ in range(2):
            _post(c, _image(), path="/api/jobs")
        assert gate.started.acquire(timeout=10) and gate.started.acquire(timeout=10)
        assert c.get("/healthz").json()["queue"]["running"] == 2
        gate.release.set()


def test_events_stream_each_change_of_progress():
    gate = _Gate()
    with _client(process=gate) as c:
        job = _post(c, _image(), path="/api/jobs").json()
        seen = []
        with c.stream("GET", job["urls"]["events"]) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                seen.append((event["status"], event["done_tiles"]))
                if len({d for s, d in seen if s == "running"}) == 3:
                    gate.release.set()  # three distinct progress reports seen while it ran
        assert seen[-1][0] == "done"
        done = [d for s, d in seen if s == "running"]
        assert done == sorted(done) and len(set(done)) >= 3


def test_serve_refuses_a_bad_model_or_port_before_listening(capsys):
    assert main(["serve", "--model", "no-such-model", "--port", "1"]) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert main(["serve", "--port", "70000"]) == 2
    assert "--port 70000" in capsys.readouterr().err


def test_a_float_colour_tiff_is_accepted_like_the_cli_accepts_it(client, tmp_path):
    import tifffile

    path = tmp_path / "f.tif"
    tifffile.imwrite(path, np.random.default_rng(0).random((8, 10, 3)).astype(np.float32), photometric="rgb")
    r = _post(client, path.read_bytes(), name="f.tif")
    assert r.status_code == 200, r.text
    assert Image.open(io.BytesIO(r.content)).size == (40, 32)
