"""The crawler's identity: a User-Agent that names the project and a contact."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"^(?:mailto:)?[^@\s()]+@[^@\s()]+\.[^@\s()]+$")
_URL = re.compile(r"^https?://[^\s()]+$")

CONTACT_HELP = (
    "a contact is required in the User-Agent: pass --contact you@example.org "
    "(or an https:// URL), or set the Scrapy setting CONTACT"
)


class ContactRequiredError(ValueError):
    """No usable contact was given; the crawler refuses to start."""


def contact_url(contact: str | None) -> str:
    """Normalise a contact to a URL: ``you@example.org`` → ``mailto:you@example.org``;
    ``mailto:`` and ``http(s)://`` URLs are kept. Raises :class:`ContactRequiredError`
    when empty or neither an e-mail address nor an http(s) URL."""
    c = (contact or "").strip()
    if not c:
        raise ContactRequiredError(CONTACT_HELP)
    if _URL.match(c):
        return c
    if _EMAIL.match(c):
        return c if c.startswith("mailto:") else f"mailto:{c}"
    raise ContactRequiredError(f"not an e-mail address or http(s) URL: {c!r}; {CONTACT_HELP}")


def build_user_agent(contact: str | None, product: str = "planespotter/0.1") -> str:
    """``"<product> (+<contact URL>)"``, e.g. ``planespotter/0.1 (+mailto:you@example.org)``.

    Raises :class:`ContactRequiredError` (see :func:`contact_url`).
    """
    return f"{product} (+{contact_url(contact)})"
