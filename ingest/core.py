"""The import pipeline every importer shares.

An importer turns its source into :class:`Candidate` rows (schema columns + the absolute image
file), then :func:`run_import`:

1. normalises and checks the labels (:func:`normalise_labels`): manufacturer → ``Airbus``,
   ``Boeing`` or ``Other``, ``family`` from ``icao_type`` (:func:`dataset.schema.family_of`),
   the manufacturer from the family when only the family/type is given, contradictions rejected;
2. reads every image file: sha256 of its bytes (checked against a given one), decoded with the
   project's one decoder (:func:`dataset.decode.decode_image`: JPEG/PNG/WebP, EXIF
   orientation applied) for ``width``/``height`` and the pHash of the image **after**
   ``crop_box`` (the pixels the model sees) — cached by sha256 under ``data/processed/``;
3. rejects bad rows (missing file, unreadable image, unknown manufacturer, …) with one error
   listing all of them, or drops them (``skip_bad``) and counts them;
4. fills ``phash`` and ``near_duplicate_of`` (same sha256, or pHash distance ≤ 6), builds airframe
   groups (registration ∪ near-duplicates) and assigns splits by group
   (:func:`ingest.splits.assign_group_splits`), keeping splits the source gives;
5. writes ``<out>/metadata.csv`` atomically (:func:`dataset.metadata.write_rows_atomic`) with
   ``image_path`` relative to ``<out>`` (POSIX), and ``<out>/ingest.json`` recording the inputs'
   fingerprint, so an unchanged re-run is skipped (:func:`up_to_date`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from dataset import decode
from dataset.duplicates import MAX_DISTANCE, near_duplicate_pairs, union_groups
from dataset.images import phash, sha256_hex
from dataset.labels import normalise_type
from dataset.metadata import read_rows, write_rows_atomic, write_text_atomic
from dataset.schema import COLUMNS, FAMILIES, METADATA_FILE, SPLITS, empty_row, family_of, manufacturer_of_family

from . import splits as sp

#: Default folder of the image-info cache (as ``model.data.PROCESSED_DIR``; relative to the cwd).
PROCESSED_DIR = Path("data/processed")
CACHE_FILE = "ingest-image-info.json"
MANIFEST_FILE = "ingest.json"

#: Bump when the rows an unchanged input produces change (invalidates ``ingest.json``).
FORMAT_VERSION = 1

#: Manufacturer names (lower case) that normalise to Airbus or Boeing.
_AIRBUS = {"airbus", "airbus industrie", "airbus sas", "airbus s.a.s.", "airbus commercial aircraft"}
_BOEING = {"boeing", "the boeing company", "boeing company", "boeing commercial airplanes"}

#: Makers (lower case) that normalise to ``Other``: FGVC-Aircraft 2013b's 30 manufacturer names
#: (data/manufacturers.txt) less Airbus and Boeing, the multi-word prefixes of
#: dataset/type_rules.json, and other airliner builders.
OTHER_MANUFACTURERS = frozenset({
    "other", "atr", "antonov", "antonov design bureau", "beechcraft", "bombardier",
    "bombardier aerospace", "british aerospace", "british aircraft corporation", "britten-norman",
    "canadair", "cessna", "cirrus aircraft", "comac", "dassault", "dassault aviation",
    "de havilland", "de havilland canada", "dornier", "douglas", "douglas aircraft company",
    "embraer", "eurofighter", "fairchild", "fairchild dornier", "fokker", "gulfstream",
    "gulfstream aerospace", "hawker siddeley", "ilyushin", "irkut", "lockheed",
    "lockheed corporation", "lockheed martin", "mcdonnell douglas", "mitsubishi",
    "mitsubishi heavy industries", "panavia", "piper", "robin", "saab", "sukhoi",
    "sukhoi civil aircraft", "supermarine", "tupolev", "yakovlev", "yakovlev design bureau",
    "airbus helicopters", "airbus military", "airbus defence and space",
})

#: ICAO Doc 8643 designators: a letter, then 1-3 letters or digits (``A388``, ``B77W``, ``DC3``).
_DESIGNATOR = re.compile(r"^[A-Z][A-Z0-9]{1,3}$")

_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "validation", "valid": "validation",
                  "validation": "validation", "dev": "validation", "test": "test", "testing": "test"}


class IngestError(ValueError):
    """The input cannot be imported; the message says why (and lists the offending rows)."""


@dataclasses.dataclass
class Candidate:
    """One input row before its image is read.

    Attributes:
        row: schema columns known from the source (others are filled ``""``).
        file: the image file (absolute or relative to the cwd).
        ref: where the row came from, for error messages (``"labels.csv line 7"``).
        crop_bottom: pixels to cut off the bottom (a credit banner); turned into ``crop_box``
            ``"0 0 W H-crop_bottom"`` once the image size is known. 0 = none.
    """

    row: dict[str, str]
    file: Path
    ref: str
    crop_bottom: int = 0


@dataclasses.dataclass
class BadRow:
    """A row that cannot be imported: where it came from, its image, why."""

    ref: str
    image: str
    reason: str

    def __str__(self) -> str:
        return f"{self.ref}: {self.image}: {self.reason}"


@dataclasses.dataclass
class ImportResult:
    """What :func:`run_import` did.

    Attributes:
        rows: the written rows (schema dicts), in input order.
        csv_path: ``<out>/metadata.csv``.
        skipped_bad: rows dropped by ``skip_bad`` (empty otherwise).
        up_to_date: the inputs were unchanged and nothing was rewritten.
        near_duplicate_pairs: pairs with the same sha256 or pHash distance ≤ the threshold.
        groups: number of airframe/near-duplicate groups.
        leaking_groups: groups whose rows sit in two splits (only possible with given splits).
        seconds: wall time.
    """

    rows: list[dict[str, str]]
    csv_path: Path
    skipped_bad: list[BadRow] = dataclasses.field(default_factory=list)
    up_to_date: bool = False
    near_duplicate_pairs: int = 0
    groups: int = 0
    leaking_groups: int = 0
    seconds: float = 0.0


def normalise_manufacturer(value: str) -> str:
    """``Airbus``, ``Boeing`` or ``Other`` for a manufacturer name, ``""`` for an empty one.

    Case-insensitive; accepts the three classes themselves, common long forms ("The Boeing
    Company", "Airbus Industrie") and the makers in :data:`OTHER_MANUFACTURERS` (→ ``Other``).
    Raises:
        ValueError: any other name.
    """
    v = " ".join((value or "").split()).lower()
    if not v:
        return ""
    if v in _AIRBUS:
        return "Airbus"
    if v in _BOEING:
        return "Boeing"
    if v in OTHER_MANUFACTURERS:
        return "Other"
    raise ValueError(f"unknown manufacturer {value!r} (expected Airbus, Boeing, Other or a known maker)")


def normalise_split(value: str) -> str:
    """``train``/``validation``/``test`` for a split name (``val``, ``valid``, ``dev``, ``testing``
    … accepted, case-insensitive), ``""`` for an empty one; ValueError for anything else."""
    v = (value or "").strip().lower()
    if not v:
        return ""
    if v not in _SPLIT_ALIASES:
        raise ValueError(f"unknown split {value!r} (expected one of {', '.join(SPLITS)})")
    return _SPLIT_ALIASES[v]


def normalise_labels(row: dict[str, str]) -> list[str]:
    """Normalise ``manufacturer``, ``icao_type``, ``family`` (and ``split``) of ``row`` in place.

    * ``manufacturer``: :func:`normalise_manufacturer`; the raw value goes to
      ``manufacturer_raw`` when that is empty. Empty → derived from the family.
    * ``icao_type``: upper case. A value that is no designator ("737-800", "Boeing 777-300ER") is
      mapped with the crawler's rules (:func:`dataset.labels.normalise_type`; the raw value goes to
      ``type_raw``, the variant to an empty ``sub_model``).
    * ``family``: upper case; empty → :func:`dataset.schema.family_of` of the type.

    Returns:
        Problems (empty list = the row is fine): unknown manufacturer or split, a type that is
        no designator and no known type string, a family or type that contradicts the
        manufacturer, an unknown Airbus/Boeing family, no label at all.
    """
    problems = []
    raw_m = row.get("manufacturer", "").strip()
    try:
        m = normalise_manufacturer(raw_m)
    except ValueError as e:
        problems.append(str(e))
        m = ""
    if raw_m and raw_m != m and not row.get("manufacturer_raw"):
        row["manufacturer_raw"] = raw_m
    t = " ".join(row.get("icao_type", "").split())
    if t and not _DESIGNATOR.match(t.upper()):
        label = normalise_type(t, m if m in ("Airbus", "Boeing") else raw_m)
        if label.icao_type:
            row.setdefault("type_raw", "")
            row["type_raw"] = row["type_raw"] or t
            if not row.get("sub_model"):
                row["sub_model"] = label.sub_model
            t = label.icao_type
        else:
            problems.append(f"icao_type {t!r} is neither an ICAO designator nor a known type name")
            t = ""
    t = t.upper()
    fam = row.get("family", "").strip().upper()
    t_fam = family_of(t)
    if fam and t_fam and fam != t_fam:
        problems.append(f"family {fam} contradicts icao_type {t} (family {t_fam})")
    fam = fam or t_fam
    f_maker = manufacturer_of_family(fam)
    if not m:
        m = f_maker
    if m in ("Airbus", "Boeing"):
        if fam and fam not in FAMILIES:
            problems.append(f"unknown {m} family {fam!r} (known: {' '.join(FAMILIES)})")
        elif f_maker and f_maker != m:
            problems.append(f"manufacturer {m} contradicts family {fam} ({f_maker})")
    elif m == "Other" and f_maker:
        problems.append(f"manufacturer Other contradicts family {fam} ({f_maker})")
    if not m and not problems:
        problems.append("no manufacturer: give a manufacturer, or an Airbus/Boeing family or ICAO type")
    try:
        row["split"] = normalise_split(row.get("split", ""))
    except ValueError as e:
        problems.append(str(e))
    row.update(manufacturer=m, icao_type=t, family=fam)
    return problems


def parse_crop_box(text: str, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The ``crop_box`` column (``"left top right bottom"``, Pillow order, integers) as a tuple,
    checked against the image: :func:`dataset.decode.parse_crop_box` plus the bounds.

    ``""`` → ``None``. Raises ValueError unless it is four integers with
    ``0 <= left < right <= width`` and ``0 <= top < bottom <= height``.
    """
    box = decode.parse_crop_box(text)
    if box is not None and not (box[2] <= width and box[3] <= height):
        raise ValueError(f"crop_box {text!r} is not inside the {width}x{height} image")
    return box


class ImageInfoCache:
    """``{key: [width, height, phash]}`` by image sha256 (+ crop), as JSON in ``cache_dir``.

    ``cache_dir=None`` keeps it in memory only. :meth:`save` merges with what is on disk (another
    import may have written meanwhile) and writes atomically.
    """

    def __init__(self, cache_dir: str | os.PathLike | None):
        self.path = Path(cache_dir) / CACHE_FILE if cache_dir is not None else None
        self.data: dict[str, list] = self._load()
        self.dirty = False

    def _load(self) -> dict[str, list]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            d = json.loads(self.path.read_text(encoding="utf-8"))
            return d if isinstance(d, dict) else {}
        except (OSError, ValueError):
            return {}  # a damaged cache is rebuilt

    def get(self, key: str):
        """``(width, height, phash)`` or ``None``."""
        v = self.data.get(key)
        return tuple(v) if isinstance(v, list) and len(v) == 3 else None

    def put(self, key: str, width: int, height: int, ph: str) -> None:
        """Remember ``(width, height, phash)`` for ``key`` (written by :meth:`save`)."""
        self.data[key] = [width, height, ph]
        self.dirty = True

    def save(self) -> None:
        """Merge into the file on disk and write it atomically (no-op without changes or path)."""
        if self.path is None or not self.dirty:
            return
        merged = {**self._load(), **self.data}
        write_text_atomic(self.path, json.dumps(merged, sort_keys=True, separators=(",", ":")))
        self.dirty = False


def read_image(c: Candidate, cache: ImageInfoCache) -> dict[str, str]:
    """sha256, size, crop box and pHash of a candidate's image file.

    Returns:
        ``{"sha256", "width", "height", "crop_box", "phash"}`` as strings. ``width``/``height``
        are the decoded image's (EXIF orientation applied: the frame ``crop_box`` refers to);
        the pHash is :func:`dataset.images.phash` of the image cut to ``crop_box``.
    Raises:
        ValueError: file missing or unreadable, sha256 mismatch, bad crop box.
    """
    try:
        data = c.file.read_bytes()
    except FileNotFoundError:
        raise ValueError("image file not found") from None
    except IsADirectoryError:
        raise ValueError("the image path is a folder, not a file") from None
    except OSError as e:
        raise ValueError(f"cannot read the image file: {e.strerror or e}") from None
    sha = sha256_hex(data)
    given = c.row.get("sha256", "").strip().lower()
    if given and given != sha:
        raise ValueError(f"sha256 mismatch: the CSV says {given[:12]}…, the file is {sha[:12]}…")
    box_text = " ".join(c.row.get("crop_box", "").split())
    key = f"{sha}|{box_text}|bottom{c.crop_bottom}" if (box_text or c.crop_bottom) else sha
    hit = cache.get(key)
    if hit is not None:
        w, h, ph = hit
        img = None
    else:
        try:
            img = decode.decode_image(data)
        except decode.ImageDecodeError as e:
            raise ValueError(f"unreadable image ({e.code}): {e}") from None
        w, h = img.size
    if c.crop_bottom:
        if h <= c.crop_bottom:
            raise ValueError(f"image of height {h} is not taller than the {c.crop_bottom}-px banner")
        box_text = f"0 0 {w} {h - c.crop_bottom}"
    box = parse_crop_box(box_text, w, h)
    if img is not None:
        ph = phash(img.crop(box) if box else img)
        cache.put(key, w, h, ph)
    return {"sha256": sha, "width": str(w), "height": str(h), "crop_box": box_text, "phash": ph}


def relative_posix(path: Path, start: Path) -> str:
    """``path`` relative to the folder ``start`` (both made absolute, ``..`` allowed), POSIX."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(start))
    return Path(rel).as_posix()


def _source_digest() -> str:
    """sha256 of this package's code and tables (a change invalidates ``ingest.json``)."""
    h = hashlib.sha256(str(FORMAT_VERSION).encode())
    here = Path(__file__).parent
    for p in sorted([*here.glob("*.py"), *here.glob("*.json")]):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def fingerprint(candidates: list[Candidate], options: dict) -> str:
    """A digest of everything the output depends on: the candidates' rows, their files' size and
    mtime (ns), the options and this package's code. Equal digest → identical output."""
    h = hashlib.sha256(_source_digest().encode())
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    for c in candidates:
        try:
            st = c.file.stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(json.dumps([c.ref, str(c.file), c.crop_bottom, sorted(c.row.items()), stamp]).encode())
    return h.hexdigest()


def up_to_date(out: Path, digest: str) -> bool:
    """True when ``<out>/ingest.json`` records ``digest`` and ``metadata.csv`` is the file it wrote."""
    try:
        m = json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))
        csv_sha = hashlib.sha256((out / METADATA_FILE).read_bytes()).hexdigest()
    except (OSError, ValueError):
        return False
    return m.get("fingerprint") == digest and m.get("metadata_sha256") == csv_sha


def _format_bad(bad: list[BadRow], limit: int = 25) -> str:
    lines = [f"  {b}" for b in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"  … and {len(bad) - limit} more")
    return "\n".join(lines) + f"\n  ({_reason_counts(bad)})"


def _reason_counts(bad: list[BadRow]) -> str:
    """"reason kind: count; …" with quoted values and details dropped from the reasons."""
    kinds = Counter(re.sub(r"'[^']*'", "…", b.reason).split(":")[0].split(" (")[0].split(";")[0]
                    for b in bad)
    return "; ".join(f"{k}: {v}" for k, v in kinds.most_common())


def run_import(candidates: list[Candidate], out: str | os.PathLike, *, options: dict | None = None,
               assign: bool = True, resplit: bool = False, seed: int = 0,
               fractions=sp.DEFAULT_FRACTIONS, max_distance: int = MAX_DISTANCE,
               cache_dir: str | os.PathLike | None = PROCESSED_DIR, skip_bad: bool = False,
               force: bool = False, progress: bool | None = None) -> ImportResult:
    """Check, hash, group, split and write ``candidates`` as ``<out>/metadata.csv``.

    Args:
        candidates: the importer's rows (see :class:`Candidate`).
        out: the dataset folder; ``image_path`` is written relative to it.
        options: importer settings that change the output (part of the fingerprint).
        assign: assign splits to rows without one (False: leave them empty).
        resplit: ignore the splits the source gives and assign all.
        seed, fractions: see :func:`ingest.splits.assign_group_splits`.
        max_distance: pHash near-duplicate threshold (bits, inclusive).
        cache_dir: folder of the image-info cache; ``None`` = no cache on disk.
        skip_bad: drop bad rows (counted in the result) instead of raising.
        force: rewrite even when :func:`up_to_date`.
        progress: tqdm bar (``None``: only on a terminal).
    Returns:
        :class:`ImportResult`.
    Raises:
        IngestError: no rows, or bad rows without ``skip_bad`` (the message lists them).
    """
    t0 = time.monotonic()
    out = Path(out)
    csv_path = out / METADATA_FILE
    sp.check_fractions(fractions)  # fail early, before reading any image
    settings = dict(options or {}, assign=assign, resplit=resplit, seed=seed,
                    fractions=list(map(float, fractions)), max_distance=max_distance,
                    skip_bad=skip_bad, out=os.path.abspath(out))
    if not candidates:
        raise IngestError("no rows to import")
    digest = fingerprint(candidates, settings)
    if not force and up_to_date(out, digest):
        rows = read_rows(csv_path)
        m = json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))
        return ImportResult(rows, csv_path, up_to_date=True, near_duplicate_pairs=m.get("near_duplicate_pairs", 0),
                            groups=m.get("groups", 0), leaking_groups=m.get("leaking_groups", 0),
                            skipped_bad=[BadRow(**b) for b in m.get("skipped_bad", [])],
                            seconds=time.monotonic() - t0)

    cache = ImageInfoCache(cache_dir)
    rows, bad = [], []
    try:
        for c in tqdm(candidates, desc="images", unit="img", disable=None if progress is None else not progress):
            row = {**empty_row(), **{k: ("" if v is None else str(v).strip()) for k, v in c.row.items() if k in COLUMNS}}
            image = str(c.file)
            problems = normalise_labels(row)
            if resplit:
                row["split"] = ""
            try:
                row.update(read_image(c, cache))
            except ValueError as e:
                problems.insert(0, str(e))
            if problems:
                bad.append(BadRow(c.ref, image, "; ".join(problems)))
                continue
            row["image_path"] = relative_posix(c.file, out)
            rows.append(row)
    finally:
        cache.save()
    if bad and not skip_bad:
        raise IngestError(f"{len(bad)} of {len(candidates)} rows cannot be imported "
                          f"(fix them, or pass --skip-bad to drop them):\n{_format_bad(bad)}")
    if not rows:
        raise IngestError(f"no importable rows (all {len(candidates)} are bad):\n{_format_bad(bad)}")

    pairs = near_duplicate_pairs([r["phash"] for r in rows], max_distance)
    sha_edges = sp.same_value_edges([r["sha256"] for r in rows])
    dup_of: dict[int, int] = {}
    for i, j in [*map(tuple, pairs.tolist()), *sha_edges]:
        dup_of[j] = min(dup_of.get(j, i), i)
    for j, i in dup_of.items():
        rows[j]["near_duplicate_of"] = rows[i]["image_path"]
    near_pairs = {(int(i), int(j)) for i, j in pairs.tolist()} | set(sha_edges)
    regs = [" ".join(r["registration"].split()).upper() for r in rows]
    groups = union_groups(len(rows), [*near_pairs, *sp.same_value_edges(regs)])
    if assign:
        strata = [f"{r['manufacturer']}/{r['family'] or r['icao_type'] or r['sub_model']}" for r in rows]
        split = sp.assign_group_splits(groups, strata, [r["split"] for r in rows],
                                       [r["image_path"] for r in rows], fractions, seed)
        for r, s in zip(rows, split):
            r["split"] = s
    leaks = sp.leaking_groups(groups, [r["split"] for r in rows])

    write_rows_atomic(csv_path, rows)
    result = ImportResult(rows, csv_path, skipped_bad=bad, near_duplicate_pairs=len(near_pairs),
                          groups=len(set(groups)), leaking_groups=len(leaks),
                          seconds=time.monotonic() - t0)
    manifest = {
        "fingerprint": digest,
        "metadata_sha256": hashlib.sha256(csv_path.read_bytes()).hexdigest(),
        "rows": len(rows), "near_duplicate_pairs": result.near_duplicate_pairs,
        "groups": result.groups, "leaking_groups": result.leaking_groups,
        "skipped_bad": [dataclasses.asdict(b) for b in bad],
        "options": settings,
    }
    write_text_atomic(out / MANIFEST_FILE, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return result


def summary(result: ImportResult) -> str:
    """A text report: rows per source × manufacturer × split (with totals), near-duplicates,
    groups, skipped rows, time."""
    import pandas as pd  # deferred: pandas start-up (~1 s), only for this report

    df = pd.DataFrame(result.rows, columns=list(COLUMNS))
    split = df["split"].replace("", "(none)")
    table = pd.crosstab([df["source"], df["manufacturer"]], split, margins=True, margins_name="total")
    cols = [s for s in (*SPLITS, "(none)") if s in table.columns] + ["total"]
    lines = [f"{result.csv_path}: {len(df)} rows"
             + (" (up to date, not rewritten)" if result.up_to_date else ""),
             table[cols].to_string(), ""]
    lines.append(f"near-duplicate pairs (same sha256 or pHash distance within the threshold): "
                 f"{result.near_duplicate_pairs}; airframe/near-duplicate groups: {result.groups}")
    if result.leaking_groups:
        lines.append(f"warning: {result.leaking_groups} groups span two splits (splits given by the source)")
    if result.skipped_bad:
        lines.append(f"skipped {len(result.skipped_bad)} bad rows: {_reason_counts(result.skipped_bad)}")
    lines.append(f"time: {result.seconds:.1f} s")
    return "\n".join(lines)
