"""Label normalisation: planespotters.net type strings → the project's taxonomy.

The site writes the aircraft type as "Manufacturer Type", with the customer code and
variant suffixes as the operator ordered them ("Boeing 737-8AS(WL)", "Airbus A320-214",
"Bombardier CSeries CS100 (BD-500-1A10)"). The model wants three labels:

* ``manufacturer`` — one of :data:`dataset.schema.MANUFACTURERS` (``Airbus``, ``Boeing``,
  ``Other``);
* ``icao_type`` — the ICAO type designator (ICAO Doc 8643), e.g. ``B738``, ``BCS1``;
* ``sub_model`` — a readable variant, e.g. ``737-800``, ``A220-100``.

The mapping is a table, ``dataset/type_rules.json`` (ordered regular expressions, first
match wins), so the R port can load the very same rules. Strings that match no rule keep
an empty designator and are reported by the crawl (never dropped).

Renames: the Bombardier CSeries CS100/CS300 became the Airbus A220-100/-300 in 2018
(ICAO BCS1/BCS3 unchanged); Planespotters files pre-rename airframes under the A220 type
but still writes "Bombardier CSeries CS100" on their cards, so both map to Airbus/BCS1.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

RULES_FILE = Path(__file__).with_name("type_rules.json")

_WS = re.compile(r"\s+")


def squish(text: str | None) -> str:
    """Collapse every run of Unicode whitespace to one space and strip both ends.

    ``None`` → ``""``. This is the text normalisation used by every parsed field
    (R: ``stringr::str_squish``).
    """
    if not text:
        return ""
    return _WS.sub(" ", text).strip()


@dataclass(frozen=True)
class TypeRule:
    """One row of the rules table; ``pattern`` is compiled case-insensitively."""

    pattern: re.Pattern[str]
    manufacturer: str
    icao_type: str
    sub_model: str


@dataclass(frozen=True)
class Label:
    """Normalised labels of one type string (all ``str``; ``""`` when unknown)."""

    manufacturer: str
    icao_type: str
    sub_model: str


@functools.lru_cache(maxsize=1)
def load_rules(path: str | None = None) -> tuple[tuple[str, ...], tuple[TypeRule, ...]]:
    """Load ``type_rules.json``.

    Returns ``(manufacturer_prefixes, rules)``; prefixes are sorted longest first.
    Raises ``OSError``/``ValueError`` when the file is missing or malformed.
    """
    data = json.loads(Path(path or RULES_FILE).read_text(encoding="utf-8"))
    prefixes = tuple(sorted(data["manufacturer_prefixes"], key=len, reverse=True))
    rules = tuple(
        TypeRule(re.compile(r["pattern"], re.IGNORECASE), r["manufacturer"], r["icao_type"], r["sub_model"])
        for r in data["rules"]
    )
    return prefixes, rules


def split_manufacturer(type_raw: str) -> str:
    """Manufacturer as written: the longest listed multi-word prefix of ``type_raw``
    (followed by a space), else its first word; ``""`` for an empty string.

    >>> split_manufacturer("McDonnell Douglas MD-11F")
    'McDonnell Douglas'
    >>> split_manufacturer("Boeing 737-8AS(WL)")
    'Boeing'
    """
    s = squish(type_raw)
    if not s:
        return ""
    prefixes, _ = load_rules()
    for p in prefixes:
        if s.startswith(p + " "):
            return p
    return s.split(" ", 1)[0]


def _expand(template: str, m: re.Match[str]) -> str:
    if "{1}" in template:
        return template.replace("{1}", m.group(1) or "")
    return template


def normalise_type(type_raw: str, manufacturer_raw: str = "") -> Label:
    """Map a type string to (manufacturer, ICAO designator, sub-model).

    ``type_raw``: the type as written, normally with the manufacturer in front
    ("Boeing 737-8AS(WL)"); when it does not start with ``manufacturer_raw`` the two are
    joined first. Unmatched strings give ``Label(<Airbus|Boeing|Other>, "", "")`` with the
    manufacturer class taken from the raw manufacturer (``Airbus``/``Boeing`` exactly,
    else ``Other``); an empty input gives ``Label("", "", "")``.

    >>> normalise_type("Boeing 737-8AS(WL)")
    Label(manufacturer='Boeing', icao_type='B738', sub_model='737-800')
    >>> normalise_type("Bombardier CSeries CS100 (BD-500-1A10)").icao_type
    'BCS1'
    """
    s = squish(type_raw)
    m_raw = squish(manufacturer_raw)
    if not s and not m_raw:
        return Label("", "", "")
    if m_raw and not s.lower().startswith(m_raw.lower()):
        s = squish(f"{m_raw} {s}")
    _, rules = load_rules()
    for rule in rules:
        m = rule.pattern.search(s)
        if m:
            return Label(rule.manufacturer, _expand(rule.icao_type, m), _expand(rule.sub_model, m))
    maker = m_raw or split_manufacturer(s)
    return Label(maker if maker in ("Airbus", "Boeing") else "Other", "", "")
