"""Fixtures of the dataset tests (the data contract: schema, labels, metadata CSVs, hashes,
near-duplicates, the image decoder).

The photo helpers of test_images.py (``_jpeg``, ``_gps_exif``, ``smoke_image``) are the loopback
site's (tests/scrape/loopback_site.py), the very images the crawl tests store.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scrape"))  # loopback_site (importlib mode)
