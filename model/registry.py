"""The aircraft registry: registration → ICAO type designator, the user's choice of file.

A registry is a CSV (or gzip-compressed CSV, ``.gz``) whose first two columns are the
registration as painted and the ICAO Doc 8643 type designator; an optional third column is a
description in words (``D-ABYI,B748,BOEING 747-8``). The first row is a header. Which file:
``PLANESPOTTER_REGISTRY`` when set (empty: no registry), else :data:`DOWNLOADED_REGISTRY` (what
``make registry`` wrote) when it exists, else :data:`DEFAULT_REGISTRY` when it exists, else none —
and without a registry the registration reader is off.

``make registry`` writes ``data/external/registry.csv.gz`` from a current public database
(:func:`convert_tar1090`), where the internet is reachable.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dataset.schema import family_of, manufacturer_of_family

from .registration import key

#: The offline default: the registry in the team's shared data (read in place, never copied).
DEFAULT_REGISTRY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "aircraft-registry" / "registry.csv.gz"
#: Where ``make registry`` writes a downloaded registry (preferred over the shared one when present).
DOWNLOADED_REGISTRY = Path(__file__).resolve().parents[1] / "data" / "external" / "registry.csv.gz"
#: Environment variable naming the registry file (empty: reading off).
ENV = "PLANESPOTTER_REGISTRY"
#: ICAO Doc 8643's placeholder designators for "no designator assigned": not a type.
NO_TYPE = {"", "ZZZZ", "GLID", "BALL", "ULAC", "SHIP", "UHEL", "GYRO", "PARA"}
_TYPE = re.compile(r"^[A-Z0-9]{2,4}$")


class RegistryError(ValueError):
    """The registry file is missing or is not a registration/ICAO-type CSV; the message names it."""


@dataclass(frozen=True)
class Entry:
    """One registered aircraft: ``registration`` as painted, ``icao_type`` (ICAO Doc 8643,
    e.g. ``"B748"``), ``description`` (words, may be ``""``)."""

    registration: str
    icao_type: str
    description: str

    @property
    def family(self) -> str | None:
        """The Airbus/Boeing family of the type (``"B747"``), ``None`` for other makers."""
        return family_of(self.icao_type) or None

    @property
    def manufacturer(self) -> str:
        """``"Airbus"``, ``"Boeing"`` or ``"Other"`` (:func:`dataset.schema.manufacturer_of_family`)."""
        fam = self.family
        return manufacturer_of_family(fam) if fam else "Other"


class Registry:
    """Registrations of one file, looked up by :func:`model.registration.key`.

    Attributes:
        path: the file; entries: ``{key: Entry}``; size: number of entries.
    """

    def __init__(self, path: Path, entries: dict[str, Entry]):
        self.path, self.entries = path, entries

    @property
    def size(self) -> int:
        return len(self.entries)

    def get(self, registration: str) -> Entry | None:
        """The entry of ``registration`` (any case, hyphen or not), or ``None``."""
        return self.entries.get(key(registration))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Registry":
        """Read a registry file (CSV or CSV.gz; UTF-8; a header row; registration, ICAO type,
        optional description). Rows with no type or a placeholder type (:data:`NO_TYPE`) are
        skipped; where a registration repeats, the last row wins.

        Raises:
            RegistryError: the file does not exist, cannot be read as (gzip) UTF-8 CSV, has fewer
                than two columns, or holds no row whose second column is an ICAO designator.
        """
        path = Path(path)
        if not path.is_file():
            raise RegistryError(f"{ENV}: registry file {path} does not exist")
        entries: dict[str, Entry] = {}
        try:
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8", newline="") as f:
                rows = csv.reader(f)
                header = next(rows, None)
                if header is None or len(header) < 2:
                    raise RegistryError(f"{ENV}: {path} is not a registry: its header has fewer than two columns "
                                        "(registration, ICAO type)")
                for row in rows:
                    if len(row) < 2:
                        continue
                    t = row[1].strip().upper()
                    if t in NO_TYPE or not _TYPE.match(t):
                        continue
                    reg = row[0].strip().upper()
                    k = key(reg)
                    if k:
                        entries[k] = Entry(reg, t, row[2].strip() if len(row) > 2 else "")
        except (OSError, UnicodeDecodeError, csv.Error, EOFError) as e:
            raise RegistryError(f"{ENV}: cannot read registry {path}: {e}") from None
        if not entries:
            raise RegistryError(f"{ENV}: {path} is not a registry: no row has an ICAO type designator "
                                "in its second column")
        return cls(path, entries)


def configured_path() -> Path | None:
    """The registry file this process uses: ``$PLANESPOTTER_REGISTRY`` when set (an empty value
    switches reading off), else :data:`DOWNLOADED_REGISTRY` or :data:`DEFAULT_REGISTRY`, the
    first present, else ``None``."""
    raw = os.environ.get(ENV)
    if raw is not None:
        return Path(raw) if raw.strip() else None
    return next((p for p in (DOWNLOADED_REGISTRY, DEFAULT_REGISTRY) if p.is_file()), None)


def load_configured() -> Registry | None:
    """:meth:`Registry.load` of :func:`configured_path`, or ``None`` (no registry: reading off).

    Raises:
        RegistryError: a configured file that is not a registry (the message names it).
    """
    path = configured_path()
    return None if path is None else Registry.load(path)


#: A current public registry: the Mictronics database as tar1090-db packages it (semicolon
#: CSV, no header: ICAO 24-bit address; registration; type; flags; description; ...).
TAR1090_URL = "https://raw.githubusercontent.com/wiedehopf/tar1090-db/csv/aircraft.csv.gz"


def download(out: str | os.PathLike, url: str = TAR1090_URL, timeout: float = 120.0) -> int:
    """Download tar1090-db's ``aircraft.csv.gz`` from ``url`` and write it as a registry at
    ``out`` (:func:`convert_tar1090`). Returns the number of registrations.

    Raises:
        RegistryError: the download failed (no internet, HTTP error; the message names ``url``),
            or is not such a file.
    """
    import requests  # deferred: only this command downloads

    try:
        resp = requests.get(url, timeout=timeout, headers={"User-Agent": "planespotter (make registry)"})
        resp.raise_for_status()
    except requests.RequestException as e:
        raise RegistryError(f"cannot download the registry from {url}: {e}") from None
    return convert_tar1090(resp.content, out)


def convert_tar1090(data: bytes, out: str | os.PathLike) -> int:
    """Write tar1090-db's ``aircraft.csv.gz`` (gzip bytes) as a registry CSV.gz at ``out``
    (columns ``registration,icao_type,description``; rows without registration or type dropped),
    atomically (a temporary file renamed).

    Returns:
        The number of rows written.
    Raises:
        RegistryError: ``data`` is not gzip, or holds no row with a registration and a type.
    """
    try:
        text = gzip.decompress(data).decode("utf-8", errors="replace")
    except (OSError, EOFError) as e:
        raise RegistryError(f"the downloaded registry is not gzip: {e}") from None
    rows = {}
    for rec in csv.reader(io.StringIO(text), delimiter=";"):
        if len(rec) < 3:
            continue
        reg, t = rec[1].strip().upper(), rec[2].strip().upper()
        if reg and t and t not in NO_TYPE and _TYPE.match(t):
            rows[reg] = (t, rec[4].strip() if len(rec) > 4 else "")
    if not rows:
        raise RegistryError("the downloaded registry holds no row with a registration and an ICAO type")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw, gzip.open(raw, "wt", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["registration", "icao_type", "description"])
            for reg in sorted(rows):
                w.writerow([reg, *rows[reg]])
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(rows)
