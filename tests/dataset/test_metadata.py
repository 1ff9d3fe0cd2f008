"""Atomic CSV writing and schema checks."""

from __future__ import annotations

import pytest

from dataset.metadata import SchemaError, read_rows, write_rows_atomic
from dataset.schema import COLUMNS, empty_row


def test_roundtrip_with_awkward_text(tmp_path):
    rows = []
    for i, text in enumerate(["Müller, \"Jr\"", "line\nbreak", "© Gábor", ""]):
        r = empty_row()
        r.update(source_id=str(i), photographer=text, airline="A|B")
        rows.append(r)
    p = tmp_path / "d" / "metadata.csv"
    write_rows_atomic(p, rows)
    assert read_rows(p) == rows
    assert p.read_text(encoding="utf-8").splitlines()[0] == ",".join(COLUMNS)
    assert [x.name for x in p.parent.iterdir()] == ["metadata.csv"]  # no temp file left
    assert (p.stat().st_mode & 0o777) != 0o600  # not mkstemp's private mode


def test_missing_columns_rejected(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("image_path,sha256\nx,y\n", encoding="utf-8")
    with pytest.raises(SchemaError, match="missing columns"):
        read_rows(p)
    assert read_rows(p, require_all=False) == [{"image_path": "x", "sha256": "y", "family": "", "crop_box": ""}]


def test_csv_from_before_the_optional_columns_is_read(tmp_path):
    old = [c for c in COLUMNS if c not in ("family", "crop_box")]
    p = tmp_path / "old.csv"
    p.write_text(",".join(old) + "\n" + ",".join("v" if c == "airline" else "" for c in old) + "\n",
                 encoding="utf-8")
    (row,) = read_rows(p)
    assert row["airline"] == "v" and row["family"] == row["crop_box"] == ""


def test_missing_file_is_empty(tmp_path):
    assert read_rows(tmp_path / "nope.csv") == []
