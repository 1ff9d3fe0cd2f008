"""Preset for ``../shared/data/real-airliners`` (4,661 labelled real photos; its README.md).

``labels.csv`` columns: path (relative to the folder, ``images/<source>/…``), sha256,
manufacturer, icao_type, family, registration, source_repo, source_commit, source_path, width,
height, licence_note, source_label. Mapped to the schema:

* ``source`` = the ``images/<source>`` folder name; ``source_id`` = ``source_path``;
  ``page_url`` = the file at ``source_commit`` on GitHub; ``attribution`` names the repository;
* ``licence`` = ``licence_note``; ``airline`` empty; ``registration``, ``family``,
  ``icao_type``, ``manufacturer`` as given (checked);
* ``type_raw`` = the type text in ``source_label`` ("Boeing 737-8 MAX", "A340-200",
  "Airbus A320"); ``sub_model`` = the crawler's variant for it
  (:func:`dataset.labels.normalise_type`) when that agrees with ``icao_type``, else the type
  text without the maker;
* ``crop_box`` = ``"0 0 W H-20"`` for ``arkhesiae-alys2-fgvc``: those photos keep
  FGVC-Aircraft's 20-px credit banner at the bottom (the folder's README).

The photos are never copied: ``image_path`` points at them in place.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path, PurePosixPath

from dataset.labels import normalise_type

from .core import Candidate, IngestError

#: Default location, relative to the repository root (overridden by ``$REAL_DATA``).
DEFAULT_ROOT = Path("../shared/data/real-airliners")
DEFAULT_OUT = Path("data/raw/real-airliners")

#: Sources whose photos keep FGVC-Aircraft's 20-px bottom banner (README.md of the folder).
BANNER_SOURCES = {"arkhesiae-alys2-fgvc": 20}

LABELS_COLUMNS = ("path", "sha256", "manufacturer", "icao_type", "family", "registration",
                  "source_repo", "source_commit", "source_path", "width", "height",
                  "licence_note", "source_label")

_TYPE_PATTERNS = (
    re.compile(r"^FGVC-Aircraft variant:? (?P<t>.+?) \("),                    # FGVC variant name
    re.compile(r"^alys2 imagesRef label \([^)]*\): (?P<t>.+?) \("),           # alys2 label
    re.compile(r"^airplane-pictures\.net title: .*\b(?P<t>(?:Airbus|Boeing) [A\d].*)$"),  # last maker
    re.compile(r"^folder: (?P<t>.+)$"),                                         # folder name
)


def default_root() -> Path:
    """``$REAL_DATA`` when set, else :data:`DEFAULT_ROOT`."""
    return Path(os.environ.get("REAL_DATA") or DEFAULT_ROOT)


def parse_source_label(label: str, manufacturer: str, icao_type: str) -> tuple[str, str]:
    """``(type_raw, sub_model)`` from a ``source_label``.

    >>> parse_source_label("airplane-pictures.net title: D-ABYM - Lufthansa Boeing 747-8", "Boeing", "B748")
    ('Boeing 747-8', '747-8')
    >>> parse_source_label("FGVC-Aircraft variant: A340-200 (id 0063835; x)", "Airbus", "A342")
    ('A340-200', 'A340-200')

    Unknown label forms give ``(label, "")``.
    """
    for pat in _TYPE_PATTERNS:
        m = pat.search(label or "")
        if m:
            t = " ".join(m.group("t").split())
            break
    else:
        return (label or "").strip(), ""
    rest = re.sub(r"^(?:Airbus|Boeing)\s+", "", t, flags=re.IGNORECASE)
    mapped = normalise_type(f"{manufacturer} {rest}" if manufacturer else t)
    if icao_type and mapped.icao_type == icao_type and mapped.sub_model:
        return t, mapped.sub_model
    return t, rest


def candidates(root: str | os.PathLike) -> list[Candidate]:
    """The candidates of the real-airliners folder ``root`` (its ``labels.csv``).

    Raises:
        IngestError: no ``labels.csv``, or it lacks the expected columns.
    """
    root = Path(root)
    labels = root / "labels.csv"
    if not labels.is_file():
        raise IngestError(f"no labels.csv in {root} (set --root or REAL_DATA to the real-airliners folder)")
    with labels.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in LABELS_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise IngestError(f"{labels}: missing columns {missing}")
        out = []
        for rec in reader:
            path = rec["path"].strip()
            parts = PurePosixPath(path).parts
            source = parts[1] if len(parts) > 2 and parts[0] == "images" else (parts[0] if parts else "")
            type_raw, sub_model = parse_source_label(rec["source_label"], rec["manufacturer"], rec["icao_type"])
            repo, commit, spath = rec["source_repo"], rec["source_commit"], rec["source_path"]
            row = {
                "sha256": rec["sha256"], "manufacturer": rec["manufacturer"], "icao_type": rec["icao_type"],
                "family": rec["family"], "registration": rec["registration"], "airline": "",
                "source": source, "source_id": spath or path, "licence": rec["licence_note"],
                "type_raw": type_raw, "sub_model": sub_model,
                "page_url": f"https://github.com/{repo}/blob/{commit}/{spath}" if repo and commit and spath else "",
                "attribution": f"via GitHub {repo}; copyright the photographer" if repo else "",
            }
            out.append(Candidate(row, root / path, f"labels.csv line {reader.line_num}",
                                 crop_bottom=BANNER_SOURCES.get(source, 0)))
    if not out:
        raise IngestError(f"{labels}: no data rows")
    return out
