"""Pure parsers for planespotters.net pages (parsel selectors over HTML text).

No Scrapy objects here: every function takes the page's HTML as ``str`` and a base URL,
and returns plain Python values, so the functions are unit-tested on saved pages and the
rules below can be re-implemented 1:1 with rvest/xml2 (the R parity tests compare the
output of ``python -m scrape parse`` field by field).

Parity spec (both the 2021 markup and the current Tailwind markup)
------------------------------------------------------------------
Text normalisation: :func:`dataset.labels.squish` (collapse Unicode whitespace, strip).
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
msn                ``(C//*[br])[last()]/div[1]/div[2]`` (2021 grid), else the span
                   beside the registration (current markup, ``<span>9M-XXB</span>
                   <span class="text-gray-500">1405</span>``): the first element of
                   ``C//*[following-sibling::*[1][self::span]]`` (document order)
                   whose squished string is the registration; its
                   ``following-sibling::*[1]``
airline            ``(C//a[contains(@href,'/airline/')])[1]``, else ``lines[0]`` when
                   there are >= 2 lines, else from ``alt`` (see :func:`_split_alt`)
location           ``(C//a[contains(@href,'/photos/airport/')])[1]``, else
                   ``lines[2]``
date               texts of ``C//a[contains(@href,'/photos/date/')]`` joined by spaces,
                   parsed as "13 May 2024" → ``2024-05-13`` ("May 2024" →
                   ``2024-05``, "2024" → ``2024``); else ``""``
photographer       first ``C//text()`` whose squished value starts with "©", with the
                   "©" and following spaces removed
=================  ===================================================================

Manufacturer and type. Today's cards write the sub-model alone in the aircraft link
(``<a href="/photos/aircraft/Boeing/747-400">747-446</a>``); the manufacturer is in a
sibling link (``<a href="/photos/manufacturer/Boeing">Boeing</a>``), in the aircraft
link's href and in ``alt``. The 2021 cards write "Manufacturer Type" in a text line.

* ``T`` = squish(string) of ``(C//a[contains(@href,'/photos/aircraft/')])[1]``; its
  ``@href``'s path after the first ``/photos/aircraft/`` (up to ``?``/``#``), split on
  ``/`` with empty segments dropped, gives, when it has at least two segments,
  ``href_maker`` (segment 1) and ``family`` (segment 2), each percent-decoded as UTF-8
  (:func:`_unquote`) and squished; with fewer both are ``""``.
* ``link_maker`` = squish(string) of ``(C//a[contains(@href,'/photos/manufacturer/')])[1]``,
  else that link's decoded path segment after ``/photos/manufacturer/``, else
  ``href_maker``. ``alt_type`` is the type part of ``alt`` (:func:`_split_alt`),
  ``alt_maker`` = ``split_manufacturer(alt_type)``; ``maker`` = ``link_maker`` or
  ``alt_maker``.
* ``base`` = ``T``, else ``lines[1]`` (>= 2 lines), else ``alt_type``.
  ``type_raw`` = ``base`` when it already names a manufacturer (it starts with
  ``maker + " "``, case-insensitively, or its :func:`~dataset.labels.split_manufacturer`
  is one of :func:`known_makers`, compared case-insensitively), else
  squish(``maker + " " + base``) (``base`` alone when there is no maker).
* ``manufacturer_raw`` = ``link_maker``, else ``split_manufacturer(type_raw)``.
* labels = ``normalise_type(type_raw, split_manufacturer(type_raw) or manufacturer_raw)``;
  when that gives no ICAO designator and ``family`` is not empty, the family completes
  it: ``normalise_type(family, link_maker)`` is used when it has one
  (``/photos/aircraft/Airbus/A220-100`` + ``BD-500-1A10`` → Airbus / BCS1 / A220-100).

Disagreements (Python only; they do not change the CSV): when the card has link sources
(``link_maker`` or ``T``) and an ``alt_type``, ``normalise_type(alt_type)`` is compared with
the labels above; a different manufacturer class, else two different non-empty ICAO
designators, is one disagreement. The links are kept; the crawl counts them in
``crawl_report.json`` (``labels.alt_text_disagreements``) and ``python -m scrape parse``
reports them on stderr.

A page is the *no-results page* when it has no card (the site answers "Sorry, we
couldn't find what you were looking for."), which ends pagination.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from parsel import Selector

from dataset.labels import normalise_type, split_manufacturer, squish, load_rules
from dataset.schema import COLUMNS, empty_row

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
_AIRCRAFT_PATH = re.compile(r"/photos/aircraft/([^?#]*)")
_MAKER_PATH = re.compile(r"/photos/manufacturer/([^/?#]*)")
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


def known_makers() -> tuple[str, ...]:
    """Manufacturer names that may open a type string: the multi-word prefixes of
    ``type_rules.json`` (longest first), then ``Airbus``, ``Boeing``, ``Bombardier``,
    ``Embraer``, ``ATR``. Used to split alt texts and to tell whether a type string
    already names its manufacturer."""
    prefixes, _ = load_rules()
    return (*prefixes, "Airbus", "Boeing", "Bombardier", "Embraer", "ATR")


def _split_alt(alt: str, registration: str) -> tuple[str, str]:
    """(airline, type_raw) from an alt text "REG AIRLINE MANUFACTURER TYPE".

    The type starts at the last " <manufacturer> " (:func:`known_makers`, case-sensitive)
    after the registration; ('', '') when no manufacturer is found.
    """
    rest = alt
    if registration and alt.startswith(registration + " "):
        rest = alt[len(registration) + 1:]
    best = -1
    for m in known_makers():
        i = (" " + rest).rfind(" " + m + " ")
        if i > best:
            best = i
    if best < 0:
        return "", ""
    return squish(rest[:best]), squish(rest[best:])


def _unquote(segment: str) -> str:
    """A URL path segment percent-decoded as UTF-8 and squished; when the decoded bytes are
    not UTF-8 or hold a NUL, the segment as given (squished)."""
    try:
        text = unquote(segment, errors="strict")
    except UnicodeDecodeError:
        return squish(segment)
    return squish(segment if "\x00" in text else text)


def _names_maker(type_text: str, maker: str) -> bool:
    """True when ``type_text`` already starts with a manufacturer (``maker`` or one of
    :func:`known_makers`, case-insensitively)."""
    low = type_text.lower()
    if maker and low.startswith(maker.lower() + " "):
        return True
    first = split_manufacturer(type_text).lower()
    return any(first == k.lower() for k in known_makers())


def _msn_beside(card: Selector, registration: str) -> str:
    """The text of the span right after the element holding the registration ('' if none)."""
    if not registration:
        return ""
    for el in card.xpath(".//*[following-sibling::*[1][self::span]]"):
        if squish(el.xpath("string(.)").get()) == registration:
            return squish(el.xpath("following-sibling::*[1]")[0].xpath("string(.)").get())
    return ""


@dataclass
class ParsedListing:
    """What :func:`parse_listing_checked` found on a page.

    ``records``: as :func:`parse_listing` returns them. ``disagreements``: one dict per
    card whose alt text contradicts its links (``source_id``, ``field`` — ``manufacturer``
    or ``icao_type`` —, ``links`` — the value kept —, ``alt``), in card order.
    """

    records: list[dict[str, str]] = field(default_factory=list)
    disagreements: list[dict[str, str]] = field(default_factory=list)


def _card_record(card: Selector, base_url: str) -> tuple[dict[str, str], list[dict[str, str]]] | None:
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
    msn = grid_msn or _msn_beside(card, registration)
    alt_airline, alt_type = _split_alt(alt, registration)
    airline = (_first_text(card, "(.//a[contains(@href, '/airline/')])[1]")
               or (lines[0] if len(lines) >= 2 else "") or alt_airline)
    location = (_first_text(card, "(.//a[contains(@href, '/photos/airport/')])[1]")
                or (lines[2] if len(lines) >= 3 else ""))
    date = parse_date(card.xpath(".//a[contains(@href, '/photos/date/')]").xpath("string(.)").getall())
    photographer = ""
    for t in card.xpath(".//text()").getall():
        t = squish(t)
        if t.startswith("©"):
            photographer = squish(t[1:])
            break

    # manufacturer and type (module docstring: "Manufacturer and type")
    type_link = card.xpath("(.//a[contains(@href, '/photos/aircraft/')])[1]")
    type_text = href_maker = family = ""
    if type_link:
        type_text = squish(type_link[0].xpath("string(.)").get())
        m = _AIRCRAFT_PATH.search(type_link[0].attrib.get("href") or "")
        segments = [x for x in m.group(1).split("/") if x] if m else []
        if len(segments) >= 2:  # /photos/aircraft/<manufacturer>/<family>; one segment is ambiguous
            href_maker, family = _unquote(segments[0]), _unquote(segments[1])
    link_maker = ""
    maker_link = card.xpath("(.//a[contains(@href, '/photos/manufacturer/')])[1]")
    if maker_link:
        m = _MAKER_PATH.search(maker_link[0].attrib.get("href") or "")
        link_maker = squish(maker_link[0].xpath("string(.)").get()) or (_unquote(m.group(1)) if m else "")
    link_maker = link_maker or href_maker
    maker = link_maker or split_manufacturer(alt_type)
    base = type_text or (lines[1] if len(lines) >= 2 else "") or alt_type
    type_raw = base if (not maker or not base or _names_maker(base, maker)) else squish(f"{maker} {base}")
    manufacturer_raw = link_maker or split_manufacturer(type_raw)
    label = normalise_type(type_raw, split_manufacturer(type_raw) or manufacturer_raw)
    if not label.icao_type and family:
        completed = normalise_type(family, link_maker)
        if completed.icao_type:
            label = completed

    disagreements = []
    if alt_type and (link_maker or type_text):
        alt_label = normalise_type(alt_type, split_manufacturer(alt_type))
        if alt_label.manufacturer != label.manufacturer:
            disagreements.append({"source_id": source_id, "field": "manufacturer",
                                  "links": label.manufacturer, "alt": alt_label.manufacturer})
        elif alt_label.icao_type and label.icao_type and alt_label.icao_type != label.icao_type:
            disagreements.append({"source_id": source_id, "field": "icao_type",
                                  "links": label.icao_type, "alt": alt_label.icao_type})
    return {
        "source_id": source_id,
        "page_url": page_url,
        "image_url": image_url,
        "registration": registration,
        "msn": msn,
        "airline": airline,
        "manufacturer_raw": manufacturer_raw,
        "type_raw": type_raw,
        "location": location,
        "date": date,
        "photographer": photographer,
        "manufacturer": label.manufacturer,
        "icao_type": label.icao_type,
        "sub_model": label.sub_model,
    }, disagreements


def parse_listing(html: str, base_url: str = DEFAULT_BASE_URL) -> list[dict[str, str]]:
    """Parse a listing page (or a fragment of cards) into one record per photo card.

    ``html``: the page as text (any encoding already decoded). ``base_url``: the URL the
    page was fetched from, used to resolve relative links. Returns a list (document
    order, duplicates by photo id dropped) of dicts with exactly :data:`PARSED_FIELDS`
    as keys, every value a ``str`` (``""`` when absent). ``[]`` for the no-results page.
    Raises ``TypeError`` when ``html`` is not a ``str``.
    """
    return parse_listing_checked(html, base_url).records


def parse_listing_checked(html: str, base_url: str = DEFAULT_BASE_URL) -> ParsedListing:
    """:func:`parse_listing` plus the cards whose alt text disagrees with their links
    (module docstring, "Disagreements"). Same arguments and errors."""
    if not isinstance(html, str):
        raise TypeError(f"html must be str, not {type(html).__name__}")
    sel = Selector(text=html, type="html")
    out, seen = ParsedListing(), set()
    for card in sel.xpath(CARD_XPATH):
        parsed = _card_record(card, base_url)
        if parsed is None or parsed[0]["source_id"] in seen:
            continue
        rec, disagreements = parsed
        seen.add(rec["source_id"])
        out.records.append(rec)
        out.disagreements.extend(disagreements)
    return out


def attribution(photographer: str, page_url: str) -> str:
    """Human-readable credit line: ``"Photo © <photographer> via Planespotters.net, <page_url>"``
    ('' when both are empty; parts that are empty are left out)."""
    if not photographer and not page_url:
        return ""
    credit = f"Photo © {photographer} via Planespotters.net" if photographer else "Photo via Planespotters.net"
    return f"{credit}, {page_url}" if page_url else credit


def to_row(record: dict[str, str]) -> dict[str, str]:
    """A full schema row (:data:`dataset.schema.COLUMNS`) from a parsed record: the parsed
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
