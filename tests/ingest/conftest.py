"""Fixtures of the ingest tests: generated images in tmp_path (helpers in imgfix.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # imgfix (pytest runs with importlib mode)
