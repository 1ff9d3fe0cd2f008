"""Helpers of the R parity suite (imported by tests/r/conftest.py and the test modules)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from model.io import write_json

ROOT = Path(__file__).resolve().parents[2]
R_DIR = ROOT / "r"
SHARED = (ROOT / ".." / "shared").resolve()
SMOKE_DIR = SHARED / "data" / "smoke-airliners"
HTML_DIR = SHARED / "data" / "planespotters-html"
DEFAULT_IMAGE = "boeing_777_turkish.jpg"
ORACLE_BATCH = 4  # images per forward pass in r/oracle.R and on the Python side


class ParityReport:
    """Check name -> {"status": "pass" | "fail" | "known_difference", "measured": {...}}."""

    def __init__(self):
        self.checks: dict[str, dict] = {}
        self.context: dict = {}

    def check(self, name: str, passed: bool, known_difference: bool = False, **measured) -> bool:
        """Record one check (before asserting it). ``known_difference``: the check documents a
        difference listed in r/README.md; it passes when the difference is exactly the listed one."""
        status = ("known_difference" if known_difference else "pass") if passed else "fail"
        self.checks[name] = {"status": status, "measured": _jsonable(measured)}
        return passed

    def write(self, path: Path) -> None:
        failed = sorted(k for k, v in self.checks.items() if v["status"] == "fail")
        doc = {"summary": {"passed": not failed and bool(self.checks), "checks": len(self.checks),
                           "failed": failed,
                           "known_differences": sorted(k for k, v in self.checks.items()
                                                       if v["status"] == "known_difference"),
                           "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                           **self.context},
               "checks": dict(sorted(self.checks.items()))}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, doc)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return str(x)
    return x


def r_to_numpy(obj) -> np.ndarray:
    """An R numeric array as a NumPy array with the same shape and indices (float64)."""
    import rpy2.robjects as ro
    from rpy2.robjects import numpy2ri

    with (ro.default_converter + numpy2ri.converter).context():
        return np.asarray(ro.conversion.get_conversion().rpy2py(obj), dtype=np.float64)


def edge_images(folder: Path) -> list[Path]:
    """Images that exercise the preprocessing rules: EXIF orientation 6, RGBA and palette PNGs,
    a grayscale JPEG (built from a smoke photo, deterministic)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(SMOKE_DIR / "boeing_767.jpg") as im:
        base = im.convert("RGB").resize((211, 141), Image.Resampling.BILINEAR)
    out = []
    exif = Image.Exif()
    exif[0x0112] = 6
    p = folder / "edge_exif6.jpg"
    base.save(p, "JPEG", quality=90, exif=exif.tobytes())
    out.append(p)
    rgba = base.convert("RGBA")
    alpha = Image.linear_gradient("L").resize(base.size)
    rgba.putalpha(alpha)
    p = folder / "edge_rgba.png"
    rgba.save(p, "PNG")
    out.append(p)
    p = folder / "edge_palette.png"
    base.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(p, "PNG")
    out.append(p)
    p = folder / "edge_gray.jpg"
    base.convert("L").save(p, "JPEG", quality=90)
    out.append(p)
    return out


#: The registration painted on :func:`registration_png` (a real airframe: the registry has it).
PAINTED_REGISTRATION = "D-ABYI"


def registration_png(text: str = PAINTED_REGISTRATION) -> bytes:
    """A white 1200x500 PNG with ``text`` drawn large in black (Pillow's default font at 120 px):
    an image on which the registration reader finds ``text`` (generated, not a shared photo)."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    im = Image.new("RGB", (1200, 500), "white")
    ImageDraw.Draw(im).text((100, 180), text, fill="black", font=ImageFont.load_default(size=120))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def require_registry():
    """The configured aircraft registry (:func:`model.registry.load_configured`: $PLANESPOTTER_REGISTRY,
    else the shared one, read in place), which both servers and the R oracle load too; fails the
    test when there is none (the registration checks would compare null with null)."""
    import pytest

    from model.registry import configured_path, load_configured

    if configured_path() is None:
        pytest.fail("no aircraft registry: the shared one (../shared/data/aircraft-registry/registry.csv.gz) "
                    "is missing or PLANESPOTTER_REGISTRY is empty; the registration parity checks need one")
    return load_configured()


def oracle_images(model_dir, files, out: Path, thresholds: str = "default,1.0",
                  read: bool = False) -> list[tuple[str, int, str]]:
    """Run r/oracle_images.R (the whole R pipeline, ``ps_predict_images``) on ``files`` in batches of
    :data:`ORACLE_BATCH`, with the aircraft gates ``thresholds`` (``--read``: reading registrations
    against the configured registry); one ``(threshold, first index, JSON)`` per batch."""
    import os
    import subprocess

    import pytest

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "RETICULATE_PYTHON": os.environ.get("RETICULATE_PYTHON", str(ROOT / ".venv" / "bin" / "python"))}
    proc = subprocess.run(["Rscript", str(R_DIR / "oracle_images.R"), "--model-dir", str(model_dir), "--out",
                           str(out), "--batch-size", str(ORACLE_BATCH), "--aircraft-thresholds", thresholds,
                           *(["--read"] if read else []), *map(str, files)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not out.is_file():
        pytest.fail(f"r/oracle_images.R failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    rows = []
    for line in out.read_text(encoding="utf-8").splitlines():
        t, start, js = line.split("\t", 2)
        rows.append((t, int(start), js))
    return rows


def rget(rlist, *path):
    """Element of a (nested) R list by names."""
    obj = rlist
    for name in path:
        obj = obj.rx2(name)
    return obj


def run_testthat(r, url: str, images: Path = SMOKE_DIR) -> list[dict]:
    """The R client's testthat suite (r/tests/testthat) through rpy2's R ``r`` against the server
    at ``url``, with ``images`` as its test photos; one dict per test (test, nb, failed,
    skipped, error)."""
    r.r["Sys.setenv"](PLANESPOTTER_URL=url, PLANESPOTTER_TEST_IMAGES=str(images))
    res = r.r(f"""as.data.frame(testthat::test_dir("{R_DIR / 'tests' / 'testthat'}", reporter = "silent",
                                                  stop_on_failure = FALSE, stop_on_warning = FALSE))""")
    cols = {c: list(res.rx2(c)) for c in ("test", "nb", "failed", "skipped", "error")}
    return [{c: cols[c][i] for c in cols} for i in range(len(cols["test"]))]
