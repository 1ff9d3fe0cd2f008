"""The two-stage cascade at inference time: manufacturer, then that manufacturer's ICAO type.

Routing: when the top stage-1 probability reaches ``threshold`` the image goes to that
manufacturer's type model. Below it the answer is ``unsure`` and both leading branches are
evaluated, each reporting its best type with the joint probability
``P(manufacturer) * P(type | manufacturer)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import io as mio
from . import preprocessing as pp

DEFAULT_THRESHOLD = 0.6


@dataclass
class Cascade:
    """A loaded model version.

    Attributes:
        stage1: Keras model, float32 ``(n, H, W, 3)`` → probabilities ``(n, n_manufacturers)``.
        stage2: ``{manufacturer: keras.Model}`` → probabilities over that manufacturer's types.
        labels: ``{"manufacturer": [...], "types": {m: [...]}}``.
        spec: the preprocessing spec the models were trained with.
        version: version string; threshold: routing threshold in [0, 1].
    """

    stage1: object
    stage2: dict
    labels: dict
    spec: pp.PreprocessingSpec
    version: str
    threshold: float = DEFAULT_THRESHOLD
    info: dict | None = None

    @classmethod
    def load(cls, path: str | os.PathLike, threshold: float | None = None) -> "Cascade":
        """Load and verify a version folder (``models/latest`` is followed).

        Raises:
            model.io.ModelLoadError: missing/corrupt files, or preprocessing checksum mismatch.
        """
        path = Path(path)
        info = mio.read_version_info(path)
        spec = pp.PreprocessingSpec.from_dict(info["preprocessing"])
        expected = info["preprocessing"].get("reference_sha256")
        if expected and expected != pp.reference_checksum(spec):
            raise mio.ModelLoadError(
                f"{path}: this installation preprocesses differently from training "
                "(reference checksum mismatch; check the Pillow version)")
        stage1 = mio.load_keras(path / mio.STAGE1)
        stage2 = {m: mio.load_keras(path / mio.stage2_file(m))
                  for m in info["labels"].get("types", {}) if (path / mio.stage2_file(m)).is_file()}
        if threshold is None:
            threshold = float(os.environ.get("PLANESPOTTER_THRESHOLD", DEFAULT_THRESHOLD))
        return cls(stage1, stage2, info["labels"], spec, info["version"], threshold, info)

    @property
    def manufacturers(self) -> list[str]:
        return list(self.labels["manufacturer"])

    def warm_up(self, batch_sizes=(1,)) -> None:
        """Run every model once per batch size so the first real request is not slow."""
        for n in batch_sizes:
            x = np.zeros((n, *self.spec.input_shape), np.float32)
            self.stage1.predict_on_batch(x)
            for m in self.stage2.values():
                m.predict_on_batch(x)

    def probabilities(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Raw forward passes with routing.

        Args:
            x: float32 ``(n, H, W, 3)`` preprocessed images.
        Returns:
            ``(p_manufacturer (n, M), {manufacturer: (n, T_m) array})``; rows of a stage-2 array
            that were not routed there are NaN.
        """
        x = np.asarray(x, np.float32)
        p_m = np.asarray(self.stage1.predict_on_batch(x), np.float64)
        top = p_m.argmax(axis=1)
        confident = p_m.max(axis=1) >= self.threshold
        second = np.argsort(-p_m, axis=1)[:, 1] if p_m.shape[1] > 1 else top
        p_t = {}
        for j, m in enumerate(self.manufacturers):
            model = self.stage2.get(m)
            if model is None:
                continue
            rows = np.flatnonzero((top == j) | (~confident & (second == j)))
            out = np.full((len(x), len(self.labels["types"][m])), np.nan)
            if len(rows):
                out[rows] = np.asarray(model.predict_on_batch(x[rows]), np.float64)
            p_t[m] = out
        return p_m, p_t

    def predict(self, x: np.ndarray, top_k: int = 3) -> list[dict]:
        """Classify preprocessed images.

        Args:
            x: float32 ``(n, H, W, 3)``; top_k: how many (manufacturer, type) pairs to list (>= 1).
        Returns:
            One dict per image::

                {"manufacturer": {"label": str, "probability": float},
                 "type": {"label": str | None, "probability": float | None,   # P(type | manufacturer)
                          "joint_probability": float | None},
                 "unsure": bool,
                 "branches": [{"manufacturer", "manufacturer_probability", "type",
                               "type_probability", "joint_probability"}, ...],
                 "top_k": [{"manufacturer", "type", "probability"}, ...]}   # joint probabilities
        """
        p_m, p_t = self.probabilities(x)
        results = []
        for i in range(len(p_m)):
            order = np.argsort(-p_m[i])
            unsure = bool(p_m[i, order[0]] < self.threshold)
            branches, pairs = [], []
            for j in order[: 2 if unsure else 1]:
                m = self.manufacturers[j]
                pm = float(p_m[i, j])
                if m in p_t and not np.isnan(p_t[m][i, 0]):
                    pt = p_t[m][i]
                    k = int(pt.argmax())
                    branches.append({"manufacturer": m, "manufacturer_probability": pm,
                                     "type": self.labels["types"][m][k], "type_probability": float(pt[k]),
                                     "joint_probability": pm * float(pt[k])})
                    pairs += [(pm * float(p), m, t) for p, t in zip(pt, self.labels["types"][m])]
                else:
                    branches.append({"manufacturer": m, "manufacturer_probability": pm, "type": None,
                                     "type_probability": None, "joint_probability": None})
                    pairs.append((pm, m, None))
            best = branches[0]
            pairs.sort(key=lambda t: -t[0])
            results.append({
                "manufacturer": {"label": best["manufacturer"], "probability": best["manufacturer_probability"]},
                "type": {"label": best["type"], "probability": best["type_probability"],
                         "joint_probability": best["joint_probability"]},
                "unsure": unsure,
                "branches": branches,
                "top_k": [{"manufacturer": m, "type": t, "probability": p} for p, m, t in pairs[:max(1, top_k)]],
            })
        return results

    def predict_images(self, images, top_k: int = 3) -> list[dict]:
        """Decode + preprocess encoded images or paths (see :func:`model.preprocessing.to_array`)
        and classify them in one batch. Raises ``ImageDecodeError`` on a bad image."""
        x = np.stack([pp.to_array(im, self.spec) for im in images])
        return self.predict(x, top_k=top_k)
