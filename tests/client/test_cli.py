"""``python -m client``: bad arguments give a message on stderr and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bad_peer_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "client", "bench", "--peer", "plumber"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--peer wants NAME=http(s)://" in proc.stderr


def test_help_lists_the_commands():
    proc = subprocess.run([sys.executable, "-m", "client", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    for cmd in ("smoke", "bench", "bench-sweep", "soak"):
        assert cmd in proc.stdout
