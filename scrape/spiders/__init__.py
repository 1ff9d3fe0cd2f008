"""Scrapy spiders of the planespotter crawler (see :mod:`scrape.spiders.listing`)."""
