"""Item pipelines: skip known photos, download images, write the dataset and the report.

Order (``ITEM_PIPELINES``):

1. :class:`KnownPhotoFilterPipeline` — drops cards whose photo id is already a row of
   ``metadata.csv`` (a resumed or repeated crawl adds no duplicate rows and downloads
   nothing for them).
2. :class:`PhotoImagesPipeline` — Scrapy's ImagesPipeline: files named by the SHA1 of
   the image URL (``images/<sha1>.jpg``), a URL whose file exists is not downloaded
   again, minimum size filter, EXIF/XMP (GPS) stripped losslessly, atomic file writes.
3. :class:`DatasetWriterPipeline` — sha256, size, pHash and near-duplicate flag of the
   stored file; appends the row; rewrites ``metadata.csv`` atomically every
   ``CSV_BATCH_SIZE`` rows and at the end; writes ``crawl_report.json`` when the spider
   closes.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from scrapy import signals
from scrapy.exceptions import DropItem
from scrapy.pipelines.files import FSFilesStore
from scrapy.pipelines.images import ImageException, ImagesPipeline
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.python import to_bytes

from dataset.images import ImageFormatError, hamming, phash, sha256_hex, store_bytes
from dataset.metadata import read_rows, write_bytes_atomic, write_rows_atomic, write_text_atomic
from dataset.schema import COLUMNS, METADATA_FILE

logger = logging.getLogger(__name__)

REPORT_FILE = "crawl_report.json"


def dataset_dir(settings) -> Path:
    """The dataset folder from the ``DATASET_DIR`` setting."""
    return Path(settings.get("DATASET_DIR"))


class KnownPhotoFilterPipeline:
    """Drop items whose ``source_id`` is already in ``metadata.csv`` or seen in this run,
    and enforce ``MAX_ITEMS`` (new photos per run; 0 = no limit): once that many passed,
    further items are dropped and the spider is closed (reason ``item_limit``)."""

    def __init__(self, crawler):
        self.crawler = crawler
        self.csv_path = dataset_dir(crawler.settings) / METADATA_FILE
        self.known: set[str] = set()
        self.max_items = crawler.settings.getint("MAX_ITEMS")
        self.accepted = 0

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def open_spider(self):
        self.known = {r["source_id"] for r in read_rows(self.csv_path) if r.get("source_id")}

    def process_item(self, item):
        sid = item.get("source_id", "")
        if sid in self.known:
            self.crawler.stats.inc_value("dataset/skipped_known")
            raise DropItem(f"photo {sid} already in {self.csv_path.name}", log_level="DEBUG")
        if self.max_items and self.accepted >= self.max_items:
            self.crawler.stats.inc_value("dataset/over_item_limit")
            raise DropItem(f"item limit {self.max_items} reached", log_level="DEBUG")
        self.known.add(sid)
        self.accepted += 1
        if self.max_items and self.accepted == self.max_items:
            deferred_from_coro(self.crawler.engine.close_spider_async(reason="item_limit"))
        return item


class AtomicFSFilesStore(FSFilesStore):
    """Scrapy's file-system store, writing each file atomically (temp file + rename), so a
    killed crawl never leaves a half-written image that a resumed crawl would trust."""

    def persist_file(self, path, buf, info, meta=None, headers=None):
        write_bytes_atomic(self._get_filesystem_path(path), buf.getvalue())


class PhotoImagesPipeline(ImagesPipeline):
    """ImagesPipeline storing ``images/<sha1(url)>.jpg`` under ``DATASET_DIR``."""

    STORE_SCHEMES = {**ImagesPipeline.STORE_SCHEMES, "": AtomicFSFilesStore, "file": AtomicFSFilesStore}

    @classmethod
    def from_crawler(cls, crawler):
        cls._update_stores(crawler.settings)
        return cls(str(dataset_dir(crawler.settings).resolve()), crawler=crawler)

    def file_path(self, request, response=None, info=None, *, item=None):
        return f"images/{hashlib.sha1(to_bytes(request.url)).hexdigest()}.jpg"  # noqa: S324 (Scrapy's naming)

    def get_images(self, response, request, info, *, item=None):
        path = self.file_path(request, response=response, info=info, item=item)
        try:
            data, image = store_bytes(response.body)
        except (OSError, UnidentifiedImageError, ImageFormatError, SyntaxError) as exc:
            if item is not None:
                item["image_error"] = "unreadable (truncated or not an image)"
            raise ImageException(f"unreadable image: {exc}") from exc
        width, height = image.size
        if width < self.min_width or height < self.min_height:
            if item is not None:
                item["image_error"] = "too small"
            raise ImageException(
                f"Image too small ({width}x{height} < {self.min_width}x{self.min_height})")
        yield path, image, io.BytesIO(data)

    def item_completed(self, results, item, info):
        item["images"] = [x for ok, x in results if ok]
        errors = [x for ok, x in results if not ok]
        if errors and not item.get("image_error"):  # get_images records its own reasons
            filtered = type(errors[0].value).__name__ == "_MediaRequestFiltered"
            item["image_error"] = "request filtered (robots.txt or offsite)" if filtered else "download failed"
        return item


class DatasetWriterPipeline:
    """Write rows to ``metadata.csv`` in atomic batches and the crawl report at the end."""

    def __init__(self, crawler):
        self.crawler = crawler
        s = crawler.settings
        self.dir = dataset_dir(s)
        self.csv_path = self.dir / METADATA_FILE
        self.batch_size = max(1, s.getint("CSV_BATCH_SIZE"))
        self.max_distance = s.getint("NEAR_DUPLICATE_MAX_DISTANCE")
        self.rows: list[dict[str, str]] = []
        self.rows_before = 0
        self.pending = 0
        self.failed: Counter[str] = Counter()
        self.near_duplicates = 0
        self.t0 = time.monotonic()
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def open_spider(self):
        # temp files of writes a killed crawl never finished (see dataset.metadata)
        for stale in [*self.dir.glob(".*.tmp"), *self.dir.glob("images/.*.tmp")]:
            stale.unlink(missing_ok=True)
        self.rows = read_rows(self.csv_path)
        self.rows_before = len(self.rows)
        self.by_sha = {r["sha256"]: r["image_path"] for r in self.rows if r.get("sha256")}
        self.hashes = [(r["phash"], r["image_path"]) for r in self.rows if r.get("phash")]
        self.t0 = time.monotonic()

    def _near_duplicate(self, sha: str, ph: str, image_path: str) -> str:
        first = self.by_sha.get(sha)
        if first and first != image_path:
            return first
        best, best_d = "", self.max_distance + 1
        for other, path in self.hashes:
            if path == image_path:
                continue
            d = hamming(ph, other)
            if d < best_d:
                best, best_d = path, d
        return best

    def process_item(self, item):
        if not item.get("images"):
            reason = item.get("image_error") or ("no image URL" if not item.get("image_urls") else "download failed")
            self.failed[reason] += 1
            self.crawler.stats.inc_value(f"dataset/image_failed/{reason}")
            raise DropItem(f"photo {item.get('source_id')}: no stored image ({reason})", log_level="INFO")
        info = item["images"][0]
        image_path = info["path"]
        data = (self.dir / image_path).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            ph = phash(im)
        sha = sha256_hex(data)
        row = {c: str(item.get(c) or "") for c in COLUMNS}
        row.update(image_path=image_path, sha256=sha, width=str(width), height=str(height), phash=ph,
                   image_url=info.get("url") or row["image_url"])
        row["near_duplicate_of"] = self._near_duplicate(sha, ph, image_path)
        if row["near_duplicate_of"]:
            self.near_duplicates += 1
            self.crawler.stats.inc_value("dataset/near_duplicates")
        self.by_sha.setdefault(sha, image_path)
        self.hashes.append((ph, image_path))
        self.rows.append(row)
        self.crawler.stats.inc_value("dataset/rows_written")
        self.pending += 1
        if self.pending >= self.batch_size:
            self.flush()
        return item

    def flush(self):
        """Rewrite metadata.csv with every row so far (atomic)."""
        if self.pending or not self.csv_path.exists():
            write_rows_atomic(self.csv_path, self.rows)
            self.pending = 0

    def close_spider(self):
        self.flush()

    def spider_closed(self, spider, reason):
        report = build_report(self, spider, reason)
        write_text_atomic(self.dir / REPORT_FILE, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        logger.info("Crawl report: %s rows (%s new), %s images downloaded, %s failed, %s unmapped types",
                    report["rows"]["total"], report["rows"]["added"], report["images"]["downloaded"],
                    sum(report["images"]["failed"].values()), len(report["labels"]["unmapped_type_raw"]))


def build_report(writer: DatasetWriterPipeline, spider, reason: str) -> dict:
    """The crawl report (a JSON-able dict) from the writer's rows and Scrapy's stats."""
    stats = writer.crawler.stats.get_stats()
    settings = writer.crawler.settings
    elapsed = max(1e-9, time.monotonic() - writer.t0)
    rows = writer.rows
    unmapped = Counter(r["type_raw"] for r in rows if not r.get("icao_type"))
    pages = int(stats.get("listing/pages", 0))
    downloaded = int(stats.get("file_status_count/downloaded", 0))

    def prefixed(prefix: str) -> dict:
        return {k[len(prefix):]: v for k, v in sorted(stats.items()) if k.startswith(prefix)}

    return {
        "spider": spider.name,
        "finish_reason": reason,
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed, 3),
        "base_url": getattr(spider, "base_url", ""),
        "listings": getattr(spider, "listing_urls", []),
        "user_agent": writer.crawler.settings.get("USER_AGENT", ""),
        "listing_pages": pages,
        "no_results_pages": int(stats.get("listing/no_results_pages", 0)),
        "cards_parsed": int(stats.get("listing/cards", 0)),
        "rows": {"before": writer.rows_before, "added": len(rows) - writer.rows_before, "total": len(rows)},
        "skipped_known_photos": int(stats.get("dataset/skipped_known", 0)),
        "images": {
            "downloaded": downloaded,
            "already_stored": int(stats.get("file_status_count/uptodate", 0)),
            "from_http_cache": int(stats.get("file_status_count/cached", 0)),
            "failed": dict(writer.failed),
        },
        "near_duplicates_flagged": writer.near_duplicates,
        "labels": {
            "rows_by_manufacturer": dict(Counter(r["manufacturer"] for r in rows).most_common()),
            "rows_by_icao_type": dict(Counter(r["icao_type"] or "(unmapped)" for r in rows).most_common()),
            "unmapped_type_raw": dict(unmapped.most_common()),
            "unmapped_cards_this_run": int(stats.get("labels/unmapped_cards", 0)),
            # cards whose alt text contradicts their links (scrape.parse "Disagreements"); links kept
            "alt_text_disagreements": {
                "cards_this_run": int(stats.get("labels/alt_disagreements", 0)),
                "kept": "links",
                "examples": list(getattr(spider, "alt_disagreements", []))[:50],
            },
        },
        "politeness": {
            "robotstxt_obey": settings.getbool("ROBOTSTXT_OBEY"),
            "robotstxt_forbidden": int(stats.get("robotstxt/forbidden", 0)),
            "crawl_delay_s": prefixed("politeness/crawl_delay/"),
            "effective_delay_s": prefixed("politeness/effective_delay/"),
            "download_delay_s": settings.getfloat("DOWNLOAD_DELAY"),
            "autothrottle": settings.getbool("AUTOTHROTTLE_ENABLED"),
            "concurrent_requests_per_domain": settings.getint("CONCURRENT_REQUESTS_PER_DOMAIN"),
            "retries": int(stats.get("retry/count", 0)),
            "retry_reasons": prefixed("retry/reason_count/"),
            "retry_after_responses": int(stats.get("retry/retry_after_count", 0)),
            "backoff_wait_max_s": stats.get("retry/backoff_wait_max_s", 0),
            "http_cache": settings.getbool("HTTPCACHE_ENABLED"),
        },
        "http": {
            "requests": int(stats.get("downloader/request_count", 0)),
            "responses": int(stats.get("downloader/response_count", 0)),
            "status_counts": prefixed("downloader/response_status_count/"),
        },
        "throughput": {
            "listing_pages_per_s": round(pages / elapsed, 3),
            "images_per_s": round(downloaded / elapsed, 3),
        },
    }
