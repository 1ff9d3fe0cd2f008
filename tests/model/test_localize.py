"""The localizer (model.localize): the aircraft gate and the crop box from the class activation
map of EfficientNet-Lite0's own ImageNet head, on real photos and real negatives; the crop rule
in the preprocessing spec; the cascade's "not an aircraft" and "another manufacturer" answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model import localize as L
from model import negatives
from model import preprocessing as pp
from model.cascade import NONE_TEXT, OTHER_TEXT, Cascade
from model.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]
SMOKE = (ROOT / ".." / "shared" / "data" / "smoke-airliners").resolve()


def _blob(h=7, w=7, at=(1, 1)):
    cam = np.full((h, w), -3.0)
    cam[at] = 5.0
    return cam


def test_box_from_cam_surrounds_the_hot_cell_inside_the_image():
    rule = L.CropRule(margin=0.0, min_fraction=0.0, max_aspect=10, skip_area=1.01)
    box = L.box_from_cam(_blob(at=(1, 5)), 700, 350, rule)
    assert box is not None
    left, top, right, bottom = box
    assert 0 <= left < right <= 700 and 0 <= top < bottom <= 350
    # cell (row 1, col 5) of a 7x7 map over 700x350 covers x 500-600, y 50-100
    assert left <= 520 and right >= 580 and top <= 60 and bottom >= 90
    assert (right - left) * (bottom - top) < 0.2 * 700 * 350


def test_box_rules_margin_min_size_aspect_and_skip():
    small = L.CropRule(margin=0.0, min_fraction=0.0, max_aspect=10, skip_area=1.01)
    grown = L.CropRule(margin=0.5, min_fraction=0.5, max_aspect=1.5, skip_area=1.01)
    a, b = L.box_from_cam(_blob(), 1000, 1000, small), L.box_from_cam(_blob(), 1000, 1000, grown)
    assert (b[2] - b[0]) >= 500 and (b[3] - b[1]) >= 500 and (b[2] - b[0]) > (a[2] - a[0])
    assert max(b[2] - b[0], b[3] - b[1]) / min(b[2] - b[0], b[3] - b[1]) <= 1.5 + 1e-2
    assert L.box_from_cam(np.ones((7, 7)), 640, 480, L.CropRule()) is None  # fills the frame: no crop
    assert L.box_from_cam(np.full((7, 7), -1.0), 640, 480, L.CropRule()) is None  # nothing found


def test_compose_and_box_text():
    assert L.compose((10, 20, 110, 220), (5, 5, 50, 60)) == (15, 25, 60, 80)
    assert L.compose(None, (1, 2, 3, 4)) == (1, 2, 3, 4) and L.compose((1, 2, 3, 4), None) == (1, 2, 3, 4)
    assert L.box_text(None) == "" and L.box_text((1, 2, 3, 4)) == "1 2 3 4"


def test_crop_rule_lives_in_the_spec_and_older_specs_are_unchanged():
    old = pp.PreprocessingSpec(288, 288)
    assert "crop" not in old.to_dict() and old.crop_rule is None
    assert pp.PreprocessingSpec.from_dict(old.to_dict()).key() == old.key()
    rule = L.CropRule(threshold=0.4)
    new = pp.PreprocessingSpec(288, 288, crop=rule.to_dict())
    back = pp.PreprocessingSpec.from_dict(new.to_dict())
    assert back.crop_rule == rule and back.key() != old.key()
    with pytest.raises(ValueError):
        L.CropRule.from_dict({"method": "saliency"})


@pytest.fixture(scope="module")
def localizer():
    from model.backbones.efficientnet_lite import convert as lite

    try:
        lite.ensure_lite0_weights(ROOT / "models" / "backbones")
    except lite.Lite0WeightsUnavailableError as e:
        pytest.skip(f"EfficientNet-Lite0 weights unavailable: {e}")
    return L.build_localizer(224)


def _aircraft(localizer, images):
    a, cams = L.run(localizer, np.stack([L.localizer_input(im) for im in images]))
    return a, cams


def test_gate_tells_airliner_photos_from_images_without_aircraft(localizer):
    photos = sorted(SMOKE.glob("*.jpg"))
    if not photos:
        pytest.skip("no smoke photos")
    a, _ = _aircraft(localizer, [pp.decode_image(p) for p in photos])
    negs = negatives.bundled() + negatives.generated(16, seed=5)
    b, _ = _aircraft(localizer, [im for _, im in negs])
    assert len(negs) >= 30
    assert a.min() > 0.5, a  # measured 0.75-0.97
    assert b.max() < 0.05, dict(zip([n for n, _ in negs], b.round(4)))  # measured < 0.005 (skimage), < 0.04
    assert a.min() > 10 * b.max()


def test_cam_finds_a_small_aircraft_in_a_wide_scene(localizer):
    photos = sorted(SMOKE.glob("boeing_737-800*.jpg"))
    if not photos:
        pytest.skip("no smoke photos")
    plane = pp.decode_image(photos[0]).resize((400, 290))
    scene = Image.new("RGB", (1600, 900), (150, 185, 225))
    scene.paste(Image.new("RGB", (1600, 250), (80, 120, 60)), (0, 650))
    scene.paste(plane, (1100, 80))
    _, cams = _aircraft(localizer, [scene])
    box = L.box_from_cam(cams[0], *scene.size, L.CropRule())
    assert box is not None
    ix = max(0, min(box[2], 1500) - max(box[0], 1100))
    iy = max(0, min(box[3], 370) - max(box[1], 80))
    assert ix * iy >= 0.8 * 400 * 290, box  # the aircraft is inside the box (measured: all of it)
    assert (box[2] - box[0]) * (box[3] - box[1]) < 0.5 * 1600 * 900, box  # and the box is not the scene (0.38)


class _Const:
    def __init__(self, row):
        self.row = np.asarray([row], np.float32)

    def predict_on_batch(self, x):
        return np.repeat(self.row, len(x), 0)


def test_cascade_answers_not_an_aircraft_and_another_manufacturer(localizer):
    labels = {"manufacturer": ["Airbus", "Boeing", "Other"], "types": {"Boeing": ["B738", "B744"]},
              "families": {"Boeing": {"B738": "B737", "B744": "B747"}}, "aircraft_threshold": 0.05}
    spec = pp.PreprocessingSpec(32, 32, crop=L.CropRule().to_dict())
    boeing = Cascade(_Const([0.05, 0.9, 0.05]), {"Boeing": _Const([0.9, 0.1])}, labels, spec, "v", 0.6,
                     localizer=localizer, aircraft_threshold=0.05)
    ball = dict(negatives.generated(4, seed=0))["generated:ball-0-3"]
    scene = Image.new("RGB", (900, 500), (150, 185, 225))
    scene.paste(pp.decode_image(sorted(SMOKE.glob("boeing_737-800*.jpg"))[0]).resize((300, 210)), (550, 60))
    none, plane = Pipeline(boeing).predict([ball, scene])
    assert none["answer"] == {"level": "none", "label": "none", "text": NONE_TEXT, "source": "image"}
    assert none["manufacturer"]["label"] is None and none["aircraft"]["probability"] < 0.05
    assert not none["unsure"]
    assert plane["answer"]["level"] == "type" and plane["manufacturer"]["label"] == "Boeing"
    assert plane["aircraft"] == {"probability": pytest.approx(plane["aircraft"]["probability"]), "threshold": 0.05}
    left, top, right, bottom = plane["box"]
    assert 0 <= left < right <= 900 and 0 <= top < bottom <= 500
    other = Cascade(_Const([0.05, 0.05, 0.9]), {"Boeing": _Const([0.9, 0.1])}, labels, spec, "v", 0.6,
                    localizer=localizer, aircraft_threshold=0.05)
    res = Pipeline(other).predict([scene])[0]
    assert res["answer"] == {"level": "manufacturer", "label": "Other", "text": OTHER_TEXT, "source": "image"}
    assert res["family"]["label"] is None and res["type"]["label"] is None


def test_flip_tta_averages_the_image_and_its_mirror():
    class Left:  # probability of class 0 = mean brightness of the left half
        def predict_on_batch(self, x):
            p = x[:, :, : x.shape[2] // 2].mean(axis=(1, 2, 3))
            return np.stack([p, 1 - p], 1)

    x = np.zeros((1, 8, 8, 3), np.float32)
    x[:, :, :4] = 1.0
    labels = {"manufacturer": ["Airbus", "Boeing"], "types": {}}
    plain = Cascade(Left(), {}, labels, pp.PreprocessingSpec(8, 8), "v").probabilities(x)[0]
    tta = Cascade(Left(), {}, {**labels, "tta": "flip"}, pp.PreprocessingSpec(8, 8), "v").probabilities(x)[0]
    assert plain[0] == pytest.approx([1.0, 0.0]) and tta[0] == pytest.approx([0.5, 0.5])
