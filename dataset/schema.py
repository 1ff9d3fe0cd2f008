"""The metadata CSV schema shared by every image source (``scrape/``, ``synth/`` and ``ingest/``).

A dataset is a folder holding ``metadata.csv`` and the images it lists; ``image_path`` is
relative to the folder of the CSV, so a dataset can be moved as a whole. ``model/`` reads only
these columns, so it cannot tell a scraped dataset from a rendered one.

Columns (all strings in the CSV; empty string for "not known / not applicable"):

=================== =====================================================================
image_path          path of the JPEG relative to the CSV's folder (POSIX separators)
sha256              hex sha256 of the stored image file's bytes
manufacturer        normalised manufacturer: ``Airbus``, ``Boeing`` or ``Other``
icao_type           ICAO type designator (ICAO Doc 8643), e.g. ``A320``, ``B738``, ``B77W``;
                    empty when the type could not be mapped
sub_model           model variant as a readable string, e.g. ``737-800``, ``A330-200F``
airline             airline / livery name
source              ``flightgear`` (rendered by ``synth``) or ``planespotters`` (``scrape``)
source_id           id of the item at its source (photo id, or ``<folder>/<livery>/<view>``)
page_url            photo page URL (scraped) — the attribution link
image_url           URL the image was downloaded from (scraped)
registration        aircraft registration (scraped), e.g. ``N136DQ``
msn                 manufacturer serial number (scraped)
manufacturer_raw    manufacturer as written at the source
type_raw            aircraft type as written at the source, e.g. ``Boeing 737-8AS(WL)``
location            where the photo was taken (scraped)
date                date the photo was taken, ISO 8601 ``YYYY-MM-DD`` when known
photographer        photographer's name (scraped); copyright holder of the photo
attribution         human-readable credit line
licence             licence of the image (SPDX id where one exists)
width, height       stored image size in pixels
phash               64-bit perceptual hash (16 hex digits) of the image
near_duplicate_of   ``image_path`` of an earlier near-duplicate row, else empty
split               ``train``, ``validation`` or ``test``; empty when not assigned
family              aircraft family (``A320`` = A318-A321, ``B737`` incl. the MAX, ``B777`` …);
                    empty means "derive it from ``icao_type``" (:func:`family_of`);
                    set alone when a source pins only the family
crop_box            ``left top right bottom`` pixel box (Pillow order, integers) the image is cut
                    to before preprocessing, e.g. FGVC-Aircraft's 20-px credit banner removed;
                    empty = the whole image
=================== =====================================================================

``family`` and ``crop_box`` came last and later: CSVs written before them are still read (the
readers fill them with ``""``).

Families (:data:`FAMILIES`, :func:`family_of`): the values of ``family``, the middle level of the
label hierarchy manufacturer → family → ICAO type. A family groups the designators of one
airframe line, as spotters and the real-photo sets name it: ``A320`` is the A318/A319/A320/A321
(ceo and neo), ``B737`` every 737 including the MAX, ``B747`` every 747 including the freighters
and the LCF. Family names are the ones used by ``../shared/data/real-airliners/labels.csv``
(``A220 A300 … B787``); designators are from ICAO Doc 8643 (Aircraft Type Designators).
A family name can equal a designator (family ``A320`` holds designator ``A320``): code that mixes
both levels must keep them apart (the cascade names family answers ``"<family> family"``).

Part of :mod:`dataset`, the data contract every source writes and ``model/`` reads (the
import-linter contracts in ``pyproject.toml``: ``dataset`` imports none of the project's other
packages); this module imports nothing.
"""

from __future__ import annotations

COLUMNS: tuple[str, ...] = (
    "image_path",
    "sha256",
    "manufacturer",
    "icao_type",
    "sub_model",
    "airline",
    "source",
    "source_id",
    "page_url",
    "image_url",
    "registration",
    "msn",
    "manufacturer_raw",
    "type_raw",
    "location",
    "date",
    "photographer",
    "attribution",
    "licence",
    "width",
    "height",
    "phash",
    "near_duplicate_of",
    "split",
    "family",
    "crop_box",
)

#: Columns a CSV written before they existed may lack; readers fill them with ``""``.
OPTIONAL_COLUMNS: tuple[str, ...] = ("family", "crop_box")

MANUFACTURERS: tuple[str, ...] = ("Airbus", "Boeing", "Other")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
METADATA_FILE = "metadata.csv"


def empty_row() -> dict[str, str]:
    """A row with every column present and empty (``""``)."""
    return {c: "" for c in COLUMNS}


# ---------------------------------------------------------------- families

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
