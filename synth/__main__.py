"""Command line: ``python -m synth {fetch,list,render,composite,sheet}`` (also ``planespotter-synth``).

* ``fetch``: download and unpack Debian's ``flightgear-data-ai`` (needs ``apt-get``).
* ``list``: renderable (model, livery) pairs per manufacturer and ICAO type.
* ``render``: render a balanced, split, labelled JPEG dataset (see :mod:`synth.dataset`).
* ``composite``: paste the renders (by their masks) onto backgrounds cut from the TRAIN photos of a
  real-photo dataset (see :mod:`synth.composite`).
* ``sheet``: contact sheet PNG of random images of a dataset (to eyeball renders).

Errors are reported as one line on stderr with exit status 2 (bad input) or 1 (failure).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from synth.composite import CompositeError, build_composites
from synth.dataset import DatasetError, RenderParams, build_dataset, select_liveries
from synth.fetch import COMPLETE_MARKER, FetchError, fetch, is_unpacked
from synth.fleet import DEFAULT_MANUFACTURERS, count_by, scan_fleet
from synth.sheet import contact_sheet

DEFAULT_EXTERNAL = "data/external"
DEFAULT_FLEET = "data/external/flightgear-data-ai"


def _ratios(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers, got {text!r}") from None
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1) > 1e-6:
        raise argparse.ArgumentTypeError(f"expected three non-negative numbers summing to 1, got {text!r}")
    return parts  # type: ignore[return-value]


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return v


def _nonneg(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def _types(text: str) -> tuple[str, ...]:
    return tuple(t.strip().upper() for t in text.replace(" ", ",").split(",") if t.strip())


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m synth``."""
    p = argparse.ArgumentParser(
        prog="python -m synth",
        description="Offline labelled airliner images rendered on the CPU from Debian's FlightGear AI fleet "
        "(flightgear-data-ai, GPL-2.0-or-later).",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="{fetch,list,render,composite,sheet}")

    f = sub.add_parser("fetch", help="apt-get download + unpack flightgear-data-ai (idempotent)")
    f.add_argument("--dest", default=DEFAULT_EXTERNAL, help="parent folder (default: %(default)s); "
                   "the package lands in DEST/flightgear-data-ai")
    f.add_argument("--force", action="store_true", help="unpack again even if already there")

    ls = sub.add_parser("list", help="renderable (model, livery) pairs per manufacturer and ICAO type")
    ls.add_argument("--fleet", default=DEFAULT_FLEET, help="unpacked package (default: %(default)s)")
    ls.add_argument("--include-other", action="store_true", help="also list the 'Other' makers")
    ls.add_argument("--liveries", action="store_true", help="print every pair, not only counts")
    ls.add_argument("--json", action="store_true", help="counts as JSON")

    r = sub.add_parser("render", help="render a balanced, split, labelled JPEG dataset")
    r.add_argument("--fleet", default=DEFAULT_FLEET, help="unpacked package (default: %(default)s)")
    r.add_argument("--out", default="data/raw/synth", help="output dataset folder (default: %(default)s)")
    r.add_argument("--per-class", type=_positive, default=2500,
                   help="images per manufacturer class, spread over its liveries (default: %(default)s)")
    r.add_argument("--size", type=int, default=256, help="image width = height in pixels, 16-2048 (default: %(default)s)")
    r.add_argument("--seed", type=int, default=0, help="fixes views and splits (default: %(default)s)")
    r.add_argument("--include-other", action="store_true",
                   help="add the 'Other' class (Embraer, CRJ, ATR, Dash 8, Fokker, MD-80/90, ...)")
    r.add_argument("--types", type=_types, default=(), help="only these ICAO types, e.g. A320,B738")
    r.add_argument("--max-liveries-per-type", type=_nonneg, default=0,
                   help="cap liveries per ICAO type, a seeded random subset (0: all)")
    r.add_argument("--min-per-type", type=_nonneg, default=0,
                   help="at least this many images per ICAO type within its class (rare types get more "
                   "views per livery; 0: types in proportion to their liveries)")
    r.add_argument("--views", choices=("spotter", "all"), default="spotter",
                   help="camera presets: spotter = broadside/three-quarter views from below (default); "
                   "all = any azimuth, elevation -45..+15")
    r.add_argument("--split-ratios", type=_ratios, default=(0.7, 0.15, 0.15),
                   help="train,validation,test fractions (default: 0.7,0.15,0.15)")
    r.add_argument("--workers", type=_positive, default=2,
                   help="render processes, each with its own EGL context (default: %(default)s)")
    r.add_argument("--masks", action=argparse.BooleanOptionalAction, default=True,
                   help="also write each image's aircraft coverage mask (8-bit PNG, masks/ beside images/; "
                   "needed by `composite`; images and CSV are the same either way) (default: on)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    c = sub.add_parser("composite", help="paste renders onto backgrounds cut from real TRAIN photos",
                       description="Paste each render's aircraft (by its mask) onto a sky-over-ground or sky-only "
                       "scene built from patches of the TRAIN photos of a real-photo dataset (validation/test "
                       "photos are never used). Composites inherit the photos' licence restrictions: internal "
                       "training only.")
    c.add_argument("--renders", default="data/raw/synth", help="synth render output with masks (default: %(default)s)")
    c.add_argument("--backgrounds", default="data/raw/real-airliners",
                   help="real-photo dataset (metadata.csv with splits; default: %(default)s)")
    c.add_argument("--out", default="data/raw/synth-composite", help="output dataset folder (default: %(default)s)")
    c.add_argument("--per-render", type=_positive, default=1, help="composites per render (default: %(default)s)")
    c.add_argument("--size", type=int, default=256, help="image width = height in pixels, 16-2048 (default: %(default)s)")
    c.add_argument("--seed", type=int, default=0, help="fixes backgrounds, placement, degradation (default: %(default)s)")
    c.add_argument("--workers", type=_positive, default=2, help="processes (default: %(default)s)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    sh = sub.add_parser("sheet", help="contact sheet PNG of random images of a dataset")
    sh.add_argument("--data", default="data/raw/synth", help="dataset folder (default: %(default)s)")
    sh.add_argument("--out", default="reports/figures/synth_contact_sheet.png", help="PNG path (default: %(default)s)")
    sh.add_argument("--n", type=_positive, default=24, help="images (default: %(default)s)")
    sh.add_argument("--seed", type=int, default=0, help="which images (default: %(default)s)")
    return p


def _fail(msg: str, code: int = 2) -> int:
    print(f"synth: error: {msg}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    if args.command == "fetch":
        try:
            root = fetch(args.dest, force=args.force)
        except FetchError as exc:
            return _fail(str(exc), 1)
        print(root)
        return 0

    if args.command == "sheet":
        try:
            print(contact_sheet(args.data, args.out, n=args.n, seed=args.seed))
        except (FileNotFoundError, ValueError) as exc:
            return _fail(str(exc))
        return 0

    if args.command == "composite":
        try:
            summary = build_composites(args.renders, args.backgrounds, args.out, per_render=args.per_render,
                                       size=args.size, seed=args.seed, workers=args.workers,
                                       progress=not args.no_progress)
        except CompositeError as exc:
            return _fail(str(exc))
        except RuntimeError as exc:  # a composite failed (unreadable render or photo)
            return _fail(str(exc), 1)
        print(json.dumps(summary, indent=2))
        return 0

    fleet = Path(args.fleet)
    if not fleet.is_dir():
        return _fail(f"fleet folder {fleet} not found; run `python -m synth fetch` first")
    manufacturers = DEFAULT_MANUFACTURERS + (("Other",) if args.include_other else ())
    try:
        scan = scan_fleet(fleet, manufacturers)
    except FileNotFoundError as exc:
        return _fail(str(exc))

    if args.command == "list":
        lv = scan.liveries
        counts = {
            "pairs": len(lv),
            "per_manufacturer": count_by(lv, "manufacturer"),
            "per_icao_type": count_by(lv, "icao_type"),
            "per_sub_model": count_by(lv, "sub_model"),
            "per_folder": count_by(lv, "folder"),
            "skipped": [f"{w}: {why}" for w, why in scan.skipped],
        }
        if args.json:
            print(json.dumps(counts, indent=2))
        else:
            print(f"{counts['pairs']} renderable pairs: {counts['per_manufacturer']}")
            for t, n in counts["per_icao_type"].items():
                print(f"  {t:5s} {n}")
            if args.liveries:
                for x in lv:
                    print(f"{x.key}\t{x.manufacturer}\t{x.icao_type}\t{x.sub_model}\t{x.airline}")
        return 0

    # render
    if not 16 <= args.size <= 2048:
        return _fail(f"--size must be within 16-2048, got {args.size}")
    if not is_unpacked(fleet):
        logging.getLogger("synth").warning("%s has no fetch marker; using it as is", fleet)
    marker = fleet / COMPLETE_MARKER
    package = marker.read_text().strip() if marker.is_file() else ""
    try:
        liveries = select_liveries(scan.liveries, args.types, args.max_liveries_per_type, args.seed)
        params = RenderParams(
            per_class=args.per_class,
            size=args.size,
            seed=args.seed,
            ratios=args.split_ratios,
            manufacturers=manufacturers,
            types=args.types,
            max_liveries_per_type=args.max_liveries_per_type,
            min_per_type=args.min_per_type,
            views=args.views,
            package=package,
        )
        summary = build_dataset(liveries, args.out, params, workers=args.workers, progress=not args.no_progress,
                                masks=args.masks)
    except DatasetError as exc:
        return _fail(str(exc))
    except RuntimeError as exc:  # no EGL context, render failure
        return _fail(str(exc), 1)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
