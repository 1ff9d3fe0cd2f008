"""Any labelled photo collection (a folder of images + a CSV of labels) → :class:`Candidate` rows.

Column names are recognised case-insensitively (spaces and hyphens read as ``_``); the first
name of each list that the CSV has wins, ``--column schema_col=their_col`` overrides:

=============== =================================================================
schema column   their column names tried
=============== =================================================================
image_path      image_path, path, file, filename, file_name, filepath, image, img
manufacturer    manufacturer, maker, make
icao_type       icao_type, icao, designator, type_designator, type
family          family
registration    registration, reg, tail_number
source          source
split           split, subset
sha256          sha256
width, height   width, height (recomputed from the file anyway)
licence         licence, license, licence_note, license_note
=============== =================================================================

Any other column named like a schema column (``airline``, ``sub_model``, ``date``, ``crop_box``
…) is copied as is. Paths are relative to the images root (or absolute).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path, PurePosixPath

from dataset.schema import COLUMNS

from .core import Candidate, IngestError

ALIASES: dict[str, tuple[str, ...]] = {
    "image_path": ("image_path", "path", "file", "filename", "file_name", "filepath", "image", "img"),
    "manufacturer": ("manufacturer", "maker", "make"),
    "icao_type": ("icao_type", "icao", "designator", "type_designator", "type"),
    "family": ("family",),
    "registration": ("registration", "reg", "tail_number"),
    "source": ("source",),
    "split": ("split", "subset"),
    "sha256": ("sha256",),
    "width": ("width",),
    "height": ("height",),
    "licence": ("licence", "license", "licence_note", "license_note"),
}

LABEL_COLUMNS = ("manufacturer", "icao_type", "family")


def _norm(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").split())


def resolve_columns(header: list[str], overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Map schema columns to the CSV's columns.

    Args:
        header: the CSV's column names.
        overrides: ``{schema_col: their_col}`` (from ``--column``), applied last.
    Returns:
        ``{schema_col: their_col}`` for every column found.
    Raises:
        IngestError: an override names a non-schema column or a column the CSV lacks; no image
            path column; no label column (manufacturer, icao_type or family).
    """
    by_norm: dict[str, str] = {}
    for h in header:
        by_norm.setdefault(_norm(h), h)
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for col, names in ALIASES.items():
        for name in names:
            h = by_norm.get(name)
            if h is not None and h not in used:
                mapping[col] = h
                used.add(h)
                break
    for col in COLUMNS:
        h = by_norm.get(col)
        if col not in mapping and h is not None and h not in used:
            mapping[col] = h
            used.add(h)
    for col, theirs in (overrides or {}).items():
        if col not in COLUMNS:
            raise IngestError(f"--column {col}={theirs}: {col!r} is not a schema column "
                              f"(one of {', '.join(COLUMNS)})")
        if theirs not in header:
            raise IngestError(f"--column {col}={theirs}: the CSV has no column {theirs!r} "
                              f"(it has {', '.join(header)})")
        mapping[col] = theirs
    if "image_path" not in mapping:
        raise IngestError(f"no image path column (tried {', '.join(ALIASES['image_path'])}; "
                          f"the CSV has {', '.join(header)}): name it with --column image_path=<column>")
    if not any(c in mapping for c in LABEL_COLUMNS):
        raise IngestError(f"no label column (manufacturer, icao_type or family; the CSV has "
                          f"{', '.join(header)}): name one with --column manufacturer=<column>")
    return mapping


def parse_column_options(items: list[str]) -> dict[str, str]:
    """``["schema_col=their_col", …]`` → dict; IngestError on an item without ``=``."""
    out = {}
    for item in items or []:
        col, sep, theirs = item.partition("=")
        if not sep or not col.strip() or not theirs.strip():
            raise IngestError(f"--column {item!r}: expected schema_col=their_col")
        out[col.strip()] = theirs.strip()
    return out


def candidates_from_csv(labels: str | os.PathLike, images_root: str | os.PathLike | None = None,
                        source: str = "", columns: dict[str, str] | None = None) -> list[Candidate]:
    """Read a labels CSV into candidates.

    Args:
        labels: the CSV (UTF-8, a BOM is allowed; header row first).
        images_root: folder the image paths are relative to (default: the CSV's folder).
        source: ``source`` for rows whose CSV gives none (default: the first folder of the image
            path under the images root, else the images root's name).
        columns: ``--column`` overrides (see :func:`resolve_columns`).
    Returns:
        One :class:`Candidate` per data row, in file order; ``source_id`` is the path as given.
    Raises:
        IngestError: the CSV is missing, unreadable, empty or lacks the needed columns.
    """
    labels = Path(labels)
    root = Path(images_root) if images_root is not None else labels.parent
    if not labels.is_file():
        raise IngestError(f"labels CSV not found: {labels}")
    if not root.is_dir():
        raise IngestError(f"images root is not a folder: {root}")
    try:
        with labels.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h for h in (reader.fieldnames or []) if h is not None]
            if not header:
                raise IngestError(f"{labels}: empty CSV (no header row)")
            mapping = resolve_columns(header, columns)
            out = []
            for rec in reader:
                their_path = (rec.get(mapping["image_path"]) or "").strip().replace("\\", "/")
                row = {col: (rec.get(theirs) or "").strip() for col, theirs in mapping.items()}
                file = Path(their_path) if os.path.isabs(their_path) else root / their_path
                if not row.get("source"):
                    parts = PurePosixPath(their_path).parts
                    row["source"] = source or (parts[0] if len(parts) > 1 and not os.path.isabs(their_path)
                                               else os.path.basename(os.path.abspath(root)))
                row["source_id"] = row.get("source_id") or their_path
                out.append(Candidate(row, file, f"{labels.name} line {reader.line_num}"))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise IngestError(f"cannot read {labels}: {e}") from None
    if not out:
        raise IngestError(f"{labels}: no data rows")
    return out
