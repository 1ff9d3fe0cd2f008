"""Signals that say when an answer should not be trusted, beyond stage 1's own probability.

Measured on the leave-one-source-out folds (:mod:`model.training.sources`, decided in
:mod:`model.training.levers`) and, where they win, switched on per version by
``labels["confidence"]`` (:class:`ConfidenceRule`, applied in :meth:`model.cascade.Cascade.predict`):

- **novelty** — how far a photo's penultimate stage-1 features lie from the training photos':
  the distance to the k-th nearest training photo on unit-length features (Sun, Ming, Zhu & Li,
  "Out-of-Distribution Detection with Deep Nearest Neighbors", ICML 2022). A version keeps a bank
  of its training photos' features (``novelty.npz``, :func:`save_bank`).
- **views** — test-time agreement: stage 1's top manufacturer on the image, its mirror image and
  a zoomed centre crop (:func:`zoom`); when they differ, the views disagree.

Every function works on NumPy arrays; Keras is imported only by :func:`feature_model`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: Unsure reasons, in the order they are reported (an answer may have several).
REASONS = ("low_confidence", "unusual_photo", "views_disagree", "types_close")

#: Each reason in a spotter's words.
REASON_TEXT = {
    "low_confidence": "the manufacturer is uncertain",
    "unusual_photo": "unusual photo: unlike the photos the model was trained on",
    "views_disagree": "the views disagree: the mirror image or a closer crop gives another answer",
    "types_close": "two types are close",
}

#: File of a version's training-photo feature bank.
BANK_FILE = "novelty.npz"

#: The centre crop :func:`zoom` keeps, as a share of each side.
ZOOM_SHARE = 0.8


def feature_model(stage1):
    """A Keras model with stage 1's input and two outputs: its probabilities ``(n, M)`` and its
    penultimate features ``(n, D)`` (the input of the ``logits`` layer; D = 1,280 for Lite0), one
    forward pass for both. Built from the exported stage 1's own layers (weights shared):
    ``image → manufacturer_logits[…, logits] → temperature → probabilities``.

    Raises:
        ValueError: ``stage1`` does not have that layout (an exported version older than the
            joint training, or a compact/VGG16 version).
    """
    import keras  # deferred: TensorFlow start-up

    try:
        inner = stage1.get_layer("manufacturer_logits")
        dense = inner.get_layer("logits")
        temperature, softmax = stage1.get_layer("temperature"), stage1.get_layer("probabilities")
    except ValueError as e:
        raise ValueError(f"stage 1 has no manufacturer_logits/logits/temperature layers: {e}") from None
    trunk = keras.Model(inner.inputs, dense.input, name="penultimate")
    images = keras.Input(shape=stage1.input_shape[1:], name="image")
    feats = trunk(images)
    probs = softmax(temperature(dense(feats)))
    return keras.Model(images, [probs, feats], name="manufacturer_and_features")


def unit(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 length, float32 ``(n, D)`` (a zero row stays zero)."""
    f = np.asarray(features, np.float32)
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    return f / np.maximum(norm, 1e-12)


def knn_distance(features: np.ndarray, bank: np.ndarray, k: int | tuple[int, ...] = 10,
                 chunk: int = 512) -> np.ndarray:
    """Distance from each row of ``features`` to its k-th nearest row of ``bank``, on unit-length
    vectors (Sun et al. 2022): in [0, 2]; higher = more unlike the training photos.

    Args:
        features: float ``(n, D)``, raw penultimate features (normalised here).
        bank: float ``(N, D)``, unit-length training features (:func:`unit`), N >= max(k).
        k: one k, or several (then the result is ``(n, len(k))``).
    Returns:
        float32 ``(n,)`` for one k, ``(n, len(k))`` for several.
    Raises:
        ValueError: the bank holds fewer than k rows or the widths differ.
    """
    ks = (k,) if np.isscalar(k) else tuple(k)
    bank = np.asarray(bank, np.float32)
    if len(bank) < max(ks):
        raise ValueError(f"the feature bank holds {len(bank)} rows, fewer than k={max(ks)}")
    f = unit(features)
    if f.shape[1:] != bank.shape[1:]:
        raise ValueError(f"features of width {f.shape[1:]} against a bank of width {bank.shape[1:]}")
    out = np.empty((len(f), len(ks)), np.float32)
    for s in range(0, len(f), chunk):
        sim = f[s:s + chunk] @ bank.T  # cosine similarity; |a-b|^2 = 2 - 2 cos on unit vectors
        part = -np.partition(-sim, [kk - 1 for kk in ks], axis=1)
        out[s:s + chunk] = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * part[:, [kk - 1 for kk in ks]]))
    return out[:, 0] if np.isscalar(k) else out


def zoom(x: np.ndarray, share: float = ZOOM_SHARE) -> np.ndarray:
    """The centre ``share`` of each side of images ``(n, H, W, C)``, resized back to ``(H, W)``
    bilinearly (TensorFlow-free: :func:`PIL.Image.resize` per image, float32 channels)."""
    from PIL import Image

    x = np.asarray(x)
    n, h, w, c = x.shape
    ch, cw = max(1, int(round(h * share))), max(1, int(round(w * share)))
    top, left = (h - ch) // 2, (w - cw) // 2
    out = np.empty(x.shape, np.float32)
    for i in range(n):
        crop = x[i, top:top + ch, left:left + cw].astype(np.float32)
        out[i] = np.stack([np.asarray(Image.fromarray(crop[..., j], mode="F").resize((w, h), Image.BILINEAR))
                           for j in range(c)], axis=-1)
    return out


@dataclass
class ConfidenceRule:
    """When an answer is unsure beyond stage 1's probability (``labels["confidence"]``).

    Attributes:
        novelty_threshold: k-NN distance (:func:`knn_distance`) at or above which the photo is
            "unusual"; ``None``: novelty off. Chosen on held-out origins (:mod:`model.training.levers`).
        k: the neighbour whose distance counts.
        views: ``True``: the mirror image and a zoomed crop are classified too, and the answer is
            unsure when their top manufacturer differs.
        types_close: when stage 1 is under the routing threshold, the ratio of the second to the
            first joint probability at or above which the reason is "two types are close" rather
            than "the manufacturer is uncertain"; ``None``: never.
    """

    novelty_threshold: float | None = None
    k: int = 10
    views: bool = False
    types_close: float | None = 0.5

    @classmethod
    def from_labels(cls, labels: dict) -> "ConfidenceRule":
        d = labels.get("confidence") or {}
        return cls(**{k: d[k] for k in ("novelty_threshold", "k", "views", "types_close") if k in d})

    def as_dict(self) -> dict:
        return asdict(self)


def save_bank(folder: str | os.PathLike, features: np.ndarray) -> Path:
    """Write the unit-length float16 feature bank ``(N, D)`` to ``folder/novelty.npz``
    atomically (temp file, then rename). Returns the path."""
    path = Path(folder) / BANK_FILE
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, bank=unit(features).astype(np.float16))
    os.replace(tmp, path)
    return path


def load_bank(folder: str | os.PathLike) -> np.ndarray:
    """The version's feature bank, float32 unit-length ``(N, D)``.

    Raises:
        FileNotFoundError: the version has no bank. ValueError: the file holds no ``bank`` array.
    """
    with np.load(Path(folder) / BANK_FILE) as z:
        if "bank" not in z:
            raise ValueError(f"{Path(folder) / BANK_FILE} holds no 'bank' array")
        return z["bank"].astype(np.float32)
