"""``python -m api smoke|bench|bench-sweep|soak`` — run the real server on loopback: classify a
folder of photos and print a table (smoke), measure throughput and latency (bench, bench-sweep),
or soak it (soak)."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def truth_of(row: dict) -> tuple[str, str, str]:
    """``(manufacturer, family, ICAO type)`` of a labels row: the schema's columns, or a photo
    folder's ``labels.csv`` (``manufacturer``, ``family`` such as "737" or "A340",
    ``variant_if_known`` such as "737-800"), normalised to the project's names ("B737", "B738")
    with :mod:`dataset.schema` and :mod:`dataset.labels`."""
    from dataset.schema import family_of, manufacturer_of_family
    from dataset.labels import normalise_type

    m = row.get("manufacturer", "")
    t = row.get("icao_type", "")
    variant = row.get("variant_if_known", "")
    if not t and variant:
        t = normalise_type(f"{m} {variant}").icao_type
    f = row.get("family", "") or family_of(t)
    if f and not manufacturer_of_family(f) and manufacturer_of_family(m[:1] + f):
        f = m[:1] + f  # "737" → "B737"
    return m, f, t


def main(argv: list[str] | None = None) -> int:
    from . import bench
    from .smoke import print_table, smoke

    p = argparse.ArgumentParser(prog="python -m api", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("smoke", help="serve on loopback, classify photos over HTTP, print a table, stop")
    s.add_argument("--model-dir", default="models/latest")
    s.add_argument("--images", default="../shared/data/smoke-airliners",
                   help="folder of photos (its labels.csv, if any, gives the truth column)")
    s.add_argument("--fallback-data", default="data/raw/synth",
                   help="dataset whose test split is used when --images does not exist")
    s.add_argument("--limit", type=int, default=12, help="at most this many test-split images")
    bench.add_parsers(sub)
    args = p.parse_args(argv)
    if args.command != "smoke":
        for spec in getattr(args, "peer", []):
            name, _, url = spec.partition("=")
            if not name or not url.startswith(("http://", "https://")):
                p.error(f"--peer wants NAME=http(s)://..., got {spec!r}")
        return args.func(args)

    folder = Path(args.images)
    truth = {}
    if folder.is_dir():
        images = sorted(x for x in folder.iterdir() if x.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
        labels = folder / "labels.csv"
        if labels.is_file():
            with open(labels, newline="") as f:
                truth = {r["file"]: truth_of(r) for r in csv.DictReader(f)}
    else:
        fallback = Path(args.fallback_data) / "metadata.csv"
        if not fallback.is_file():
            print(f"error: neither {folder} nor {fallback} exists", file=sys.stderr)
            return 2
        with open(fallback, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["split"] == "test"][: args.limit]
        images = [fallback.parent / r["image_path"] for r in rows]
        truth = {(fallback.parent / r["image_path"]).name: truth_of(r) for r in rows}
        print(f"{folder} not found: classifying {len(images)} test-split images instead")
    if not images:
        print(f"error: no images in {folder}", file=sys.stderr)
        return 2
    print_table(smoke(args.model_dir, images, truth))
    return 0


if __name__ == "__main__":
    sys.exit(main())
