"""Fixtures for synth tests: the real flightgear-data-ai package, fetched once into data/external."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.fetch import fetch, is_unpacked
from synth.fleet import scan_fleet

REPO = Path(__file__).resolve().parents[2]
EXTERNAL = REPO / "data" / "external"


@pytest.fixture(scope="session")
def fleet_root() -> Path:
    """The unpacked package; fetched with apt-get on first use (about 10-20 s), then cached."""
    root = EXTERNAL / "flightgear-data-ai"
    if not is_unpacked(root):
        fetch(EXTERNAL)
    return root


@pytest.fixture(scope="session")
def scan_all(fleet_root):
    """scan_fleet over all three manufacturer classes."""
    return scan_fleet(fleet_root, None)


@pytest.fixture(scope="session")
def by_key(scan_all):
    """Liveries by key ``<folder>/<livery_id>``."""
    return {lv.key: lv for lv in scan_all.liveries}
