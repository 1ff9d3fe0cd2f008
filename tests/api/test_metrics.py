"""``/metrics`` through gunicorn with two workers (prometheus_client multiprocess mode): whichever
worker answers reports the sum over both."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import requests
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families


def scrape(srv) -> list:
    r = requests.get(srv.url + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    return [s for fam in text_string_to_metric_families(r.text) for s in fam.samples]


def value(samples, name: str, **labels) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), (90, 140, 200)).save(buf, "PNG")
    return buf.getvalue()


def test_request_counts_are_summed_over_workers(api_server, metrics_dir):
    before = value(scrape(api_server), "planespotter_requests_total", route="/ping", method="GET", status="200")
    for _ in range(20):
        requests.get(api_server.url + "/ping", timeout=5)  # a new connection each: both workers answer
    counts = [value(scrape(api_server), "planespotter_requests_total", route="/ping", status="200") for _ in range(4)]
    assert counts == [before + 20] * 4
    pids = {f.stem.rsplit("_", 1)[-1] for f in metrics_dir.glob("*.db")}
    assert {str(p) for p in api_server.worker_pids()} <= pids  # both workers write samples


def test_latency_histogram_batch_sizes_and_errors(api_server):
    s0 = scrape(api_server)
    body = png()

    def one(_):
        return requests.post(api_server.url + "/predict", data=body, headers={"Content-Type": "image/png"},
                             timeout=60).status_code

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(one, range(12))) == [200] * 12
    files = [("image", (f"{i}.png", body, "image/png")) for i in range(3)]
    assert requests.post(api_server.url + "/predict", files=files, timeout=60).status_code == 200
    assert requests.post(api_server.url + "/predict", data=b"", headers={"Content-Type": "image/png"},
                         timeout=10).status_code == 400
    assert requests.get(api_server.url + "/no/such/route", timeout=10).status_code == 404
    s1 = scrape(api_server)

    def delta(name, **labels):
        return value(s1, name, **labels) - value(s0, name, **labels)

    ok = {"route": "/predict", "method": "POST", "status": "200"}
    assert delta("planespotter_requests_total", **ok) == 13
    assert delta("planespotter_request_duration_seconds_count", **ok) == 13
    assert delta("planespotter_request_duration_seconds_bucket", le="+Inf", **ok) == 13
    assert delta("planespotter_request_duration_seconds_sum", **ok) > 0
    assert delta("planespotter_requests_total", route="/predict", status="400") == 1
    assert delta("planespotter_requests_total", route="unmatched", status="404") == 1
    # every image went through exactly one forward pass
    assert delta("planespotter_batch_size_sum") == 15
    assert 1 <= delta("planespotter_batch_size_count") <= 15


def test_in_flight_gauge_and_model_load_time(api_server):
    samples = scrape(api_server)
    assert value(samples, "planespotter_requests_in_flight") == 1.0  # the /metrics request itself
    loads = {s.labels["pid"]: s.value for s in samples if s.name == "planespotter_model_load_seconds"}
    assert set(loads) == {str(p) for p in api_server.worker_pids()}
    assert all(v > 0 for v in loads.values())
    assert value(samples, "planespotter_model_ready") == 2.0
