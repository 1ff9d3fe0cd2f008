"""Reading and atomically writing a dataset's ``metadata.csv`` (the shared schema).

Writes never leave a partial row: every flush writes the whole table to a temporary
file in the same folder, fsyncs it and ``os.replace``-s it over the old file (atomic on
POSIX), so a crash (even ``kill -9``) leaves either the previous or the new version.
"""

from __future__ import annotations

import contextlib
import csv
import os
import tempfile
from pathlib import Path

from dataset.schema import COLUMNS, OPTIONAL_COLUMNS


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()
"""Mode of written files: what ``open()`` would give (mkstemp alone gives 0600)."""


def _mkstemp(p: Path) -> tuple[int, str]:
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.fchmod(fd, _FILE_MODE)
    return fd, tmp


class SchemaError(ValueError):
    """A CSV does not have the shared schema's columns."""


def read_rows(path: str | os.PathLike[str], *, require_all: bool = True) -> list[dict[str, str]]:
    """Read a metadata CSV (UTF-8) into a list of ``{column: str}`` dicts.

    Missing file → ``[]``. Raises :class:`SchemaError` when ``require_all`` and a column
    of :data:`dataset.schema.COLUMNS` is missing (the later :data:`~dataset.schema.OPTIONAL_COLUMNS`
    are filled with ``""`` instead); ``OSError``/``UnicodeDecodeError`` when unreadable. Extra
    columns are kept.
    """
    p = Path(path)
    if not p.exists():
        return []
    with p.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in COLUMNS if c not in header and c not in OPTIONAL_COLUMNS]
        if require_all and missing:
            raise SchemaError(f"{p}: missing columns {missing}")
        fill = {c: "" for c in OPTIONAL_COLUMNS if c not in header}
        return [{**fill, **{k: (v if v is not None else "") for k, v in row.items()}} for row in reader]


@contextlib.contextmanager
def _atomic_file(path: str | os.PathLike[str], mode: str, **open_kwargs):
    """Open a temp file beside ``path``; on success flush, fsync and ``os.replace`` it onto
    ``path``; on any error remove it, so ``path`` is either the old or the complete new file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _mkstemp(p)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_rows_atomic(path: str | os.PathLike[str], rows: list[dict[str, str]]) -> None:
    """Write ``rows`` (dicts with at least the schema columns) as the CSV at ``path``.

    Columns: exactly :data:`dataset.schema.COLUMNS`, in that order, header first, UTF-8,
    ``\\n`` line ends, minimal quoting. Atomic (temp file + fsync + ``os.replace``).
    """
    with _atomic_file(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in COLUMNS})


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (temp file in the same folder)."""
    with _atomic_file(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, replace)."""
    with _atomic_file(path, "wb") as f:
        f.write(data)
