"""Scaled JPEG decoding (``PreprocessingSpec.jpeg_draft``): the spec field and its omission rule,
older specs keep the full-size decode, the DCT scale rule, EXIF orientation and crop boxes on a
drafted image, and byte-equal tensors on the training and batch-scoring paths.

Images are generated here (smooth gradients, stripes and mild noise, so that JPEG keeps them
detailed but small). Closeness to the full-size decode is measured in mean absolute difference of
uint8 pixels; exact equality is asserted wherever two paths must agree.
"""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
from PIL import Image

from model import preprocessing as pp

DRAFT = pp.PreprocessingSpec(32, 32, jpeg_draft=2)
FULL = pp.PreprocessingSpec(32, 32)


def photo(w: int, h: int, seed: int = 0) -> np.ndarray:
    """An asymmetric RGB test picture, uint8 ``(h, w, 3)``: gradients, diagonal stripes, a dark
    block in the top-left quarter (so any rotation or flip shows), mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 255 * xx / (w - 1)
    g = 255 * yy / (h - 1)
    b = 127 + 100 * np.sin((xx + 2 * yy) / max(w, h) * 40)
    img = np.stack([r, g, b], -1)
    img[: h // 3, : w // 4] *= 0.2
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg(arr: np.ndarray, orientation: int | None = None, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    kw = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# ---------------------------------------------------------------- the spec field

def test_field_is_omitted_at_its_default_and_round_trips():
    old = {"height": 288, "width": 288, "resize": "bilinear", "channel_order": "RGB",
           "scale": 1.0 / 255.0, "offset": 0.0}
    spec = pp.PreprocessingSpec.from_dict({**old, "reference_sha256": "x"})
    assert spec.jpeg_draft == 0 and "jpeg_draft" not in spec.to_dict()
    assert spec.to_dict() == old  # an older version's preprocessing.json, unchanged
    # the cache key of a spec without the field is the one it had before the field existed
    assert spec.key() == "e538da5a2d0dcb0a"
    on = dataclasses.replace(spec, jpeg_draft=2)
    assert on.to_dict() == {**old, "jpeg_draft": 2} and on.key() != spec.key()
    assert pp.PreprocessingSpec.from_dict(json.loads(json.dumps(on.to_dict()))) == on
    assert pp.PreprocessingSpec.from_dict({**old, "jpeg_draft": 2.0}).jpeg_draft == 2  # R/JSON doubles
    # the reference image is a PNG: the draft does not change its checksum
    assert pp.reference_checksum(on) == pp.reference_checksum(spec)


@pytest.mark.parametrize("bad", [-1, 1.5, float("inf"), float("nan"), "2", True, None])
def test_bad_field_values_are_refused(bad):
    with pytest.raises(ValueError, match="jpeg_draft"):
        pp.PreprocessingSpec(32, 32, jpeg_draft=bad)


def test_new_trainings_turn_it_on():
    from model.training.config import TrainConfig

    assert TrainConfig(data=[], image_size=288).spec().jpeg_draft == pp.DEFAULT_JPEG_DRAFT == 2


def test_older_versions_preprocessing_json_keeps_the_full_decode(tiny_model_dir):
    meta = json.loads((tiny_model_dir / "preprocessing.json").read_text())
    assert "jpeg_draft" not in meta
    spec = pp.PreprocessingSpec.from_dict(meta)
    data = jpeg(photo(1200, 800))
    img, s = pp.decode_for_spec(data, spec)
    assert s == 1 and img.size == (1200, 800)
    # exactly the decode + resize of before the field existed
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR))
    assert np.array_equal(pp.to_uint8(data, spec), expected)


# ---------------------------------------------------------------- the DCT scale rule

@pytest.mark.parametrize("size, k, expected", [
    ((4000, 2667), 2, 4), ((6000, 4000), 2, 4), ((2000, 1333), 2, 2), ((800, 533), 2, 1),
    ((1151, 2000), 2, 1), ((1152, 1152), 2, 2), ((4000, 2667), 1, 8), ((4000, 2667), 0, 1),
])
def test_scale_rule_keeps_k_times_the_input(size, k, expected):
    spec = pp.PreprocessingSpec(288, 288, jpeg_draft=k)
    s = pp.jpeg_draft_scale(size, spec)
    assert s == expected
    assert pp.draft_min_size(spec) == ((k * 288, k * 288) if k else None)
    if s > 1:
        assert size[0] // s >= k * 288 and size[1] // s >= k * 288


def test_large_jpeg_is_decoded_at_the_scale_close_to_the_full_decode():
    arr = photo(1000, 700)
    data = jpeg(arr)
    img, s = pp.decode_for_spec(data, DRAFT)
    assert s == 8 and img.size == (125, 88)  # ceil(1000 / 8), ceil(700 / 8); 88 // 1 >= 2 x 32
    drafted, full = pp.to_uint8(data, DRAFT), pp.to_uint8(data, FULL)
    assert drafted.shape == full.shape == (32, 32, 3) and drafted.dtype == np.uint8
    assert not np.array_equal(drafted, full)
    assert mad(drafted, full) < 3.0
    assert np.array_equal(pp.to_array(data, DRAFT), pp.scale(drafted, DRAFT))


def test_png_and_small_jpegs_are_never_drafted():
    arr = photo(1000, 700)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    assert pp.decode_for_spec(buf.getvalue(), DRAFT)[1] == 1
    assert np.array_equal(pp.to_uint8(buf.getvalue(), DRAFT), pp.to_uint8(buf.getvalue(), FULL))
    small = jpeg(photo(120, 90))  # 90 // 2 < 2 x 32
    assert pp.decode_for_spec(small, DRAFT)[1] == 1
    assert np.array_equal(pp.to_uint8(small, DRAFT), pp.to_uint8(small, FULL))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_after_the_draft(orientation):
    arr = photo(900, 600, seed=orientation)
    data = jpeg(arr, orientation)
    img, s = pp.decode_for_spec(data, DRAFT)
    assert s == 8
    assert img.size == ((113, 75) if orientation < 5 else (75, 113))
    drafted, full = pp.to_uint8(data, DRAFT), pp.to_uint8(data, FULL)
    assert mad(drafted, full) < 3.0
    wrong = pp.to_uint8(jpeg(arr), FULL) if orientation != 1 else pp.to_uint8(jpeg(arr, 3), FULL)
    assert mad(drafted, wrong) > 10 * mad(drafted, full)  # the orientation matters, and is right


def test_crop_box_is_in_full_size_pixels_and_chooses_the_scale():
    data = jpeg(photo(1000, 700))
    box = (100, 50, 900, 650)  # 800 x 600 -> 1/8 keeps 100 x 75 >= 64
    assert pp.decode_for_spec(data, DRAFT, box)[1] == 8
    assert mad(pp.to_uint8(data, DRAFT, box), pp.to_uint8(data, FULL, box)) < 3.0
    assert mad(pp.to_uint8(data, DRAFT, box), pp.to_uint8(data, DRAFT)) > 3.0  # the box is used
    small = "400 300 600 420"  # 200 x 120: 120 // 2 < 2 x 32, so the full-size decode
    assert pp.decode_for_spec(data, DRAFT, small)[1] == 1
    assert np.array_equal(pp.to_uint8(data, DRAFT, small), pp.to_uint8(data, FULL, small))
    for bad in ("0 0 1001 700", (0, 0, 1000, 701)):
        with pytest.raises(ValueError, match="outside"):
            pp.to_uint8(data, DRAFT, bad)
        with pytest.raises(ValueError, match="outside"):
            pp.to_uint8(data, FULL, bad)


def test_a_decoded_image_with_its_scale_gives_the_same_tensor():
    data = jpeg(photo(1000, 700))
    box = "100 50 900 650"
    img, s = pp.decode_for_spec(data, DRAFT, box)
    assert np.array_equal(pp.to_uint8(img, DRAFT, box, dct_scale=s), pp.to_uint8(data, DRAFT, box))


# ---------------------------------------------------------------- every path, byte-equal

@pytest.fixture(scope="module")
def big_images(tmp_path_factory):
    """Three large JPEGs (one EXIF-rotated), a small one and a PNG in a folder; with crop boxes."""
    folder = tmp_path_factory.mktemp("big")
    files = {"a.jpg": jpeg(photo(1400, 900, 1)), "b.jpg": jpeg(photo(900, 1300, 2), orientation=6),
             "c.jpg": jpeg(photo(2000, 1000, 3)), "small.jpg": jpeg(photo(100, 80, 4))}
    buf = io.BytesIO()
    Image.fromarray(photo(700, 500, 5)).save(buf, "PNG")
    files["d.png"] = buf.getvalue()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    boxes = {"a.jpg": "0 0 1400 880", "b.jpg": "10 20 1290 880", "c.jpg": "", "small.jpg": "", "d.png": "5 5 690 490"}
    return folder, sorted(files), boxes


def test_training_pixels_equal_the_one_preprocessing(big_images):
    from model import data as mdata

    folder, names, boxes = big_images
    paths = [str(folder / n) for n in names]
    crop = [boxes[n] for n in names]
    pixels = mdata.load_pixels(paths, DRAFT, cache_dir=None, crop_boxes=crop, batch_size=2)
    expected = np.stack([pp.to_uint8(p, DRAFT, b) for p, b in zip(paths, crop)])
    assert np.array_equal(pixels, expected)
    assert [pp.decode_for_spec(p, DRAFT, b)[1] for p, b in zip(paths, crop)] == [8, 8, 8, 1, 1]
    full = mdata.load_pixels(paths, FULL, cache_dir=None, crop_boxes=crop, batch_size=2)
    assert not np.array_equal(pixels, full)


def test_score_pool_prepares_the_same_inputs_in_order(tiny_model_dir, big_images, tmp_path):
    from model.bench.score import respec_version
    from model.pipeline import Pipeline
    from model.score import list_images, prepared_batches

    folder, names, _ = big_images
    pipeline = Pipeline.load(respec_version(tiny_model_dir, tmp_path / "models", jpeg_draft=2))
    files = list_images(folder) * 3  # more files than one batch, in a known order
    got_names, got = [], []
    for batch_names, inputs, errors in prepared_batches(folder, files, pipeline, batch_size=4, workers=3):
        assert not any(errors) and len(batch_names) == len(inputs) <= 4
        got_names += batch_names
        got += [b.x for b in inputs]
    assert got_names == files
    assert np.array_equal(np.stack(got), np.stack([pp.to_array(folder / f, pipeline.spec) for f in files]))


def test_score_folder_with_a_drafted_version(tiny_model_dir, big_images, tmp_path):
    import csv

    from model.bench.score import respec_version
    from model.cascade import Cascade
    from model.score import score_folder

    folder, names, _ = big_images
    version = respec_version(tiny_model_dir, tmp_path / "models", jpeg_draft=2)
    cascade = Cascade.load(version)
    assert cascade.spec.jpeg_draft == 2 and cascade.spec.input_shape == (32, 32, 3)
    out = tmp_path / "scores.csv"
    summary = score_folder(cascade, folder, out, batch_size=8, progress=False)
    assert summary["scored"] == len(names) and summary["errors"] == 0
    with open(out, newline="") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    # the same batch through the forward pass in this process: the same probabilities
    x = np.stack([pp.to_array(folder / n, cascade.spec) for n in sorted(rows)])
    preds = cascade.predict(x, top_k=1)
    for n, p in zip(sorted(rows), preds):
        assert rows[n]["manufacturer"] == p["manufacturer"]["label"]
        assert rows[n]["manufacturer_probability"] == f"{p['manufacturer']['probability']:.6f}"
