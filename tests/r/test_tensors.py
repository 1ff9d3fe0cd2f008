"""Tensor parity: the preprocessed tensor of the same image from Python (model.preprocessing) and
from R (r/oracle.R), for the model's spec and for the R original's 150x150 nearest /255.

- shared path (R calls model.preprocessing through reticulate): max abs diff 0;
- R original's path (keras.utils.load_img + img_to_array + /255 in R doubles): pixels equal on
  plain RGB JPEGs, floats within one float32 ulp; EXIF-rotated and RGBA images differ (known);
- pure-R path (jpeg/png packages + the R port of Pillow's resize): pixels and floats equal;
  a textbook R resize is measured to show why the port is needed.
- the model's spec with scaled JPEG decoding (``model_draft``, ``jpeg_draft = 2``): the shared
  path is identical; the pure-R path (no DCT scaling in R's jpeg package) is identical on the
  images the spec decodes at full size and differs (known) on the drafted ones.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from model import preprocessing as pp
from rparity import r_to_numpy, rget

KNOWN_KERAS_DIFFERENT = {"edge_exif6.jpg", "edge_rgba.png"}  # no EXIF transpose; alpha dropped


def spec_of(oracle_res, name: str) -> pp.PreprocessingSpec:
    s = rget(oracle_res, "specs", name)
    draft = int(s.rx2("jpeg_draft")[0]) if "jpeg_draft" in list(s.names) else 0
    return pp.PreprocessingSpec(height=int(s.rx2("height")[0]), width=int(s.rx2("width")[0]),
                                resize=s.rx2("resize")[0], scale=float(s.rx2("scale")[0]),
                                offset=float(s.rx2("offset")[0]), jpeg_draft=draft)


def python_arrays(files, spec):
    pixels = np.stack([pp.to_uint8(f, spec) for f in files]).astype(np.float64)
    tensors = np.stack([pp.to_array(f, spec) for f in files]).astype(np.float64)
    return pixels, tensors


@pytest.mark.parametrize("spec_name", ["model", "model_draft", "r_original"])
def test_shared_path_is_identical(oracle, parity, spec_name):
    files, res = oracle
    spec = spec_of(res, spec_name)
    py_px, py_tx = python_arrays(files, spec)
    r_px = r_to_numpy(rget(res, "pixels", spec_name, "shared"))
    r_tx = r_to_numpy(rget(res, "tensors", spec_name, "shared"))
    d_px, d_tx = np.abs(py_px - r_px).max(), np.abs(py_tx - r_tx).max()
    ok = parity.check(f"tensors.shared.{spec_name}", d_px == 0 and d_tx == 0, images=len(files),
                      spec=spec.to_dict(), max_abs_diff=float(d_tx), max_abs_diff_pixels=float(d_px))
    assert ok, (d_px, d_tx)


@pytest.mark.parametrize("spec_name", ["model", "r_original"])
def test_r_original_keras_path(oracle, parity, spec_name):
    files, res = oracle
    spec = spec_of(res, spec_name)
    py_px, py_tx = python_arrays(files, spec)
    r_px = r_to_numpy(rget(res, "pixels", spec_name, "keras"))
    r_tx = r_to_numpy(rget(res, "tensors", spec_name, "keras"))
    names = [f.name for f in files]
    per_image_px = {n: float(np.abs(py_px[i] - r_px[i]).max()) for i, n in enumerate(names)}
    plain = [i for i, n in enumerate(names) if n not in KNOWN_KERAS_DIFFERENT]
    d_tx_plain = float(np.abs(py_tx[plain] - r_tx[plain]).max())
    # float32 inputs: R's double x/255 rounds once, Python's float32 x * float32(1/255) may differ by one ulp
    f32_in = np.abs(py_tx[plain] - r_tx[plain].astype(np.float32)).max()
    differing = sorted(n for n, d in per_image_px.items() if d > 0)
    ok = parity.check(f"tensors.keras_r_original.{spec_name}",
                      set(differing) == KNOWN_KERAS_DIFFERENT and f32_in <= 6e-8, known_difference=True,
                      max_abs_diff_plain_images=d_tx_plain, max_abs_diff_as_float32_input=float(f32_in),
                      pixel_diff_per_image=per_image_px, images_that_differ=differing)
    assert ok, (differing, f32_in)


@pytest.mark.parametrize("spec_name", ["model", "model_draft", "r_original"])
def test_pure_r_path(oracle, parity, spec_name):
    files, res = oracle
    spec = spec_of(res, spec_name)
    py_px, py_tx = python_arrays(files, spec)
    r_px = r_to_numpy(rget(res, "pixels", spec_name, "pure"))
    r_tx = r_to_numpy(rget(res, "tensors", spec_name, "pure"))
    tb_px = r_to_numpy(rget(res, "pixels", spec_name, "textbook"))
    drafted = [i for i, f in enumerate(files) if pp.decode_for_spec(f, spec)[1] > 1]
    if drafted:  # R's jpeg package has no DCT scaling: those images differ (known, r/README.md)
        per_image = {files[i].name: float(np.abs(py_px[i] - r_px[i]).max()) for i in drafted}
        parity.check(f"tensors.pure_jpeg_draft.{spec_name}", True, known_difference=True,
                     drafted_images=len(drafted), pixel_diff_per_image=per_image)
        full = [i for i in range(len(files)) if i not in drafted]
        assert full, "every image drafted: nothing left to compare exactly"
        py_px, py_tx, r_px, r_tx, tb_px = (a[full] for a in (py_px, py_tx, r_px, r_tx, tb_px))
    d_px, d_tx = float(np.abs(py_px - r_px).max()), float(np.abs(py_tx - r_tx).max())
    tb = np.abs(py_px - tb_px)
    parity.check(f"tensors.pure_textbook_resize.{spec_name}", bool(tb.max() > 0), known_difference=True,
                 max_abs_diff_pixels=float(tb.max()), mean_abs_diff_pixels=float(tb.mean()),
                 share_of_values_differing=float((tb > 0).mean()))
    ok = parity.check(f"tensors.pure.{spec_name}", d_px == 0 and d_tx == 0, images=len(py_px),
                      max_abs_diff=d_tx, max_abs_diff_pixels=d_px)
    assert ok, (d_px, d_tx)


def test_pure_r_resize_matches_pillow_on_random_images(r, parity):
    """The R port of Pillow's resize on random images, modes, sizes and every filter of the spec
    (up- and downscaling on either axis, so both pass orders of Pillow 13 are exercised)."""
    rng = np.random.default_rng(3)
    rspec = r.r("function(h, w, r, s, o) list(height = h, width = w, resize = r, scale = s, offset = o)")
    pixels = r.r["ps_pixels"]
    bad, n = [], 0
    for mode, channels in [("RGB", 3), ("RGBA", 4), ("LA", 2), ("L", 1), ("P", 1)]:
        for _ in range(3):
            h0, w0 = (int(v) for v in rng.integers(8, 70, 2))
            arr = rng.integers(0, 256, (h0, w0, channels), dtype=np.uint8)
            im = Image.fromarray(arr[..., 0] if channels == 1 else arr, "L" if mode == "P" else mode)
            if mode == "P":
                im = im.convert("P")
            buf = io.BytesIO()
            im.save(buf, "PNG")
            data = buf.getvalue()
            for resize in sorted(pp.RESAMPLING):
                h, w = (int(v) for v in rng.integers(8, 100, 2))
                spec = pp.PreprocessingSpec(height=h, width=w, resize=resize)
                got = r_to_numpy(pixels(r.vectors.ByteVector(data), rspec(h, w, resize, spec.scale, spec.offset),
                                        "pure", "pillow"))
                d = float(np.abs(pp.to_uint8(data, spec).astype(np.float64) - got).max())
                n += 1
                if d:
                    bad.append((mode, resize, (h0, w0), (h, w), d))
    ok = parity.check("tensors.pure_resize_random", not bad, cases=n, failures=bad[:10])
    assert ok, bad[:10]
