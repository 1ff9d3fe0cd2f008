"""Scrapy items of the crawler."""

from __future__ import annotations

import scrapy

from dataset.schema import COLUMNS

_EXTRA = ("image_urls", "images", "image_error", "listing_url")

#: One photo card: every column of :data:`dataset.schema.COLUMNS` (strings, '' when
#: unknown) plus ``image_urls`` (list with the one URL to download, for Scrapy's
#: ImagesPipeline), ``images`` (its results), ``image_error`` (why the image failed) and
#: ``listing_url`` (the page the card was on).
PhotoItem = type(
    "PhotoItem",
    (scrapy.Item,),
    {"__module__": __name__, "__doc__": "One planespotters photo card (schema columns + image fields).",
     **{name: scrapy.Field() for name in (*COLUMNS, *_EXTRA)}},
)
