"""The real server as a child process: gunicorn serving ``api:create_app()`` on a free loopback
port, for the clients (smoke, bench, soak) and the tests.

The app is named by a string (:data:`APP`, :data:`GUNICORN_CONF`) and runs in its own process:
this package never imports :mod:`api`."""

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
APP = "api:create_app()"
GUNICORN_CONF = "python:api.gunicorn_conf"


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real gunicorn process serving :data:`APP` on ``127.0.0.1:<free port>``.

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
            [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONF, APP],
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
