"""Run the real server for a moment: start gunicorn on a free loopback port, wait until ready,
classify a folder of photos over HTTP, print a table, stop the server (``make serve-smoke``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real gunicorn process serving ``api:create_app()`` on ``127.0.0.1:<free port>``.

    Args:
        model_dir: model version folder (``PLANESPOTTER_MODEL_DIR``).
        env: extra environment variables; workers: gunicorn worker count.
        timeout: seconds :meth:`wait_ready` waits.
        quiet: send gunicorn's log to a temporary file (read by :meth:`log`) instead of stderr.
    """

    def __init__(self, model_dir: str | os.PathLike, env: dict | None = None, workers: int = 1,
                 timeout: float = 180, quiet: bool = True):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "PLANESPOTTER_MODEL_DIR": str(model_dir), "WEB_CONCURRENCY": str(workers),
                    "GUNICORN_BIND": f"127.0.0.1:{self.port}", "GUNICORN_ACCESSLOG": "",
                    "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        # A file, not a pipe: nobody reads a pipe while the server runs, and a full one blocks it.
        self._log = tempfile.TemporaryFile() if quiet else None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_conf", "api:create_app()"],
            cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL,
            stderr=self._log, start_new_session=True)
        self.timeout = timeout

    @property
    def pid(self) -> int:
        """The gunicorn master's process id."""
        return self.proc.pid

    def log(self, tail: int = 3000) -> str:
        """The last ``tail`` characters of gunicorn's log (empty when not ``quiet``)."""
        if self._log is None or self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-tail:]

    def worker_pids(self) -> list[int]:
        """Process ids of the live gunicorn workers (children of the master), sorted."""
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/children") as f:
                return sorted(int(p) for p in f.read().split())
        except FileNotFoundError:
            return []

    def signal_worker(self, sig: int = signal.SIGKILL, index: int = 0) -> int:
        """Send ``sig`` to one worker; returns its pid."""
        pid = self.worker_pids()[index]
        os.kill(pid, sig)
        return pid

    def wait_ready(self, path: str = "/readyz", expect: int = 200) -> float:
        """Poll ``path`` until it answers ``expect``; returns the seconds waited.

        Raises:
            RuntimeError: gunicorn exited. TimeoutError: not ready within ``timeout``.
        """
        t0 = time.time()
        while time.time() - t0 < self.timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited {self.proc.returncode}: {self.log()}")
            try:
                if requests.get(self.url + path, timeout=10).status_code == expect:
                    return time.time() - t0
            except requests.RequestException:  # not listening yet, or too busy to answer in time
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{self.url}{path} did not answer {expect} within {self.timeout}s")

    def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL of the whole process group after 40 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._log is not None and not self._log.closed:
            self._log.close()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def smoke(model_dir: str, images: list[Path], truth: dict[str, tuple[str, str]] | None = None) -> list[dict]:
    """Classify ``images`` through a fresh server; returns one row per image."""
    rows = []
    with Server(model_dir) as srv:
        waited = srv.wait_ready()
        print(f"server ready on {srv.url} after {waited:.1f}s", flush=True)
        for p in images:
            with open(p, "rb") as f:
                r = requests.post(srv.url + "/predict", files={"image": (p.name, f, "image/jpeg")}, timeout=120)
            body = r.json()
            if r.status_code != 200:
                rows.append({"file": p.name, "error": body.get("message", r.text)})
                continue
            row = {"file": p.name, "manufacturer": body["manufacturer"]["label"] or "",  # None: not an aircraft
                   "p_manufacturer": body["manufacturer"]["probability"] or 0.0, "family": body["family"]["label"] or "",
                   "p_family": body["family"]["probability"] or 0.0, "type": body["type"]["label"] or "",
                   "p_type": body["type"]["probability"] or 0.0, "answer": body["answer"]["label"],
                   "unsure": body["unsure"]}
            if truth and p.name in truth:
                m, f, t = truth[p.name]
                row["true"] = "/".join(x for x in (m, f, t) if x)
                row["ok"] = {"manufacturer": row["manufacturer"] == m, "family": bool(f) and row["family"] == f,
                             "type": bool(t) and row["type"] == t, "has_family": bool(f), "has_type": bool(t)}
            rows.append(row)
    return rows


def summary(rows: list[dict]) -> str:
    """``"manufacturer 11/12, family 9/12, type named and right 3/5 (of the photos with a known type)"``."""
    scored = [r["ok"] for r in rows if "ok" in r]
    if not scored:
        return ""
    fam = [o for o in scored if o["has_family"]]
    typ = [o for o in scored if o["has_type"]]
    return (f"right: manufacturer {sum(o['manufacturer'] for o in scored)}/{len(scored)}, "
            f"family {sum(o['family'] for o in fam)}/{len(fam)}, "
            f"type named and right {sum(o['type'] for o in typ)}/{len(typ)} (photos with a known type)")


def print_table(rows: list[dict]) -> None:
    """A fixed-width table of smoke results on stdout."""
    cols = ["file", "true", "manufacturer", "p_manufacturer", "family", "p_family", "type", "p_type", "answer",
            "unsure"]
    cols = [c for c in cols if any(c in r for r in rows)]
    fmt = {c: (lambda v: f"{v:.3f}") if c.startswith("p_") else str for c in cols}
    cells = [[fmt[c](r[c]) if c in r else r.get("error", "") if c == "manufacturer" else "" for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    if summary(rows):
        print(summary(rows))
