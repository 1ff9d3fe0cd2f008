"""Politeness building blocks and the safe defaults of the settings."""

from __future__ import annotations

import email.utils

import pytest
from scrapy.settings import Settings

from scrape import settings as project_settings
from scrape.identity import ContactRequiredError, build_user_agent, contact_url
from scrape.middlewares import effective_delay, parse_retry_after


def test_safe_defaults():
    s = Settings()
    s.setmodule(project_settings, priority="project")
    assert s.getbool("ROBOTSTXT_OBEY") and s.getbool("ROBOTSTXT_CRAWL_DELAY")
    assert s.get("ROBOTSTXT_PARSER") == "scrapy.robotstxt.ProtegoRobotParser"
    assert s.getbool("AUTOTHROTTLE_ENABLED")
    assert s.getint("CONCURRENT_REQUESTS_PER_DOMAIN") == 1
    assert s.getfloat("DOWNLOAD_DELAY") >= 1.0 and s.getfloat("DOWNLOAD_DELAY_JITTER") == 0.0
    assert {429, 500, 502, 503, 504} <= set(s.getlist("RETRY_HTTP_CODES"))
    assert s.getint("RETRY_TIMES") >= 2 and s.getfloat("RETRY_BACKOFF_BASE") >= 1.0
    assert s.getint("MAX_LISTING_PAGES") == 1 and s.get("CONTACT") == ""
    assert not s.getbool("HTTPCACHE_ENABLED") and 429 in s.getlist("HTTPCACHE_IGNORE_HTTP_CODES")
    assert not s.getbool("REMOTE_CONTROL_ENABLED") and not s.getbool("TELNETCONSOLE_ENABLED")
    mws = s.getdict("DOWNLOADER_MIDDLEWARES")
    assert mws["scrapy.downloadermiddlewares.retry.RetryMiddleware"] is None
    assert mws["scrape.middlewares.CrawlDelayMiddleware"] > 100  # after RobotsTxtMiddleware
    assert s.getdict("EXTENSIONS")["scrapy.extensions.throttle.AutoThrottle"] is None


def test_effective_delay():
    assert effective_delay(2.0, 10) == 10.0
    assert effective_delay(2.0, 0.5) == 2.0
    assert effective_delay(1.5, None) == 1.5


def test_parse_retry_after():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(b"3") == 3.0
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None and parse_retry_after("") is None


@pytest.mark.parametrize("contact,url", [
    ("you@example.org", "mailto:you@example.org"),
    ("mailto:you@example.org", "mailto:you@example.org"),
    ("https://example.org/bot", "https://example.org/bot"),
])
def test_contact_url(contact, url):
    assert contact_url(contact) == url


@pytest.mark.parametrize("contact", [None, "", "   ", "nobody", "ftp://x.org", "a b@c.d"])
def test_contact_required(contact):
    with pytest.raises(ContactRequiredError, match="contact"):
        build_user_agent(contact)


def test_user_agent_format():
    assert build_user_agent("you@example.org") == "planespotter/0.1 (+mailto:you@example.org)"
