"""End-to-end crawls against the loopback site (subprocess ``python -m scrape crawl``)."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import time

import numpy as np
from conftest import REPO, USER_AGENT, crawl_cmd, run_crawl
from loopback_site import (
    CARDS_PER_PAGE, GPS_ID, LATEST_PAGES, NEAR_DUP_ID, NEAR_DUP_OF_ID, TINY_ID, TODAY_CARDS, TRUNCATED_ID,
    UNKNOWN_TYPE_ID,
)
from PIL import Image

from dataset.images import has_gps, sha256_hex
from dataset.schema import COLUMNS

A220 = "/photos/aircraft/Airbus/A220-100"


def _by_id(rows):
    return {r["source_id"]: r for r in rows}


# --- the dataset ----------------------------------------------------------------------

def test_crawl_writes_dataset_in_shared_schema(main_crawl):
    rows = main_crawl.rows
    n_cards = LATEST_PAGES * CARDS_PER_PAGE
    assert len(rows) == n_cards - 2  # the truncated and the too-small image are not rows
    assert list(rows[0].keys()) == list(COLUMNS)
    assert len({r["source_id"] for r in rows}) == len(rows)
    for r in rows:
        data = (main_crawl.out / r["image_path"]).read_bytes()
        assert r["sha256"] == sha256_hex(data)
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "JPEG"
            assert (str(im.width), str(im.height)) == (r["width"], r["height"])
        assert r["source"] == "planespotters" and r["licence"]
        assert r["photographer"] and r["photographer"] in r["attribution"] and r["page_url"] in r["attribution"]
        assert r["image_url"].endswith("_640.jpg")  # largest srcset candidate
        assert len(r["phash"]) == 16 and r["date"].startswith("2024-05-")
    report = main_crawl.report
    assert report["rows"] == {"before": 0, "added": len(rows), "total": len(rows)}
    assert report["user_agent"] == USER_AGENT


def test_pagination_stops_at_no_results_page(main_crawl):
    site = main_crawl.site
    assert site.hits(f"/photos/latest?page={LATEST_PAGES + 1}") == 1  # the no-results page
    assert site.hits(f"/photos/latest?page={LATEST_PAGES + 2}") == 0
    assert main_crawl.report["no_results_pages"] == 1
    assert main_crawl.report["listing_pages"] == LATEST_PAGES + 1


def test_bad_images_are_counted_not_stored(main_crawl):
    rows = _by_id(main_crawl.rows)
    assert str(TRUNCATED_ID) not in rows and str(TINY_ID) not in rows
    assert main_crawl.report["images"]["failed"] == {"unreadable (truncated or not an image)": 1, "too small": 1}
    stored = {p.name for p in (main_crawl.out / "images").iterdir()}
    assert len(stored) == len(rows)  # nothing stored for the failed ones, no temp files
    for pid in (TRUNCATED_ID, TINY_ID):
        url = f"{main_crawl.site.base_url}img/{pid}_{pid % 997:03x}_640.jpg"
        assert hashlib.sha1(url.encode()).hexdigest() + ".jpg" not in stored


def test_exif_gps_stripped_losslessly(main_crawl):
    site = main_crawl.site
    served = site.respond(f"/img/{GPS_ID}_{GPS_ID % 997:03x}_640.jpg")[2]
    assert has_gps(served)
    row = _by_id(main_crawl.rows)[str(GPS_ID)]
    stored = (main_crawl.out / row["image_path"]).read_bytes()
    assert not has_gps(stored)
    a = np.asarray(Image.open(io.BytesIO(served)))
    b = np.asarray(Image.open(io.BytesIO(stored)))
    assert np.array_equal(a, b)  # same pixels: metadata removed without re-encoding


def test_near_duplicate_flagged(main_crawl):
    rows = main_crawl.rows
    by_id = _by_id(rows)
    assert by_id[str(NEAR_DUP_ID)]["near_duplicate_of"] == by_id[str(NEAR_DUP_OF_ID)]["image_path"]
    assert [r["source_id"] for r in rows if r["near_duplicate_of"]] == [str(NEAR_DUP_ID)]
    assert main_crawl.report["near_duplicates_flagged"] == 1


def test_unknown_type_kept_and_reported(main_crawl):
    row = _by_id(main_crawl.rows)[str(UNKNOWN_TYPE_ID)]
    assert (row["type_raw"], row["manufacturer"], row["icao_type"]) == ("Cessna 172S Skyhawk SP", "Other", "")
    assert main_crawl.report["labels"]["unmapped_type_raw"] == {"Cessna 172S Skyhawk SP": 1}
    assert main_crawl.report["labels"]["rows_by_icao_type"]["(unmapped)"] == 1


def test_today_markup_crawl_labels_rows_and_reports_disagreements(fast_site, tmp_path):
    """A crawl of cards in today's markup: every row labelled from the links (none is
    Other), MSNs filled, and the alt-text disagreements counted in the crawl report."""
    res = run_crawl(fast_site, tmp_path / "today", "--listing", "/photos/today", "--pages", "0")
    assert res.proc.returncode == 0, res.proc.stderr[-3000:]
    rows = _by_id(res.rows)
    assert set(rows) == {str(c.photo_id) for c in TODAY_CARDS}
    assert all(r["manufacturer"] in ("Airbus", "Boeing") and r["icao_type"] for r in rows.values())
    assert {k: rows[k]["msn"] for k in rows} == {str(c.photo_id): c.msn for c in TODAY_CARDS}
    assert (rows["2100002"]["manufacturer"], rows["2100002"]["icao_type"]) == ("Boeing", "B744")
    assert (rows["2100009"]["manufacturer"], rows["2100009"]["icao_type"]) == ("Airbus", "A333")  # links kept
    dis = res.report["labels"]["alt_text_disagreements"]
    assert dis["cards_this_run"] == 2 and dis["kept"] == "links"
    assert [(d["source_id"], d["field"], d["links"], d["alt"]) for d in dis["examples"]] == [
        ("2100009", "manufacturer", "Airbus", "Boeing"), ("2100010", "icao_type", "B77W", "B77L")]
    assert res.report["labels"]["unmapped_type_raw"] == {}


def test_no_disagreements_reported_on_consistent_cards(main_crawl):
    dis = main_crawl.report["labels"]["alt_text_disagreements"]
    assert dis == {"cards_this_run": 0, "kept": "links", "examples": []}


# --- politeness ---------------------------------------------------------------------

def test_robots_disallow_obeyed(main_crawl):
    site = main_crawl.site
    assert site.requests_for("/photos/private") == []
    assert site.hits("/robots.txt") == 1
    assert main_crawl.report["politeness"]["robotstxt_forbidden"] == 1


def test_user_agent_carries_contact_on_every_request(main_crawl):
    uas = {ua for _, _, ua in main_crawl.site.log}
    assert uas == {USER_AGENT}


def test_crawl_delay_honoured(main_crawl):
    pol = main_crawl.report["politeness"]
    assert pol["crawl_delay_s"] == {"127.0.0.1": 0.2}
    assert pol["effective_delay_s"] == {"127.0.0.1": 0.2}  # max(DOWNLOAD_DELAY=0, Crawl-delay=0.2)
    times = sorted(t for t, _, _ in main_crawl.site.log)
    gaps = np.diff(times)
    # Request spacing seen by the server. Arrival times jitter on a loaded machine, so bound
    # the whole span and the median gap (without the delay both would be a few ms per request).
    assert times[-1] - times[0] >= 0.2 * len(gaps) - 0.1
    assert np.median(gaps) >= 0.2 * 0.9, np.median(gaps)


def test_429_retried_after_retry_after(main_crawl):
    hits = main_crawl.site.requests_for("/photos/latest?page=2")
    assert len(hits) == 2
    assert hits[1][0] - hits[0][0] >= 0.95  # Retry-After: 1
    ids = {r["source_id"] for r in main_crawl.rows}
    page2 = {str(2000001 + i) for i in range(CARDS_PER_PAGE, 2 * CARDS_PER_PAGE)} - {str(TRUNCATED_ID)}
    assert page2 <= ids
    pol = main_crawl.report["politeness"]
    assert pol["retry_after_responses"] == 1 and pol["retry_reasons"]["HTTP 429"] == 1


def test_500_then_200_retried(main_crawl):
    assert main_crawl.site.hits("/photos/latest?page=3") == 2
    ids = {r["source_id"] for r in main_crawl.rows}
    assert {str(2000001 + i) for i in range(2 * CARDS_PER_PAGE, 3 * CARDS_PER_PAGE)} <= ids
    assert main_crawl.report["politeness"]["retry_reasons"]["HTTP 500"] == 1


def test_refuses_to_start_without_contact(fast_site, tmp_path):
    for contact in (None, "not-a-contact"):
        res = run_crawl(fast_site, tmp_path / "out", "--listing", A220, contact=contact)
        assert res.proc.returncode == 2
        assert "contact" in res.proc.stderr and "Traceback" not in res.proc.stderr
    assert fast_site.log == []  # not a single request
    assert not (tmp_path / "out").exists()


def test_concurrency_one_per_domain_page_limit_and_http_cache(fast_site, tmp_path):
    cache = tmp_path / "cache"
    first = run_crawl(fast_site, tmp_path / "a", "--listing", A220, "--pages", "1",
                      "--http-cache", "--http-cache-dir", str(cache))
    assert first.proc.returncode == 0, first.proc.stderr[-3000:]
    assert len(first.rows) == 48
    assert fast_site.max_in_flight == 1  # CONCURRENT_REQUESTS_PER_DOMAIN = 1
    assert fast_site.hits(A220 + "?page=2") == 0  # --pages 1
    n_requests = len(fast_site.log)
    assert n_requests == 1 + 1 + 48  # robots.txt, the page, the images
    # a development re-run into a fresh dataset is served from the HTTP cache
    second = run_crawl(fast_site, tmp_path / "b", "--listing", A220, "--pages", "1",
                       "--http-cache", "--http-cache-dir", str(cache))
    assert second.proc.returncode == 0, second.proc.stderr[-3000:]
    assert len(fast_site.log) == n_requests
    assert len(second.rows) == 48 and second.report["images"]["from_http_cache"] == 48
    assert [r["sha256"] for r in second.rows] == [r["sha256"] for r in first.rows]


def test_politeness_off_runs_concurrently(fast_site, tmp_path):
    """Counter-check of the concurrency test: without the limits the server sees overlap."""
    res = run_crawl(fast_site, tmp_path / "a", "--listing", A220, "--pages", "1",
                    "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=8", "-s", "CONCURRENT_REQUESTS=8",
                    "-s", "AUTOTHROTTLE_ENABLED=False", "-s", "ROBOTSTXT_OBEY=False")
    assert res.proc.returncode == 0, res.proc.stderr[-3000:]
    assert fast_site.max_in_flight > 1
    assert fast_site.hits("/robots.txt") == 0


def test_item_limit(fast_site, tmp_path):
    res = run_crawl(fast_site, tmp_path / "a", "--listing", A220, "--items", "5")
    assert res.proc.returncode == 0, res.proc.stderr[-3000:]
    assert res.report["finish_reason"] == "item_limit"
    assert len(res.rows) == 5
    assert len(fast_site.requests_for("/photos/aircraft/Airbus/Airbus")) <= 5 + 1  # images


def test_follow_photo_pages_for_larger_images(fast_site, tmp_path):
    res = run_crawl(fast_site, tmp_path / "a", "--listing", "/photos/latest", "--pages", "1",
                    "--follow-photo-pages")
    assert res.proc.returncode == 0, res.proc.stderr[-3000:]
    assert len(res.rows) == CARDS_PER_PAGE  # the tiny and truncated cards have good 1200 px images
    assert all(r["image_url"].endswith("_1200.jpg") for r in res.rows)


def test_resume_after_kill_9(fast_site, tmp_path):
    out = tmp_path / "dataset"
    cmd = crawl_cmd(fast_site, out, "--listing", A220, "--pages", "0", "-s", "CSV_BATCH_SIZE=4")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    csv_path = out / "metadata.csv"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if csv_path.exists() and csv_path.read_text(encoding="utf-8").count("\n") >= 9:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the crawl wrote no rows in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # kill -9 the crawl (its own process group)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    from dataset.metadata import read_rows
    before = read_rows(csv_path)  # a complete, parseable CSV: whole batches only
    assert 8 <= len(before) < 48 and len(before) % 4 == 0
    urls_before = {r["image_url"] for r in before}
    n_log = len(fast_site.log)

    res = run_crawl(fast_site, out, "--listing", A220, "--pages", "0", "-s", "CSV_BATCH_SIZE=4")
    assert res.proc.returncode == 0, res.proc.stderr[-3000:]
    rows = res.rows
    assert len(rows) == 48
    assert len({r["source_id"] for r in rows}) == 48
    assert len({r["image_path"] for r in rows}) == 48
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(r["image_path"][7:] for r in rows)
    assert rows[: len(before)] == before  # earlier rows untouched
    refetched = {base + path.lstrip("/") for base in [fast_site.base_url] for _, path, _ in fast_site.log[n_log:]}
    assert not {u.replace(" ", "%20") for u in urls_before} & refetched  # no image downloaded twice
    assert res.report["skipped_known_photos"] == len(before)
