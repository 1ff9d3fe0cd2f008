"""Fixtures of the API tests: generated images, an image root with a symlink escape, a loopback
image host for ``?url=`` (bound to 127.0.0.2), and a second real gunicorn server with two
workers, URL fetching on and small limits."""

from __future__ import annotations

import http.server
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

from client.server import Server

sys.path.insert(0, str(Path(__file__).resolve().parent))  # imagegen (pytest uses --import-mode=importlib)
from imagegen import encode, pattern  # noqa: E402

SMOKE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "smoke-airliners"
URL_MAX_BYTES = 200_000
MAX_CONTENT_LENGTH = 4 * 1024 * 1024


@pytest.fixture(scope="session")
def image_root(tmp_path_factory) -> Path:
    """An image root: ``plane.png``, ``sub/plane.jpg``, and ``escape.png``, a symlink to a file
    outside the root."""
    root = tmp_path_factory.mktemp("image_root")
    outside = tmp_path_factory.mktemp("outside")
    img = Image.fromarray(pattern())
    (root / "plane.png").write_bytes(encode(img, "PNG"))
    (root / "sub").mkdir()
    (root / "sub" / "plane.jpg").write_bytes(encode(img, "JPEG"))
    (outside / "secret.png").write_bytes(encode(img, "PNG"))
    (root / "escape.png").symlink_to(outside / "secret.png")
    return root


class _ImageHost(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    other_host_url = ""

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/redirect-same":
            return self._redirect("/plane.jpg")
        if self.path == "/redirect-other":
            return self._redirect(self.other_host_url)
        if self.path == "/slow.jpg":
            time.sleep(4)
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _redirect(self, location):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def image_host():
    """A real HTTP server on 127.0.0.2 serving ``/plane.jpg``, ``/big.jpg`` (over
    URL_MAX_BYTES), ``/slow.jpg`` (4 s), ``/redirect-same`` and ``/redirect-other`` (to 127.0.0.1).
    Yields its base URL."""
    plane = encode(Image.fromarray(pattern()), "JPEG")
    big = encode(Image.fromarray(pattern(900, 700, seed=3)), "PNG")
    assert len(big) > URL_MAX_BYTES
    handler = type("Handler", (_ImageHost,), {"files": {"/plane.jpg": plane, "/big.jpg": big, "/slow.jpg": plane}})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.2", 0), handler)
    httpd.handle_error = lambda request, address: None  # the API hangs up on /big.jpg and /slow.jpg
    port = httpd.server_address[1]
    handler.other_host_url = f"http://127.0.0.1:{port}/plane.jpg"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.2:{port}"
    finally:
        httpd.shutdown()


def wait_workers_ready(srv: Server, n: int, timeout: float = 120, gone: int | None = None) -> list[int]:
    """Wait until ``n`` live workers report ``planespotter_model_ready 1`` in ``/metrics`` (and,
    with ``gone``, that worker pid has left the master's children: a signalled worker and its
    metrics linger briefly); returns their pids."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        pids = srv.worker_pids()
        text = requests.get(srv.url + "/metrics", timeout=10).text
        ready = [p for p in pids if f'planespotter_model_ready{{pid="{p}"}} 1.0' in text]
        if len(pids) == n and len(ready) == n and gone not in pids:
            return pids
        time.sleep(0.3)
    raise TimeoutError(f"{n} workers not ready{f' or worker {gone} still there' if gone else ''} "
                       f"within {timeout}s: {srv.log()}")


@pytest.fixture
def workers_ready():
    """:func:`wait_workers_ready`, for tests."""
    return wait_workers_ready


@pytest.fixture(scope="session")
def metrics_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prometheus")


@pytest.fixture(scope="session")
def api_server(tiny_model_dir, image_root, metrics_dir):
    """gunicorn with 2 workers, the tiny model, IMAGE_ROOT = ``image_root``, no default image
    (``GET /names`` classifies the version's reference image), URL fetching on (allow-list
    127.0.0.1, 127.0.0.2, localhost; SSRF exemption for 127.0.0.2/32 only), a 4 MiB body limit
    and the metrics directory ``metrics_dir``."""
    srv = Server(tiny_model_dir, workers=2, env={
        "PLANESPOTTER_IMAGE_ROOT": str(image_root),
        "PLANESPOTTER_DEFAULT_IMAGE": "",
        "PLANESPOTTER_URL_FETCH": "true",
        "PLANESPOTTER_URL_ALLOW_HOSTS": "127.0.0.2,127.0.0.1,localhost",
        "PLANESPOTTER_URL_ALLOW_NETWORKS": "127.0.0.2/32",
        "PLANESPOTTER_URL_MAX_BYTES": str(URL_MAX_BYTES),
        "PLANESPOTTER_URL_TIMEOUT_S": "2",
        "PLANESPOTTER_MAX_CONTENT_LENGTH": str(MAX_CONTENT_LENGTH),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "GUNICORN_MAX_REQUESTS": "0",
    })
    srv.max_content_length, srv.url_max_bytes = MAX_CONTENT_LENGTH, URL_MAX_BYTES
    try:
        srv.wait_ready()
        wait_workers_ready(srv, 2)
        yield srv
    finally:
        srv.stop()
