"""`surge serve` over real loopback sockets: a client that goes away cancels its job; a burst of
concurrent uploads is all answered, nothing lost, memory bounded."""

import io
import socket
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="surge serve needs the 'serve' extra (fastapi, uvicorn, python-multipart)")
import httpx  # noqa: E402
from serve_helpers import peak_rss_mb, process_server, thread_server  # noqa: E402

from surge.serve.settings import ServeSettings  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for memory figures")


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_a_client_that_goes_away_cancels_its_job():
    settings = ServeSettings(model="bicubic", devices=["cpu"], tile=32)
    y, x = np.mgrid[0:1024, 0:1024]
    data = _png(np.stack([x // 4, y // 4, (x + y) // 8], axis=-1).astype(np.uint8))  # 1024 tiles, a small PNG
    with thread_server(settings) as (url, app):
        store = app.state.store
        boundary = "xyzzy"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
                "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        head = (f"POST /api/upscale HTTP/1.1\r\nHost: 127.0.0.1:{settings.port}\r\nContent-Length: {len(body)}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode()
        sock = socket.create_connection(("127.0.0.1", settings.port))
        sock.sendall(head + body)
        job = None
        for _ in range(1000):
            jobs = list(store._jobs.values())
            if jobs and jobs[0].done_tiles > 0:
                job = jobs[0]
                break
            time.sleep(0.01)
        assert job is not None, "the job never started"
        sock.close()  # the client goes away mid-computation
        assert job.finished_event.wait(10)
        assert job.status == "cancelled"
        assert 0 < job.done_tiles < job.total_tiles == 1024
        for _ in range(100):
            if not job.folder.exists():
                break
            time.sleep(0.02)
        assert not job.folder.exists() and store.stats()["jobs"] == 0
        assert httpx.get(f"{url}/healthz").json()["queue"]["cancelled"] == 1


N_UPLOADS = 50


@pytest.mark.slow
def test_load_50_concurrent_uploads_all_answered_nothing_lost_memory_bounded(tmp_path):
    """50 clients upload at once to a real `surge serve` (bicubic, queue of 8): the ones answered 503
    wait Retry-After and try again. Each gets its own image back (a distinct colour), the server's
    temp folder ends empty, and its peak RSS stays bounded."""
    colours = [(5 * i, 255 - 5 * i, (37 * i) % 256) for i in range(N_UPLOADS)]
    results: dict[int, tuple[int, bytes]] = {}
    retries = [0] * N_UPLOADS
    with process_server("--model", "bicubic", "--device", "cpu", "--queue", "8", tmpdir=tmp_path) as (url, proc):
        start_rss = peak_rss_mb(proc.pid)
        barrier = threading.Barrier(N_UPLOADS)

        def upload(i: int) -> None:
            data = _png(np.full((32, 32, 3), colours[i], dtype=np.uint8))
            with httpx.Client(base_url=url, timeout=120) as client:
                barrier.wait()
                for _ in range(100):
                    r = client.post("/api/upscale", files={"image": (f"{i}.png", data)})
                    if r.status_code != 503:
                        break
                    retries[i] += 1
                    time.sleep(int(r.headers["retry-after"]))
                results[i] = (r.status_code, r.content)

        started = time.perf_counter()
        threads = [threading.Thread(target=upload, args=(i,)) for i in range(N_UPLOADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        wall = time.perf_counter() - started
        health = httpx.get(f"{url}/healthz").json()
        peak = peak_rss_mb(proc.pid)
        temp = [p for p in tmp_path.iterdir() if p.name.startswith("surge-serve-")]
        left = list(temp[0].iterdir())
    print(f"\nload: {N_UPLOADS} uploads of 32x32 PNG, wall {wall:.1f} s, {sum(retries)} answers 503 (retried), "
          f"server peak RSS {peak:.0f} MiB (after start {start_rss:.0f} MiB)")
    assert sorted(results) == list(range(N_UPLOADS))
    for i, (status, content) in results.items():
        assert status == 200, (i, content[:200])
        out = np.asarray(Image.open(io.BytesIO(content)))
        assert out.shape == (128, 128, 3)
        assert tuple(int(v) for v in out.reshape(-1, 3).mean(0).round()) == colours[i]  # its own image, not another's
    assert health["queue"]["done"] == N_UPLOADS and health["queue"]["jobs"] == 0 and left == []
    assert peak < 1024, f"peak RSS {peak:.0f} MiB"
    assert peak - start_rss < 300, f"RSS grew by {peak - start_rss:.0f} MiB"
