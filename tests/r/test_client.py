"""The R client's testthat suite (r/tests/testthat) run through rpy2 against our gunicorn server,
and against the R reference server (the client cannot tell them apart)."""

from __future__ import annotations

import pytest

from rparity import run_testthat


@pytest.mark.parametrize("which", ["python", "r"])
def test_r_client_testthat_suite(r, py_server, r_server, parity, which):
    url = {"python": py_server.url, "r": r_server.url}[which]
    rows = run_testthat(r, url)
    bad = [row for row in rows if row["failed"] or row["skipped"] or row["error"]]
    expectations = int(sum(row["nb"] for row in rows))
    ok = parity.check(f"client.testthat.{which}_server", bool(rows) and not bad, tests=len(rows),
                      expectations=expectations, failing=[row["test"] for row in bad])
    assert ok, bad
    assert len(rows) >= 5
