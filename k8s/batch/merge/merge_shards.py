"""Merge the per-shard CSVs of the Indexed scoring Job into one CSV.

The Job ``planespotter-score`` (k8s/batch/base/job-score.yaml) runs N pods; pod I runs
``python -m model score --num-shards N --shard-index I`` and writes ``part-I-of-N.csv``. This script
checks that the parts form one complete run (one N, every index 0..N-1 present, identical header
rows) and writes their rows, shard 0 first, below one header to ``--out``. The output appears
atomically (temporary file in the same folder, then ``os.replace``): no half-written CSV.

Run in the cluster by the Job in k8s/batch/merge (``make k8s-score``), or locally on a copy of the
parts::

    python k8s/batch/merge/merge_shards.py --shards-dir DIR --out scores.csv

Exit status 0 on success; 2 with a message on stderr when the parts are missing, mixed or
inconsistent (nothing is written then).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import tempfile
from pathlib import Path

PART_RE = re.compile(r"^part-(\d+)-of-(\d+)\.csv$")


class MergeError(Exception):
    """The shard CSVs do not form one complete, consistent run."""


def find_parts(shards_dir: Path) -> list[Path]:
    """Return the shard CSVs of one run in shard order.

    Args:
        shards_dir: folder holding ``part-I-of-N.csv`` files (other files are ignored).

    Returns:
        N paths, index 0 first.

    Raises:
        MergeError: no parts; parts of several N (mixed runs); an index missing or >= N.
    """
    found: dict[int, dict[int, Path]] = {}
    for path in shards_dir.iterdir():
        m = PART_RE.match(path.name)
        if m and path.is_file():
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = path
    if not found:
        raise MergeError(f"no part-I-of-N.csv files in {shards_dir}")
    if len(found) > 1:
        raise MergeError(f"parts of several runs in {shards_dir}: N = {sorted(found)}")
    (num_shards, parts), = found.items()
    missing = sorted(set(range(num_shards)) - set(parts))
    extra = sorted(set(parts) - set(range(num_shards)))
    if missing or extra:
        raise MergeError(f"incomplete run of {num_shards} shards in {shards_dir}: "
                         f"missing indexes {missing}, out-of-range indexes {extra}")
    return [parts[i] for i in range(num_shards)]


def merge(parts: list[Path], out: Path) -> int:
    """Write the rows of ``parts`` below their common header to ``out`` atomically.

    Args:
        parts: shard CSVs (UTF-8, header row first) in the order their rows are to appear.
        out: the merged CSV; its folder must exist. Replaced only once complete.

    Returns:
        Number of data rows written (header excluded).

    Raises:
        MergeError: a part is empty (no header) or its header differs from the first part's.
    """
    header: list[str] | None = None
    rows = 0
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as dst:
            writer = csv.writer(dst)
            for part in parts:
                with part.open(newline="", encoding="utf-8") as src:
                    reader = csv.reader(src)
                    part_header = next(reader, None)
                    if not part_header:
                        raise MergeError(f"{part} is empty: no header row")
                    if header is None:
                        header = part_header
                        writer.writerow(header)
                    elif part_header != header:
                        raise MergeError(f"{part} header {part_header} differs from {parts[0]} header {header}")
                    for row in reader:
                        writer.writerow(row)
                        rows += 1
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (0 ok, 2 bad input)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards-dir", type=Path, required=True, help="folder with part-I-of-N.csv files")
    parser.add_argument("--out", type=Path, required=True, help="merged CSV to write")
    args = parser.parse_args(argv)
    try:
        parts = find_parts(args.shards_dir)
        rows = merge(parts, args.out)
    except (MergeError, OSError, csv.Error, UnicodeDecodeError) as exc:
        print(f"merge_shards: error: {exc}", file=sys.stderr)
        return 2
    print(f"merge_shards: {rows} rows from {len(parts)} shards -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
