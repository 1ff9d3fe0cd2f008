"""Fixtures of the scrape tests: the loopback site and crawls run in subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # loopback_site (pytest runs with importlib mode)

from loopback_site import HTML_DIR, SMOKE_DIR, LoopbackSite  # noqa: E402

from dataset.metadata import read_rows  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONTACT = "test@example.org"
USER_AGENT = f"planespotter/0.1 (+mailto:{CONTACT})"
#: small delays for tests; the politeness defaults themselves are tested in test_politeness.py
FAST = ["-s", "DOWNLOAD_DELAY=0", "-s", "AUTOTHROTTLE_START_DELAY=0", "-s", "AUTOTHROTTLE_MAX_DELAY=0.5",
        "-s", "RETRY_BACKOFF_BASE=0.1"]

if not HTML_DIR.is_dir() or not SMOKE_DIR.is_dir():  # pragma: no cover
    pytest.skip("../shared/data is not available", allow_module_level=True)


@dataclass
class CrawlResult:
    proc: subprocess.CompletedProcess
    out: Path
    site: LoopbackSite

    @property
    def report(self) -> dict:
        return json.loads((self.out / "crawl_report.json").read_text(encoding="utf-8"))

    @property
    def rows(self) -> list[dict[str, str]]:
        return read_rows(self.out / "metadata.csv")


def crawl_cmd(site: LoopbackSite, out: Path, *extra: str, contact: str | None = CONTACT) -> list[str]:
    cmd = [sys.executable, "-m", "scrape", "crawl", "--base-url", site.base_url, "--out", str(out),
           "--log-level", "INFO", *FAST, *extra]
    if contact is not None:
        cmd[4:4] = ["--contact", contact]
    return cmd


def run_crawl(site: LoopbackSite, out: Path, *extra: str, contact: str | None = CONTACT,
              timeout: float = 120) -> CrawlResult:
    """Run ``python -m scrape crawl`` against ``site`` in a subprocess; returns the result."""
    proc = subprocess.run(crawl_cmd(site, out, *extra, contact=contact), cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    return CrawlResult(proc, out, site)


@pytest.fixture(scope="session")
def polite_site():
    """Loopback site with robots.txt Crawl-delay 0.2 s."""
    site = LoopbackSite(crawl_delay=0.2).start()
    yield site
    site.stop()


@pytest.fixture(scope="session")
def main_crawl(polite_site, tmp_path_factory) -> CrawlResult:
    """One full crawl of /photos/latest (3 pages + no-results) and the disallowed
    /photos/private, with robots.txt, Crawl-delay, 429, 500, bad images."""
    out = tmp_path_factory.mktemp("main_crawl") / "dataset"
    res = run_crawl(polite_site, out, "--listing", "/photos/latest", "--listing", "/photos/private",
                    "--pages", "0")
    assert res.proc.returncode == 0, res.proc.stderr[-4000:]
    return res


@pytest.fixture
def fast_site():
    """Loopback site without Crawl-delay and 30 ms latency per response."""
    site = LoopbackSite(crawl_delay=0.0, latency=0.03).start()
    yield site
    site.stop()
