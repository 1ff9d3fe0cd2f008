"""The reference image stored in every model version (``reference.png``): written by
save_version, listed in the manifest and verified at load, regenerated for older versions, and
checked against ``preprocessing.json``'s ``reference_sha256``."""

from __future__ import annotations

import io
import json
import shutil

import pytest
from PIL import Image

from model import io as mio
from model import preprocessing as pp
from model.cascade import Cascade


def _meta(version) -> dict:
    return json.loads((version / mio.PREPROCESSING).read_text())


def _old_style_copy(version, dest):
    """A copy of ``version`` as versions were exported before reference.png existed."""
    shutil.copytree(version, dest)
    (dest / mio.REFERENCE_IMAGE).unlink()
    manifest = json.loads((dest / mio.MANIFEST).read_text())
    del manifest["files"][mio.REFERENCE_IMAGE]
    mio.write_json(dest / mio.MANIFEST, manifest)
    return dest


def test_save_version_stores_the_reference_image_in_the_manifest(tiny_model_dir):
    stored = (tiny_model_dir / mio.REFERENCE_IMAGE).read_bytes()
    manifest = json.loads((tiny_model_dir / mio.MANIFEST).read_text())
    assert manifest["files"][mio.REFERENCE_IMAGE] == mio.sha256_file(tiny_model_dir / mio.REFERENCE_IMAGE)
    # it is the image whose tensor checksum preprocessing.json stores
    meta = _meta(tiny_model_dir)
    assert pp.tensor_checksum(stored, pp.PreprocessingSpec.from_dict(meta)) == meta["reference_sha256"]
    with Image.open(io.BytesIO(stored)) as im:
        assert (im.format, im.mode, im.size) == ("PNG", "RGB", (317, 211))
    assert mio.reference_image_bytes(tiny_model_dir) == stored == pp.reference_png()


def test_a_tampered_reference_image_fails_the_load(tiny_model_dir, tmp_path):
    broken = tmp_path / "v"
    shutil.copytree(tiny_model_dir, broken)
    Image.new("RGB", (317, 211), (200, 30, 10)).save(broken / mio.REFERENCE_IMAGE, "PNG")
    with pytest.raises(mio.ModelLoadError, match="corrupt.*reference.png"):
        mio.check_version(broken)
    with pytest.raises(mio.ModelLoadError, match="corrupt.*reference.png"):
        Cascade.load(broken)


def test_older_version_without_the_file_regenerates_it(tiny_model_dir, tmp_path):
    old = _old_style_copy(tiny_model_dir, tmp_path / "old")
    assert mio.check_version(old)["files"].keys() == set(json.loads((tiny_model_dir / mio.MANIFEST).read_text())[
        "files"]) - {mio.REFERENCE_IMAGE}
    data = mio.reference_image_bytes(old)
    assert data == pp.reference_png()
    meta = _meta(old)
    assert pp.tensor_checksum(data, pp.PreprocessingSpec.from_dict(meta)) == meta["reference_sha256"]


def test_a_foreign_reference_image_is_refused(tiny_model_dir, tmp_path):
    """An older version folder with some other reference.png dropped in (not in its manifest):
    the image must reproduce reference_sha256, else ModelLoadError."""
    old = _old_style_copy(tiny_model_dir, tmp_path / "old")
    Image.new("RGB", (317, 211), (10, 200, 30)).save(old / mio.REFERENCE_IMAGE, "PNG")
    with pytest.raises(mio.ModelLoadError, match="reference.png does not match reference_sha256"):
        mio.reference_image_bytes(old)
    (old / mio.REFERENCE_IMAGE).write_bytes(b"not an image")
    with pytest.raises(mio.ModelLoadError, match="reference.png"):
        mio.reference_image_bytes(old)
