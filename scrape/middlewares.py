"""Politeness add-ons to Scrapy: robots.txt Crawl-delay, host backoff honouring Retry-After.

* :class:`CrawlDelayMiddleware` — reads ``Crawl-delay`` from each host's robots.txt
  (Scrapy's ``robots_parsed`` signal, Protego parser) and makes the host's download slot
  wait ``max(DOWNLOAD_DELAY, Crawl-delay)`` seconds between requests.
* :class:`CrawlDelayAutoThrottle` — Scrapy's AutoThrottle, except that it never lowers a
  slot's delay below that floor (stock AutoThrottle only respects DOWNLOAD_DELAY).
* :class:`BackoffRetryMiddleware` — Scrapy's RetryMiddleware plus a wait before each
  retry: ``Retry-After`` (seconds or HTTP-date, RFC 9110 §10.2.3) when the response has
  it, else exponential backoff. During the wait the whole host is paused.
"""

from __future__ import annotations

import email.utils
import time
from datetime import timezone

from scrapy import signals
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.exceptions import NotConfigured
from scrapy.extensions.throttle import AutoThrottle
from scrapy.utils.asyncio import sleep as async_sleep
from scrapy.utils.httpobj import urlparse_cached

MIN_DELAY_META = "politeness_min_delay"


def effective_delay(download_delay: float, crawl_delay: float | None) -> float:
    """Seconds between two requests to one host: ``max(download_delay, crawl_delay)``.

    ``crawl_delay`` ``None`` (no directive) counts as 0. Both in seconds, >= 0.
    """
    return max(float(download_delay), float(crawl_delay or 0.0))


def parse_retry_after(value: str | bytes | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value, or ``None`` if absent/invalid.

    Accepts delay-seconds ("120") or an HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT"),
    per RFC 9110 §10.2.3. A date in the past gives 0. ``now``: POSIX time (default now).
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now_ts = time.time() if now is None else now
    return max(0.0, when.timestamp() - now_ts)


class CrawlDelayMiddleware:
    """Downloader middleware (after RobotsTxtMiddleware) applying robots.txt Crawl-delay.

    Enabled when ``ROBOTSTXT_OBEY`` and ``ROBOTSTXT_CRAWL_DELAY`` are true. Records
    ``politeness/crawl_delay/<host>`` and ``politeness/effective_delay/<host>`` stats.
    """

    def __init__(self, crawler):
        s = crawler.settings
        if not (s.getbool("ROBOTSTXT_OBEY") and s.getbool("ROBOTSTXT_CRAWL_DELAY")):
            raise NotConfigured
        self.crawler = crawler
        self.download_delay = s.getfloat("DOWNLOAD_DELAY")
        self.crawl_delays: dict[str, float] = {}
        crawler.signals.connect(self._robots_parsed, signal=signals.robots_parsed)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def _user_agent(self) -> str:
        return self.crawler.settings.get("USER_AGENT") or ""

    def _robots_parsed(self, robotparser, request):
        host = urlparse_cached(request).hostname or ""
        delay = robotparser.crawl_delay(self._user_agent())
        self.crawl_delays[host] = float(delay or 0.0)
        stats = self.crawler.stats
        stats.set_value(f"politeness/crawl_delay/{host}", self.crawl_delays[host])
        stats.set_value(f"politeness/effective_delay/{host}",
                        effective_delay(self.download_delay, self.crawl_delays[host]))

    def process_request(self, request):
        host = urlparse_cached(request).hostname or ""
        crawl_delay = self.crawl_delays.get(host, 0.0)
        floor = effective_delay(self.download_delay, crawl_delay)
        request.meta[MIN_DELAY_META] = floor
        if crawl_delay > 0:
            downloader = self.crawler.engine.downloader
            slot = downloader.slots.get(downloader.get_slot_key(request))
            if slot is not None:
                slot.jitter = 0.0
                if slot.delay < floor:
                    slot.delay = floor
        return None


class CrawlDelayAutoThrottle(AutoThrottle):
    """AutoThrottle that keeps each slot's delay >= the request's politeness floor."""

    def _response_downloaded(self, response, request, spider=None):
        super()._response_downloaded(response, request, spider)
        floor = request.meta.get(MIN_DELAY_META)
        if floor:
            _, slot = self._get_slot(request, spider)
            if slot is not None and slot.delay < floor:
                slot.delay = floor


class BackoffRetryMiddleware(RetryMiddleware):
    """RetryMiddleware that waits before retrying and pauses the whole host meanwhile.

    Wait before retry number n (1-based): the ``Retry-After`` value when present (a value
    above ``RETRY_AFTER_MAX`` gives up instead), else
    ``min(RETRY_BACKOFF_MAX, RETRY_BACKOFF_BASE * 2**(n-1))`` seconds. Stats:
    ``retry/backoff_wait_max_s``, ``retry/retry_after_count``, ``retry/retry_after_too_long``.
    """

    def __init__(self, settings):
        super().__init__(settings)
        self.backoff_base = settings.getfloat("RETRY_BACKOFF_BASE")
        self.backoff_max = settings.getfloat("RETRY_BACKOFF_MAX")
        self.retry_after_max = settings.getfloat("RETRY_AFTER_MAX")
        self.paused_until: dict[str, float] = {}

    async def process_request(self, request):
        host = urlparse_cached(request).hostname or ""
        until = self.paused_until.get(host, 0.0)
        remaining = until - time.monotonic()
        if remaining > 0:
            await async_sleep(remaining)
        return None

    def _wait_for(self, request, response) -> float | None:
        retry_after = parse_retry_after(response.headers.get(b"Retry-After"))
        stats = self.crawler.stats
        if retry_after is not None:
            stats.inc_value("retry/retry_after_count")
            if retry_after > self.retry_after_max:
                stats.inc_value("retry/retry_after_too_long")
                return None
            return retry_after
        n = request.meta.get("retry_times", 0) + 1
        return min(self.backoff_max, self.backoff_base * 2 ** (n - 1))

    def process_response(self, request, response):
        if request.meta.get("dont_retry", False) or response.status not in self.retry_http_codes:
            return response
        wait = self._wait_for(request, response)
        if wait is None:
            return response
        new_request = self._retry(request, f"HTTP {response.status}")
        if new_request is None:
            return response
        host = urlparse_cached(request).hostname or ""
        self.paused_until[host] = max(self.paused_until.get(host, 0.0), time.monotonic() + wait)
        stats = self.crawler.stats
        stats.max_value("retry/backoff_wait_max_s", wait)
        stats.inc_value("retry/backoff_wait_total_s", wait)
        return new_request
