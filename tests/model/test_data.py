"""One reader for renders, scraped and imported photos: several datasets, families, crop boxes,
airframe-grouped splits (model.data, model.preprocessing)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from model import data as mdata
from model import preprocessing as pp
from dataset.metadata import write_rows_atomic
from dataset.schema import empty_row


def _dataset(root, rows, size=(40, 30)):
    (root / "images").mkdir(parents=True)
    out = []
    for i, fields in enumerate(rows):
        img = np.zeros((size[1], size[0], 3), np.uint8)
        img[: size[1] - 10] = (200, 30, 30)  # a red picture over a 10-px white "banner"
        img[size[1] - 10:] = 255
        img[0, 0] = (i, i, i)  # every file different
        path = root / "images" / f"{i}.png"
        Image.fromarray(img).save(path)
        row = empty_row()
        row.update(image_path=f"images/{i}.png", sha256=hashlib.sha256(path.read_bytes()).hexdigest(), **fields)
        out.append(row)
    write_rows_atomic(root / "metadata.csv", out)
    return root


def test_several_datasets_are_read_as_one_with_domain_and_family(tmp_path):
    renders = _dataset(tmp_path / "r", [dict(manufacturer="Boeing", icao_type="B77W", source="flightgear",
                                             airline="X", split="train")])
    photos = _dataset(tmp_path / "p", [dict(manufacturer="Boeing", icao_type="", family="B787", source="web"),
                                       dict(manufacturer="Airbus", icao_type="A21N", source="web")])
    df = mdata.read_metadata([renders, photos / "metadata.csv"])
    assert df["domain"].tolist() == ["render", "photo", "photo"]
    assert df["family"].tolist() == ["B777", "B787", "A320"]  # derived from the designator where empty
    assert all(p.endswith(".png") for p in df["abs_path"]) and df["dataset"].nunique() == 2
    with pytest.raises(mdata.DatasetError):
        mdata.read_metadata([])


def test_crop_box_is_applied_before_the_resize(tmp_path):
    ds = _dataset(tmp_path / "d", [dict(manufacturer="Airbus", crop_box="0 0 40 20"), dict(manufacturer="Airbus")])
    df = mdata.read_metadata(ds)
    spec = pp.PreprocessingSpec(8, 8)
    px = mdata.load_pixels(df["abs_path"].tolist(), spec, shas=df["sha256"].tolist(),
                           crop_boxes=df["crop_box"].tolist(), cache_dir=tmp_path / "cache")
    assert (px[0, -1] == (200, 30, 30)).all()  # banner cut: the bottom row is the picture
    assert (px[1, -1] == 255).all()            # no box: the banner stays
    # the crop boxes are part of the pixel cache's key
    plain = mdata.load_pixels(df["abs_path"].tolist(), spec, shas=df["sha256"].tolist(), cache_dir=tmp_path / "cache")
    assert (plain[0, -1] == 255).all() and len(list((tmp_path / "cache").glob("pixels-*.npy"))) == 2
    assert pp.parse_crop_box("") is None and pp.parse_crop_box("1 2 3 4") == (1, 2, 3, 4)
    for bad in ("1 2 3", "a b c d", "5 0 4 10"):
        with pytest.raises(ValueError):
            pp.parse_crop_box(bad)
    with pytest.raises(ValueError, match="outside"):
        pp.to_uint8(df["abs_path"][1], spec, "0 0 41 30")


def test_no_airframe_or_near_duplicate_spans_two_splits():
    rows = []
    for i in range(60):
        rows.append(dict(image_path=f"i{i}.jpg", sha256=f"s{i}", manufacturer="Boeing" if i % 3 else "Airbus",
                         registration=f"N{i % 7}" if i < 30 else "", near_duplicate_of="",
                         airline="", split="", domain="photo"))
    rows[40]["near_duplicate_of"] = "i41.jpg"
    rows[41]["near_duplicate_of"] = "i45.jpg"  # a chain: 40 ~ 41 ~ 45
    rows.append(dict(image_path="r0.jpg", sha256="r", manufacturer="Airbus", registration="", near_duplicate_of="",
                     airline="Air X", split="train", domain="render"))
    df = pd.DataFrame(rows)
    groups = mdata.split_group(df)
    assert groups[40] == groups[41] == groups[45] and groups[0] == groups[7] and groups.iloc[-1] == "livery:Airbus/Air X"
    out = mdata.assign_splits(df, seed=1)
    assert (out.groupby(groups)["split"].nunique() == 1).all()
    assert set(out["split"]) == {"train", "validation", "test"} and out["split"].iloc[-1] == "train"
