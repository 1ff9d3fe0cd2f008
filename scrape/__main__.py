"""Command line: ``python -m scrape {parse,crawl,eda} ...`` (see ``--help``).

``eda`` is :mod:`dataset.eda`'s report; ``parse`` and ``crawl`` are the Scrapy side's."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from dataset.eda import write_report
from dataset.metadata import SchemaError
from dataset.schema import COLUMNS, METADATA_FILE
from scrape.identity import ContactRequiredError, build_user_agent
from scrape.parse import DEFAULT_BASE_URL, parse_listing_checked, to_row


def _fail(msg: str, code: int = 1) -> int:
    print(f"scrape: error: {msg}", file=sys.stderr)
    return code


def cmd_parse(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        html = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return _fail(f"cannot read {path}: no such file")
    except IsADirectoryError:
        return _fail(f"cannot read {path}: is a directory")
    except PermissionError:
        return _fail(f"cannot read {path}: permission denied")
    except UnicodeDecodeError as exc:
        return _fail(f"cannot read {path}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    except OSError as exc:
        return _fail(f"cannot read {path}: {exc.strerror or exc}")
    if "<" not in html:
        return _fail(f"cannot parse {path}: no HTML markup")
    parsed = parse_listing_checked(html, args.base_url)
    w = csv.DictWriter(sys.stdout, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    for rec in parsed.records:
        w.writerow(to_row(rec))
    if parsed.disagreements:
        print(f"scrape: {len(parsed.disagreements)} card(s) whose alt text disagrees with their links "
              "(the links are kept):", file=sys.stderr)
        for d in parsed.disagreements:
            print(f"  photo {d['source_id']}: {d['field']} {d['links']!r} (links) vs {d['alt']!r} (alt text)",
                  file=sys.stderr)
    return 0


def cmd_crawl(args: argparse.Namespace) -> int:
    os.environ["SCRAPY_SETTINGS_MODULE"] = "scrape.settings"
    from scrapy.crawler import CrawlerProcess  # deferred: Scrapy/Twisted start-up (~1 s), only crawl needs it
    from scrapy.utils.project import get_project_settings  # deferred: likewise

    settings = get_project_settings()
    contact = args.contact or settings.get("CONTACT")
    overrides: dict[str, str] = {}
    for kv in args.set or []:
        if "=" not in kv:
            return _fail(f"--set wants NAME=VALUE, got {kv!r}", 2)
        k, v = kv.split("=", 1)
        overrides[k.strip()] = v
    contact = contact or overrides.get("CONTACT")
    try:
        user_agent = build_user_agent(contact, settings.get("USER_AGENT_PRODUCT"))
    except ContactRequiredError as exc:
        return _fail(f"refusing to crawl: {exc}", 2)

    out = Path(args.out)
    job_dir = Path(args.job_dir) if args.job_dir else out / ".job"
    settings.set("DATASET_DIR", str(out), priority="cmdline")
    settings.set("JOBDIR", str(job_dir), priority="cmdline")
    settings.set("CONTACT", contact, priority="cmdline")
    settings.set("USER_AGENT", user_agent, priority="cmdline")
    if args.base_url:
        settings.set("BASE_URL", args.base_url, priority="cmdline")
    if args.pages is not None:
        settings.set("MAX_LISTING_PAGES", args.pages, priority="cmdline")
    if args.items is not None:
        settings.set("MAX_ITEMS", args.items, priority="cmdline")
    if args.http_cache:
        settings.set("HTTPCACHE_ENABLED", True, priority="cmdline")
        settings.set("HTTPCACHE_DIR", str(Path(args.http_cache_dir).resolve()), priority="cmdline")
    if args.follow_photo_pages:
        settings.set("FOLLOW_PHOTO_PAGES", True, priority="cmdline")
    if args.log_level:
        settings.set("LOG_LEVEL", args.log_level, priority="cmdline")
    for k, v in overrides.items():
        settings.set(k, v, priority="cmdline")

    process = CrawlerProcess(settings)
    kwargs = {"contact": contact}
    if args.listing:
        kwargs["listings"] = ",".join(args.listing)
    process.crawl("listing", **kwargs)
    process.start()
    report = out / "crawl_report.json"
    if not report.exists():
        return _fail("the crawl did not finish (no crawl_report.json); see the log above")
    r = json.loads(report.read_text(encoding="utf-8"))
    print(f"rows: {r['rows']['total']} ({r['rows']['added']} new) in {out / METADATA_FILE}; "
          f"images downloaded {r['images']['downloaded']}, failed {sum(r['images']['failed'].values())}; "
          f"unmapped types {len(r['labels']['unmapped_type_raw'])}; report {report}", file=sys.stderr)
    return 0


def cmd_eda(args: argparse.Namespace) -> int:
    try:
        s = write_report(args.csv, args.out)
    except (FileNotFoundError, SchemaError, UnicodeDecodeError, csv.Error) as exc:
        return _fail(str(exc))
    print(f"EDA of {s['n']} rows written to {args.out}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m scrape``."""
    p = argparse.ArgumentParser(
        prog="python -m scrape",
        description="Polite, resumable planespotters.net scraper: parse saved pages, crawl, EDA. "
                    "Photos are the photographers' copyright; see scrape/README.md.")
    sub = p.add_subparsers(dest="command", required=True)

    pp = sub.add_parser("parse", help="parse one saved listing page; CSV (shared schema) to stdout")
    pp.add_argument("file", help="saved listing page (HTML, UTF-8)")
    pp.add_argument("--base-url", default=DEFAULT_BASE_URL,
                    help="URL the page came from, to resolve relative links (default %(default)s)")
    pp.set_defaults(func=cmd_parse)

    pc = sub.add_parser("crawl", help="crawl listing pages with Scrapy into a dataset folder")
    pc.add_argument("--contact", help="e-mail or URL for the User-Agent (required, or setting CONTACT)")
    pc.add_argument("--base-url", help="site root (default: setting BASE_URL, https://www.planespotters.net/)")
    pc.add_argument("--listing", action="append",
                    help="listing path, repeatable, e.g. /photos/aircraft/Airbus/A220-100 (default /photos/latest)")
    pc.add_argument("--pages", type=int, help="listing pages per listing (0 = until the no-results page; default 1)")
    pc.add_argument("--items", type=int, help="at most this many new photos, then stop (default: no limit)")
    pc.add_argument("--out", default="data/raw/planespotters", help="dataset folder (default %(default)s)")
    pc.add_argument("--job-dir", help="Scrapy JOBDIR for resuming (default OUT/.job)")
    pc.add_argument("--http-cache", action="store_true", help="cache HTTP responses (development re-runs)")
    pc.add_argument("--http-cache-dir", default="data/cache/planespotters-http", help="default %(default)s")
    pc.add_argument("--follow-photo-pages", action="store_true", help="fetch detail pages for larger images")
    pc.add_argument("--set", "-s", action="append", metavar="NAME=VALUE", help="any Scrapy setting")
    pc.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    pc.set_defaults(func=cmd_crawl)

    pe = sub.add_parser("eda", help="EDA report (Markdown + figures) of a metadata CSV")
    pe.add_argument("csv", help="metadata CSV with the shared schema")
    pe.add_argument("--out", default="reports/eda.md", help="report path (default %(default)s)")
    pe.set_defaults(func=cmd_eda)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
