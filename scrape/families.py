"""Aircraft families of ICAO type designators: the middle level of the label hierarchy
manufacturer → family → ICAO type.

A family groups the designators of one airframe line, as spotters and the real-photo sets name
it: ``A320`` is the A318/A319/A320/A321 (ceo and neo), ``B737`` every 737 including the MAX,
``B747`` every 747 including the freighters and the LCF. Family names are the ones used by
``../shared/data/real-airliners/labels.csv`` (``A220 A300 … B787``); designators are from ICAO
Doc 8643 (Aircraft Type Designators).

Note that a family name can equal a designator (family ``A320`` holds designator ``A320``): code
that mixes both levels must keep them apart (the cascade names family answers ``"<family> family"``).
"""

from __future__ import annotations

#: family → (manufacturer, designators). ICAO Doc 8643 designators of each family.
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "A220": ("Airbus", ("BCS1", "BCS3")),
    "A300": ("Airbus", ("A30B", "A306", "A3ST")),
    "A310": ("Airbus", ("A310",)),
    "A320": ("Airbus", ("A318", "A319", "A320", "A321", "A19N", "A20N", "A21N")),
    "A330": ("Airbus", ("A332", "A333", "A337", "A338", "A339")),
    "A340": ("Airbus", ("A342", "A343", "A345", "A346")),
    "A350": ("Airbus", ("A359", "A35K")),
    "A380": ("Airbus", ("A388",)),
    "B707": ("Boeing", ("B701", "B703", "B720")),
    "B717": ("Boeing", ("B712",)),
    "B727": ("Boeing", ("B721", "B722")),
    "B737": ("Boeing", ("B731", "B732", "B733", "B734", "B735", "B736", "B737", "B738", "B739",
                        "B37M", "B38M", "B39M", "B3XM")),
    "B747": ("Boeing", ("B741", "B742", "B743", "B744", "B748", "B74D", "B74R", "B74S", "BLCF")),
    "B757": ("Boeing", ("B752", "B753")),
    "B767": ("Boeing", ("B762", "B763", "B764")),
    "B777": ("Boeing", ("B772", "B773", "B77L", "B77W", "B778", "B779")),
    "B787": ("Boeing", ("B788", "B789", "B78X")),
}

_FAMILY_OF: dict[str, str] = {t: f for f, (_, types) in FAMILIES.items() for t in types}


def family_of(icao_type: str) -> str:
    """The family of an ICAO type designator.

    Args:
        icao_type: a designator such as ``"B77W"`` (case-insensitive; surrounding spaces ignored).
    Returns:
        The family name (``"B777"``), or ``""`` for an empty or unknown designator (types of
        other manufacturers, military types such as ``A400``).
    """
    return _FAMILY_OF.get((icao_type or "").strip().upper(), "")


def manufacturer_of_family(family: str) -> str:
    """``"Airbus"`` or ``"Boeing"`` for a family of :data:`FAMILIES`, else ``""``."""
    entry = FAMILIES.get((family or "").strip().upper())
    return entry[0] if entry else ""
