"""The R client's testthat suite (r/tests/testthat) run through rpy2 against our gunicorn server,
and against the R reference server (the client cannot tell them apart)."""

from __future__ import annotations

import pytest

from rparity import R_DIR, SMOKE_DIR


def run_testthat(r, url: str) -> list[dict]:
    r.r["Sys.setenv"](PLANESPOTTER_URL=url, PLANESPOTTER_TEST_IMAGES=str(SMOKE_DIR))
    res = r.r(f"""as.data.frame(testthat::test_dir("{R_DIR / 'tests' / 'testthat'}", reporter = "silent",
                                                  stop_on_failure = FALSE, stop_on_warning = FALSE))""")
    cols = {c: list(res.rx2(c)) for c in ("test", "nb", "failed", "skipped", "error")}
    return [{c: cols[c][i] for c in cols} for i in range(len(cols["test"]))]


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
