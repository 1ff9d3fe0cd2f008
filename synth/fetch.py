"""Fetch and unpack Debian's ``flightgear-data-ai`` package (the FlightGear AI fleet).

The package (GPL-2.0-or-later, about 287 MB as a .deb, 508 MB unpacked) holds the 3D models
and airline liveries that FlightGear flies as AI traffic. Only the data is needed; FlightGear
itself is never installed. ``apt-get download`` fetches the .deb into a temporary folder,
``dpkg-deb -x`` unpacks it into a sibling temporary folder, and one ``os.replace`` moves it to
``<dest>/flightgear-data-ai`` so a crash never leaves a half-unpacked fleet behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

PACKAGE = "flightgear-data-ai"
#: Path of the AI aircraft folder inside the unpacked package.
AIRCRAFT_SUBDIR = Path("usr/share/games/flightgear/AI/Aircraft")
#: Marker written last into a complete unpack (holds the .deb file name).
COMPLETE_MARKER = ".complete"


class FetchError(RuntimeError):
    """Raised when the package cannot be downloaded or unpacked."""


def fleet_root(dest: str | os.PathLike) -> Path:
    """Folder the package is unpacked into: ``<dest>/flightgear-data-ai``."""
    return Path(dest) / PACKAGE


def is_unpacked(root: str | os.PathLike) -> bool:
    """True when ``root`` holds a complete unpack (marker file and the AI aircraft folder)."""
    root = Path(root)
    return (root / COMPLETE_MARKER).is_file() and (root / AIRCRAFT_SUBDIR).is_dir()


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as exc:  # apt-get / dpkg-deb missing (not a Debian system)
        raise FetchError(f"{cmd[0]} not found: fetch needs a Debian/Ubuntu system ({exc})") from exc
    if proc.returncode != 0:
        raise FetchError(
            f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{proc.stderr.strip()}"
        )


def fetch(dest: str | os.PathLike = "data/external", force: bool = False) -> Path:
    """Download ``flightgear-data-ai`` with apt and unpack it under ``<dest>/flightgear-data-ai``.

    Idempotent: returns at once when a complete unpack is already there (unless ``force``).
    Atomic: the package is unpacked into a temporary folder next to the target and renamed.

    Args:
        dest: parent folder; created when missing.
        force: unpack again even when a complete unpack exists.

    Returns:
        The fleet root (pass it to :func:`synth.fleet.scan_fleet`).

    Raises:
        FetchError: ``apt-get download`` or ``dpkg-deb`` failed or is missing. When apt does
            not know the package and we run as root, ``apt-get update`` is run once first.
    """
    dest = Path(dest).absolute()
    root = fleet_root(dest)
    if is_unpacked(root) and not force:
        return root
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fgdl-", dir=dest) as tmp:
        tmp = Path(tmp)
        dl = tmp / "deb"
        dl.mkdir()
        # apt-get download writes into the current folder; as root it warns that the
        # sandbox user cannot access it, which is harmless.
        try:
            _run(["apt-get", "download", PACKAGE], cwd=dl)
        except FetchError as exc:
            # Fresh machines often have empty package lists: refresh once (needs root), retry.
            if "Unable to locate package" not in str(exc) or not hasattr(os, "geteuid") or os.geteuid() != 0:
                raise
            _run(["apt-get", "update", "-qq"], cwd=dl)
            _run(["apt-get", "download", PACKAGE], cwd=dl)
        debs = sorted(dl.glob(f"{PACKAGE}_*.deb"))
        if not debs:
            raise FetchError(f"apt-get download produced no {PACKAGE}_*.deb")
        unpack = tmp / "unpack"
        _run(["dpkg-deb", "-x", str(debs[-1]), str(unpack)], cwd=tmp)
        if not (unpack / AIRCRAFT_SUBDIR).is_dir():
            raise FetchError(f"{debs[-1].name} has no {AIRCRAFT_SUBDIR}")
        (unpack / COMPLETE_MARKER).write_text(debs[-1].name + "\n")
        if root.exists():
            old = tmp / "old"
            os.replace(root, old)
        os.replace(unpack, root)
    return root


def remove(dest: str | os.PathLike) -> None:
    """Delete ``<dest>/flightgear-data-ai`` (for a clean re-fetch)."""
    shutil.rmtree(fleet_root(dest), ignore_errors=True)
