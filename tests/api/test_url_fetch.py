"""``GET /predict?url=``: off by default, allow-list, SSRF guard, redirects, size and time limits.

The rules are checked on :func:`api.fetch.validate_url` with a fake resolver (any address can be
tried without a network), then end to end through gunicorn against a real loopback image host on
127.0.0.2, which the server exempts from the SSRF guard (``URL_ALLOW_NETWORKS=127.0.0.2/32``) while
127.0.0.1 and ``localhost`` stay refused as loopback.
"""

from __future__ import annotations

import ipaddress

import pytest
import requests

from api.errors import APIError
from api.fetch import URLPolicy, host_allowed, validate_url

POLICY = URLPolicy(allow_hosts=("photos.example", ".cdn.example"))


def fake_resolver(table: dict[str, list[str]]):
    def resolve(host, port):
        return table[host]
    return resolve


def refused(url: str, table: dict[str, list[str]], policy: URLPolicy = POLICY) -> APIError:
    with pytest.raises(APIError) as e:
        validate_url(url, policy, fake_resolver(table))
    return e.value


def test_public_address_on_allowed_host_passes():
    t = validate_url("https://photos.example/a/b.jpg?x=1", POLICY, fake_resolver({"photos.example": ["93.184.216.34"]}))
    assert (t.scheme, t.host, t.port, t.ip, t.path) == ("https", "photos.example", 443, "93.184.216.34", "/a/b.jpg?x=1")
    t = validate_url("http://img.cdn.example:8080/x", POLICY, fake_resolver({"img.cdn.example": ["2606:4700::1"]}))
    assert (t.port, t.ip) == (8080, "2606:4700::1")


@pytest.mark.parametrize("ip, kind", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("10.1.2.3", "private"), ("192.168.0.10", "private"), ("172.16.5.4", "private"), ("fd00::5", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("0.0.0.0", "unspecified"),
    ("100.64.0.1", "non-global"), ("224.0.0.1", "multicast"),
])
def test_non_public_addresses_are_refused(ip, kind):
    e = refused("http://photos.example/p.jpg", {"photos.example": [ip]})
    assert (e.status, e.code) == (403, "url_address_forbidden")
    assert kind in e.message and ip in e.message


def test_one_private_address_among_public_ones_is_refused():
    e = refused("http://photos.example/p.jpg", {"photos.example": ["93.184.216.34", "10.0.0.1"]})
    assert e.code == "url_address_forbidden"


def test_allow_networks_exempts_only_listed_networks():
    policy = URLPolicy(allow_hosts=("store.internal",), allow_networks=(ipaddress.ip_network("10.1.2.0/24"),))
    assert validate_url("http://store.internal/x", policy, fake_resolver({"store.internal": ["10.1.2.7"]})).ip == "10.1.2.7"
    assert refused("http://store.internal/x", {"store.internal": ["10.1.3.7"]}, policy).code == "url_address_forbidden"


@pytest.mark.parametrize("url, status, code", [
    ("http://evil.example/p.jpg", 403, "url_host_not_allowed"),
    ("http://photos.example.evil.example/p.jpg", 403, "url_host_not_allowed"),
    ("http://cdn.example.evil/p.jpg", 403, "url_host_not_allowed"),
    ("file:///etc/passwd", 400, "bad_url"),
    ("ftp://photos.example/p.jpg", 400, "bad_url"),
    ("gopher://photos.example:70/_x", 400, "bad_url"),
    ("http://user:pw@photos.example/p.jpg", 400, "bad_url"),
    ("http:///p.jpg", 400, "bad_url"),
    ("http://photos.example:99999/p.jpg", 400, "bad_url"),
    ("http://photos.example/a b.jpg", 400, "bad_url"),
    ("http://photos.example/" + "a" * 3000, 400, "bad_url"),
])
def test_malformed_or_unlisted_urls_are_refused(url, status, code):
    e = refused(url, {"photos.example": ["93.184.216.34"]})
    assert (e.status, e.code) == (status, code)


def test_host_allow_list_matching():
    assert host_allowed("Photos.Example.", ("photos.example",))
    assert host_allowed("a.b.cdn.example", (".cdn.example",)) and host_allowed("cdn.example", (".cdn.example",))
    assert not host_allowed("xcdn.example", (".cdn.example",))
    assert not host_allowed("anything", ())


# ---------------------------------------------------------------- through gunicorn

def get(srv, url: str) -> requests.Response:
    return requests.get(srv.url + "/predict", params={"url": url}, timeout=30)


def test_url_fetch_is_off_by_default(server, image_host):
    r = get(server, image_host + "/plane.jpg")
    assert r.status_code == 403 and r.json()["error"] == "url_fetch_disabled"


def test_allowed_host_is_fetched_and_classified(api_server, image_host):
    r = get(api_server, image_host + "/plane.jpg")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictions"][0]["file"] == image_host + "/plane.jpg"
    assert body["manufacturer"]["label"] in ("Airbus", "Boeing")
    same = get(api_server, image_host + "/redirect-same")
    assert same.status_code == 200 and same.json()["manufacturer"] == body["manufacturer"]


@pytest.mark.parametrize("make_url, status, code", [
    (lambda h: h.replace("127.0.0.2", "127.0.0.1") + "/plane.jpg", 403, "url_address_forbidden"),
    (lambda h: h.replace("127.0.0.2", "localhost") + "/plane.jpg", 403, "url_address_forbidden"),
    (lambda h: "http://169.254.169.254/latest/meta-data/", 403, "url_host_not_allowed"),
    (lambda h: h + "/redirect-other", 403, "url_redirect_forbidden"),
    (lambda h: h + "/big.jpg", 413, "url_too_large"),
    (lambda h: h + "/slow.jpg", 504, "url_fetch_timeout"),
    (lambda h: h + "/missing.jpg", 502, "url_fetch_failed"),
    (lambda h: "file:///etc/passwd", 400, "bad_url"),
])
def test_refused_fetches(api_server, image_host, make_url, status, code):
    r = get(api_server, make_url(image_host))
    assert r.status_code == status, r.text
    assert r.json()["error"] == code
    if code == "url_address_forbidden":
        assert "loopback" in r.json()["message"]


def test_path_and_url_together_is_400(api_server, image_host):
    r = requests.get(api_server.url + "/predict", params={"url": image_host + "/plane.jpg", "path": "plane.png"},
                     timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "bad_parameter"
