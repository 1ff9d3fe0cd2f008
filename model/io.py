"""Model version folders: atomic export and checked loading.

A version folder ``models/<version>/`` holds:

- ``manufacturer.keras`` — stage 1; input float32 ``(batch, H, W, 3)``, output calibrated
  probabilities ``(batch, n_manufacturers)``;
- ``type_<Manufacturer>.keras`` — stage 2, one per manufacturer that has types;
- ``labels.json`` — ``{"manufacturer": [...], "types": {"Airbus": ["A319", ...], ...}}``;
- ``preprocessing.json`` — the :class:`~model.preprocessing.PreprocessingSpec` plus
  ``reference_sha256`` (checksum of the preprocessed reference image);
- ``metrics.json``, ``model_card.md``;
- ``reference.png`` — the reference image itself (:func:`model.preprocessing.reference_png`), the
  image whose tensor checksum is ``reference_sha256``; ``GET /names`` classifies it when no
  default image is configured. Versions exported before it existed lack it:
  :func:`reference_image_bytes` regenerates it for them;
- ``manifest.json`` — version, creation time and the sha256 of every other file, written last.

The folder is built under a temporary name and renamed into place, and ``models/latest`` (a
symlink) is switched atomically after that, so a reader never sees a half-written version.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from dataset.images import sha256_file

from . import preprocessing as pp
from .confidence import save_bank

MANIFEST = "manifest.json"
LABELS = "labels.json"
PREPROCESSING = "preprocessing.json"
METRICS = "metrics.json"
MODEL_CARD = "model_card.md"
STAGE1 = "manufacturer.keras"
#: The localizer (:mod:`model.localize`), in versions that have one.
LOCALIZER_FILE = "localizer.keras"
REFERENCE_IMAGE = "reference.png"


def stage2_file(manufacturer: str) -> str:
    """File name of the type model of ``manufacturer`` (e.g. ``type_Airbus.keras``)."""
    return f"type_{manufacturer}.keras"


class ModelLoadError(RuntimeError):
    """A model version folder is missing, incomplete or corrupt; the message names the file."""


def new_version() -> str:
    """A sortable UTC version string, e.g. ``20261121T093015Z``."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def write_npy(path: Path, array) -> None:
    """Save a NumPy array atomically (``<name>.tmp<pid>.npy`` beside it, then ``os.replace``), so a
    killed run never leaves a half-written cache; creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (temp file in the same folder, mode 0644, then ``os.replace``),
    so a reader never sees half of it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o644)  # mkstemp makes 0600; model files must be readable by the serving user
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (indented, keys sorted, final newline; :func:`write_text`)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_version(models_dir: str | os.PathLike, stage1, stage2: dict, labels: dict,
                 spec: pp.PreprocessingSpec, metrics: dict, model_card: str,
                 version: str | None = None, update_latest: bool = True, localizer=None,
                 reference: bytes | None = None, bank=None) -> Path:
    """Export a complete model version atomically.

    Args:
        models_dir: parent folder (``models/``).
        stage1: Keras model, manufacturer probabilities. stage2: ``{manufacturer: keras.Model}``.
        labels: ``{"manufacturer": [...], "types": {m: [...]}}`` (index order = output order).
        localizer: optional Keras model (:func:`model.localize.build_localizer`), saved as
            ``localizer.keras``: the aircraft gate and crop of :class:`model.cascade.Cascade`.
        reference: the encoded reference image (PNG bytes; e.g. a test render the version
            recognises, chosen at training), stored as ``reference.png`` with its tensor checksum
            as ``reference_sha256``; default: the synthetic :func:`model.preprocessing.reference_png`.
        bank: the training photos' features ``(N, D)`` for the novelty signal, saved as
            ``novelty.npz`` (:func:`model.confidence.save_bank`), or ``None``.
    Returns:
        Path of the new version folder.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    version = version or new_version()
    final = models_dir / version
    if final.exists():
        raise FileExistsError(f"model version already exists: {final}")
    tmp = Path(tempfile.mkdtemp(dir=models_dir, prefix=f".{version}."))
    tmp.chmod(0o755)  # mkdtemp makes 0700; a mounted model must be readable by a non-root server
    try:
        stage1.save(tmp / STAGE1)
        for m, model in stage2.items():
            model.save(tmp / stage2_file(m))
        if localizer is not None:
            localizer.save(tmp / LOCALIZER_FILE)
        write_json(tmp / LABELS, labels)
        reference = pp.reference_png() if reference is None else bytes(reference)
        write_json(tmp / PREPROCESSING, {**spec.to_dict(), "reference_sha256": pp.tensor_checksum(reference, spec)})
        write_json(tmp / METRICS, metrics)
        (tmp / MODEL_CARD).write_text(model_card)
        (tmp / REFERENCE_IMAGE).write_bytes(reference)
        if bank is not None:
            save_bank(tmp, bank)
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        write_json(tmp / MANIFEST, {
            "version": version,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "files": {name: sha256_file(tmp / name) for name in files},
        })
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if update_latest:
        point_latest(models_dir, version)
    return final


def point_latest(models_dir: Path, version: str) -> None:
    """Atomically make ``models_dir/latest`` a relative symlink to ``version``."""
    link = Path(models_dir) / "latest"
    tmp = Path(models_dir) / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(version, tmp)
    os.replace(tmp, link)


def check_version(path: str | os.PathLike) -> dict:
    """Verify a version folder against its manifest.

    Returns:
        The manifest dict (``version``, ``created``, ``files``).
    Raises:
        ModelLoadError: folder or manifest missing, a listed file missing, or a sha256 mismatch
            (the message names the file and says how to fix it).
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError(f"model folder not found: {path} (train one with `make train` or set "
                             "PLANESPOTTER_MODEL_DIR)")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ModelLoadError(f"{path} is not a complete model version: {MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError) as e:
        raise ModelLoadError(f"{manifest_path} is corrupt: {e}") from None
    for name, digest in files.items():
        f = path / name
        if not f.is_file():
            raise ModelLoadError(f"model file missing: {f}")
        if sha256_file(f) != digest:
            raise ModelLoadError(f"model file corrupt (sha256 mismatch): {f}; re-export the version")
    for required in (STAGE1, LABELS, PREPROCESSING):
        if required not in files:
            raise ModelLoadError(f"{path}: manifest does not list {required}")
    return manifest


def reference_image_bytes(path: str | os.PathLike) -> bytes:
    """The encoded reference image of a version folder: its ``reference.png``, or, for a version
    exported before that file existed, the same image regenerated in code
    (:func:`model.preprocessing.reference_png`).

    Either way the image is checked against the version's ``preprocessing.json``: its
    preprocessed tensor must have the stored ``reference_sha256`` (when the version has one).
    The folder itself is checked by :func:`check_version` at load time (``reference.png`` is
    in the manifest of every version that has it).

    Returns:
        The PNG bytes.
    Raises:
        ModelLoadError: no ``preprocessing.json``, or the image does not reproduce
            ``reference_sha256`` (a corrupt or foreign ``reference.png``, or an installation that
            preprocesses differently from training).
    """
    path = Path(path)
    try:
        meta = json.loads((path / PREPROCESSING).read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read {path / PREPROCESSING}: {e}") from None
    stored = path / REFERENCE_IMAGE
    data = stored.read_bytes() if stored.is_file() else pp.reference_png()
    expected = meta.get("reference_sha256")
    if expected:
        try:
            got = pp.tensor_checksum(data, pp.PreprocessingSpec.from_dict(meta))
        except pp.ImageDecodeError as e:
            raise ModelLoadError(f"{stored if stored.is_file() else 'the reference image'}: {e}") from None
        if got != expected:
            where = stored if stored.is_file() else "the regenerated reference image"
            raise ModelLoadError(f"{where} does not match reference_sha256 in {path / PREPROCESSING}")
    return data


def reference_checksum(path: str | os.PathLike, spec: pp.PreprocessingSpec) -> str:
    """The tensor checksum (:func:`model.preprocessing.tensor_checksum`) of a version folder's
    stored reference image under ``spec`` on this installation: its ``reference.png``, or the
    synthetic :func:`model.preprocessing.reference_png` for a version exported before that file
    existed. Equal to ``preprocessing.json``'s ``reference_sha256`` when this installation
    preprocesses as training did.

    Raises:
        ModelLoadError: ``reference.png`` cannot be decoded.
    """
    stored = Path(path) / REFERENCE_IMAGE
    if not stored.is_file():
        return pp.reference_checksum(spec)
    try:
        return pp.tensor_checksum(stored.read_bytes(), spec)
    except pp.ImageDecodeError as e:
        raise ModelLoadError(f"{stored}: {e}") from None


def read_version_info(path: str | os.PathLike) -> dict:
    """The checked manifest plus labels, preprocessing and metrics of a version (no Keras)."""
    path = Path(path)
    manifest = check_version(path)
    info = {"version": manifest["version"], "created": manifest["created"], "path": str(path.resolve())}
    for key, name in (("labels", LABELS), ("preprocessing", PREPROCESSING), ("metrics", METRICS)):
        f = path / name
        info[key] = json.loads(f.read_text()) if f.is_file() else {}
    return info


def load_keras(path: Path):
    """Load a ``.keras`` file for inference (``compile=False``); errors become ModelLoadError."""
    import keras  # deferred: Keras/TensorFlow start-up (~3 s)

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a bad archive
        raise ModelLoadError(f"cannot load {path}: {type(e).__name__}: {e}") from None
