"""Shared fixtures: paths to ../shared data, a tiny real Keras cascade, a real gunicorn server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from client.server import Server

sys.path.append(str(Path(__file__).resolve().parent))  # tinymodels, last: tests/conftest.py must not shadow a folder's conftest

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared").resolve()
SMOKE_DIR = SHARED / "data" / "smoke-airliners"


@pytest.fixture(scope="session", autouse=True)
def tracking_store(tmp_path_factory) -> Path:
    """Every training run of the tests (in this process and in the commands it starts) logs to a
    temporary MLflow store, never to the project's mlruns/ (``MLFLOW_TRACKING_URI``)."""
    store = tmp_path_factory.mktemp("mlruns")
    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    yield store
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture(scope="session")
def smoke_photos() -> list[Path]:
    """The 12 real airliner photos in ../shared/data/smoke-airliners (skip if absent)."""
    photos = sorted(SMOKE_DIR.glob("*.jpg"))
    if not photos:
        pytest.skip(f"no smoke photos in {SMOKE_DIR}")
    return photos


def build_tiny_cascade(models_dir: Path, size: int = 32, seed: int = 0, *, localizer_size: int | None = None,
                       crop: dict | None = None, other: bool = False, tta: str | None = None,
                       aircraft_threshold: float | None = None, version: str = "20000101T000000Z") -> Path:
    """A real (random-weights) cascade version: compact CNNs at ``size`` px, 2 manufacturers,
    each with 2 ICAO types and one whole-family leaf (A350 / B777 family), type threshold 0.34
    (so its near-uniform answers land at type level for some images, family level for others).

    The keyword options add the newer parts of a version (the defaults give the model every
    older test relies on, unchanged):

    - ``localizer_size``: a localizer (``model.localize.build_localizer(size, weights="none")``,
      random weights: its aircraft probability is 0.004 on every image) saved as ``localizer.keras``;
    - ``aircraft_threshold``: ``labels.json``'s gate (0.0: always an aircraft, 1.0: never);
    - ``crop``: ``PreprocessingSpec.crop`` (a :class:`model.preprocessing.CropRule` dict);
    - ``other``: a third manufacturer ``Other`` without stage 2. Its stage-1 logit gets
      ``20 x (mean red - mean blue)`` of the image on top of the CNN's, so a red image is always
      answered ``Other`` and a blue one never (deterministic, whatever the random weights);
    - ``tta``: ``labels.json``'s ``tta`` (``"flip"``).

    Returns the version folder (``models_dir / version``)."""
    import keras
    import numpy as np

    from model import io as mio
    from model import preprocessing as pp
    from model.backbones.compact import build_compact_cnn
    from model.training.calibration import calibrated

    keras.utils.set_random_seed(seed)
    spec = pp.PreprocessingSpec(height=size, width=size, crop=crop)
    labels = {"manufacturer": ["Airbus", "Boeing"] + (["Other"] if other else []),
              "types": {"Airbus": ["A320", "A388", "A350 family"], "Boeing": ["B738", "B744", "B777 family"]},
              "families": {"Airbus": {"A320": "A320", "A388": "A380", "A350 family": "A350"},
                           "Boeing": {"B738": "B737", "B744": "B747", "B777 family": "B777"}},
              "type_threshold": 0.34}
    if tta:
        labels["tta"] = tta
    if aircraft_threshold is not None:
        labels["aircraft_threshold"] = float(aircraft_threshold)

    def tiny(n, name):
        return calibrated(build_compact_cnn(spec.input_shape, n, width=4, name=name), 1.0, name)

    def tiny_with_other(name):
        layers = keras.layers
        inputs = keras.Input(shape=spec.input_shape, name="image")
        z = build_compact_cnn(spec.input_shape, 3, width=4, name=f"{name}_cnn")(inputs)
        redness = layers.Dense(3, use_bias=False, name="redness")
        redness.build((None, 3))
        w = np.zeros((3, 3), np.float32)
        w[0, 2], w[2, 2] = 20.0, -20.0  # Other's logit += 20 * (mean R - mean B)
        redness.set_weights([w])
        z = layers.Add(name="logits_plus_redness")([z, redness(layers.GlobalAveragePooling2D(name="colour")(inputs))])
        return calibrated(keras.Model(inputs, z, name=f"{name}_logits"), 1.0, name)

    stage1 = tiny_with_other("manufacturer") if other else tiny(2, "manufacturer")
    stage2 = {m: tiny(len(t), f"type_{m}") for m, t in labels["types"].items()}
    localizer = None
    if localizer_size is not None:
        from model.localize import build_localizer

        localizer = build_localizer(size=localizer_size, weights="none")
    metrics = {"test": {"manufacturer_accuracy": 0.5}, "calibration": {}}
    return mio.save_version(models_dir, stage1, stage2, labels, spec, metrics, "# tiny test model\n",
                            version=version, localizer=localizer)


#: The crop rule of :func:`feature_model_dir`: on the random localizer's 3x3 maps (96 px input) it
#: cuts boxes of 30-95 % of the photo (never skipped: ``skip_area`` above 1).
FEATURE_CROP = {"size": 96, "threshold": 0.5, "min_fraction": 0.2, "skip_area": 1.01}


def build_feature_cascade(models_dir: Path) -> Path:
    """The tiny cascade with every newer part: localizer (96 px, gate 0.0: always an aircraft),
    crop rule :data:`FEATURE_CROP`, manufacturer ``Other`` (red images), flip TTA; version
    ``20000102T000000Z``."""
    from model.preprocessing import CropRule

    return build_tiny_cascade(models_dir, localizer_size=96, crop=CropRule(**FEATURE_CROP).to_dict(), other=True,
                              tta="flip", aircraft_threshold=0.0, version="20000102T000000Z")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Session-wide tiny model version folder (``<tmp>/models/20000101T000000Z``)."""
    return build_tiny_cascade(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def server(tiny_model_dir, tmp_path_factory):
    """gunicorn serving the tiny model, with IMAGE_ROOT = the smoke photo folder."""
    srv = Server(tiny_model_dir, env={"PLANESPOTTER_IMAGE_ROOT": str(SMOKE_DIR),
                                      "PLANESPOTTER_DEFAULT_IMAGE": "boeing_777_turkish.jpg"})
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def feature_images(folder: Path) -> dict[str, Path]:
    """Images for the feature model: ``red.png`` (answered ``Other``), ``blue.png`` (never
    ``Other``), ``exif6.jpg`` (a 300x200 photo crop stored with EXIF orientation 6: 200x300 once
    rotated) and ``photo.jpg`` (a real smoke photo, when available, on which the random localizer
    cuts a box of a third of the photo). Returns name -> path."""
    import io

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    Image.new("RGB", (160, 120), (220, 30, 30)).save(folder / "red.png")
    Image.new("RGB", (120, 160), (40, 90, 230)).save(folder / "blue.png")
    source = SMOKE_DIR / "boeing_767.jpg"
    with (Image.open(source) if source.is_file() else Image.new("RGB", (600, 400), (90, 140, 200))) as im:
        base = im.convert("RGB").resize((300, 200), Image.Resampling.BILINEAR)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    base.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    (folder / "exif6.jpg").write_bytes(buf.getvalue())
    photo = SMOKE_DIR / "airbus_a340-500_emirates.jpg"
    if photo.is_file():
        (folder / "photo.jpg").write_bytes(photo.read_bytes())
    for p in sorted(folder.iterdir()):
        out[p.name] = p
    return out


@pytest.fixture(scope="session")
def feature_model_dir(tmp_path_factory) -> Path:
    """Session-wide feature model (:func:`build_feature_cascade`)."""
    return build_feature_cascade(tmp_path_factory.mktemp("feature-models"))


@pytest.fixture(scope="session")
def feature_image_dir(tmp_path_factory) -> Path:
    """A folder holding :func:`feature_images`."""
    folder = tmp_path_factory.mktemp("feature-images")
    feature_images(folder)
    return folder


def _serve(model_dir, env):
    srv = Server(model_dir, env=env)
    try:
        srv.wait_ready()
    except BaseException:
        srv.stop()
        raise
    return srv


@pytest.fixture(scope="session")
def feature_server(feature_model_dir, feature_image_dir):
    """gunicorn serving the feature model (gate 0.0: every image is an aircraft); IMAGE_ROOT =
    ``feature_image_dir``, default image ``red.png`` (``GET /names`` -> ``["Other"]``)."""
    srv = _serve(feature_model_dir, {"PLANESPOTTER_IMAGE_ROOT": str(feature_image_dir),
                                     "PLANESPOTTER_DEFAULT_IMAGE": "red.png"})
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def none_server(feature_model_dir, feature_image_dir):
    """The feature model with ``PLANESPOTTER_AIRCRAFT_THRESHOLD=1.0``: every image is "not an
    aircraft" (``GET /names`` -> ``["none"]``)."""
    srv = _serve(feature_model_dir, {"PLANESPOTTER_IMAGE_ROOT": str(feature_image_dir),
                                     "PLANESPOTTER_DEFAULT_IMAGE": "red.png",
                                     "PLANESPOTTER_AIRCRAFT_THRESHOLD": "1.0"})
    try:
        yield srv
    finally:
        srv.stop()
