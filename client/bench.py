"""Serving benchmark and soak test over loopback (``make bench-serve``, ``make bench-sweep``,
``make soak``; ``python -m client bench|bench-sweep|soak``).

The load generator is a bounded closed loop: ``concurrency`` threads (``concurrent.futures``),
each with its own keep-alive ``requests.Session``, send requests back to back until exactly
``requests`` have been sent. Latency is measured per request on the client (``time.perf_counter``);
``rps`` is successful requests per second of wall time; p50/p99 are over successful requests
(``numpy.percentile``, linear interpolation).

Payloads: the real photos of ``../shared/data/smoke-airliners`` re-encoded once as JPEG q90 at each
``--payload-width`` (default :data:`PAYLOAD_WIDTH`; :func:`model.bench.score.camera_payloads`: at most
800 px wide — a typical web photo — or exactly 4000 / 6000 px wide, upscaled — camera files of
11 / 24 MP), sent as raw ``image/jpeg`` bodies to ``POST /predict``, cycling through the photos;
the server decodes and resizes every request. Python rows carry ``payload_width``.

``limit`` rows, one per payload width: the same model in this process,
:func:`model.bench.score.model_forward` (the localizer when the version has one, then stage-1 and
stage-2 ``predict_on_batch`` plus routing) on already preprocessed batches of the
server's ``MAX_BATCH_SIZE`` — the forward-pass ceiling of this machine. ``rps`` is images per
second, p50/p99 are per batch call, ``concurrency`` holds the batch size. ``rps_with_decode`` is
the decode + forward limit with each photo's decode (``decode_ms_per_image``, one thread) spread
over the machine's cores (:func:`model.bench.score.decode_limit`); ``rps_with_decode_one_thread`` the
same with the decode on one thread. Each Python row's ``ratio_to_forward_limit`` /
``ratio_to_decode_limit`` compare its ``rps`` with its width's limits, and
``ratio_to_first_width`` with the first width's ``rps`` at the same concurrency.

``--jpeg-draft N`` serves a copy of the version whose spec has ``jpeg_draft = N``
(:func:`model.bench.score.respec_version`): an older version's weights with scaled JPEG decoding.

Peers (``--peer NAME=URL``, e.g. the R plumber reference server): ``GET URL`` at the same
concurrency levels, rows with ``server: NAME``.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import shutil
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

from model import preprocessing as pp
from model.bench.score import camera_payloads, decode_limit, decode_ms, model_forward, respec_version
from model.cascade import Cascade
from model.score import decode_workers

from .server import ROOT, Server, free_port

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
        """Send request number ``k`` (its body: ``bodies[k % len(bodies)]``) on ``session``."""
        if self.bodies:
            body = self.bodies[k % len(self.bodies)]
            return session.request(self.method, self.url, data=body, timeout=timeout,
                                   headers={"Content-Type": "image/jpeg"})
        return session.request(self.method, self.url, timeout=timeout)


def photo_payloads(folder: Path = DEFAULT_PHOTOS, width: int = PAYLOAD_WIDTH, limit: int = 12) -> list[bytes]:
    """JPEG bytes of up to ``limit`` photos of ``folder`` at payload width ``width``: at most
    that wide up to 800 px, exactly that wide above (:func:`model.bench.score.camera_payloads`).

    Without photos there, synthetic gradient JPEGs stand in (640x427 for web widths; so the bench
    runs anywhere).
    """
    return camera_payloads(width, folder, limit)


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


def limit_rows(model_dir, batch_size: int, payloads: dict[int, list[bytes]], n_images: int) -> list[dict]:
    """The in-process ceilings, one row per payload width (see the module docstring).

    Args:
        model_dir: the model version folder, or an already loaded and warmed-up
            :class:`model.cascade.Cascade`; payloads: encoded photos by payload width;
        n_images: images the forward pass runs over.
    """
    cascade = model_dir
    if not isinstance(cascade, Cascade):
        cascade = Cascade.load(model_dir)
        cascade.warm_up(batch_sizes=sorted({1, batch_size}))
    first = next(iter(payloads.values()))
    x = np.stack([pp.to_array(first[i % len(first)], cascade.spec) for i in range(batch_size)])
    for _ in range(3):
        model_forward(cascade, x)
    calls = max(3, n_images // batch_size)
    times = []
    t0 = time.perf_counter()
    for _ in range(calls):
        t = time.perf_counter()
        model_forward(cascade, x)
        times.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    forward = calls * batch_size / wall
    ms = np.array(times) * 1000
    cores = decode_workers()
    rows = []
    for width, data in payloads.items():
        d_ms = decode_ms(data, cascade.spec)
        rows.append({"server": "limit", "payload_width": width, "concurrency": batch_size,
                     "requests": calls * batch_size, "errors": 0, "rps": round(forward, 2),
                     "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
                     "batch_size": batch_size, "cores": cores, "jpeg_draft": cascade.spec.jpeg_draft,
                     "rps_with_decode": round(decode_limit(forward, d_ms, cores), 2),
                     "rps_with_decode_one_thread": round(decode_limit(forward, d_ms, 1), 2),
                     "decode_ms_per_image": round(d_ms, 2)})
    return rows


def add_ratios(rows: list[dict]) -> None:
    """Set ``ratio_to_forward_limit``, ``ratio_to_decode_limit`` and ``ratio_to_first_width`` on
    every ``python`` row, from the ``limit`` row of its payload width (in place)."""
    limits = {r["payload_width"]: r for r in rows if r["server"] == "limit"}
    py = [r for r in rows if r["server"] == "python"]
    first = {}
    for r in py:
        first.setdefault(r["concurrency"], r)
        lim = limits.get(r.get("payload_width"))
        if lim:
            r["ratio_to_forward_limit"] = round(r["rps"] / lim["rps"], 3)
            r["ratio_to_decode_limit"] = round(r["rps"] / lim["rps_with_decode"], 3)
        base = first[r["concurrency"]]["rps"]
        r["ratio_to_first_width"] = round(r["rps"] / base, 3) if base else None


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
    """The version name in ``model_dir``'s ``manifest.json``."""
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
    """The server's environment for a micro-batching setting, worker recycling off, plus ``extra``."""
    return {"PLANESPOTTER_MAX_BATCH_SIZE": str(batch_size), "PLANESPOTTER_MAX_BATCH_WAIT_MS": str(wait_ms),
            "GUNICORN_MAX_REQUESTS": "0", **(extra or {})}


def print_rows(rows: list[dict]) -> None:
    """Benchmark rows as right-aligned columns on stdout."""
    cols = ["server", "payload_width", "concurrency", "requests", "errors", "rps", "p50_ms", "p99_ms",
            "rps_with_decode", "ratio_to_forward_limit", "ratio_to_decode_limit", "ratio_to_first_width"]
    print("  ".join(f"{c:>11}" for c in cols))
    for r in rows:
        print("  ".join(f"{str(r.get(c, '')):>11}" for c in cols))


@contextmanager
def r_plumber_server(model_dir: Path, timeout: float = 180.0):
    """The R plumber reference server (``r/rserver.py`` → ``Rscript r/serve.R``) on a free loopback
    port with the same model; yields its base URL and stops it afterwards."""
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


def median_rows(rows: list[dict]) -> list[dict]:
    """One row per (server, payload width, concurrency) of per-round ``rows``: the median of
    ``rps``, ``p50_ms``, ``p99_ms`` (and the limits' ``rps_with_decode*``, ``decode_ms_per_image``)
    over the rounds, with ``rounds`` and every round's ``rps`` in ``rps_rounds``; first-seen order."""
    keys, groups = [], {}
    for r in rows:
        k = (r["server"], r.get("payload_width"), r["concurrency"])
        if k not in groups:
            keys.append(k)
            groups[k] = []
        groups[k].append(r)
    out = []
    for k in keys:
        sel = groups[k]
        row = {key: v for key, v in sel[0].items() if key != "round"}
        for key in ("rps", "p50_ms", "p99_ms", "rps_with_decode", "rps_with_decode_one_thread", "decode_ms_per_image"):
            if key in row:
                row[key] = round(float(np.median([r[key] for r in sel])), 2)
        row["errors"] = sum(r["errors"] for r in sel)
        row["rounds"], row["rps_rounds"] = len(sel), [r["rps"] for r in sel]
        out.append(row)
    return out


def bench(args) -> int:
    """``make bench-serve``: every payload width at every concurrency, then the in-process limits,
    ``--rounds`` times interleaved (a slow spell of a shared machine hits every width and the
    limits alike); the rows are the medians over the rounds (:func:`median_rows`)."""
    model_dir, kind = resolve_model(args.model_dir)
    version = model_version(model_dir)
    tmp_models = None
    if args.jpeg_draft is not None:
        tmp_models = tempfile.mkdtemp(prefix="planespotter-bench-models-")
        model_dir = respec_version(model_dir, tmp_models, jpeg_draft=args.jpeg_draft)
    widths = [int(w) for w in str(args.payload_width).split(",") if w.strip()]
    payloads = {w: photo_payloads(Path(args.photos), w) for w in widths}
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    rows = []
    common = {"model_version": version, "model_kind": kind}
    try:
        local = Cascade.load(model_dir)  # the in-process limits, measured while the server idles
        local.warm_up(batch_sizes=sorted({1, args.max_batch_size}))
        with Server(model_dir, workers=args.workers,
                    env=server_env(args.max_batch_size, args.max_batch_wait_ms)) as srv:
            srv.wait_ready()
            for rnd in range(max(1, args.rounds)):
                for width, bodies in payloads.items():
                    target = Target("python", "POST", srv.url + "/predict", bodies)
                    for c in concurrencies:
                        load(target, c, max(2 * c, 16))  # warm-up, not recorded
                        row = {**load(target, c, args.requests), **common, "payload_width": width,
                               "payload_bytes": int(np.mean([len(b) for b in bodies])), "workers": args.workers,
                               "max_batch_size": args.max_batch_size, "max_batch_wait_ms": args.max_batch_wait_ms,
                               "round": rnd}
                        rows.append(row)
                        print_rows([row])
                for r in limit_rows(local, args.max_batch_size, payloads, args.requests * 2):
                    rows.append({**r, **common, "round": rnd})
                    print_rows([rows[-1]])
        first = payloads[widths[0]]
        if args.r_peer:  # same model, same JPEG bodies, same POST loop
            with r_plumber_server(model_dir) as url:
                peer = Target("r_plumber", "POST", url + "/predict", first)
                for c in concurrencies:
                    load(peer, c, max(2 * c, 8))
                    row = {**load(peer, c, args.requests), **common, "url": url + "/predict",
                           "payload_width": widths[0]}
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
    finally:
        if tmp_models:
            shutil.rmtree(tmp_models, ignore_errors=True)
    rows = median_rows(rows)
    add_ratios(rows)
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
    """``make soak``: :func:`soak`, written to ``--out``; exit 1 on errors or RSS growth of 10 % or more."""
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
    b.add_argument("--max-batch-wait-ms", type=float, default=40.0, help="the server's MAX_BATCH_WAIT_MS (its default)")
    b.add_argument("--peer", action="append", default=[], metavar="NAME=URL",
                   help="another server to measure with GET URL (e.g. plumber=http://127.0.0.1:8100/names)")
    b.add_argument("--r-peer", action="store_true",
                   help="also start the R plumber reference server (r/rserver.py) with the same model "
                        "and send it the same POST /predict loop")
    b.add_argument("--photos", default=str(DEFAULT_PHOTOS))
    b.add_argument("--payload-width", default=str(PAYLOAD_WIDTH), metavar="W[,W...]",
                   help="payload widths, e.g. 800,4000,6000 (<= 800: at most that wide; above: exactly, upscaled)")
    b.add_argument("--rounds", type=int, default=1, help="interleaved rounds; rows are their medians")
    b.add_argument("--jpeg-draft", type=int, default=None,
                   help="serve a copy of the version with this jpeg_draft (default: the version's own)")
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
    p = argparse.ArgumentParser(prog="python -m client.bench")
    add_parsers(p.add_subparsers(dest="command", required=True))
    a = p.parse_args()
    sys.exit(a.func(a))
