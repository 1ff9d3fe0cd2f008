"""Preset for ``../shared/data/other-aircraft`` (932 photos of 14 aircraft types made by neither
Airbus nor Boeing; its README.md): the photos stage 1 learns ``Other`` from.

``labels.csv`` has the columns of ``../real-airliners/labels.csv`` (read by
:func:`ingest.real_airliners.candidates`); every row has ``manufacturer`` = ``Other`` and no family
or ICAO type. ``source_label`` names the FGVC-Aircraft subset class (``class_06`` … ``class_19``,
one aircraft type each), kept as ``type_raw``. All rows get ``source`` = :data:`SOURCE`: they are
FGVC-Aircraft trainval photos (airliners.net, banner already cut), the same origin as the two
FGVC-derived folders of real-airliners (:func:`model.training.sources.origin_of`). Photos are never copied.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import real_airliners
from .core import Candidate

DEFAULT_ROOT = Path("../shared/data/other-aircraft")
DEFAULT_OUT = Path("data/raw/other-aircraft")
#: The ``source`` of every row (an FGVC-Aircraft subset, like ``tritinvo18-fgvc-subset20``).
SOURCE = "fgvc-other-aircraft"


def default_root() -> Path:
    """``$OTHER_DATA`` when set, else :data:`DEFAULT_ROOT`."""
    return Path(os.environ.get("OTHER_DATA") or DEFAULT_ROOT)


def candidates(root: str | os.PathLike) -> list[Candidate]:
    """The candidates of the other-aircraft folder ``root``.

    Raises:
        IngestError: no ``labels.csv``, missing columns, or no rows.
    """
    out = []
    for c in real_airliners.candidates(root):
        row = dict(c.row)
        row["type_raw"] = row.get("source_id", "").split("/")[-2] if "/" in row.get("source_id", "") else ""
        row["sub_model"] = ""
        row["source"] = SOURCE
        out.append(Candidate(row, c.file, c.ref, crop_bottom=0))
    return out
