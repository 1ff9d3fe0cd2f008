"""The registration grammar: which strings can be an aircraft's registration, and what an OCR
misread of one most likely was.

An aircraft registration is a *nationality mark* followed by a *registration mark*
(ICAO Annex 7, "Aircraft Nationality and Registration Marks", 6th ed. 2012, ch. 2-3). The
nationality marks are taken from the radio call-sign series the ITU allocates to each state
(ITU Radio Regulations, Appendix 42, "Table of allocation of international call sign series");
each state sets the format of the registration mark. :data:`NATIONALITY` lists the marks in use
on civil aircraft with each state's formats, written as classes per character:

- ``L`` a letter A-Z, ``D`` a digit 0-9, ``A`` either;

and whether a hyphen separates the two marks as painted (Annex 7 §3.1.2: a hyphen between the
marks when the nationality mark is a letter and the registration mark begins with a letter; the
United States (``N``), Japan (``JA``), South Korea (``HL``) and a few others paint none).
The formats were checked against the 492,275 registrations of
``../shared/data/aircraft-registry`` (``tests/model/test_registration.py``).

OCR confuses characters that look alike (O/0, I/1, B/8, S/5, Z/2, G/6, D/0). A character is
corrected only where the format demands the other class — a digit where the state's format
has a letter, or a letter where it has a digit — so that ``8-16711`` becomes ``B-16711`` (China's
format is digits after ``B-``) and ``0O-SGC`` becomes ``OO-SGC``, but ``N809FR`` stays as read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Nationality mark → (registration mark formats, hyphen painted). Source: ICAO Annex 7 ch. 2
#: and ITU RR Appendix 42 for the marks; each state's register for the formats.
NATIONALITY: dict[str, tuple[tuple[str, ...], bool]] = {
    # one-character marks
    "B": (("DDDD", "DDDDD", "DDDL", "DDLL", "DDLD", "LLL"), True),  # China; Taiwan B-DDDDD; Hong Kong B-HLL, Macau B-MLL
    "C": (("LLLL",), True),              # Canada (C-FLLL, C-GLLL)
    "D": (("LLLL", "DDDD"), True),       # Germany
    "F": (("LLLL",), True),              # France
    "G": (("LLLL",), True),              # United Kingdom
    "I": (("LLLL",), True),              # Italy
    "M": (("LLLL",), True),              # Isle of Man
    "N": (("D", "DD", "DDD", "DDDD", "DDDDD", "DL", "DDL", "DDDL", "DDDDL", "DLL", "DDLL", "DDDLL"), False),  # United States
    # two- and three-character marks
    "2": (("LLLL",), True),              # Guernsey
    "3A": (("LLL",), True), "3B": (("LLL",), True), "3C": (("LLL",), True), "3D": (("LLL",), True),
    "3X": (("LLL",), True),
    "4K": (("LLL", "AZDD", "DDDDD"), True),  # Azerbaijan (4K-AZ38)
    "4L": (("LLL",), True), "4O": (("LLL",), True), "4R": (("LLL",), True),
    "4W": (("LLL",), True), "4X": (("LLL",), True),
    "5A": (("LLL",), True), "5B": (("LLL",), True), "5H": (("LLL",), True), "5N": (("LLL",), True),
    "5R": (("LLL",), True), "5T": (("LLL",), True), "5U": (("LLL",), True), "5V": (("LLL",), True),
    "5W": (("LLL",), True), "5X": (("LLL",), True), "5Y": (("LLL",), True),
    "6O": (("LLL",), True), "6V": (("LLL",), True), "6Y": (("LLL",), True),
    "7O": (("LLL",), True), "7P": (("LLL",), True), "7Q": (("LLL",), True), "7T": (("LLL",), True),
    "8P": (("LLL",), True), "8Q": (("LLL",), True), "8R": (("LLL",), True),
    "9A": (("LLL",), True), "9G": (("LLL",), True), "9H": (("LLL",), True), "9J": (("LLL",), True),
    "9K": (("LLL",), True), "9L": (("LLL",), True), "9M": (("LLL",), True), "9N": (("LLL",), True),
    "9Q": (("LLL",), True), "9U": (("LLL",), True), "9V": (("LLL",), True), "9XR": (("LL",), True),
    "9Y": (("LLL",), True),
    "A2": (("LLL",), True), "A3": (("LLL",), True), "A4O": (("LL", "LLL"), True), "A5": (("LLL",), True),
    "A6": (("LLL",), True), "A7": (("LLL",), True), "A8": (("LLL",), True), "A9C": (("LL", "LLL"), True),
    "AP": (("LLL",), True),
    "C2": (("LLL",), True), "C3": (("LLL",), True), "C5": (("LLL",), True), "C6": (("LLL",), True),
    "C9": (("LLL",), True), "CC": (("LLL",), True), "CN": (("LLL",), True), "CP": (("DDDD",), True),
    "CS": (("LLL",), True), "CU": (("LDDDD", "DDDD"), True), "CX": (("LLL",), True),
    "D2": (("LLL",), True), "D4": (("LLL",), True), "D6": (("LLL",), True), "DQ": (("LLL",), True),
    "E3": (("LLL",), True), "E5": (("LLL",), True), "E7": (("LLL",), True), "EC": (("LLL",), True),
    "EI": (("LLL",), True), "EK": (("DDDDD", "LLL"), True), "EP": (("LLL",), True), "ER": (("LLL", "LLLLL"), True),
    "ES": (("LLL",), True), "ET": (("LLL",), True), "EW": (("DDDLL", "DDDDD"), True), "EX": (("DDDDD", "DDD"), True),
    "EY": (("DDDDD", "LLL"), True), "EZ": (("LDDD", "LLL"), True),
    "H4": (("LLL",), True), "HA": (("LLL",), True), "HB": (("LLL", "AAA"), True), "HC": (("LLL",), True),
    "HH": (("LLL",), True), "HI": (("DDD", "DDDD"), False), "HK": (("DDDD", "DDDDL", "DDDDX"), True),
    "HL": (("DDDD",), False), "HP": (("DDDD", "DDDDLL", "DDDDLLL"), True), "HR": (("LLL",), True),
    "HS": (("LLL",), True), "HZ": (("LLL", "LLDD", "LLLL"), True),
    "J2": (("LLL",), True), "J3": (("LLL",), True), "J5": (("LLL",), True), "J6": (("LLL",), True),
    "J7": (("LLL",), True), "J8": (("LLL",), True), "JA": (("DDDD", "DDDL", "DDLL"), False),
    "JU": (("DDDD",), True), "JY": (("LLL",), True),
    "LN": (("LLL",), True), "LV": (("LLL",), True), "LX": (("LLL",), True), "LY": (("LLL",), True),
    "LZ": (("LLL",), True),
    "OB": (("DDDD",), True), "OD": (("LLL",), True), "OE": (("LLL",), True), "OH": (("LLL",), True),
    "OK": (("LLL",), True), "OM": (("LLL",), True), "OO": (("LLL",), True), "OY": (("LLL",), True),
    "P2": (("LLL",), True), "P4": (("LLL",), True), "PH": (("LLL", "DLL"), True), "PJ": (("LLL",), True),
    "PK": (("LLL",), True), "PP": (("LLL",), True), "PR": (("LLL",), True), "PS": (("LLL",), True),
    "PT": (("LLL",), True), "PU": (("LLL",), True), "PZ": (("LLL",), True),
    "RA": (("DDDDD", "DDDDL"), True), "RDPL": (("DDDDD",), True), "RP": (("LDDDD",), True),
    "S2": (("LLL",), True), "S5": (("LLL",), True), "S7": (("LLL",), True), "S9": (("LLL",), True),
    "SE": (("LLL",), True), "SP": (("LLL",), True), "ST": (("LLL",), True), "SU": (("LLL",), True),
    "SX": (("LLL",), True),
    "T7": (("LLL",), True), "T8A": (("DDD",), True), "T9": (("LLL",), True), "TC": (("LLL",), True),
    "TF": (("LLL",), True), "TG": (("LLL",), True), "TI": (("LLL",), True), "TJ": (("LLL",), True),
    "TL": (("LLL",), True), "TN": (("LLL",), True), "TR": (("LLL",), True), "TS": (("LLL",), True),
    "TT": (("LLL",), True), "TU": (("LLL",), True), "TY": (("LLL",), True), "TZ": (("LLL",), True),
    "UK": (("DDDDD",), True), "UN": (("DDDDD", "LLL"), True), "UP": (("LDDDD", "LLDDD"), True),
    "UR": (("LLL", "DDDDD"), True),
    "V2": (("LLL",), True), "V3": (("LLL",), True), "V4": (("LLL",), True), "V5": (("LLL",), True),
    "V6": (("LLL",), True), "V7": (("LLL",), True), "V8": (("LLL", "DDD"), True), "VH": (("LLL",), True),
    "VN": (("LDDD",), True), "VP": (("LLL",), True), "VQ": (("LLL",), True), "VT": (("LLL",), True),
    "XA": (("LLL",), True), "XB": (("LLL",), True), "XC": (("LLL",), True), "XT": (("LLL",), True),
    "XU": (("LLL",), True), "XY": (("LLL",), True),
    "YA": (("LLL",), True), "YI": (("LLL",), True), "YJ": (("LLL",), True), "YK": (("LLL",), True),
    "YL": (("LLL",), True), "YN": (("LLL",), True), "YR": (("LLL",), True), "YS": (("LLL",), True),
    "YU": (("LLL",), True), "YV": (("DDDD", "DDDL"), False),
    "Z": (("LLL",), True), "Z3": (("LLL",), True), "ZA": (("LLL",), True), "ZK": (("LLL",), True),
    "ZP": (("LLL",), True), "ZS": (("LLL",), True),
}

#: What OCR reads for a letter that is really a digit, and back (PP-OCR's usual confusions on
#: painted sans-serif marks). A character is replaced only where the format demands the class.
LETTER_FOR_DIGIT = {"0": "O", "1": "I", "8": "B", "5": "S", "2": "Z", "6": "G", "4": "A", "7": "T"}
DIGIT_FOR_LETTER = {"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1", "B": "8", "S": "5", "Z": "2", "G": "6"}

_CLASSES = {"L": str.isalpha, "D": str.isdigit, "A": str.isalnum, "X": str.isalnum}
_NOT_MARK = re.compile(r"[^A-Z0-9]")


@dataclass(frozen=True)
class Candidate:
    """A string that fits a state's registration format.

    Attributes:
        registration: as painted, upper case, with the hyphen where the state paints one
            (``"D-ABYI"``, ``"N751SW"``).
        key: :func:`key` of it (no hyphen), the registry's lookup key.
        corrections: how many characters were changed to fit the format (0 = read as is).
    """

    registration: str
    key: str
    corrections: int


def key(text: str) -> str:
    """The lookup key of a registration: upper case, letters and digits only
    (``"d-abyi"`` → ``"DABYI"``). Registries and readings are compared on it."""
    return _NOT_MARK.sub("", text.upper())


def _fit(chars: str, pattern: str, literal: bool = False) -> tuple[str, int] | None:
    """``chars`` made to fit ``pattern`` — format classes, or with ``literal`` a nationality
    mark's own characters — with the number of confusion corrections; ``None`` when it cannot."""
    out, fixes = [], 0
    for c, p in zip(chars, pattern):
        if not literal and p in _CLASSES:
            if _CLASSES[p](c):
                out.append(c)
                continue
            swap = LETTER_FOR_DIGIT.get(c) if p == "L" else DIGIT_FOR_LETTER.get(c) if p == "D" else None
        else:  # a literal character of the nationality mark
            if c == p:
                out.append(c)
                continue
            swap = p if LETTER_FOR_DIGIT.get(c) == p or DIGIT_FOR_LETTER.get(c) == p else None
        if swap is None:
            return None
        out.append(swap)
        fixes += 1
    return "".join(out), fixes


def candidates(text: str, max_corrections: int = 2) -> list[Candidate]:
    """Every registration ``text`` can be under :data:`NATIONALITY`, fewest corrections first.

    Args:
        text: one OCR token or line, any case; hyphens, spaces and other punctuation are ignored
            (``"D-ABYI"``, ``"d abyi"``, ``"8-16711"``).
        max_corrections: at most this many characters changed (each one a confusion of
            :data:`LETTER_FOR_DIGIT` / :data:`DIGIT_FOR_LETTER` the format demands).
    Returns:
        Distinct :class:`Candidate` s, sorted by ``(corrections, registration)``; empty when no
        state's format fits.
    """
    raw = key(text)
    found: dict[str, Candidate] = {}
    for mark, (formats, hyphen) in NATIONALITY.items():
        for fmt in formats:
            if len(raw) != len(mark) + len(fmt):
                continue
            head, tail = _fit(raw[: len(mark)], mark, literal=True), _fit(raw[len(mark):], fmt)
            if head is None or tail is None or head[1] + tail[1] > max_corrections:
                continue
            reg = head[0] + ("-" if hyphen else "") + tail[0]
            if mark == "N" and tail[0][0] == "0":  # US marks never start with 0 (14 CFR 47.15)
                continue
            cand = Candidate(reg, key(reg), head[1] + tail[1])
            if reg not in found or found[reg].corrections > cand.corrections:
                found[reg] = cand
    return sorted(found.values(), key=lambda c: (c.corrections, c.registration))


def tokens(line: str) -> list[str]:
    """The strings of one OCR line that may hold a registration: each whitespace-separated token
    (end punctuation stripped), and each pair of neighbouring tokens joined (a mark read as
    ``"D- ABYI"`` or ``"N 751SW"``)."""
    parts = [p.strip(".,:;'\"") for p in re.split(r"\s+", line.strip().upper())]
    parts = [p for p in parts if p]
    return list(dict.fromkeys(parts + [a + b for a, b in zip(parts, parts[1:])]))


def line_candidates(line: str, max_corrections: int = 2) -> list[tuple[str, Candidate]]:
    """``(token, candidate)`` for every registration one OCR line can hold, under three rules
    that keep misreads out:

    - a token that fits a format as read yields only its as-read candidates (an unknown
      ``N1702`` is a retired airframe, not a misread ``N170Z``);
    - a token that fits no format at all is tried less one stray character at either end
      (``"I-DEMV7"``: a door edge read as a character);
    - where the state paints a hyphen, a token without one is not a mark (``"DELTA"`` is not
      ``D-ELTA``).
    """
    out = []
    for tok in tokens(line):
        tries = [tok] + ([tok[1:], tok[:-1]] if len(tok) > 3 else [])
        for n, t in enumerate(tries):
            found = candidates(t, max_corrections)
            if n == 0 and found and found[0].corrections == 0:
                found = [c for c in found if c.corrections == 0]
            found = [c for c in found if "-" not in c.registration or "-" in t]
            out += [(t, c) for c in found]
            if n == 0 and candidates(t, max_corrections):
                break  # the token fits a format as it stands: no trimming
    return out
