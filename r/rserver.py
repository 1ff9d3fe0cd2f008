"""Start the R reference server (``Rscript r/serve.R``) on a free loopback port and wait until it
answers — for the parity tests (``tests/r``) and as a peer for ``make bench-serve``.

As a program (stays in the foreground until SIGINT/SIGTERM, then stops the R server)::

    .venv/bin/python r/rserver.py --model-dir models/latest [--port N] \\
        [--image-root DIR] [--default-image NAME]
    # prints:  READY http://127.0.0.1:<port>

As a library (``sys.path`` must contain ``r/``)::

    from rserver import RServer
    with RServer(model_dir, env={"PLANESPOTTER_IMAGE_ROOT": ...}) as srv:
        srv.wait_ready()
        requests.get(srv.url + "/ping")
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

R_DIR = Path(__file__).resolve().parent
ROOT = R_DIR.parent


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RServer:
    """An ``Rscript r/serve.R`` process serving ``r/plumber.R`` on ``127.0.0.1:<port>``.

    Args:
        model_dir: model version folder (``PLANESPOTTER_MODEL_DIR``).
        env: extra environment variables (``PLANESPOTTER_IMAGE_ROOT``, ``..._DEFAULT_IMAGE``, ...).
        port: TCP port (default: a free one). timeout: seconds :meth:`wait_ready` waits.
        quiet: send R's stderr to a temporary file (its tail is shown when R exits early)
            instead of inheriting it; a file, not a pipe, so a chatty R can never block on it.
    """

    def __init__(self, model_dir: str | os.PathLike, env: dict | None = None, port: int | None = None,
                 timeout: float = 180, quiet: bool = True):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        python = ROOT / ".venv" / "bin" / "python"
        full_env = {**os.environ, "PLANESPOTTER_MODEL_DIR": str(Path(model_dir).resolve()),
                    "TF_CPP_MIN_LOG_LEVEL": "3",
                    "RETICULATE_PYTHON": os.environ.get("RETICULATE_PYTHON") or str(python if python.exists()
                                                                                      else sys.executable),
                    **(env or {})}
        self.log = tempfile.TemporaryFile() if quiet else None
        self.proc = subprocess.Popen(
            ["Rscript", str(R_DIR / "serve.R"), "--port", str(self.port), "--host", "127.0.0.1"],
            cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True)
        self.timeout = timeout

    def wait_ready(self, path: str = "/readyz") -> float:
        """Poll ``path`` until it answers 200; returns the seconds waited.

        Raises:
            RuntimeError: Rscript exited (its stderr tail is in the message).
            TimeoutError: no answer within ``timeout`` seconds.
        """
        t0 = time.time()
        while time.time() - t0 < self.timeout:
            if self.proc.poll() is not None:
                err = ""
                if self.log is not None:
                    self.log.seek(0)
                    err = self.log.read().decode(errors="replace")[-3000:]
                raise RuntimeError(f"Rscript r/serve.R exited {self.proc.returncode}: {err}")
            try:
                if requests.get(self.url + path, timeout=2).status_code == 200:
                    return time.time() - t0
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{self.url}{path} did not answer 200 within {self.timeout}s")

    def stop(self) -> None:
        """SIGTERM to the R process group, SIGKILL after 10 s."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.log is not None:
            self.log.close()
            self.log = None

    def __enter__(self) -> "RServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run the R plumber reference server on loopback until stopped.")
    p.add_argument("--model-dir", default=str(ROOT / "models" / "latest"))
    p.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    p.add_argument("--image-root", help="PLANESPOTTER_IMAGE_ROOT (for GET /predict?path= and /names)")
    p.add_argument("--default-image", help="PLANESPOTTER_DEFAULT_IMAGE (for GET /names)")
    p.add_argument("--timeout", type=float, default=180)
    args = p.parse_args(argv)
    if not (Path(args.model_dir) / "manifest.json").is_file():
        print(f"rserver: error: {args.model_dir} is not a model version folder (no manifest.json)", file=sys.stderr)
        return 2
    env = {}
    if args.image_root:
        env["PLANESPOTTER_IMAGE_ROOT"] = str(Path(args.image_root).resolve())
    if args.default_image:
        env["PLANESPOTTER_DEFAULT_IMAGE"] = args.default_image
    srv = RServer(args.model_dir, env=env, port=args.port or None, timeout=args.timeout, quiet=False)
    stop = {"now": False}

    def _stop(*_):
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        srv.wait_ready()
        print(f"READY {srv.url}", flush=True)
        while not stop["now"] and srv.proc.poll() is None:
            time.sleep(0.5)
    except (RuntimeError, TimeoutError) as e:
        print(f"rserver: error: {e}", file=sys.stderr)
        return 1
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
