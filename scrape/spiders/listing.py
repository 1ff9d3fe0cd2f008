"""Spiders for planespotters.net listing pages.

* ``listing`` — any listing paths (``-a listings=/photos/latest,/photos/manufacturer/Boeing``);
* ``latest`` — ``/photos/latest``;
* ``manufacturer`` — ``/photos/manufacturer/<manufacturer>`` (``-a manufacturer=Boeing``);
* ``aircraft`` — ``/photos/aircraft/<manufacturer>/<type>``
  (``-a manufacturer=Airbus -a type=A220-100``).

Each follows ``?page=N`` (N = 2, 3, ...) until the no-results page or
``MAX_LISTING_PAGES``; each card becomes a :data:`scrape.items.PhotoItem` whose image the
pipelines download. Parsing is :func:`scrape.parse.parse_listing` (pure, no Scrapy).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

import scrapy

from scrape.identity import build_user_agent
from scrape.items import PhotoItem
from scrape.parse import parse_listing_checked, parse_photo_page, to_row


def page_url(listing_url: str, page: int) -> str:
    """``listing_url`` with its ``page`` query parameter set to ``page`` (page 1: as given).

    >>> page_url("https://x.org/photos/latest", 3)
    'https://x.org/photos/latest?page=3'
    """
    if page <= 1:
        return listing_url
    parts = urlsplit(listing_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "page"]
    query.append(("page", str(page)))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


class ListingSpider(scrapy.Spider):
    """Crawl listing pages; arguments (``-a``) override the settings of the same meaning:
    ``contact`` (CONTACT), ``base_url`` (BASE_URL), ``listings`` (comma-separated paths,
    LISTINGS), ``max_pages`` (MAX_LISTING_PAGES)."""

    name = "listing"

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        s = crawler.settings
        spider.ua_string = build_user_agent(
            kwargs.get("contact") or s.get("CONTACT"), s.get("USER_AGENT_PRODUCT"))
        if not s.frozen:  # settings are frozen only after the spider is created
            s.set("USER_AGENT", spider.ua_string, priority="spider")
        spider.base_url = kwargs.get("base_url") or s.get("BASE_URL")
        if not spider.base_url.endswith("/"):
            spider.base_url += "/"
        spider.max_pages = int(kwargs.get("max_pages") or s.getint("MAX_LISTING_PAGES"))
        spider.follow_photo_pages = s.getbool("FOLLOW_PHOTO_PAGES")
        host = urlsplit(spider.base_url).hostname or ""
        spider.allowed_domains = [host, *s.getlist("IMAGE_DOMAINS")]
        spider.listing_urls = [urljoin(spider.base_url, p.lstrip("/")) for p in spider.listing_paths(kwargs, s)]
        #: cards whose alt text disagreed with their links this run (the first 50; the crawl report)
        spider.alt_disagreements = []
        return spider

    def listing_paths(self, kwargs, settings) -> list[str]:
        """Listing paths to crawl (relative to the base URL)."""
        given = kwargs.get("listings")
        if given:
            return [p.strip() for p in str(given).split(",") if p.strip()]
        return list(settings.getlist("LISTINGS"))

    async def start(self):
        for url in self.listing_urls:
            yield scrapy.Request(url, callback=self.parse, dont_filter=True,
                                 cb_kwargs={"listing_url": url, "page": 1})

    def parse(self, response, listing_url: str, page: int):
        stats = self.crawler.stats
        parsed = parse_listing_checked(response.text, response.url)
        records = parsed.records
        stats.inc_value("listing/pages")
        if parsed.disagreements:
            stats.inc_value("labels/alt_disagreements", len(parsed.disagreements))
            room = 50 - len(self.alt_disagreements)
            self.alt_disagreements.extend({**d, "listing_url": response.url} for d in parsed.disagreements[:max(0, room)])
            for d in parsed.disagreements:
                self.logger.warning("Photo %s: %s %r from the links, %r from the alt text; keeping the links",
                                    d["source_id"], d["field"], d["links"], d["alt"])
        if not records:
            stats.inc_value("listing/no_results_pages")
            self.logger.info("No results on %s: end of listing %s", response.url, listing_url)
            return
        stats.inc_value("listing/cards", len(records))
        for rec in records:
            if not rec["icao_type"]:
                stats.inc_value("labels/unmapped_cards")
            item = PhotoItem(**to_row(rec), listing_url=response.url,
                             image_urls=[rec["image_url"]] if rec["image_url"] else [])
            if self.follow_photo_pages and rec["page_url"]:
                yield response.follow(rec["page_url"], callback=self.parse_photo, cb_kwargs={"item": item})
            else:
                yield item
        if self.max_pages == 0 or page < self.max_pages:
            # dont_filter: after a kill -9 the JOBDIR's seen-set may list pages whose cards
            # never reached metadata.csv; pages are cheap, rows are deduplicated by photo id.
            yield scrapy.Request(page_url(listing_url, page + 1), callback=self.parse, dont_filter=True,
                                 cb_kwargs={"listing_url": listing_url, "page": page + 1})

    def parse_photo(self, response, item):
        """Replace the card's image URL by the detail page's largest one, if any."""
        larger = parse_photo_page(response.text, response.url)["image_url"]
        if larger:
            item["image_url"] = larger
            item["image_urls"] = [larger]
            self.crawler.stats.inc_value("photo_pages/larger_image")
        yield item


class LatestSpider(ListingSpider):
    """``/photos/latest``."""

    name = "latest"

    def listing_paths(self, kwargs, settings):
        return ["/photos/latest"]


class ManufacturerSpider(ListingSpider):
    """``/photos/manufacturer/<manufacturer>`` (``-a manufacturer=Boeing``)."""

    name = "manufacturer"

    def listing_paths(self, kwargs, settings):
        m = kwargs.get("manufacturer")
        if not m:
            raise ValueError("the manufacturer spider needs -a manufacturer=NAME")
        return [f"/photos/manufacturer/{quote(m)}"]


class AircraftSpider(ListingSpider):
    """``/photos/aircraft/<manufacturer>/<type>`` (``-a manufacturer=Airbus -a type=A220-100``)."""

    name = "aircraft"

    def listing_paths(self, kwargs, settings):
        m, t = kwargs.get("manufacturer"), kwargs.get("type")
        if not (m and t):
            raise ValueError("the aircraft spider needs -a manufacturer=NAME -a type=TYPE")
        return [f"/photos/aircraft/{quote(m)}/{quote(t)}"]
