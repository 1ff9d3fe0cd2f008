"""Pure parsers for planespotters.net pages (parsel selectors over HTML text).

No Scrapy objects here: every function takes the page's HTML as ``str`` and a base URL,
and returns plain Python values, so the functions are unit-tested on saved pages and the
rules below can be re-implemented 1:1 with rvest/xml2 (the R parity tests compare the
output of ``python -m scrape parse`` field by field).

Parity spec (both the 2021 markup and the current Tailwind markup)
------------------------------------------------------------------
Text normalisation: :func:`scrape.labels.squish` (collapse Unicode whitespace, strip).
``urljoin``: RFC 3986 reference resolution (``urllib.parse.urljoin``); the result is not
percent-encoded (the saved A220 page's ``./… _files/…`` thumbnails keep their spaces).

Cards, in document order (XPath 1.0, :data:`CARD_XPATH`)::

    //*[@data-photo-url]
    | //a[contains(@href, '/photo/')][.//img[@alt]]
         [not(ancestor::*[@data-photo-url])][not(ancestor::footer)][not(ancestor::nav)]

then kept only when a photo id is found: the first match of ``/photo/(\\d+)`` in
``@data-photo-url``, else in the card's (or its first photo link's) ``@href``; else the
card's ``@id`` when it is all digits. Later cards with an id already seen are dropped.
(The "latest photos" strip in the 2021 footer has photo links with images; it is not a
listing result.)

Within a card ``C``: the photo link ``L`` is ``C`` itself when it is an ``a`` with a
``/photo/`` href, else ``(C//a[contains(@href, '/photo/')][.//img[@alt]])[1]``; the image
``I`` is ``(L//img[@alt])[1]``; ``alt`` = squish(``I/@alt``).

=================  ===================================================================
source_id          the photo id above
page_url           ``urljoin(base_url, href)`` of ``@data-photo-url`` or ``L/@href``
                   with query and fragment removed
image_url          largest-``w`` candidate of ``I/@srcset`` (ties: first), else
                   ``I/@src``, else ``I/@data-src``; ``urljoin(base_url, …)``
lines              non-empty squished ``text()`` children of ``(C//*[br])[last()]``
                   (2021: airline, type, location)
registration       ``(C//a[contains(@href,'/photos/reg/')])[1]``, else
                   ``(C//*[br])[last()]/div[1]/div[1]`` (2021 grid), else the first
                   word of ``alt``
msn                ``(C//*[br])[last()]/div[1]/div[2]`` (2021 only)
airline            ``(C//a[contains(@href,'/airline/')])[1]``, else ``lines[0]`` when
                   there are >= 2 lines, else from ``alt`` (see :func:`_split_alt`)
type_raw           ``(C//a[contains(@href,'/photos/aircraft/')])[1]``, else
                   ``lines[1]``, else from ``alt``
location           ``(C//a[contains(@href,'/photos/airport/')])[1]``, else
                   ``lines[2]``
date               texts of ``C//a[contains(@href,'/photos/date/')]`` joined by spaces,
                   parsed as "13 May 2024" → ``2024-05-13`` ("May 2024" →
                   ``2024-05``, "2024" → ``2024``); else ``""``
photographer       first ``C//text()`` whose squished value starts with "©", with the
                   "©" and following spaces removed
manufacturer_raw   :func:`scrape.labels.split_manufacturer` of ``type_raw``
manufacturer,      :func:`scrape.labels.normalise_type` (``type_rules.json``)
icao_type,
sub_model
=================  ===================================================================

A page is the *no-results page* when it has no card (the site answers "Sorry, we
couldn't find what you were looking for."), which ends pagination.
"""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import urljoin, urlsplit, urlunsplit

from parsel import Selector

from scrape.labels import normalise_type, split_manufacturer, squish, load_rules
from scrape.schema import COLUMNS, empty_row

CARD_XPATH = (
    "//*[@data-photo-url]"
    " | //a[contains(@href, '/photo/')][.//img[@alt]]"
    "[not(ancestor::*[@data-photo-url])][not(ancestor::footer)][not(ancestor::nav)]"
)

SOURCE = "planespotters"
LICENCE = "LicenseRef-All-Rights-Reserved"
"""Planespotters photos are the photographers' copyright (no SPDX licence applies)."""

DEFAULT_BASE_URL = "https://www.planespotters.net/"

#: Fields that :func:`parse_listing` fills (the rest of the schema comes from the image).
PARSED_FIELDS: tuple[str, ...] = (
    "source_id",
    "page_url",
    "image_url",
    "registration",
    "msn",
    "airline",
    "manufacturer_raw",
    "type_raw",
    "location",
    "date",
    "photographer",
    "manufacturer",
    "icao_type",
    "sub_model",
)

_PHOTO_ID = re.compile(r"/photo/(\d+)")
_SRCSET_ITEM = re.compile(r"^(\S+)(?:\s+(\d+)w)?$")
_ORDINAL = re.compile(r"^(\d{1,2})(?:st|nd|rd|th)$", re.IGNORECASE)


def _first_text(sel: Selector, xpath: str) -> str:
    """squish(string value) of the first node matched by ``xpath`` ('' when none)."""
    nodes = sel.xpath(xpath)
    if not nodes:
        return ""
    return squish(nodes[0].xpath("string(.)").get())


def _strip_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def largest_srcset_url(srcset: str) -> str:
    """The URL of the largest ``w`` descriptor in an HTML ``srcset`` ('' if empty).

    Candidates without a ``w`` descriptor count as width 0; ties keep the first.

    >>> largest_srcset_url("a_280.jpg 280w, a_640.jpg 640w")
    'a_640.jpg'
    """
    best, best_w = "", -1
    for item in srcset.split(","):
        m = _SRCSET_ITEM.match(item.strip())
        if not m:
            continue
        w = int(m.group(2) or 0)
        if w > best_w:
            best, best_w = m.group(1), w
    return best


def parse_date(parts: list[str]) -> str:
    """ISO 8601 date from the day/month/year link texts of a card.

    ``["13", "May", "2024"]`` → ``"2024-05-13"``; ``["May", "2024"]`` → ``"2024-05"``;
    ``["2024"]`` → ``"2024"``. Full or abbreviated English month names; ordinal
    suffixes ("13th") accepted. Anything else → ``""``.
    """
    parts = [_ORDINAL.sub(r"\1", squish(p)) for p in parts if squish(p)]
    text = " ".join(parts)
    for fmt, out in (("%d %B %Y", "%Y-%m-%d"), ("%d %b %Y", "%Y-%m-%d"),
                     ("%B %Y", "%Y-%m"), ("%b %Y", "%Y-%m"), ("%Y", "%Y")):
        try:
            return datetime.strptime(text, fmt).strftime(out)
        except ValueError:
            continue
    return ""


def _split_alt(alt: str, registration: str) -> tuple[str, str]:
    """(airline, type_raw) from an alt text "REG AIRLINE MANUFACTURER TYPE".

    The type starts at the last " <manufacturer> " (known multi-word prefixes, then
    "Airbus"/"Boeing"/"Bombardier"/"Embraer"/"ATR") after the registration; ('', '') when
    no manufacturer is found.
    """
    rest = alt
    if registration and alt.startswith(registration + " "):
        rest = alt[len(registration) + 1:]
    prefixes, _ = load_rules()
    makers = list(prefixes) + ["Airbus", "Boeing", "Bombardier", "Embraer", "ATR"]
    best = -1
    for m in makers:
        i = (" " + rest).rfind(" " + m + " ")
        if i > best:
            best = i
    if best < 0:
        return "", ""
    return squish(rest[:best]), squish(rest[best:])


def _card_record(card: Selector, base_url: str) -> dict[str, str] | None:
    is_photo_link = card.root.tag == "a" and "/photo/" in (card.attrib.get("href") or "")
    link = card if is_photo_link else None
    if link is None:
        links = card.xpath(".//a[contains(@href, '/photo/')][.//img[@alt]]")
        link = links[0] if links else None
    photo_url = card.attrib.get("data-photo-url") or (link.attrib.get("href") if link is not None else "") or ""
    m = _PHOTO_ID.search(photo_url)
    if m:
        source_id = m.group(1)
    elif (card.attrib.get("id") or "").isdigit():
        source_id = card.attrib["id"]
    else:
        return None

    img = link.xpath(".//img[@alt]") if link is not None else card.xpath(".//img[@alt]")
    img = img[0] if img else None
    alt = squish(img.attrib.get("alt")) if img is not None else ""
    image_url = ""
    if img is not None:
        image_url = (largest_srcset_url(img.attrib.get("srcset") or "")
                     or (img.attrib.get("src") or "").strip()
                     or (img.attrib.get("data-src") or "").strip())
    if image_url:
        image_url = urljoin(base_url, image_url)
    page_url = _strip_query(urljoin(base_url, photo_url.strip())) if photo_url else ""

    data_box = card.xpath("(.//*[br])[last()]")
    lines: list[str] = []
    grid_reg = grid_msn = ""
    if data_box:
        lines = [t for t in (squish(x) for x in data_box[0].xpath("text()").getall()) if t]
        grid_reg = _first_text(data_box[0], "div[1]/div[1]")
        grid_msn = _first_text(data_box[0], "div[1]/div[2]")

    registration = (_first_text(card, "(.//a[contains(@href, '/photos/reg/')])[1]")
                    or grid_reg or (alt.split(" ", 1)[0] if alt else ""))
    alt_airline, alt_type = _split_alt(alt, registration)
    airline = (_first_text(card, "(.//a[contains(@href, '/airline/')])[1]")
               or (lines[0] if len(lines) >= 2 else "") or alt_airline)
    type_raw = (_first_text(card, "(.//a[contains(@href, '/photos/aircraft/')])[1]")
                or (lines[1] if len(lines) >= 2 else "") or alt_type)
    location = (_first_text(card, "(.//a[contains(@href, '/photos/airport/')])[1]")
                or (lines[2] if len(lines) >= 3 else ""))
    date = parse_date(card.xpath(".//a[contains(@href, '/photos/date/')]").xpath("string(.)").getall())
    photographer = ""
    for t in card.xpath(".//text()").getall():
        t = squish(t)
        if t.startswith("©"):
            photographer = squish(t[1:])
            break

    manufacturer_raw = split_manufacturer(type_raw)
    label = normalise_type(type_raw, manufacturer_raw)
    return {
        "source_id": source_id,
        "page_url": page_url,
        "image_url": image_url,
        "registration": registration,
        "msn": grid_msn,
        "airline": airline,
        "manufacturer_raw": manufacturer_raw,
        "type_raw": type_raw,
        "location": location,
        "date": date,
        "photographer": photographer,
        "manufacturer": label.manufacturer,
        "icao_type": label.icao_type,
        "sub_model": label.sub_model,
    }


def parse_listing(html: str, base_url: str = DEFAULT_BASE_URL) -> list[dict[str, str]]:
    """Parse a listing page (or a fragment of cards) into one record per photo card.

    ``html``: the page as text (any encoding already decoded). ``base_url``: the URL the
    page was fetched from, used to resolve relative links. Returns a list (document
    order, duplicates by photo id dropped) of dicts with exactly :data:`PARSED_FIELDS`
    as keys, every value a ``str`` (``""`` when absent). ``[]`` for the no-results page.
    Raises ``TypeError`` when ``html`` is not a ``str``.
    """
    if not isinstance(html, str):
        raise TypeError(f"html must be str, not {type(html).__name__}")
    sel = Selector(text=html, type="html")
    records, seen = [], set()
    for card in sel.xpath(CARD_XPATH):
        rec = _card_record(card, base_url)
        if rec is None or rec["source_id"] in seen:
            continue
        seen.add(rec["source_id"])
        records.append(rec)
    return records


def attribution(photographer: str, page_url: str) -> str:
    """Human-readable credit line: ``"Photo © <photographer> via Planespotters.net, <page_url>"``
    ('' when both are empty; parts that are empty are left out)."""
    if not photographer and not page_url:
        return ""
    credit = f"Photo © {photographer} via Planespotters.net" if photographer else "Photo via Planespotters.net"
    return f"{credit}, {page_url}" if page_url else credit


def to_row(record: dict[str, str]) -> dict[str, str]:
    """A full schema row (:data:`scrape.schema.COLUMNS`) from a parsed record: the parsed
    fields, ``source``, ``attribution`` and ``licence``; image columns stay ``""``."""
    row = empty_row()
    for k in PARSED_FIELDS:
        row[k] = record.get(k, "")
    row["source"] = SOURCE
    row["attribution"] = attribution(row["photographer"], row["page_url"])
    row["licence"] = LICENCE
    assert tuple(row) == COLUMNS
    return row


def next_page_url(html: str, base_url: str) -> str:
    """The ``rel="next"`` link of a listing page resolved against ``base_url`` ('' when
    absent). The spider does not rely on it (it pages with ``?page=N`` until the
    no-results page), but it is parsed for the record."""
    href = Selector(text=html, type="html").xpath(
        "(//link[@rel='next'] | //a[@rel='next'])[1]/@href").get()
    return urljoin(base_url, href.strip()) if href else ""


def is_no_results(html: str) -> bool:
    """True when the page has no photo card (the site's "Sorry, we couldn't find …")."""
    return not parse_listing(html)


def parse_photo_page(html: str, base_url: str = DEFAULT_BASE_URL) -> dict[str, str]:
    """Parse a photo detail page ``/photo/<id>/…`` for its largest image.

    Returns ``{"image_url": …}``: the largest-``w`` candidate of any ``img[@srcset]``
    whose ``srcset`` mentions the photo id from ``og:url``/canonical link when present,
    else the ``og:image`` meta content; resolved against ``base_url``; '' when none.
    """
    sel = Selector(text=html, type="html")
    page = (sel.xpath("//meta[@property='og:url']/@content").get()
            or sel.xpath("//link[@rel='canonical']/@href").get() or "")
    m = _PHOTO_ID.search(page)
    url = ""
    if m:
        for srcset in sel.xpath("//img[@srcset]/@srcset").getall():
            if m.group(1) in srcset:
                url = largest_srcset_url(srcset)
                break
    if not url:
        url = (sel.xpath("//meta[@property='og:image']/@content").get() or "").strip()
    return {"image_url": urljoin(base_url, url) if url else ""}
