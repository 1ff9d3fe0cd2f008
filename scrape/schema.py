"""The metadata CSV schema shared by every image source (``scrape/`` and ``synth/``).

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
                    empty means "derive it from ``icao_type``" (:func:`scrape.families.family_of`);
                    set alone when a source pins only the family
crop_box            ``left top right bottom`` pixel box (Pillow order, integers) the image is cut
                    to before preprocessing, e.g. FGVC-Aircraft's 20-px credit banner removed;
                    empty = the whole image
=================== =====================================================================

``family`` and ``crop_box`` came last and later: CSVs written before them are still read (the
readers fill them with ``""``).
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
