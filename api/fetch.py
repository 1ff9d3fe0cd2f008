"""``GET /predict?url=``: fetch an image over HTTP(S) without opening an SSRF hole.

Off by default (``PLANESPOTTER_URL_FETCH``). When on, a URL is fetched only if

1. its scheme is ``http`` or ``https``, it carries no user-info, and its host is on the allow-list
   (``PLANESPOTTER_URL_ALLOW_HOSTS``);
2. every address the host resolves to is a public (globally routable) unicast address — no
   loopback, private (RFC 1918 / ULA), link-local (cloud metadata at 169.254.169.254), shared
   (RFC 6598), multicast, reserved or unspecified address, IPv4-mapped IPv6 included
   (Python's :mod:`ipaddress` ``is_global``, from the IANA special-purpose registries) — unless
   it lies in a network listed in ``PLANESPOTTER_URL_ALLOW_NETWORKS``;
3. the connection goes to the very address that was checked (the socket is pinned to it, with the
   host name kept for ``Host`` and TLS SNI/certificate checks), so DNS rebinding between check and
   connect is impossible;
4. redirects stay on the same host (each hop checked again, at most :data:`MAX_REDIRECTS`);
5. the body stays under ``URL_MAX_BYTES`` and the whole fetch under ``URL_TIMEOUT_S`` seconds.

HTTP is done by urllib3 (the library under requests) because it can pin the address per request.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urljoin, urlsplit

import urllib3

from .errors import APIError

MAX_REDIRECTS = 3
MAX_URL_LENGTH = 2048
REDIRECT_STATUSES = {301, 302, 303, 307, 308}

#: ``resolve(host, port) -> [ip, ...]``; replaceable in tests (see :func:`validate_url`).
Resolver = Callable[[str, int], list]


def system_resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (``socket.getaddrinfo``, TCP), as strings."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise APIError(400, "url_unresolvable", f"cannot resolve {host!r}: {e}") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


@dataclass(frozen=True)
class URLPolicy:
    """The settings of ``?url=`` fetching (see :class:`api.config.Config`)."""

    allow_hosts: tuple[str, ...] = ()
    allow_networks: tuple = ()
    max_bytes: int = 32 * 1024 * 1024
    timeout_s: float = 5.0

    @classmethod
    def from_config(cls, cfg) -> "URLPolicy":
        """From a Flask config mapping (``URL_ALLOW_HOSTS``, ``URL_ALLOW_NETWORKS``: comma-separated).

        Raises:
            ValueError: a malformed network in ``URL_ALLOW_NETWORKS``.
        """
        hosts = tuple(h.strip().lower().rstrip(".") for h in str(cfg["URL_ALLOW_HOSTS"]).split(",") if h.strip())
        nets = tuple(ipaddress.ip_network(n.strip(), strict=False)
                     for n in str(cfg["URL_ALLOW_NETWORKS"]).split(",") if n.strip())
        return cls(hosts, nets, int(cfg["URL_MAX_BYTES"]), float(cfg["URL_TIMEOUT_S"]))


def host_allowed(host: str, allow_hosts: tuple[str, ...]) -> bool:
    """Whether ``host`` matches the allow-list: an entry ``example.org`` matches that host only;
    ``.example.org`` matches it and any subdomain. Case-insensitive; a trailing dot is ignored."""
    host = host.lower().rstrip(".")
    for entry in allow_hosts:
        if entry.startswith("."):
            if host == entry[1:] or host.endswith(entry):
                return True
        elif host == entry:
            return True
    return False


def address_problem(ip: str, allow_networks: tuple = ()) -> str | None:
    """Why ``ip`` may not be fetched from (``"loopback"``, ``"private"``, ...), or None if it is a
    public unicast address or lies in one of ``allow_networks``."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if any(addr in net for net in allow_networks):
        return None
    for kind in ("loopback", "unspecified", "link_local", "multicast", "private", "reserved"):
        if getattr(addr, f"is_{kind}"):
            return kind.replace("_", "-")
    if not addr.is_global:
        return "non-global"
    return None


@dataclass
class Target:
    """A checked URL: where to connect (``ip``) and what to ask for."""

    scheme: str
    host: str
    port: int
    ip: str
    path: str
    url: str = field(repr=False, default="")


def validate_url(url: str, policy: URLPolicy, resolve: Resolver = system_resolve) -> Target:
    """Check ``url`` against ``policy`` and resolve it.

    Args:
        url: the ``?url=`` value. policy: the settings. resolve: DNS resolver (tests pass a fake
            one to check the rules without a network).
    Returns:
        The :class:`Target` to connect to (the first resolved address; all were checked).
    Raises:
        APIError: 400 ``bad_url`` (malformed, not http(s), user-info, too long), 403
            ``url_host_not_allowed``, 403 ``url_address_forbidden`` (resolves to a non-public
            address), 400 ``url_unresolvable``.
    """
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise APIError(400, "bad_url", f"url must be an http(s) URL of at most {MAX_URL_LENGTH} characters")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise APIError(400, "bad_url", "url contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise APIError(400, "bad_url", f"malformed url: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise APIError(400, "bad_url", "only http and https URLs can be fetched")
    if parts.username is not None or parts.password is not None:
        raise APIError(400, "bad_url", "URLs with user-info (user:password@) are refused")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise APIError(400, "bad_url", "url has no host")
    if not host_allowed(host, policy.allow_hosts):
        raise APIError(403, "url_host_not_allowed", f"host {host!r} is not on the URL allow-list")
    port = port or (443 if scheme == "https" else 80)
    addresses = resolve(host, port)
    if not addresses:
        raise APIError(400, "url_unresolvable", f"{host!r} resolves to no address")
    for ip in addresses:
        problem = address_problem(ip, policy.allow_networks)
        if problem:
            raise APIError(403, "url_address_forbidden",
                           f"host {host!r} resolves to a {problem} address ({ip}); refused (SSRF guard)")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, host, port, addresses[0], path, url)


def fetch(url: str, policy: URLPolicy, resolve: Resolver = system_resolve) -> bytes:
    """Fetch ``url`` under ``policy`` (see the module docstring).

    Returns:
        The response body (at most ``policy.max_bytes`` bytes).
    Raises:
        APIError: the :func:`validate_url` errors; 403 ``url_redirect_forbidden`` (redirect to
            another host, or too many); 413 ``url_too_large``; 502 ``url_fetch_failed``
            (connection failed or a non-200 answer); 504 ``url_fetch_timeout``.
    """
    deadline = time.monotonic() + policy.timeout_s
    target = validate_url(url, policy, resolve)
    for _ in range(MAX_REDIRECTS + 1):
        resp = _open(target, deadline)
        try:
            if resp.status in REDIRECT_STATUSES:
                location = resp.headers.get("Location", "")
                nxt = urljoin(target.url, location)
                new_host = (urlsplit(nxt).hostname or "").rstrip(".").lower()
                if new_host != target.host.lower():
                    raise APIError(403, "url_redirect_forbidden",
                                   f"{target.host!r} redirects to another host ({new_host!r}); refused")
                target = validate_url(nxt, policy, resolve)
                continue
            if resp.status != 200:
                raise APIError(502, "url_fetch_failed", f"{target.host} answered HTTP {resp.status}")
            return _read_limited(resp, policy.max_bytes, deadline)
        finally:
            resp.release_conn()
    raise APIError(403, "url_redirect_forbidden", f"more than {MAX_REDIRECTS} redirects")


def _open(target: Target, deadline: float):
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise APIError(504, "url_fetch_timeout", "fetching the url took too long")
    timeout = urllib3.Timeout(connect=remaining, read=remaining)
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(target.ip, target.port, server_hostname=target.host,
                                           assert_hostname=target.host, cert_reqs="CERT_REQUIRED",
                                           timeout=timeout, retries=False, maxsize=1)
    else:
        pool = urllib3.HTTPConnectionPool(target.ip, target.port, timeout=timeout, retries=False, maxsize=1)
    try:
        return pool.urlopen("GET", target.path, headers={"Host": host_header, "User-Agent": "planespotter",
                                                         "Accept": "image/jpeg, image/png, image/webp"},
                            redirect=False, retries=False, preload_content=False, assert_same_host=False)
    except (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.ReadTimeoutError):
        raise APIError(504, "url_fetch_timeout", f"{target.host} did not answer in time") from None
    except urllib3.exceptions.HTTPError as e:
        raise APIError(502, "url_fetch_failed", f"cannot fetch from {target.host}: {type(e).__name__}") from None


def _read_limited(resp, max_bytes: int, deadline: float) -> bytes:
    length = resp.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise APIError(413, "url_too_large", f"the image is {length} bytes, more than {max_bytes}")
    chunks, total = [], 0
    try:
        for chunk in resp.stream(64 * 1024):
            total += len(chunk)
            if total > max_bytes:
                raise APIError(413, "url_too_large", f"the image is larger than {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise APIError(504, "url_fetch_timeout", "fetching the url took too long")
            chunks.append(chunk)
    except urllib3.exceptions.ReadTimeoutError:
        raise APIError(504, "url_fetch_timeout", "the image download stalled") from None
    except urllib3.exceptions.HTTPError as e:
        raise APIError(502, "url_fetch_failed", f"download failed: {type(e).__name__}") from None
    return b"".join(chunks)
