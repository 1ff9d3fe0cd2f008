"""Run the real server for a moment: start gunicorn on a free loopback port, wait until ready,
classify a folder of photos over HTTP, print a table, stop the server (``make serve-smoke``,
``python -m client smoke``)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import requests

from dataset.labels import normalise_type
from dataset.schema import family_of, manufacturer_of_family

from .server import Server

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def truth_of(row: dict) -> tuple[str, str, str]:
    """``(manufacturer, family, ICAO type)`` of a labels row: the schema's columns, or a photo
    folder's ``labels.csv`` (``manufacturer``, ``family`` such as "737" or "A340",
    ``variant_if_known`` such as "737-800"), normalised to the project's names ("B737", "B738")
    with :mod:`dataset.schema` and :mod:`dataset.labels`."""
    m = row.get("manufacturer", "")
    t = row.get("icao_type", "")
    variant = row.get("variant_if_known", "")
    if not t and variant:
        t = normalise_type(f"{m} {variant}").icao_type
    f = row.get("family", "") or family_of(t)
    if f and not manufacturer_of_family(f) and manufacturer_of_family(m[:1] + f):
        f = m[:1] + f  # "737" → "B737"
    return m, f, t


def smoke(model_dir: str, images: list[Path], truth: dict[str, tuple[str, str, str]] | None = None) -> list[dict]:
    """Classify ``images`` through a fresh server; returns one row per image."""
    rows = []
    with Server(model_dir) as srv:
        waited = srv.wait_ready()
        print(f"server ready on {srv.url} after {waited:.1f}s", flush=True)
        for p in images:
            with open(p, "rb") as f:
                r = requests.post(srv.url + "/predict", files={"image": (p.name, f, "image/jpeg")}, timeout=120)
            body = r.json()
            if r.status_code != 200:
                rows.append({"file": p.name, "error": body.get("message", r.text)})
                continue
            row = {"file": p.name, "manufacturer": body["manufacturer"]["label"] or "",  # None: not an aircraft
                   "p_manufacturer": body["manufacturer"]["probability"] or 0.0, "family": body["family"]["label"] or "",
                   "p_family": body["family"]["probability"] or 0.0, "type": body["type"]["label"] or "",
                   "p_type": body["type"]["probability"] or 0.0, "answer": body["answer"]["label"],
                   "unsure": body["unsure"], "why": ",".join(body.get("unsure_reasons") or [])}
            if truth and p.name in truth:
                m, f, t = truth[p.name]
                row["true"] = "/".join(x for x in (m, f, t) if x)
                row["ok"] = {"manufacturer": row["manufacturer"] == m, "family": bool(f) and row["family"] == f,
                             "type": bool(t) and row["type"] == t, "has_family": bool(f), "has_type": bool(t)}
            rows.append(row)
    return rows


def summary(rows: list[dict]) -> str:
    """``"manufacturer 11/12, family 9/12, type named and right 3/5 (of the photos with a known type)"``."""
    scored = [r["ok"] for r in rows if "ok" in r]
    if not scored:
        return ""
    fam = [o for o in scored if o["has_family"]]
    typ = [o for o in scored if o["has_type"]]
    return (f"right: manufacturer {sum(o['manufacturer'] for o in scored)}/{len(scored)}, "
            f"family {sum(o['family'] for o in fam)}/{len(fam)}, "
            f"type named and right {sum(o['type'] for o in typ)}/{len(typ)} (photos with a known type)")


def print_table(rows: list[dict]) -> None:
    """A fixed-width table of smoke results on stdout (``why``: the unsure reasons' codes)."""
    cols = ["file", "true", "manufacturer", "p_manufacturer", "family", "p_family", "type", "p_type", "answer",
            "unsure", "why"]
    cols = [c for c in cols if any(c in r for r in rows)]
    fmt = {c: (lambda v: f"{v:.3f}") if c.startswith("p_") else str for c in cols}
    cells = [[fmt[c](r[c]) if c in r else r.get("error", "") if c == "manufacturer" else "" for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    if summary(rows):
        print(summary(rows))


def photos_and_truth(folder: Path, fallback_data: Path, limit: int) -> tuple[list[Path], dict]:
    """The photos to classify and their truth by file name: every image of ``folder`` (truth from
    its ``labels.csv``, if any), else the first ``limit`` test-split images of the dataset
    ``fallback_data`` (truth from its ``metadata.csv``).

    Raises:
        FileNotFoundError: neither ``folder`` nor the fallback's ``metadata.csv`` exists.
    """
    if folder.is_dir():
        images = sorted(x for x in folder.iterdir() if x.suffix.lower() in IMAGE_SUFFIXES)
        labels = folder / "labels.csv"
        if not labels.is_file():
            return images, {}
        with open(labels, newline="") as f:
            return images, {r["file"]: truth_of(r) for r in csv.DictReader(f)}
    metadata = fallback_data / "metadata.csv"
    if not metadata.is_file():
        raise FileNotFoundError(f"neither {folder} nor {metadata} exists")
    with open(metadata, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"][:limit]
    images = [fallback_data / r["image_path"] for r in rows]
    print(f"{folder} not found: classifying {len(images)} test-split images instead")
    return images, {(fallback_data / r["image_path"]).name: truth_of(r) for r in rows}


def main(args) -> int:
    """``python -m client smoke``: classify the photos through a fresh server and print the table."""
    try:
        images, truth = photos_and_truth(Path(args.images), Path(args.fallback_data), args.limit)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not images:
        print(f"error: no images in {args.images}", file=sys.stderr)
        return 2
    print_table(smoke(args.model_dir, images, truth))
    return 0


def add_parser(sub) -> None:
    """Add ``smoke`` to an argparse subparsers object."""
    s = sub.add_parser("smoke", help="serve on loopback, classify photos over HTTP, print a table, stop")
    s.add_argument("--model-dir", default="models/latest")
    s.add_argument("--images", default="../shared/data/smoke-airliners",
                   help="folder of photos (its labels.csv, if any, gives the truth column)")
    s.add_argument("--fallback-data", default="data/raw/synth",
                   help="dataset whose test split is used when --images does not exist")
    s.add_argument("--limit", type=int, default=12, help="at most this many test-split images")
    s.set_defaults(func=main)
