"""FGVC-Aircraft 2013b (Maji et al. 2013, arXiv:1306.5151): 10,000 airliners.net photos, 100 variants.

Layout (the official archive ``fgvc-aircraft-2013b.tar.gz``)::

    fgvc-aircraft-2013b/data/images/<id>.jpg
    fgvc-aircraft-2013b/data/images_variant_{train,val,test}.txt       "<id> <variant>"
    fgvc-aircraft-2013b/data/images_family_{train,val,test}.txt        "<id> <family>"
    fgvc-aircraft-2013b/data/images_manufacturer_{train,val,test}.txt  "<id> <manufacturer>"

Labels may contain spaces ("Boeing 717", "BAE 146-200"): each line is split at its first space.
Variants map to the project's labels through ``fgvc_variants.json`` (all 100 names). FGVC's split
is kept (train → train, val → validation, test → test); the bottom 20 px of every image are
FGVC's photographer credit banner and are cut off with ``crop_box`` (FGVC's own convention).
Licence: "FGVC-Aircraft: non-commercial research use only" — the images stay where they are.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import requests
from tqdm import tqdm

from .core import Candidate, IngestError

URL = "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz"
ARCHIVE = "fgvc-aircraft-2013b.tar.gz"
TOP = "fgvc-aircraft-2013b"
DEFAULT_ROOT = Path("data/external/fgvc-aircraft")
DEFAULT_OUT = Path("data/raw/fgvc")
SOURCE = "fgvc-aircraft"
LICENCE = "FGVC-Aircraft: non-commercial research use only"
ATTRIBUTION = "FGVC-Aircraft 2013b (Maji et al. 2013); photo copyright the photographer (airliners.net)"
BANNER_PX = 20
#: FGVC split file suffix → schema split.
SPLIT_FILES = {"train": "train", "val": "validation", "test": "test"}
VARIANTS_FILE = Path(__file__).with_name("fgvc_variants.json")


@functools.lru_cache(maxsize=1)
def variant_table() -> dict[str, dict[str, str]]:
    """``{FGVC variant: {"manufacturer", "icao_type", "family", "sub_model"[, "note"]}}`` from
    ``fgvc_variants.json`` (100 entries)."""
    return json.loads(VARIANTS_FILE.read_text(encoding="utf-8"))["variants"]


def data_dir(root: str | os.PathLike) -> Path:
    """The folder holding ``images/`` and the ``images_variant_*.txt`` files: ``root`` itself,
    ``root/data`` or ``root/fgvc-aircraft-2013b/data``.

    Raises:
        IngestError: none of them has ``images_variant_train.txt``.
    """
    root = Path(root)
    for d in (root, root / "data", root / TOP / "data"):
        if (d / "images_variant_train.txt").is_file():
            return d
    raise IngestError(f"no FGVC-Aircraft data under {root} (expected {TOP}/data/images_variant_train.txt; "
                      f"pass --download to fetch it where there is internet)")


def read_labels(path: Path) -> dict[str, str]:
    """``{image id: label}`` of one ``images_<kind>_<split>.txt`` (label = the rest of the line).

    Raises:
        IngestError: a non-empty line without a label.
    """
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        image_id, sep, label = line.partition(" ")
        if not sep or not label.strip():
            raise IngestError(f"{path} line {n}: expected '<image id> <label>', got {line!r}")
        out[image_id] = label.strip()
    return out


def candidates(root: str | os.PathLike) -> list[Candidate]:
    """The candidates of an FGVC-Aircraft folder (see :func:`data_dir`), in split then file order.

    Raises:
        IngestError: missing split files, an image listed in two splits, or variants missing from
            ``fgvc_variants.json`` (all are listed).
    """
    d = data_dir(root)
    table = variant_table()
    out: list[Candidate] = []
    seen: dict[str, str] = {}
    unknown: dict[str, int] = {}
    for suffix, split in SPLIT_FILES.items():
        vfile = d / f"images_variant_{suffix}.txt"
        if not vfile.is_file():
            raise IngestError(f"missing {vfile}")
        variants = read_labels(vfile)
        mfile, ffile = d / f"images_manufacturer_{suffix}.txt", d / f"images_family_{suffix}.txt"
        makers = read_labels(mfile) if mfile.is_file() else {}
        families = read_labels(ffile) if ffile.is_file() else {}
        for image_id, variant in variants.items():
            if image_id in seen:
                raise IngestError(f"image {image_id} is in both {seen[image_id]} and {vfile.name}")
            seen[image_id] = vfile.name
            entry = table.get(variant)
            if entry is None:
                unknown[variant] = unknown.get(variant, 0) + 1
                continue
            row = {
                "manufacturer": entry["manufacturer"], "icao_type": entry["icao_type"],
                "family": entry["family"], "sub_model": entry["sub_model"],
                "manufacturer_raw": makers.get(image_id, ""), "type_raw": variant,
                "source": SOURCE, "source_id": image_id, "licence": LICENCE,
                "attribution": ATTRIBUTION, "split": split,
            }
            if families.get(image_id):
                row["attribution"] = f"{ATTRIBUTION}; FGVC family {families[image_id]}"
            out.append(Candidate(row, d / "images" / f"{image_id}.jpg", f"{vfile.name} ({image_id})",
                                 crop_bottom=BANNER_PX))
    if unknown:
        listed = ", ".join(f"{v!r} ({k})" for v, k in sorted(unknown.items()))
        raise IngestError(f"variants not in {VARIANTS_FILE.name}: {listed}")
    if not out:
        raise IngestError(f"no images listed in {d}")
    return out


def download(root: str | os.PathLike, url: str = URL, timeout: float = 30.0,
             chunk_size: int = 1 << 20, progress: bool | None = None) -> Path:
    """Download and unpack the FGVC-Aircraft archive into ``root`` (``root/fgvc-aircraft-2013b``).

    Skipped when the data is already there. The archive is streamed (requests + tqdm) into
    ``root/fgvc-aircraft-2013b.tar.gz.part``; a later call resumes it with an HTTP ``Range``
    request; the complete file is renamed to ``.tar.gz``, unpacked into a temporary folder in
    ``root`` (tarfile's ``data`` filter: no absolute paths, links or devices) and that folder is
    renamed into place, so ``root/fgvc-aircraft-2013b`` is either absent or complete. The archive
    is removed after unpacking.

    Returns:
        The data folder (:func:`data_dir`).
    Raises:
        IngestError: the download fails (offline, HTTP error, short read; the message says how to
            resume) or the archive does not hold ``fgvc-aircraft-2013b/``.
    """
    root = Path(root)
    try:
        return data_dir(root)
    except IngestError:
        pass
    if (root / TOP).exists():
        raise IngestError(f"{root / TOP} exists but holds no FGVC data; remove it and run again")
    root.mkdir(parents=True, exist_ok=True)
    archive = root / ARCHIVE
    part = root / (ARCHIVE + ".part")
    if not archive.is_file():
        pos = part.stat().st_size if part.is_file() else 0
        headers = {"Range": f"bytes={pos}-"} if pos else {}
        try:
            with requests.get(url, stream=True, headers=headers, timeout=timeout) as r:
                if pos and r.status_code == 416:  # nothing left to send: the .part is complete
                    total = int((r.headers.get("Content-Range") or "*/0").rsplit("/", 1)[-1] or 0)
                    if total != pos:
                        part.unlink()
                        raise IngestError(f"the server refused to resume {url}; removed {part}, run again")
                else:
                    r.raise_for_status()
                    if r.status_code != 206:
                        pos = 0  # the server ignored Range: start over
                    length = int(r.headers.get("Content-Length") or 0)
                    total = pos + length if length else 0
                    with part.open("ab" if pos else "wb") as f, tqdm(
                            total=total or None, initial=pos, unit="B", unit_scale=True, desc=ARCHIVE,
                            disable=None if progress is None else not progress) as bar:
                        for block in r.iter_content(chunk_size):
                            f.write(block)
                            bar.update(len(block))
                        f.flush()
                        os.fsync(f.fileno())
                    if total and part.stat().st_size != total:
                        raise IngestError(f"incomplete download of {url} ({part.stat().st_size} of {total} "
                                          f"bytes in {part}); run again to resume")
        except requests.RequestException as e:
            raise IngestError(f"cannot download {url}: {e}\n(no internet here? fetch the archive "
                              f"elsewhere, unpack it and pass --root; a partial {part.name} is resumed "
                              f"by the next --download)") from None
        os.replace(part, archive)
    tmp = Path(tempfile.mkdtemp(prefix=".fgvc-unpack-", dir=root))
    try:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as e:
            raise IngestError(f"cannot unpack {archive}: {e} (delete it and download again)") from None
        if not (tmp / TOP).is_dir():
            raise IngestError(f"{archive} does not contain {TOP}/")
        os.replace(tmp / TOP, root / TOP)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    archive.unlink()
    return data_dir(root)
