"""``python -m client smoke|bench|bench-sweep|soak`` — run the real server on loopback: classify a
folder of photos and print a table (smoke), measure throughput and latency (bench, bench-sweep),
or soak it (soak)."""

from __future__ import annotations

import argparse
import sys

from . import bench, smoke


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; returns its exit status (2: a usage error)."""
    p = argparse.ArgumentParser(prog="python -m client", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    smoke.add_parser(sub)
    bench.add_parsers(sub)
    args = p.parse_args(argv)
    for spec in getattr(args, "peer", []):
        name, _, url = spec.partition("=")
        if not name or not url.startswith(("http://", "https://")):
            p.error(f"--peer wants NAME=http(s)://..., got {spec!r}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
