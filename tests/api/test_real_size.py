"""Camera-size uploads through real gunicorn: a version with scaled JPEG decoding
(``jpeg_draft``) serves exactly the tensors of the one preprocessing, a 24 MP JPEG is answered
200 under the default limits, and a body over the limit gets a 413 with a JSON error that names
the limit.

Equality checks compare the model's probabilities for two encodings of the same tensor: requests
are sequential, so every forward pass has batch size 1 and the results are bit-identical when the
preprocessed tensors are.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import requests
from PIL import Image

from api.config import Config
from client.server import Server
from model import preprocessing as pp


def camera_photo(w: int, h: int) -> bytes:
    """A w x h JPEG (q90) with gradients, stripes and mild noise: a few MB at 24 MP."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    arr = np.stack([255 * xx / (w - 1), 255 * yy / (h - 1), 127 + 100 * np.sin((xx + yy) / 40)], -1)
    arr[: h // 3, : w // 4] *= 0.3
    arr += rng.normal(0, 4, arr.shape).astype(np.float32)
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def draft_model(tiny_model_dir, tmp_path_factory):
    from model.bench.score import respec_version

    return respec_version(tiny_model_dir, tmp_path_factory.mktemp("draft-models"), jpeg_draft=2)


@pytest.fixture(scope="module")
def draft_server(draft_model):
    """gunicorn with the drafted tiny model and the default limits (api.config.Config)."""
    with Server(draft_model) as srv:
        srv.wait_ready()
        yield srv


@pytest.fixture(scope="module")
def photo_24mp() -> bytes:
    data = camera_photo(6000, 4000)
    assert len(data) < Config.MAX_CONTENT_LENGTH
    return data


def post(srv, data: bytes, ctype: str = "image/jpeg") -> requests.Response:
    return requests.post(srv.url + "/predict", data=data, headers={"Content-Type": ctype}, timeout=120)


def probs(resp: requests.Response) -> list[float]:
    assert resp.status_code == 200, resp.text
    p = resp.json()["predictions"][0]
    return [p["manufacturer"]["probability"]] + [t["probability"] for t in p["top_k"]]


def test_the_server_uses_the_drafted_tensor(draft_server, draft_model):
    meta = requests.get(draft_server.url + "/metadata", timeout=30).json()
    assert meta["preprocessing"]["jpeg_draft"] == 2
    spec = pp.PreprocessingSpec.from_dict(meta["preprocessing"])
    data = camera_photo(1400, 1000)
    assert pp.decode_for_spec(data, spec)[1] == 8
    drafted = pp.to_uint8(data, spec)
    full = pp.to_uint8(data, pp.PreprocessingSpec(32, 32))
    assert not np.array_equal(drafted, full)
    # a PNG of exactly the drafted 32x32 pixels is not resized: the same tensor as the JPEG's
    assert probs(post(draft_server, data)) == probs(post(draft_server, png(drafted), "image/png"))
    r = requests.post(draft_server.url + "/predict", files={"image": ("p.jpg", data, "image/jpeg")}, timeout=60)
    assert probs(r) == probs(post(draft_server, png(drafted), "image/png"))


def test_a_24_megapixel_jpeg_is_answered(draft_server, photo_24mp):
    assert Image.open(io.BytesIO(photo_24mp)).size == (6000, 4000)
    r = post(draft_server, photo_24mp)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["manufacturer"]["label"] in ("Airbus", "Boeing") and body["timing_ms"]["decode"] > 0
    r = requests.post(draft_server.url + "/predict", files={"image": ("camera.jpg", photo_24mp, "image/jpeg")},
                      timeout=120)
    assert r.status_code == 200, r.text


def test_a_24_megapixel_jpeg_is_answered_by_a_full_decode_version(server, photo_24mp):
    r = post(server, photo_24mp)  # the tiny model without jpeg_draft: decoded at full size
    assert r.status_code == 200, r.text


def test_a_body_over_the_default_limit_is_a_json_413(draft_server, photo_24mp):
    limit = Config.MAX_CONTENT_LENGTH
    over = photo_24mp + b"\0" * (limit + 1 - len(photo_24mp))  # a real JPEG, padded past the limit
    for r in (post(draft_server, over),
              requests.post(draft_server.url + "/predict", files={"image": ("big.jpg", over, "image/jpeg")},
                            timeout=120)):
        assert r.status_code == 413, r.text[:300]
        assert r.headers["Content-Type"].startswith("application/json")
        body = r.json()
        assert body["error"] == "request_entity_too_large" and str(limit) in body["message"]
    assert requests.get(draft_server.url + "/healthz", timeout=5).status_code == 200


def test_the_limits_are_consistent_and_documented(draft_server):
    spec = requests.get(draft_server.url + "/openapi.json", timeout=30).json()
    lim = spec["info"]["x-limits"]
    assert lim == {"max_body_bytes": Config.MAX_CONTENT_LENGTH, "max_images_per_request": Config.MAX_IMAGES_PER_REQUEST,
                   "max_image_pixels": pp.MAX_IMAGE_PIXELS, "max_url_bytes": Config.URL_MAX_BYTES}
    assert str(Config.MAX_CONTENT_LENGTH) in spec["components"]["responses"]["TooLarge"]["description"]
    # a 24 MP photo fits the pixel limit; a 15 MB camera file fits the body, also base64-encoded in JSON,
    # and the url fetch takes what an upload takes
    assert pp.MAX_IMAGE_PIXELS >= 6000 * 4000
    assert Config.MAX_CONTENT_LENGTH >= 15_000_000 * 4 / 3 and Config.URL_MAX_BYTES == Config.MAX_CONTENT_LENGTH
