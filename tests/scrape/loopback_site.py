"""A planespotters.net stand-in on 127.0.0.1 for the crawl tests (stdlib http.server).

Serves, on a free loopback port:

* ``/robots.txt`` — ``Disallow: /photos/private`` and ``Crawl-delay: <crawl_delay>``;
* ``/photos/aircraft/Airbus/A220-100`` — the real saved 2021 page (48 cards) from
  ``../shared/data/planespotters-html``; ``?page=2`` is the real saved no-results page;
  its ``…_files/*_280.jpg`` thumbnails are real photos (re-encoded smoke-airliners);
* ``/photos/latest`` pages 1-3 — generated in the current (Tailwind) markup, 8 cards a
  page, ``srcset`` 280w/640w; page 4 is the no-results page. Page 2 answers 429 with
  ``Retry-After: 1`` the first time, page 3 answers 500 the first time;
* cards 13-24 of ``/photos/latest`` show the photos of cards 1-12 cropped and mirrored
  (different pHash); special images: one with EXIF GPS, one too small (120 px wide), one
  truncated (half its bytes), one near-duplicate (same photo, other size and quality),
  and one card of a type the label table does not know (a Cessna);
* ``/photos/today`` — one page of cards in today's markup (:data:`TODAY_CARDS`: the
  sub-model alone in the aircraft link, the manufacturer in a sibling link, the MSN in a
  span beside the registration), with real JPEGs; page 2 is the no-results page;
* ``/photos/private`` — a listing that robots.txt disallows;
* ``/photo/<id>/<slug>`` — a detail page whose ``og:image`` is the 1200 px image.

Every request is logged (monotonic time, path, User-Agent) and the peak number of
requests in flight is tracked. ``latency`` adds a sleep to every response.
"""

from __future__ import annotations

import hashlib
import html
import io
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit, parse_qs

from PIL import Image, ImageOps

SHARED = Path("/work/shared/data")
HTML_DIR = SHARED / "planespotters-html"
SMOKE_DIR = SHARED / "smoke-airliners"
A220_PAGE = HTML_DIR / "photos_aircraft_Airbus_A220-100_page1_2021-04.html"
NO_RESULTS_PAGE = HTML_DIR / "photos_aircraft_no-results_2021-04.html"

#: (smoke file, airline, type as the site writes it) for the generated cards
SMOKE_CARDS = [
    ("airbus_a340-300_lufthansa.jpg", "Lufthansa", "Airbus A340-313X"),
    ("airbus_a340-500_emirates.jpg", "Emirates", "Airbus A340-541"),
    ("airbus_a380_airbus-house.jpg", "Airbus Industrie", "Airbus A380-841"),
    ("airbus_a380_airbus-house_bourget2017.jpg", "Airbus Industrie", "Airbus A380-861"),
    ("airbus_a380_british-airways.jpg", "British Airways", "Airbus A380-841"),
    ("airbus_a380_emirates.jpg", "Emirates", "Airbus A380-861"),
    ("boeing_737-700_southwest_N730SW.jpg", "Southwest Airlines", "Boeing 737-7H4(WL)"),
    ("boeing_737-800_continental.jpg", "Continental Airlines", "Boeing 737-824(WL)"),
    ("boeing_737_underside.jpg", "Private", "Boeing 737-8AS(WL)"),
    ("boeing_747_white.jpg", "Boeing Company", "Boeing 747-400"),
    ("boeing_767.jpg", "Delta Air Lines", "Boeing 767-332(ER)"),
    ("boeing_777_turkish.jpg", "Turkish Airlines", "Boeing 777-3F2(ER)"),
]
LATEST_PAGES = 3
CARDS_PER_PAGE = 8
FIRST_ID = 2000001
#: photo ids of the special cards on /photos/latest
GPS_ID, TINY_ID, TRUNCATED_ID, NEAR_DUP_ID, UNKNOWN_TYPE_ID = 2000003, 2000006, 2000010, 2000013, 2000020
NEAR_DUP_OF_ID = 2000001  # NEAR_DUP_ID shows the same photo as this one

_ROBOTS = "User-agent: *\nDisallow: /photos/private\nCrawl-delay: {delay}\n"


def _jpeg(im: Image.Image, width: int, quality: int = 85, exif: bytes | None = None) -> bytes:
    h = max(1, round(im.height * width / im.width))
    out = im.resize((width, h), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=quality, **({"exif": exif} if exif else {}))
    return buf.getvalue()


def _gps_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 5.0), 3: "E", 4: (13.0, 24.0, 6.0)}
    return exif.tobytes()


_SMOKE_CACHE: dict[str, Image.Image] = {}


def smoke_image(name: str) -> Image.Image:
    """A smoke-airliners photo decoded at reduced size (JPEG draft mode), RGB."""
    if name not in _SMOKE_CACHE:
        im = Image.open(SMOKE_DIR / name)
        im.draft("RGB", (800, 600))
        im = im.convert("RGB")
        if im.width > 800:
            im = im.resize((800, round(im.height * 800 / im.width)), Image.Resampling.BILINEAR)
        _SMOKE_CACHE[name] = im
    return _SMOKE_CACHE[name]


@dataclass
class Card:
    photo_id: int
    registration: str
    airline: str
    type_raw: str
    smoke: str
    photographer: str
    location: str
    day: int
    mirrored: bool = False

    @property
    def slug(self) -> str:
        return "-".join("".join(c if c.isalnum() else " " for c in f"{self.registration} {self.airline} {self.type_raw}").lower().split())


def latest_cards() -> list[Card]:
    """The generated cards of /photos/latest, pages 1..LATEST_PAGES, in order."""
    cards = []
    for i in range(LATEST_PAGES * CARDS_PER_PAGE):
        pid = FIRST_ID + i
        smoke, airline, type_raw = SMOKE_CARDS[i % len(SMOKE_CARDS)]
        if pid == NEAR_DUP_ID:
            smoke, airline, type_raw = SMOKE_CARDS[(NEAR_DUP_OF_ID - FIRST_ID) % len(SMOKE_CARDS)]
        if pid == UNKNOWN_TYPE_ID:
            airline, type_raw = "Private", "Cessna 172S Skyhawk SP"
        mirrored = i >= len(SMOKE_CARDS) and pid != NEAR_DUP_ID  # a different photo of the type
        cards.append(Card(pid, f"D-T{i:03d}", airline, type_raw, smoke, f"Photographer Ö{i % 5}",
                          "Frankfurt am Main (FRA / EDDF)", 1 + i % 28, mirrored))
    return cards


def card_html(c: Card) -> str:
    """One card in the current (Tailwind) markup, as described in the shared README."""
    e = html.escape
    maker, _, model = c.type_raw.partition(" ")
    img = f"/img/{c.photo_id}_{c.photo_id % 997:03x}"
    return f"""
<div class="photo-card-clickable group relative cursor-pointer rounded-lg shadow" id="{c.photo_id}" data-photo-url="/photo/{c.photo_id}/{c.slug}">
  <a href="/photo/{c.photo_id}/{c.slug}" class="block">
    <img class="mx-auto w-full h-auto object-cover" loading="lazy" src="{img}_280.jpg"
         srcset="{img}_280.jpg 280w, {img}_640.jpg 640w" alt="{e(c.registration)} {e(c.airline)} {e(c.type_raw)}">
  </a>
  <div class="absolute bottom-2 right-2 text-xs text-white"><span class="drop-shadow-lg">&copy; {e(c.photographer)}</span></div>
  <div class="p-2 text-sm leading-tight">
    <div class="flex justify-between"><a class="font-bold" href="/photos/reg/{e(c.registration)}">{e(c.registration)}</a></div>
    <a class="block truncate" href="/airline/{e(c.airline.replace(' ', '-'))}">{e(c.airline)}</a>
    <a class="block truncate" href="/photos/aircraft/{e(maker)}/{e(model)}">{e(c.type_raw)}</a>
    <a class="block truncate" href="/photos/airport/FRA" title="{e(c.location)}">{e(c.location)}</a>
    <div class="text-gray-500"><a href="/photos/date/2024-05-{c.day:02d}">{c.day}</a> <a href="/photos/date/2024-05">May</a> <a href="/photos/date/2024">2024</a></div>
  </div>
</div>"""


def listing_html(cards: list[Card], title: str, next_href: str | None) -> str:
    nxt = f'<a rel="next" href="{next_href}">Next Page</a>' if next_href else ""
    body = "\n".join(card_html(c) for c in cards)
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} | Planespotters.net</title></head>
<body class="bg-gray-100"><nav class="flex"><a href="/photos/latest">Latest</a></nav>
<main class="container mx-auto"><h1 class="text-2xl">{html.escape(title)}</h1>
<div class="grid grid-cols-4 gap-4">{body}</div><div class="flex justify-center">{nxt}</div></main>
<footer class="mt-8"><a href="/legal/termsofuse">Terms</a></footer></body></html>"""


@dataclass(frozen=True)
class TodayCard:
    """A card in today's planespotters markup (the shape the issue describes): the aircraft
    link's text is the sub-model alone (``<a href="/photos/aircraft/Airbus/A330-300">A330-343</a>``),
    the manufacturer is in a sibling ``/photos/manufacturer/`` link (when ``maker_link``), in the
    aircraft href and in the alt text, and the MSN sits in a grey span beside the registration
    (inside a ``/photos/reg/`` link when ``reg_link``, else a bare span)."""

    photo_id: int
    registration: str
    msn: str
    airline: str
    aircraft_href: str  # path of the aircraft link, e.g. /photos/aircraft/Boeing/747-400
    type_text: str  # the aircraft link's text, e.g. 747-446
    alt_type: str  # "Manufacturer Type" as the image's alt text writes it
    maker_link: str = ""  # text of the /photos/manufacturer/<text> link ('' = no such link)
    reg_link: bool = True
    smoke: str = "airbus_a380_emirates.jpg"

    @property
    def slug(self) -> str:
        text = f"{self.registration} {self.airline} {self.alt_type}"
        return "-".join("".join(c if c.isalnum() else " " for c in text).lower().split())


#: The cards of /photos/today and of the saved-fragment tests (ids 2100001...).
TODAY_CARDS = [
    TodayCard(2100001, "9M-XXB", "1405", "AirAsia X", "/photos/aircraft/Airbus/A330-300", "A330-343",
              "Airbus A330-343", maker_link="Airbus", smoke="airbus_a340-300_lufthansa.jpg"),
    TodayCard(2100002, "JA8913", "26350", "Japan Airlines", "/photos/aircraft/Boeing/747-400", "747-446",
              "Boeing 747-446", reg_link=False, smoke="boeing_747_white.jpg"),
    TodayCard(2100003, "D-AIEA", "10150", "Lufthansa", "/photos/aircraft/Airbus/A321neo", "A321-271NX",
              "Airbus A321-271NX", maker_link="Airbus", smoke="airbus_a340-500_emirates.jpg"),
    TodayCard(2100004, "N8704Q", "42558", "Southwest Airlines", "/photos/aircraft/Boeing/737%20MAX%208",
              "737-8 MAX", "Boeing 737-8 MAX", reg_link=False, smoke="boeing_737-700_southwest_N730SW.jpg"),
    TodayCard(2100005, "F-HTYA", "0331", "Air France", "/photos/aircraft/Airbus/A350-900", "A350-941",
              "Airbus A350-941", maker_link="Airbus", smoke="airbus_a380_british-airways.jpg"),
    TodayCard(2100006, "N420LA", "35818", "LATAM Cargo", "/photos/aircraft/Boeing/767-300", "767-316F(ER)",
              "Boeing 767-316F(ER)", reg_link=False, smoke="boeing_767.jpg"),
    # the link text alone maps to no type: the href's family completes it
    TodayCard(2100007, "HB-JBA", "50010", "Swiss", "/photos/aircraft/Airbus/A220-100", "BD-500-1A10",
              "Airbus A220-100", maker_link="Airbus", smoke="airbus_a380_airbus-house.jpg"),
    # no manufacturer link and an href without a manufacturer segment: the alt text gives it
    TodayCard(2100008, "G-EUPT", "1380", "British Airways", "/photos/aircraft/A319-100", "A319-131",
              "Airbus A319-131", reg_link=False, smoke="airbus_a380_airbus-house_bourget2017.jpg"),
    # the alt text contradicts the links (manufacturer; then type): the links win, counted
    TodayCard(2100009, "B-HLW", "1178", "Cathay Pacific", "/photos/aircraft/Airbus/A330-300", "A330-343",
              "Boeing 777-367", maker_link="Airbus", smoke="boeing_777_turkish.jpg"),
    TodayCard(2100010, "TC-JJU", "44125", "Turkish Airlines", "/photos/aircraft/Boeing/777-300",
              "777-3F2(ER)", "Boeing 777-FF2", reg_link=False, smoke="boeing_737-800_continental.jpg"),
]


def today_card_html(c: TodayCard) -> str:
    """One card in today's markup (see :class:`TodayCard`)."""
    e = html.escape
    img = f"/img/{c.photo_id}_{c.photo_id % 997:03x}"
    reg = f'<span class="font-semibold">{e(c.registration)}</span>'
    if c.reg_link:
        reg = f'<a href="/photos/reg/{e(c.registration)}">{reg}</a>'
    maker = (f'<a class="hover:underline" href="/photos/manufacturer/{e(c.maker_link)}">{e(c.maker_link)}</a> '
             if c.maker_link else "")
    return f"""
<div class="photo-card-clickable group relative cursor-pointer rounded-lg shadow" id="{c.photo_id}" data-photo-url="/photo/{c.photo_id}/{c.slug}">
  <a href="/photo/{c.photo_id}/{c.slug}" class="block">
    <img class="mx-auto w-full h-auto object-cover" loading="lazy" src="{img}_280.jpg"
         srcset="{img}_280.jpg 280w, {img}_640.jpg 640w" alt="{e(c.registration)} {e(c.airline)} {e(c.alt_type)}">
  </a>
  <div class="absolute bottom-2 right-2 text-xs text-white"><span class="drop-shadow-lg">&copy; Spotter {c.photo_id % 7}</span></div>
  <div class="p-2 text-sm leading-tight">
    <div class="flex gap-1">{reg}<span class="text-gray-500">{e(c.msn)}</span></div>
    <a class="block truncate" href="/airline/{e(c.airline.replace(' ', '-'))}">{e(c.airline)}</a>
    <div class="truncate">{maker}<a class="hover:underline" href="{c.aircraft_href}">{e(c.type_text)}</a></div>
    <a class="block truncate" href="/photos/airport/KUL">Kuala Lumpur International (KUL / WMKK)</a>
    <div class="text-gray-500"><a href="/photos/date/2025-03-14">14</a> <a href="/photos/date/2025-03">Mar</a> <a href="/photos/date/2025">2025</a></div>
  </div>
</div>"""


def today_fragment_html(cards: list[TodayCard] | None = None) -> str:
    """A saved fragment of today's cards (no ``<html>`` around them), like a copied grid."""
    body = "\n".join(today_card_html(c) for c in (TODAY_CARDS if cards is None else cards))
    return f'<div class="grid grid-cols-4 gap-4">{body}\n</div>\n'


@dataclass
class LoopbackSite:
    """The loopback site; ``start()`` it, use ``base_url``, ``stop()`` it."""

    crawl_delay: float = 0.2
    latency: float = 0.0
    log: list[tuple[float, str, str]] = field(default_factory=list)
    max_in_flight: int = 0

    def __post_init__(self):
        self._lock = threading.Lock()
        self._in_flight = 0
        self._hits: dict[str, int] = {}
        self.cards = latest_cards()
        self._images: dict[str, bytes] = {}
        self._build_images()
        self.server: ThreadingHTTPServer | None = None

    # -- content ---------------------------------------------------------------------
    def _build_images(self) -> None:
        by_id = {c.photo_id: c for c in self.cards}
        for c in self.cards:
            src = smoke_image(c.smoke)
            if c.mirrored:
                src = ImageOps.mirror(src.crop((int(src.width * 0.15), 0, src.width, src.height)))
            base = f"/img/{c.photo_id}_{c.photo_id % 997:03x}"
            if c.photo_id == TINY_ID:
                big = small = _jpeg(src, 120)
            elif c.photo_id == NEAR_DUP_ID:
                big, small = _jpeg(src, 600, quality=60), _jpeg(src, 280, quality=60)
                assert by_id[NEAR_DUP_OF_ID].smoke == c.smoke
            else:
                big, small = _jpeg(src, 640, exif=_gps_exif() if c.photo_id == GPS_ID else None), _jpeg(src, 280)
            if c.photo_id == TRUNCATED_ID:
                big = big[: len(big) // 2]
            self._images[f"{base}_640.jpg"] = big
            self._images[f"{base}_280.jpg"] = small
            self._images[f"{base}_1200.jpg"] = _jpeg(src, 800)
        for t in TODAY_CARDS:
            src = smoke_image(t.smoke)
            base = f"/img/{t.photo_id}_{t.photo_id % 997:03x}"
            self._images[f"{base}_640.jpg"], self._images[f"{base}_280.jpg"] = _jpeg(src, 640), _jpeg(src, 280)

    def a220_image(self, path: str) -> bytes:
        """A real photo for a thumbnail path of the saved A220 page (stable per path)."""
        if path not in self._images:
            k = int(hashlib.sha1(path.encode()).hexdigest(), 16)
            name = SMOKE_CARDS[k % len(SMOKE_CARDS)][0]
            self._images[path] = _jpeg(smoke_image(name), 280 + k % 40)
        return self._images[path]

    def hits(self, path_and_query: str) -> int:
        """How many requests this exact path (with query) has received."""
        return self._hits.get(path_and_query, 0)

    def requests_for(self, prefix: str) -> list[tuple[float, str, str]]:
        return [x for x in self.log if x[1].startswith(prefix)]

    # -- HTTP ------------------------------------------------------------------------
    def respond(self, raw_path: str) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        page = int((parse_qs(parts.query).get("page") or ["1"])[0])
        n = self._hits.get(raw_path, 0)
        html_type = {"Content-Type": "text/html; charset=utf-8"}
        if path == "/robots.txt":
            return 200, {"Content-Type": "text/plain"}, _ROBOTS.format(delay=self.crawl_delay).encode()
        if path == "/photos/aircraft/Airbus/A220-100":
            f = A220_PAGE if page == 1 else NO_RESULTS_PAGE
            return 200, html_type, f.read_bytes()
        if "_files/" in path and path.endswith(".jpg"):
            return 200, {"Content-Type": "image/jpeg"}, self.a220_image(path)
        if path == "/photos/latest":
            if page == 2 and n == 1:
                return 429, {"Retry-After": "1", **html_type}, b"<html><body>Too Many Requests</body></html>"
            if page == 3 and n == 1:
                return 500, html_type, b"<html><body>Internal Server Error</body></html>"
            if page > LATEST_PAGES:
                return 200, html_type, NO_RESULTS_PAGE.read_bytes()
            cards = self.cards[(page - 1) * CARDS_PER_PAGE: page * CARDS_PER_PAGE]
            return 200, html_type, listing_html(cards, "Latest Photos", f"/photos/latest?page={page + 1}").encode()
        if path == "/photos/today":
            if page > 1:
                return 200, html_type, NO_RESULTS_PAGE.read_bytes()
            return 200, html_type, (f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body><main>"
                                    f"{today_fragment_html()}</main></body></html>").encode()
        if path == "/photos/private":
            return 200, html_type, listing_html(self.cards[:2], "Private", None).encode()
        if path.startswith("/photo/"):
            pid = path.split("/")[2]
            c = next((c for c in self.cards if str(c.photo_id) == pid), None)
            if c is None:
                return 404, html_type, b"<html><body>Not found</body></html>"
            img = f"/img/{c.photo_id}_{c.photo_id % 997:03x}_1200.jpg"
            return 200, html_type, (f'<html><head><meta property="og:url" content="/photo/{pid}/{c.slug}">'
                                    f'<meta property="og:image" content="{img}"></head><body>'
                                    f'<img src="{img}" alt="{html.escape(c.registration)}"></body></html>').encode()
        if path in self._images:
            return 200, {"Content-Type": "image/jpeg"}, self._images[path]
        return 404, html_type, b"<html><body>Not found</body></html>"

    def start(self) -> "LoopbackSite":
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                with site._lock:
                    site._in_flight += 1
                    site.max_in_flight = max(site.max_in_flight, site._in_flight)
                    site._hits[self.path] = site._hits.get(self.path, 0) + 1
                    site.log.append((time.monotonic(), self.path, self.headers.get("User-Agent", "")))
                try:
                    if site.latency:
                        time.sleep(site.latency)
                    status, headers, body = site.respond(self.path)
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    with site._lock:
                        site._in_flight -= 1

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # listen backlog; the stdlib's 5 drops SYNs under concurrency

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
