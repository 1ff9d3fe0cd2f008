"""Fixtures of the R parity suite: an rpy2 session with the R sources, the model under test, our
gunicorn server and the R plumber server on loopback, the R oracle's results, and the parity
report (``reports/parity.json``, written at the end of the session).

R comes from Debian (``make r-deps``). Reticulate never runs inside this process: reticulate 1.28
releases Python objects from R finalizers without holding the GIL, which aborts an R embedded in
Python by rpy2 (r/README.md). Everything that needs Keras or Pillow from R therefore runs in
``Rscript`` processes (r/oracle.R, r/serve.R); rpy2 drives the pure-R code (rvest scraper, pure-R
preprocessing, JSON writer, the httr client's testthat suite) and reads the oracle's RDS file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # rparity (pytest uses --import-mode=importlib)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "r"))  # rserver

from rparity import DEFAULT_IMAGE, ORACLE_BATCH, R_DIR, ROOT, SMOKE_DIR, ParityReport, edge_images  # noqa: E402
from rserver import RServer  # noqa: E402

from client.server import Server  # noqa: E402


def _require_r() -> None:
    if shutil.which("Rscript") is None:
        pytest.fail("R is not installed: run `make r-deps` (Debian r-base-core and r-cran-* packages)")
    try:
        import rpy2  # noqa: F401
    except ImportError:
        pytest.fail("rpy2 is not installed in the venv: run `make r-deps` (pip install rpy2==3.5.17)")


REPORT = Path(os.environ.get("PARITY_REPORT", ROOT / "reports" / "parity.json"))


@pytest.fixture(scope="session")
def parity():
    """The session's parity report; written to reports/parity.json (or $PARITY_REPORT) at the end."""
    report = ParityReport()
    yield report
    if report.checks:
        report.write(REPORT)


# ---------------------------------------------------------------- R in this process (rpy2)
@pytest.fixture(scope="session")
def r():
    """rpy2's R with r/json.R, r/preprocess.R, r/scrape.R and r/client.R sourced (no reticulate)."""
    _require_r()
    saved = os.environ.get("LD_LIBRARY_PATH")
    import rpy2.robjects as ro

    # rpy2's initialisation puts R's LD_LIBRARY_PATH (/usr/lib/x86_64-linux-gnu first) into
    # os.environ; every later subprocess (gunicorn, python -m scrape) would then load Debian's
    # libpython3.11 instead of the venv interpreter's and fail (undefined symbol _PyModule_Add).
    # The running process read its library path at start-up, so restoring it changes nothing here.
    if saved is None:
        os.environ.pop("LD_LIBRARY_PATH", None)
    else:
        os.environ["LD_LIBRARY_PATH"] = saved

    for f in ("json.R", "preprocess.R", "scrape.R", "client.R"):
        ro.r(f'source("{R_DIR / f}")')
    return ro


# ---------------------------------------------------------------- the model and the servers
@pytest.fixture(scope="session")
def parity_model_dir(request) -> Path:
    """$PARITY_MODEL_DIR (e.g. models/latest) when set, else the suite's tiny real cascade."""
    override = os.environ.get("PARITY_MODEL_DIR")
    if override:
        path = Path(override)
        if not (path / "manifest.json").is_file():
            pytest.fail(f"PARITY_MODEL_DIR={override} is not a model version folder (no manifest.json)")
        return path.resolve()
    return request.getfixturevalue("tiny_model_dir")


@pytest.fixture(scope="session")
def server_env() -> dict:
    """The settings both servers get: image root, default image."""
    if not SMOKE_DIR.is_dir():
        pytest.fail(f"the smoke photos are missing: {SMOKE_DIR}")
    return {"PLANESPOTTER_IMAGE_ROOT": str(SMOKE_DIR), "PLANESPOTTER_DEFAULT_IMAGE": DEFAULT_IMAGE}


@pytest.fixture(scope="session")
def py_server(parity_model_dir, server_env):
    """Our gunicorn server (1 worker) on a free loopback port."""
    srv = Server(parity_model_dir, env=server_env)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def r_server(parity_model_dir, server_env):
    """The R plumber reference server (r/serve.R) on a free loopback port."""
    _require_r()
    srv = RServer(parity_model_dir, env=server_env)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


# ---------------------------------------------------------------- the R oracle
@pytest.fixture(scope="session")
def oracle(r, parity_model_dir, tmp_path_factory):
    """Run r/oracle.R on the smoke photos plus the edge images; returns (files, rpy2 R list)."""
    tmp = tmp_path_factory.mktemp("oracle")
    files = sorted(SMOKE_DIR.glob("*.jpg")) + edge_images(tmp / "edge")
    out = tmp / "oracle.rds"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "RETICULATE_PYTHON": os.environ.get("RETICULATE_PYTHON", str(ROOT / ".venv" / "bin" / "python"))}
    proc = subprocess.run(["Rscript", str(R_DIR / "oracle.R"), "--model-dir", str(parity_model_dir),
                           "--out", str(out), "--batch-size", str(ORACLE_BATCH), *map(str, files)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not out.is_file():
        pytest.fail(f"r/oracle.R failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    res = r.r["readRDS"](str(out))
    return files, res


