"""Resolve the FlightGear AI fleet into labelled (model, livery) pairs.

Pure functions over the unpacked Debian package ``flightgear-data-ai`` (see :mod:`synth.fetch`).
Layout (facts in ``/work/shared/notes/flightgear.md``)::

    <root>/usr/share/games/flightgear/AI/Aircraft/<FOLDER>/
        Models/<sub>.ac                 AC3D mesh; names one texture file (``texture "738-tex.png"``)
        Textures/<Livery>/<that file>   one folder per livery, same UV atlas
        <sub>-main.xml                  <path>Models/<sub>.ac</path> + select animations (gear)
        <sub>-<Livery>.xml              <PropertyList include="<sub>-main.xml">
                                        <texture-path>Textures/<Livery></texture-path>

Selection rule (FlightGear/SimGear ``readProperties``): ``include=`` is resolved relative to the
including file's folder; the included file is read first and the including file's elements are
then merged on top, matched by (tag, index among siblings of that tag). ``<path>`` names the .ac
relative to the XML's folder; the texture is ``<texture-path>/<name in the .ac>`` and falls back
to the .ac's own folder (as SimGear's model loader does).

Every top-level XML of a folder listed in :data:`TYPE_TABLE` whose resolved ``<path>`` is a known
.ac and whose main texture exists is one renderable :class:`Livery`.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from synth.fetch import AIRCRAFT_SUBDIR

log = logging.getLogger(__name__)

#: Label of one .ac model: ``(manufacturer, icao_type, sub_model, manufacturer_raw)``.
#:
#: Keyed by ``(folder, .ac file stem)``. Sub-models come from each main XML's ``<description>``
#: (read from flightgear-data-ai 2020.3.16); ICAO type designators from ICAO Doc 8643
#: "Aircraft Type Designators" (https://www.icao.int/publications/DOC8643/Pages/Search.aspx):
#: e.g. all 737-800 variants are B738, the 737-900ER is B739, the 747-8F is B748, the 777-300ER
#: is B77W, the 777-200LR and the 777F are both B77L, the A330-200F is A332, the A300-600(F) is
#: A306, the A220-300 (built by Airbus Canada) is BCS3, the A330-900 is A339, the 717-200 is
#: B712. Manufacturer is the type certificate holder's brand today (A220: Airbus).
#:
#: Doubtful entries: ``A300/A300`` is a generic early A300 ("A300" is all its description says;
#: it has no wingtip fences and the short A300B tail cone), labelled A300B4 / A30B. ``MD80/md-80``
#: is "MD80" with no variant: labelled MD-82 / MD82 (the most built). ``AT4/AT4`` describes itself
#: as "ATR 42 -300/400/500/600 variants": labelled ATR 42-500 / AT45. ``E70/ERJ175`` is labelled
#: E75L (ERJ-170-200 long wing; ICAO splits E75L/E75S by wing).
TYPE_TABLE: dict[tuple[str, str], tuple[str, str, str, str]] = {
    # --- Airbus -----------------------------------------------------------------------
    ("A300", "A300"): ("Airbus", "A30B", "A300B4", "Airbus"),
    ("A300", "AB6"): ("Airbus", "A306", "A300-600", "Airbus"),
    ("A300", "ABY"): ("Airbus", "A306", "A300-600F", "Airbus"),
    ("A310", "A310"): ("Airbus", "A310", "A310", "Airbus"),
    ("A319", "A319"): ("Airbus", "A319", "A319", "Airbus"),
    ("A320", "A320"): ("Airbus", "A320", "A320", "Airbus"),
    ("A321", "A321"): ("Airbus", "A321", "A321", "Airbus"),
    ("A332", "A332"): ("Airbus", "A332", "A330-200", "Airbus"),
    ("A332", "A33X"): ("Airbus", "A332", "A330-200F", "Airbus"),
    ("A333", "A333"): ("Airbus", "A333", "A330-300", "Airbus"),
    ("339", "339"): ("Airbus", "A339", "A330-900", "Airbus"),
    ("A342", "A342"): ("Airbus", "A342", "A340-200", "Airbus"),
    ("A343", "A343"): ("Airbus", "A343", "A340-300", "Airbus"),
    ("A345", "A345"): ("Airbus", "A345", "A340-500", "Airbus"),
    ("A346", "A346"): ("Airbus", "A346", "A340-600", "Airbus"),
    ("A350", "359"): ("Airbus", "A359", "A350-900", "Airbus"),
    ("A380", "388"): ("Airbus", "A388", "A380-800", "Airbus"),
    ("220", "223"): ("Airbus", "BCS3", "A220-300", "Airbus Canada"),
    # --- Boeing -----------------------------------------------------------------------
    ("717", "717"): ("Boeing", "B712", "717-200", "Boeing"),
    ("733", "733"): ("Boeing", "B733", "737-300", "Boeing"),
    ("733", "73C"): ("Boeing", "B733", "737-300", "Boeing"),  # with winglets
    ("733", "73F"): ("Boeing", "B733", "737-300F", "Boeing"),
    ("734", "73P"): ("Boeing", "B734", "737-400F", "Boeing"),
    ("735", "735"): ("Boeing", "B735", "737-500", "Boeing"),
    ("736", "736"): ("Boeing", "B736", "737-600", "Boeing"),
    ("738", "737-800"): ("Boeing", "B738", "737-800", "Boeing"),
    ("739", "73J"): ("Boeing", "B739", "737-900ER", "Boeing"),
    ("747", "744"): ("Boeing", "B744", "747-400", "Boeing"),
    ("747", "74F"): ("Boeing", "B744", "747-400BCF", "Boeing"),
    ("747", "74Y"): ("Boeing", "B744", "747-400F", "Boeing"),
    ("747", "74N"): ("Boeing", "B748", "747-8F", "Boeing"),
    ("757", "757-200"): ("Boeing", "B752", "757-200", "Boeing"),
    ("757", "757-300"): ("Boeing", "B753", "757-300", "Boeing"),
    ("767", "763"): ("Boeing", "B763", "767-300ER", "Boeing"),
    ("767", "767"): ("Boeing", "B763", "767-300", "Boeing"),
    ("767", "76W"): ("Boeing", "B763", "767-300ER", "Boeing"),  # with winglets
    ("767", "76Y"): ("Boeing", "B763", "767-300F", "Boeing"),
    ("777", "77L"): ("Boeing", "B77L", "777-200LR", "Boeing"),
    ("777", "77F"): ("Boeing", "B77L", "777F", "Boeing"),
    ("777", "77W"): ("Boeing", "B77W", "777-300ER", "Boeing"),
    ("787", "788"): ("Boeing", "B788", "787-8", "Boeing"),
    ("787", "789"): ("Boeing", "B789", "787-9", "Boeing"),
    # --- Other airliners (optional class) ----------------------------------------------
    ("AT4", "AT4"): ("Other", "AT45", "ATR 42-500", "ATR"),
    ("AT7", "AT7"): ("Other", "AT75", "ATR 72-500", "ATR"),
    ("BAE146-300", "BAE146-300"): ("Other", "B463", "BAe 146-300", "British Aerospace"),
    ("Bae146-200", "bae146-200"): ("Other", "B462", "BAe 146-200", "British Aerospace"),
    ("Bae146-200", "bae146-200.2"): ("Other", "B462", "BAe 146-200", "British Aerospace"),
    ("CR2", "CR2"): ("Other", "CRJ2", "CRJ200", "Bombardier"),
    ("CR7", "CR7"): ("Other", "CRJ7", "CRJ700", "Bombardier"),
    ("CR9", "CR9"): ("Other", "CRJ9", "CRJ900", "Bombardier"),
    ("DH3", "DH3"): ("Other", "DH8C", "DHC-8-300", "Bombardier"),
    ("DH4", "DH4"): ("Other", "DH8D", "DHC-8-400", "Bombardier"),
    ("DH7", "dh7"): ("Other", "DHC7", "DHC-7", "de Havilland Canada"),
    ("E70", "ERJ170"): ("Other", "E170", "ERJ-170", "Embraer"),
    ("E70", "ERJ175"): ("Other", "E75L", "ERJ-175", "Embraer"),
    ("E90", "E90"): ("Other", "E190", "ERJ-190", "Embraer"),
    ("E95", "E95"): ("Other", "E195", "ERJ-195", "Embraer"),
    ("ERJ145", "ERJ-145"): ("Other", "E145", "ERJ-145", "Embraer"),
    ("Fokker-100", "100"): ("Other", "F100", "Fokker 100", "Fokker"),
    ("Fokker-100", "fokker100"): ("Other", "F100", "Fokker 100", "Fokker"),
    ("Fokker-50", "fokker50"): ("Other", "F50", "Fokker 50", "Fokker"),
    ("Fokker-70", "F70"): ("Other", "F70", "Fokker 70", "Fokker"),
    ("Fokker-70", "fokker70"): ("Other", "F70", "Fokker 70", "Fokker"),
    ("JS41", "JS41"): ("Other", "JS41", "Jetstream 41", "British Aerospace"),
    ("M11", "M1F"): ("Other", "MD11", "MD-11F", "McDonnell Douglas"),
    ("MD80", "md-80"): ("Other", "MD82", "MD-82", "McDonnell Douglas"),
    ("MD90", "md-90"): ("Other", "MD90", "MD-90", "McDonnell Douglas"),
    ("SF3", "SF3"): ("Other", "SF34", "Saab 340", "Saab"),
    ("Saab-2000", "Saab-2000"): ("Other", "SB20", "Saab 2000", "Saab"),
}

#: Manufacturers rendered by default (``--include-other`` adds ``Other``).
DEFAULT_MANUFACTURERS: tuple[str, ...] = ("Airbus", "Boeing")

#: Livery names that denote a maker's house or blank paint, not an airline. Such liveries are
#: grouped per type folder (not across types) when splitting.
GENERIC_LIVERIES = frozenset({"default", "generic", "white", "blank", "set", "base", "boeing", "airbus"})

_TEXTURE_RE = re.compile(r'^texture\s+"?([^"\r\n]+?)"?\s*$', re.MULTILINE)


@dataclass(frozen=True)
class SelectAnimation:
    """One FlightGear ``select`` animation: ``objects`` are drawn only while ``condition`` holds.

    ``condition`` is the ``<condition>`` element (``None``: always true), evaluated by
    :func:`evaluate_condition`.
    """

    objects: tuple[str, ...]
    condition: ET.Element | None = field(compare=False, hash=False)


@dataclass(frozen=True)
class Livery:
    """One renderable (model, livery) pair with its labels.

    Attributes:
        folder: type folder under ``AI/Aircraft`` (e.g. ``738``).
        xml: the livery XML file name (e.g. ``738-Ryanair.xml``).
        livery_id: XML stem, unique within ``folder`` (e.g. ``738-Ryanair``).
        livery: livery folder name (last part of ``<texture-path>``, e.g. ``Ryanair``).
        airline: readable airline name (``AirBerlin`` -> ``Air Berlin``).
        model_path: absolute path of the .ac file.
        texture_dir: folder searched first for textures (``<texture-path>``), else the .ac folder.
        texture_path: absolute path of the main texture (the .ac's most used texture).
        manufacturer, icao_type, sub_model, manufacturer_raw: labels from :data:`TYPE_TABLE`.
        description: the resolved ``<description>`` (raw type text).
        author: the resolved ``<author>`` (model credit), may be empty.
        selects: the resolved select animations (gear, winglets, propeller discs).
    """

    folder: str
    xml: str
    livery_id: str
    livery: str
    airline: str
    model_path: Path
    texture_dir: Path
    texture_path: Path
    manufacturer: str
    icao_type: str
    sub_model: str
    manufacturer_raw: str
    description: str
    author: str
    selects: tuple[SelectAnimation, ...] = field(compare=False, hash=False)

    @property
    def key(self) -> str:
        """``<folder>/<livery_id>``: unique id of the pair across the fleet."""
        return f"{self.folder}/{self.livery_id}"


def aircraft_dir(root: str | Path) -> Path:
    """``<root>/usr/share/games/flightgear/AI/Aircraft``; ``root`` is the unpacked package."""
    return Path(root) / AIRCRAFT_SUBDIR


def merge_property_lists(base: ET.Element, over: ET.Element) -> ET.Element:
    """Merge ``over`` onto ``base`` the way SimGear reads an including file onto its include.

    Children are matched by (tag, running index among siblings with that tag in ``over``): a
    matched leaf's text is replaced, a matched branch is merged recursively, an unmatched child
    is appended. ``base`` is modified in place and returned.
    """
    seen: Counter[str] = Counter()
    for child in over:
        if not isinstance(child.tag, str):  # comments
            continue
        idx = seen[child.tag]
        seen[child.tag] += 1
        existing = [c for c in base if c.tag == child.tag]
        if idx < len(existing):
            target = existing[idx]
            if len(child):
                merge_property_lists(target, child)
            else:
                target.text = child.text
            target.attrib.update(child.attrib)
        else:
            base.append(child)
    return base


def read_property_list(xml_path: str | Path, _depth: int = 0) -> ET.Element:
    """Parse a PropertyList XML and resolve ``include=`` chains on the root (recursively).

    The include is resolved relative to ``xml_path``'s folder; the included tree is read first
    and ``xml_path``'s elements are merged on top (:func:`merge_property_lists`).

    Raises:
        ET.ParseError: malformed XML.
        FileNotFoundError: a missing include.
        RecursionError: an include cycle (depth over 16).
    """
    xml_path = Path(xml_path)
    if _depth > 16:
        raise RecursionError(f"include chain too deep at {xml_path}")
    root = ET.parse(xml_path).getroot()
    inc = root.get("include")
    if not inc:
        return root
    inc_path = xml_path.parent / inc
    if not inc_path.is_file():
        raise FileNotFoundError(f"{xml_path}: include {inc!r} not found")
    base = read_property_list(inc_path, _depth + 1)
    del root.attrib["include"]
    return merge_property_lists(base, root)


def ac_textures(ac_path: str | Path) -> Counter[str]:
    """Texture file names (base names) used by an AC3D file, with the number of objects using each.

    AC3D object lines ``texture "name"``; the name may carry a path (``F:/.../223-tex.png``),
    of which only the base name counts (FlightGear searches the texture path for it).
    """
    text = Path(ac_path).read_text(encoding="latin-1")
    names = [re.split(r"[\\/]", m.group(1).strip())[-1] for m in _TEXTURE_RE.finditer(text)]
    return Counter(n for n in names if n)


def find_texture(name: str, texture_dir: Path, model_dir: Path) -> Path | None:
    """Path of texture ``name``: in ``texture_dir`` first, then ``model_dir``; ``None`` if absent.

    FlightGear on Linux is case sensitive, but some packages differ only in case; a
    case-insensitive match in the same folder is accepted as a fallback.
    """
    for d in (texture_dir, model_dir):
        p = d / name
        if p.is_file():
            return p
        if d.is_dir():
            low = name.lower()
            for q in d.iterdir():
                if q.name.lower() == low and q.is_file():
                    return q
    return None


def readable_airline(livery: str) -> str:
    """Turn a livery folder name into a readable airline name.

    ``AirBerlin`` -> ``Air Berlin``, ``IcelandAir-cargo`` -> ``Iceland Air cargo``,
    ``KLM`` -> ``KLM``, ``airHongkong`` -> ``air Hongkong``.
    """
    s = re.sub(r"[_\-]+", " ", livery)
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", s)
    s = re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", " ", s)
    return re.sub(r"\s+", " ", s).strip()


def airline_group(livery: Livery) -> str:
    """Split group of a livery: the normalised airline name, across all types and makers.

    Lower-case alphanumerics of the livery folder name (``Air-Berlin`` and ``AirBerlin`` are one
    group). Generic liveries (:data:`GENERIC_LIVERIES`) are grouped per type folder instead.
    """
    norm = re.sub(r"[^a-z0-9]", "", livery.livery.lower())
    if not norm or norm in GENERIC_LIVERIES:
        return f"generic:{livery.folder}:{norm}"
    return norm


def _parse_selects(tree: ET.Element) -> tuple[SelectAnimation, ...]:
    out = []
    for anim in tree.findall("animation"):
        if (anim.findtext("type") or "").strip() != "select":
            continue
        objs = tuple((o.text or "").strip() for o in anim.findall("object-name") if o.text)
        if objs:
            out.append(SelectAnimation(objs, anim.find("condition")))
    return tuple(out)


def _num(text: str | None) -> float:
    try:
        return float((text or "0").strip())
    except ValueError:
        t = (text or "").strip().lower()
        return 1.0 if t == "true" else 0.0


def evaluate_condition(cond: ET.Element | None, props: dict[str, float]) -> bool:
    """Evaluate a SimGear ``<condition>`` against property values.

    Supports ``and``, ``or``, ``not``, ``equals``, ``not-equals``, ``less-than``,
    ``less-than-equals``, ``greater-than``, ``greater-than-equals`` (property vs ``value`` or
    vs a second property) and a bare ``property`` (true when non-zero). Property names are
    matched without a leading ``/``; unknown properties read 0. ``None`` is true. Several
    children of ``<condition>`` are and-ed (SimGear's rule).
    """
    if cond is None:
        return True

    def val(e: ET.Element) -> float:
        return float(props.get((e.text or "").strip().lstrip("/"), 0.0))

    def ev(e: ET.Element) -> bool:
        tag = e.tag
        if tag in ("condition", "and"):
            return all(ev(c) for c in e if isinstance(c.tag, str))
        if tag == "or":
            return any(ev(c) for c in e if isinstance(c.tag, str))
        if tag == "not":
            return not all(ev(c) for c in e if isinstance(c.tag, str))
        if tag == "property":
            return val(e) != 0
        ops = {
            "equals": lambda a, b: a == b,
            "not-equals": lambda a, b: a != b,
            "less-than": lambda a, b: a < b,
            "less-than-equals": lambda a, b: a <= b,
            "greater-than": lambda a, b: a > b,
            "greater-than-equals": lambda a, b: a >= b,
        }
        if tag in ops:
            ps = e.findall("property")
            if not ps:
                return True
            a = val(ps[0])
            b = val(ps[1]) if len(ps) > 1 else _num(e.findtext("value"))
            return ops[tag](a, b)
        return True  # unknown element: do not hide

    return ev(cond)


def hidden_objects(selects: tuple[SelectAnimation, ...], props: dict[str, float]) -> frozenset[str]:
    """Names of objects hidden in a flight state: those of the selects whose condition is false."""
    out: set[str] = set()
    for s in selects:
        if not evaluate_condition(s.condition, props):
            out.update(s.objects)
    return frozenset(out)


#: Flight states used by the renderer (property values fed to :func:`evaluate_condition`).
#: Gear-down thresholds in the package are 90-200 kt: 80 kt shows every gear, 260 kt hides it.
#: ``sim/signals/fdm-initialized`` is 1 in a running sim (winglet selects rely on it).
GEAR_DOWN_PROPS: dict[str, float] = {
    "velocities/true-airspeed-kt": 80.0,
    "sim/signals/fdm-initialized": 1.0,
    "gear/gear[0]/position-norm": 1.0,
    "gear/gear/position-norm": 1.0,
}
GEAR_UP_PROPS: dict[str, float] = {
    "velocities/true-airspeed-kt": 260.0,
    "sim/signals/fdm-initialized": 1.0,
    "gear/gear[0]/position-norm": 0.0,
    "gear/gear/position-norm": 0.0,
}


@dataclass
class ScanResult:
    """Output of :func:`scan_fleet`: renderable pairs and the XMLs skipped, with reasons."""

    liveries: list[Livery]
    skipped: list[tuple[str, str]]  # (folder/xml, reason)


def scan_fleet(root: str | Path, manufacturers: tuple[str, ...] | None = None) -> ScanResult:
    """Scan the unpacked package for renderable (model, livery) pairs.

    Args:
        root: the unpacked ``flightgear-data-ai`` (holding ``usr/share/...``).
        manufacturers: keep only these (``Airbus``, ``Boeing``, ``Other``); ``None``: all three.

    Returns:
        :class:`ScanResult`, liveries sorted by ``key``. An XML is skipped (with a reason) when
        it does not parse, has no ``<path>``, points at a missing or unlabelled .ac, or its
        main texture is missing (4 Airbus/Boeing liveries in 2020.3.16).

    Raises:
        FileNotFoundError: ``root`` holds no ``AI/Aircraft`` folder (run ``synth fetch``).
    """
    adir = aircraft_dir(root)
    if not adir.is_dir():
        raise FileNotFoundError(
            f"{adir} not found: {root} is not an unpacked flightgear-data-ai (run `python -m synth fetch`)"
        )
    wanted = set(manufacturers) if manufacturers else None
    folders = sorted({f for f, _ in TYPE_TABLE})
    liveries: list[Livery] = []
    skipped: list[tuple[str, str]] = []
    tex_cache: dict[Path, Counter[str]] = {}
    for folder in folders:
        fdir = adir / folder
        if not fdir.is_dir():
            continue
        for xml in sorted(fdir.glob("*.xml")):
            where = f"{folder}/{xml.name}"
            try:
                tree = read_property_list(xml)
            except (ET.ParseError, FileNotFoundError, RecursionError) as exc:
                skipped.append((where, f"unreadable: {exc}"))
                continue
            path = (tree.findtext("path") or "").strip()
            if not path:
                skipped.append((where, "no <path>"))
                continue
            ac = (xml.parent / path).resolve()
            label = TYPE_TABLE.get((folder, ac.stem))
            if label is None or not ac.is_file():
                skipped.append((where, f"model {path} missing or not in TYPE_TABLE"))
                continue
            manufacturer, icao, sub_model, maker_raw = label
            if wanted is not None and manufacturer not in wanted:
                continue
            tpath = (tree.findtext("texture-path") or "").strip()
            texture_dir = (xml.parent / tpath).resolve() if tpath else ac.parent
            if ac not in tex_cache:
                tex_cache[ac] = ac_textures(ac)
            texs = tex_cache[ac]
            if not texs:
                skipped.append((where, f"{ac.name} names no texture"))
                continue
            main_tex = texs.most_common(1)[0][0]
            tex = find_texture(main_tex, texture_dir, ac.parent)
            if tex is None:
                skipped.append((where, f"texture {main_tex} not in {tpath or 'Models'}"))
                continue
            livery_id = xml.stem
            livery_name = Path(tpath).name if tpath else livery_id.split("-", 1)[-1]
            liveries.append(
                Livery(
                    folder=folder,
                    xml=xml.name,
                    livery_id=livery_id,
                    livery=livery_name,
                    airline=readable_airline(livery_name),
                    model_path=ac,
                    texture_dir=texture_dir,
                    texture_path=tex,
                    manufacturer=manufacturer,
                    icao_type=icao,
                    sub_model=sub_model,
                    manufacturer_raw=maker_raw,
                    description=(tree.findtext("description") or "").strip(),
                    author=(tree.findtext("author") or "").strip(),
                    selects=_parse_selects(tree),
                )
            )
    # Two XMLs can select the same (model, texture), e.g. 777-fallback.xml and 77L-default.xml, or
    # 738-ELAL.xml pointing at Textures/default: keep one pair, preferring a named livery XML over
    # a fallback/set file, then the XML whose name ends with its texture folder's name.
    def rank(lv: Livery) -> tuple[bool, bool, str]:
        fallback = bool(re.search(r"fallback|-set$", lv.livery_id, re.I))
        mismatch = not lv.livery_id.lower().endswith(lv.livery.lower())
        return (fallback, mismatch, lv.livery_id)

    best: dict[tuple[Path, Path], Livery] = {}
    for lv in liveries:
        k = (lv.model_path, lv.texture_path)
        if k not in best:
            best[k] = lv
            continue
        keep, drop = (lv, best[k]) if rank(lv) < rank(best[k]) else (best[k], lv)
        best[k] = keep
        skipped.append((f"{drop.folder}/{drop.xml}", f"duplicate of {keep.key}"))
    liveries = sorted(best.values(), key=lambda lv: lv.key)
    return ScanResult(liveries, skipped)


def count_by(liveries: list[Livery], attr: str) -> dict[str, int]:
    """Number of liveries per value of attribute ``attr`` (e.g. ``manufacturer``), sorted by key."""
    c = Counter(getattr(lv, attr) for lv in liveries)
    return dict(sorted(c.items()))
