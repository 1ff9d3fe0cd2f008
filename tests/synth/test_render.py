"""Rendering real liveries on the CPU (moderngl on headless EGL / llvmpipe)."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from synth.render import Renderer, degrade, encode_jpeg, sample_view

SIZE = 96


@pytest.fixture(scope="module")
def renderer():
    return Renderer(SIZE)


def _side_view(rng_seed: int, azimuth: float, gear_down: bool):
    v = sample_view(np.random.default_rng(rng_seed))
    return dataclasses.replace(
        v, azimuth=azimuth, elevation=0.0, bank=0.0, pitch=0.0, gear_down=gear_down, fill=0.85,
        offset_x=0.0, offset_y=0.0, haze=0.0, clouds=0.0, fov=20.0,
    )


@pytest.mark.parametrize("key", ["738/738-Ryanair", "A380/388-Emirates", "747/744-Lufthansa"])
def test_render_has_aircraft_on_sky(renderer, by_key, key):
    v = sample_view(np.random.default_rng(3))
    img, mask = renderer.render(by_key[key], v, return_mask=True)
    assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
    assert mask.shape == (SIZE, SIZE)
    cover = (mask > 127).mean()
    assert 0.02 < cover < 0.9  # framed: neither tiny nor overflowing
    # Aircraft pixels differ from the background, and the image is not uniform.
    plane = img[mask > 200].astype(float)
    sky = img[mask == 0].astype(float)
    assert np.abs(plane.mean(0) - sky.mean(0)).max() > 5 or plane.std() > 2 * sky.std() + 5
    assert img.std() > 5
    jpg = encode_jpeg(degrade(img, v, np.random.default_rng(0)), v.jpeg_quality)
    with Image.open(io.BytesIO(jpg)) as im:
        assert im.format == "JPEG" and im.size == (SIZE, SIZE) and im.mode == "RGB"


def test_render_is_deterministic(renderer, by_key):
    v = sample_view(np.random.default_rng(11))
    a = renderer.render(by_key["A320/A320-Lufthansa"], v)
    b = renderer.render(by_key["A320/A320-Lufthansa"], v)
    assert np.array_equal(a, b)


def test_not_mirrored_fin_at_tail(renderer, by_key):
    """From the left side (camera on +Z) the nose points left, so the fin is in the right half."""
    lv = by_key["A320/A320-Lufthansa"]
    _, left = renderer.render(lv, _side_view(1, azimuth=90.0, gear_down=False), return_mask=True)
    _, right = renderer.render(lv, _side_view(1, azimuth=270.0, gear_down=False), return_mask=True)

    def fin_column(mask):
        rows = np.where(mask > 127, np.arange(SIZE)[:, None], SIZE)
        return int(np.argmin(rows.min(0)))  # column of the highest aircraft pixel

    assert fin_column(left) > SIZE / 2
    assert fin_column(right) < SIZE / 2


def test_gear_select_changes_silhouette(renderer, by_key):
    lv = by_key["738/738-Ryanair"]
    _, up = renderer.render(lv, _side_view(2, azimuth=90.0, gear_down=False), return_mask=True)
    _, down = renderer.render(lv, _side_view(2, azimuth=90.0, gear_down=True), return_mask=True)
    assert (down > 127).sum() > (up > 127).sum()


def test_spotter_views_are_never_nose_or_tail_on():
    import numpy as np

    from synth.render import sample_view

    rng = np.random.default_rng(0)
    spotter = [sample_view(rng, "spotter") for _ in range(400)]
    # azimuth 0 looks from behind the tail, 180 from the nose: spotter views stay 25+ degrees away
    off_axis = [min(v.azimuth % 180, 180 - v.azimuth % 180) for v in spotter]
    assert min(off_axis) >= 25 - 1e-9
    assert all(-30 <= v.elevation <= 10 for v in spotter)
    assert {v.azimuth < 180 for v in spotter} == {True, False}  # both sides
    any_view = [sample_view(rng, "all") for _ in range(400)]
    assert min(min(v.azimuth % 180, 180 - v.azimuth % 180) for v in any_view) < 25
    with pytest.raises(ValueError):
        sample_view(rng, "sideways")
