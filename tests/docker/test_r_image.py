"""The R reference server image (r/plumber.R through reticulate on the CPU image's venv)."""

from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.docker


def test_r_plumber_image_answers_like_the_python_server(container_factory, r_image, container_models,
                                                        server, smoke_photos):
    c = container_factory(r_image, args=("--read-only", "--tmpfs", "/tmp", "-v", f"{container_models}:/models:ro"))
    c.wait_ready()
    photo = smoke_photos[4]
    answers = []
    for url in (c.url, server.url):
        with open(photo, "rb") as f:
            r = requests.post(url + "/predict", files={"image": (photo.name, f, "image/jpeg")}, timeout=120)
        assert r.status_code == 200, r.text
        answers.append({k: v for k, v in r.json().items() if k != "timing_ms"})
    assert answers[0] == answers[1]
