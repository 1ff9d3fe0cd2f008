"""Serving benchmark and soak test over loopback (``make bench-serve``, ``make soak``).

The load generator is a bounded closed loop: ``concurrency`` threads (``concurrent.futures``),
each with its own keep-alive ``requests.Session``, send requests back to back until exactly
``requests`` have been sent. Latency is measured per request on the client (``time.perf_counter``);
``rps`` is successful requests per second of wall time; p50/p99 are over successful requests
(``numpy.percentile``, linear interpolation).

Payloads: the real photos of ``../shared/data/smoke-airliners`` re-encoded once as JPEG at most
:data:`PAYLOAD_WIDTH` pixels wide (a typical web photo; the server decodes and resizes every
request), sent as raw ``image/jpeg`` bodies to ``POST /predict``, cycling through the photos.

``limit`` row: the same model in this process, ``Cascade.predict`` (stage-1 and stage-2
``predict_on_batch`` plus routing) on already preprocessed batches of the server's
``MAX_BATCH_SIZE`` — the forward-pass ceiling of this machine. ``rps`` is images per second,
p50/p99 are per batch call, ``concurrency`` holds the batch size. Its ``rps_with_decode`` adds the
decode + preprocessing of each photo (sequential, one thread), the other cost every request pays.

Peers (``--peer NAME=URL``, e.g. the R plumber reference server): ``GET URL`` at the same
concurrency levels, rows with ``server: NAME``.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests

from .smoke import ROOT, Server

PAYLOAD_WIDTH = 800
DEFAULT_PHOTOS = ROOT.parent / "shared" / "data" / "smoke-airliners"


@dataclass
class Target:
    """What one benchmarked request is: ``method`` on ``url`` with an optional raw JPEG body."""

    name: str
    method: str
    url: str
    bodies: list[bytes] | None = None

    def send(self, session: requests.Session, k: int, timeout: float) -> requests.Response:
        if self.bodies:
            body = self.bodies[k % len(self.bodies)]
            return session.request(self.method, self.url, data=body, timeout=timeout,
                                   headers={"Content-Type": "image/jpeg"})
        return session.request(self.method, self.url, timeout=timeout)


def photo_payloads(folder: Path = DEFAULT_PHOTOS, width: int = PAYLOAD_WIDTH, limit: int = 12) -> list[bytes]:
    """JPEG bytes of up to ``limit`` photos of ``folder``, each at most ``width`` pixels wide.

    Without photos there, synthetic 640x427 gradient JPEGs stand in (so the bench runs anywhere).
    """
    from PIL import Image

    out = []
    for p in sorted(folder.glob("*.jpg"))[:limit]:
        with Image.open(p) as im:
            im = im.convert("RGB")
            if im.width > width:
                im = im.resize((width, round(im.height * width / im.width)), Image.Resampling.BILINEAR)
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=90)
            out.append(buf.getvalue())
    if not out:
        for i in range(4):
            yy, xx = np.mgrid[0:427, 0:640]
            arr = np.stack([(xx * 255 // 639), (yy * 255 // 426), np.full_like(xx, 60 * i)], -1).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, "JPEG", quality=90)
            out.append(buf.getvalue())
    return out


def load(target: Target, concurrency: int, n_requests: int, timeout: float = 120.0,
         on_progress=None) -> dict:
    """Send ``n_requests`` requests with ``concurrency`` closed-loop client threads.

    Returns:
        ``{"server", "concurrency", "requests", "errors", "rps", "p50_ms", "p99_ms", "statuses"}``;
        an error is any non-200 answer or a failed connection (``statuses`` counts them by code,
        ``"exc:<Type>"`` for exceptions).
    """
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[str, int] = {}

    def client(_):
        session = requests.Session()
        while True:
            k = next(counter)
            if k >= n_requests:
                return
            t0 = time.perf_counter()
            try:
                code = str(target.send(session, k, timeout).status_code)
            except requests.RequestException as e:
                code = f"exc:{type(e).__name__}"
                session = requests.Session()
            dt = time.perf_counter() - t0
            with lock:
                statuses[code] = statuses.get(code, 0) + 1
                if code == "200":
                    latencies.append(dt)
            if on_progress is not None:
                on_progress(k)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, range(concurrency)))
    wall = time.perf_counter() - t0
    ok = statuses.get("200", 0)
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"server": target.name, "concurrency": concurrency, "requests": n_requests,
            "errors": n_requests - ok, "rps": round(ok / wall, 2),
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "statuses": statuses}


def limit_row(model_dir: str, batch_size: int, payloads: list[bytes], n_images: int) -> dict:
    """The in-process ceiling (see the module docstring)."""
    from model import preprocessing as pp
    from model.cascade import Cascade

    cascade = Cascade.load(model_dir)
    cascade.warm_up(batch_sizes=sorted({1, batch_size}))
    t = time.perf_counter()
    xs = [pp.to_array(payloads[i % len(payloads)], cascade.spec) for i in range(batch_size)]
    decode_s = (time.perf_counter() - t) / batch_size
    x = np.stack(xs)
    for _ in range(3):
        cascade.predict(x)
    calls = max(3, n_images // batch_size)
    times = []
    t0 = time.perf_counter()
    for _ in range(calls):
        t = time.perf_counter()
        cascade.predict(x)
        times.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    per_image = wall / (calls * batch_size)
    ms = np.array(times) * 1000
    return {"server": "limit", "concurrency": batch_size, "requests": calls * batch_size, "errors": 0,
            "rps": round(1 / per_image, 2), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "batch_size": batch_size,
            "rps_with_decode": round(1 / (per_image + decode_s), 2),
            "decode_ms_per_image": round(decode_s * 1000, 2)}


def tiny_model(dest: Path) -> Path:
    """Build the test suite's tiny random-weights cascade (``tests/conftest.py``) under ``dest``."""
    spec = importlib.util.spec_from_file_location("_planespotter_conftest", ROOT / "tests" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_tiny_cascade(dest)


def resolve_model(model_dir: str | None) -> tuple[Path, str]:
    """``(model folder, kind)``: the given folder, else ``models/latest`` when it exists
    (``"trained"``), else a freshly built tiny model (``"tiny-fixture"``)."""
    if model_dir:
        return Path(model_dir), "given"
    latest = ROOT / "models" / "latest"
    if (latest / "manifest.json").is_file():
        return latest, "trained"
    dest = Path(tempfile.mkdtemp(prefix="planespotter-bench-"))
    return tiny_model(dest), "tiny-fixture"


def model_version(model_dir: Path) -> str:
    return json.loads((model_dir / "manifest.json").read_text())["version"]


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (temp file in the same folder, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def server_env(batch_size: int, wait_ms: float, extra: dict | None = None) -> dict:
    return {"PLANESPOTTER_MAX_BATCH_SIZE": str(batch_size), "PLANESPOTTER_MAX_BATCH_WAIT_MS": str(wait_ms),
            "GUNICORN_MAX_REQUESTS": "0", **(extra or {})}


def print_rows(rows: list[dict]) -> None:
    cols = ["server", "concurrency", "requests", "errors", "rps", "p50_ms", "p99_ms"]
    print("  ".join(f"{c:>11}" for c in cols))
    for r in rows:
        print("  ".join(f"{str(r.get(c)):>11}" for c in cols))


@contextmanager
def r_plumber_server(model_dir: Path, timeout: float = 180.0):
    """The R plumber reference server (``r/rserver.py`` → ``Rscript r/serve.R``) on a free loopback
    port with the same model; yields its base URL and stops it afterwards."""
    from .smoke import free_port

    port = free_port()
    env = {**os.environ, "RETICULATE_PYTHON": sys.executable}
    proc = subprocess.Popen([sys.executable, str(ROOT / "r" / "rserver.py"), "--model-dir", str(model_dir),
                             "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + timeout
        for line in proc.stdout:
            if line.startswith("READY "):
                break
            if time.time() > deadline:
                raise TimeoutError("the R server did not become ready")
        else:
            raise RuntimeError(f"the R server exited {proc.wait()} before it was ready")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def bench(args) -> int:
    model_dir, kind = resolve_model(args.model_dir)
    version = model_version(model_dir)
    payloads = photo_payloads(Path(args.photos))
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    rows = []
    common = {"model_version": version, "model_kind": kind}
    with Server(model_dir, workers=args.workers,
                env=server_env(args.max_batch_size, args.max_batch_wait_ms)) as srv:
        srv.wait_ready()
        target = Target("python", "POST", srv.url + "/predict", payloads)
        for c in concurrencies:
            load(target, c, max(2 * c, 16))  # warm-up, not recorded
            row = {**load(target, c, args.requests), **common, "workers": args.workers,
                   "max_batch_size": args.max_batch_size, "max_batch_wait_ms": args.max_batch_wait_ms}
            rows.append(row)
            print_rows([row])
    if args.r_peer:  # same model, same JPEG bodies, same POST loop
        with r_plumber_server(model_dir) as url:
            peer = Target("r_plumber", "POST", url + "/predict", payloads)
            for c in concurrencies:
                load(peer, c, max(2 * c, 8))
                row = {**load(peer, c, args.requests), **common, "url": url + "/predict"}
                rows.append(row)
                print_rows([row])
    for spec in args.peer:
        name, _, url = spec.partition("=")
        peer = Target(name, "GET", url)
        for c in concurrencies:
            load(peer, c, max(2 * c, 8))
            row = {**load(peer, c, args.requests), **common, "url": url}
            rows.append(row)
            print_rows([row])
    row = {**limit_row(str(model_dir), args.max_batch_size, payloads, args.requests * 2), **common}
    rows.append(row)
    print_rows(rows)
    write_json(Path(args.out), rows)
    print(f"wrote {args.out}")
    return 0


def sweep(args) -> int:
    """Measure micro-batching settings (and worker count) at concurrency 8 and 16.

    ``--rounds`` repeats the whole list, interleaved (setting A, B, ..., then A, B, ... again), so
    a slow spell of a shared machine hits every setting alike; the summary gives each setting's
    median over the rounds.
    """
    model_dir, kind = resolve_model(args.model_dir)
    payloads = photo_payloads(Path(args.photos))
    settings = [tuple(float(v) if i == 2 else int(v) for i, v in enumerate(s.split(":")))
                for s in args.settings.split(",")]
    rows = []
    for rnd in range(args.rounds):
        for workers, bs, wait in settings:
            with Server(model_dir, workers=workers, env=server_env(bs, wait)) as srv:
                srv.wait_ready()
                target = Target("python", "POST", srv.url + "/predict", payloads)
                for c in (8, 16):
                    load(target, c, 2 * c)
                    row = {**load(target, c, args.requests), "workers": workers, "max_batch_size": bs,
                           "max_batch_wait_ms": wait, "round": rnd, "model_version": model_version(model_dir),
                           "model_kind": kind}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    summary = []
    for workers, bs, wait in settings:
        for c in (8, 16):
            sel = [r for r in rows if (r["workers"], r["max_batch_size"], r["max_batch_wait_ms"], r["concurrency"])
                   == (workers, bs, wait, c)]
            summary.append({"workers": workers, "max_batch_size": bs, "max_batch_wait_ms": wait, "concurrency": c,
                            "rounds": len(sel), **{k: round(float(np.median([r[k] for r in sel])), 2)
                                                   for k in ("rps", "p50_ms", "p99_ms")}})
    for row in summary:
        print(json.dumps(row))
    write_json(Path(args.out), {"summary": summary, "runs": rows})
    print(f"wrote {args.out}")
    return 0


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS`` of /proc/<pid>/status), 0 if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def soak(model_dir: str | os.PathLike, n_requests: int = 10_000, concurrency: int = 8,
         warmup: int | None = None, photos: Path = DEFAULT_PHOTOS, server: Server | None = None,
         kind: str = "given") -> dict:
    """Send ``n_requests`` at ``concurrency`` and watch the workers' memory.

    Worker RSS is read after ``warmup`` requests (default 5 %, at least 100: allocator pools and
    TensorFlow's caches fill during the first requests) and after the run; ``rss_growth`` is the
    largest relative growth over the workers that lived through the whole run. Uses ``server`` when
    given, else starts one with worker recycling off (``GUNICORN_MAX_REQUESTS=0``).

    Returns:
        ``{"requests", "concurrency", "errors", "statuses", "rps", "p50_ms", "p99_ms",
        "rss_kib_start", "rss_kib_end", "rss_growth", "worker_pids_start", "worker_pids_end", ...}``.
    """
    payloads = photo_payloads(photos)
    own = server is None
    srv = server or Server(model_dir, env=server_env(8, 10.0))
    try:
        if own:
            srv.wait_ready()
        target = Target("python", "POST", srv.url + "/predict", payloads)
        warmup = warmup if warmup is not None else max(100, n_requests // 20)
        load(target, concurrency, warmup)
        pids0 = srv.worker_pids()
        rss0 = {p: rss_kib(p) for p in pids0}
        row = load(target, concurrency, n_requests)
        pids1 = srv.worker_pids()
        rss1 = {p: rss_kib(p) for p in pids1}
    finally:
        if own:
            srv.stop()
    common = [p for p in pids0 if p in rss1]
    growth = max(((rss1[p] - rss0[p]) / rss0[p] for p in common if rss0[p]), default=float("nan"))
    return {**row, "warmup_requests": warmup, "worker_pids_start": pids0, "worker_pids_end": pids1,
            "rss_kib_start": [rss0[p] for p in pids0], "rss_kib_end": [rss1.get(p, 0) for p in pids0],
            "rss_growth": round(growth, 4), "model_kind": kind}


def soak_main(args) -> int:
    model_dir, kind = resolve_model(args.model_dir)
    result = soak(model_dir, args.requests, args.concurrency, kind=kind, photos=Path(args.photos))
    result["model_version"] = model_version(model_dir)
    print(json.dumps(result, indent=2))
    write_json(Path(args.out), result)
    ok = result["errors"] == 0 and result["rss_growth"] < 0.10
    print(f"soak {'passed' if ok else 'FAILED'}: {result['errors']} errors, "
          f"worker RSS growth {100 * result['rss_growth']:.2f} % (limit 10 %); wrote {args.out}")
    return 0 if ok else 1


def add_parsers(sub) -> None:
    """Add ``bench``, ``bench-sweep`` and ``soak`` to an argparse subparsers object."""
    b = sub.add_parser("bench", help="throughput and latency over loopback -> reports/bench/serve.json")
    b.add_argument("--model-dir", help="model version (default: models/latest, else a tiny test model)")
    b.add_argument("--concurrency", default="1,4,8,16")
    b.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    b.add_argument("--workers", type=int, default=1)
    b.add_argument("--max-batch-size", type=int, default=8)
    b.add_argument("--max-batch-wait-ms", type=float, default=10.0)
    b.add_argument("--peer", action="append", default=[], metavar="NAME=URL",
                   help="another server to measure with GET URL (e.g. plumber=http://127.0.0.1:8100/names)")
    b.add_argument("--r-peer", action="store_true",
                   help="also start the R plumber reference server (r/rserver.py) with the same model "
                        "and send it the same POST /predict loop")
    b.add_argument("--photos", default=str(DEFAULT_PHOTOS))
    b.add_argument("--out", default="reports/bench/serve.json")
    b.set_defaults(func=bench)
    s = sub.add_parser("bench-sweep", help="micro-batching settings at concurrency 8 and 16")
    s.add_argument("--model-dir")
    s.add_argument("--requests", type=int, default=300)
    s.add_argument("--settings", default="1:1:0,1:8:2,1:8:10,1:16:10,1:32:10,2:8:10",
                   help="comma-separated WORKERS:MAX_BATCH_SIZE:MAX_BATCH_WAIT_MS")
    s.add_argument("--rounds", type=int, default=2)
    s.add_argument("--photos", default=str(DEFAULT_PHOTOS))
    s.add_argument("--out", default="reports/bench/serve_sweep.json")
    s.set_defaults(func=sweep)
    k = sub.add_parser("soak", help="N requests at concurrency C: 0 errors and worker RSS growth < 10 %%")
    k.add_argument("--model-dir")
    k.add_argument("--requests", type=int, default=10_000)
    k.add_argument("--concurrency", type=int, default=8)
    k.add_argument("--photos", default=str(DEFAULT_PHOTOS))
    k.add_argument("--out", default="reports/bench/soak.json")
    k.set_defaults(func=soak_main)


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m api.bench")
    add_parsers(p.add_subparsers(dest="command", required=True))
    a = p.parse_args()
    sys.exit(a.func(a))
