"""Command line: ``python -m ingest {csv,real-airliners,other-aircraft,fgvc} ...`` (see ``--help``).

Exit status: 0 done (or up to date), 2 bad arguments or bad input (the message says which rows).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dataset.duplicates import MAX_DISTANCE

from . import core, fgvc, other_aircraft, real_airliners
from . import splits as sp
from .core import IngestError
from .csvimport import candidates_from_csv, parse_column_options


def _fail(msg: str, code: int = 2) -> int:
    print(f"ingest: error: {msg}", file=sys.stderr)
    return code


def _common(p: argparse.ArgumentParser, out_default: Path | None) -> None:
    if out_default is None:
        p.add_argument("--out", type=Path, required=True, help="dataset folder: writes <out>/metadata.csv")
    else:
        p.add_argument("--out", type=Path, default=out_default,
                       help=f"dataset folder: writes <out>/metadata.csv (default {out_default})")
    p.add_argument("--seed", type=int, default=0, help="split shuffling seed (default 0)")
    p.add_argument("--fractions", type=float, nargs=3, default=list(sp.DEFAULT_FRACTIONS),
                   metavar=("TRAIN", "VAL", "TEST"), help="split shares of rows (default 0.7 0.15 0.15)")
    p.add_argument("--max-distance", type=int, default=MAX_DISTANCE,
                   help=f"pHash Hamming distance of near-duplicates, inclusive (default {MAX_DISTANCE})")
    p.add_argument("--cache-dir", type=Path, default=core.PROCESSED_DIR,
                   help=f"image-info cache folder (default {core.PROCESSED_DIR})")
    p.add_argument("--skip-bad", action="store_true",
                   help="drop rows that cannot be imported (missing/unreadable image, unknown label) "
                        "instead of failing")
    p.add_argument("--force", action="store_true", help="rewrite even when the inputs are unchanged")


def _run(args: argparse.Namespace, cands, options: dict, *, assign: bool = True, resplit: bool = False) -> int:
    result = core.run_import(cands, args.out, options=options, assign=assign, resplit=resplit,
                             seed=args.seed, fractions=args.fractions, max_distance=args.max_distance,
                             cache_dir=args.cache_dir, skip_bad=args.skip_bad, force=args.force)
    print(core.summary(result))
    return 0


def cmd_csv(args: argparse.Namespace) -> int:
    """``csv``: a labels CSV + images folder (:mod:`ingest.csvimport`)."""
    columns = parse_column_options(args.column)
    cands = candidates_from_csv(args.labels, args.images_root, args.source or "", columns)
    return _run(args, cands, {"command": "csv", "columns": columns, "source": args.source or ""},
                resplit=args.resplit)


def cmd_real(args: argparse.Namespace) -> int:
    """``real-airliners``: the preset for ../shared/data/real-airliners (:mod:`ingest.real_airliners`)."""
    root = args.root if args.root is not None else real_airliners.default_root()
    return _run(args, real_airliners.candidates(root), {"command": "real-airliners"})


def cmd_other(args: argparse.Namespace) -> int:
    """``other-aircraft``: the preset for ../shared/data/other-aircraft (:mod:`ingest.other_aircraft`)."""
    root = args.root if args.root is not None else other_aircraft.default_root()
    return _run(args, other_aircraft.candidates(root), {"command": "other-aircraft"})


def cmd_fgvc(args: argparse.Namespace) -> int:
    """``fgvc``: FGVC-Aircraft 2013b, optionally downloaded first (:mod:`ingest.fgvc`)."""
    if args.download:
        fgvc.download(args.root, url=args.url)
    return _run(args, fgvc.candidates(args.root), {"command": "fgvc"}, assign=False)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m ingest`` argument parser (sub-commands csv, real-airliners, fgvc)."""
    ap = argparse.ArgumentParser(prog="python -m ingest", description=(
        "Import labelled photo collections as datasets of the shared metadata schema "
        "(<out>/metadata.csv; images referenced in place, never copied)."))
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("csv", help="any folder of images + a labels CSV",
                       description="Import a labelled photo collection (folder + CSV). Column names are "
                                   "recognised (path/file/image, manufacturer/maker, icao_type/type/designator, "
                                   "family, registration/reg, source, split, sha256, licence/license …).")
    p.add_argument("--labels", type=Path, required=True, help="the labels CSV")
    p.add_argument("--images-root", type=Path, default=None,
                   help="folder the CSV's image paths are relative to (default: the CSV's folder)")
    p.add_argument("--source", default="", help="source for rows without a source column "
                   "(default: the first folder under the images root)")
    p.add_argument("--column", action="append", default=[], metavar="SCHEMA_COL=THEIR_COL",
                   help="map a schema column to a CSV column (repeatable)")
    p.add_argument("--resplit", action="store_true", help="ignore the CSV's split column and assign splits")
    _common(p, None)
    p.set_defaults(func=cmd_csv)

    p = sub.add_parser("real-airliners", help="the ../shared/data/real-airliners preset",
                       description="Import ../shared/data/real-airliners (labels.csv) in place.")
    p.add_argument("--root", type=Path, default=None,
                   help=f"the real-airliners folder (default $REAL_DATA, else {real_airliners.DEFAULT_ROOT})")
    _common(p, real_airliners.DEFAULT_OUT)
    p.set_defaults(func=cmd_real)

    p = sub.add_parser("other-aircraft", help="the ../shared/data/other-aircraft preset (manufacturer Other)",
                       description="Import ../shared/data/other-aircraft (labels.csv) in place: photos of "
                                   "other makers' aircraft, manufacturer Other, source fgvc-other-aircraft.")
    p.add_argument("--root", type=Path, default=None,
                   help=f"the other-aircraft folder (default $OTHER_DATA, else {other_aircraft.DEFAULT_ROOT})")
    _common(p, other_aircraft.DEFAULT_OUT)
    p.set_defaults(func=cmd_other)

    p = sub.add_parser("fgvc", help="FGVC-Aircraft 2013b (keeps its own splits)",
                       description="Import FGVC-Aircraft 2013b in place: variants mapped to ICAO types, "
                                   "the 20-px banner cropped, FGVC's train/val/test kept.")
    p.add_argument("--root", type=Path, default=fgvc.DEFAULT_ROOT,
                   help=f"folder holding {fgvc.TOP}/ (default {fgvc.DEFAULT_ROOT})")
    p.add_argument("--download", action="store_true",
                   help="download and unpack the official archive into --root first (2.75 GB; resumable)")
    p.add_argument("--url", default=fgvc.URL, help=argparse.SUPPRESS)
    _common(p, fgvc.DEFAULT_OUT)
    p.set_defaults(func=cmd_fgvc)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad arguments or input)."""
    args = build_parser().parse_args(argv)
    if not 0 <= args.max_distance <= 64:
        return _fail(f"--max-distance must be within 0..64, got {args.max_distance}")
    try:
        sp.check_fractions(args.fractions)
    except ValueError as e:
        return _fail(f"--fractions: {e}")
    try:
        return args.func(args)
    except IngestError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
