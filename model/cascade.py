"""The two-stage cascade at inference time: manufacturer, then that manufacturer's family and
ICAO type — answered at the level the model knows.

Routing: when the top stage-1 probability reaches ``threshold`` the image goes to that
manufacturer's stage-2 model. Below it the answer is ``unsure`` and both leading branches are
evaluated, each reporting its answer with the joint probability ``P(manufacturer) * P(· | manufacturer)``.

Stage 2 outputs probabilities over *leaves*: the ICAO types it was trained on, plus one
``"<family> family"`` leaf for each family it saw only without a usable type (e.g. photos labelled
"B787" alone). A family's probability is the sum of its leaves' (``labels["families"]`` maps each
leaf to its family). The answer names a type only when the best leaf is a trained ICAO type whose
probability reaches ``type_threshold``; otherwise it stops at the best family ("B777 family").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset.schema import family_of

from . import confidence as conf
from . import io as mio
from . import preprocessing as pp

DEFAULT_THRESHOLD = 0.6
#: Human words for each answer level that is not an Airbus/Boeing type or family.
OTHER_TEXT = "another manufacturer (not Airbus or Boeing)"
NONE_TEXT = "not an aircraft"
#: P(type | manufacturer) a trained type needs to be named; below it the answer is the family.
DEFAULT_TYPE_THRESHOLD = 0.5
#: Suffix of stage-2 leaves that stand for a whole family (no usable type labels).
FAMILY_LEAF_SUFFIX = " family"


def is_type_leaf(leaf: str) -> bool:
    """True for a stage-2 leaf that is an ICAO type designator, False for a ``"<family> family"`` leaf."""
    return not leaf.endswith(FAMILY_LEAF_SUFFIX)


def leaf_families(labels: dict, manufacturer: str) -> list[str]:
    """The family of each stage-2 leaf of ``manufacturer``, in output order: ``labels["families"]``
    when the version has it, else :func:`dataset.schema.family_of` of the leaf (versions trained
    before families existed), else the leaf itself."""
    leaves = labels.get("types", {}).get(manufacturer, [])
    known = labels.get("families", {}).get(manufacturer, {})
    return [known.get(t) or (t[: -len(FAMILY_LEAF_SUFFIX)] if not is_type_leaf(t) else family_of(t)) or t
            for t in leaves]


@dataclass
class Cascade:
    """A loaded model version.

    Attributes:
        stage1: Keras model, float32 ``(n, H, W, 3)`` → probabilities ``(n, n_manufacturers)``.
        stage2: ``{manufacturer: keras.Model}`` → probabilities over that manufacturer's types.
        labels: ``{"manufacturer": [...], "types": {m: [...]}}``.
        spec: the preprocessing spec the models were trained with.
        version: version string; threshold: routing threshold in [0, 1];
        type_threshold: P(type | manufacturer) a type needs to be named, in [0, 1].
    """

    stage1: object
    stage2: dict
    labels: dict
    spec: pp.PreprocessingSpec
    version: str
    threshold: float = DEFAULT_THRESHOLD
    info: dict | None = None
    type_threshold: float = DEFAULT_TYPE_THRESHOLD
    localizer: object = None
    aircraft_threshold: float | None = None
    confidence: conf.ConfidenceRule | None = None
    bank: np.ndarray | None = None

    def __post_init__(self):
        if self.confidence is None:
            self.confidence = conf.ConfidenceRule.from_labels(self.labels)
        self._features = None

    @property
    def novelty(self) -> bool:
        """The version flags unusual photos (a feature bank and a novelty threshold)."""
        return self.bank is not None and self.confidence.novelty_threshold is not None

    @property
    def views(self) -> bool:
        """The version checks that the mirror image and the zoomed crop agree (``labels["confidence"]["views"]``)."""
        return bool(self.confidence.views)

    @property
    def crop_rule(self):
        """The version's aircraft crop rule (:class:`model.preprocessing.CropRule`), or ``None``."""
        return self.spec.crop_rule if self.localizer is not None else None

    @property
    def localizer_size(self) -> int | None:
        """Square input size of the localizer (pixels), or ``None`` without one."""
        if self.localizer is None:
            return None
        return int(self.localizer.input_shape[1])

    @property
    def tta(self) -> str | None:
        """Test-time augmentation of the version (``labels["tta"]``): ``"flip"`` averages the
        probabilities of the image and its mirror image; ``None``: one pass."""
        return self.labels.get("tta") or None

    @classmethod
    def load(cls, path: str | os.PathLike, threshold: float | None = None,
             type_threshold: float | None = None) -> "Cascade":
        """Load and verify a version folder (``models/latest`` is followed).

        ``threshold`` defaults to ``PLANESPOTTER_THRESHOLD`` or :data:`DEFAULT_THRESHOLD`;
        ``type_threshold`` to ``PLANESPOTTER_TYPE_THRESHOLD``, else the version's
        ``labels["type_threshold"]``, else :data:`DEFAULT_TYPE_THRESHOLD`.

        Raises:
            model.io.ModelLoadError: missing/corrupt files, or preprocessing checksum mismatch.
        """
        path = Path(path)
        info = mio.read_version_info(path)
        spec = pp.PreprocessingSpec.from_dict(info["preprocessing"])
        expected = info["preprocessing"].get("reference_sha256")
        if expected and expected != mio.reference_checksum(path, spec):
            raise mio.ModelLoadError(
                f"{path}: this installation preprocesses differently from training "
                "(reference checksum mismatch; check the Pillow version)")
        stage1 = mio.load_keras(path / mio.STAGE1)
        stage2 = {m: mio.load_keras(path / mio.stage2_file(m))
                  for m in info["labels"].get("types", {}) if (path / mio.stage2_file(m)).is_file()}
        if threshold is None:
            threshold = env_probability("PLANESPOTTER_THRESHOLD", DEFAULT_THRESHOLD)
        if type_threshold is None:
            type_threshold = env_probability("PLANESPOTTER_TYPE_THRESHOLD",
                                             info["labels"].get("type_threshold", DEFAULT_TYPE_THRESHOLD))
        localizer = mio.load_keras(path / mio.LOCALIZER_FILE) if (path / mio.LOCALIZER_FILE).is_file() else None
        aircraft_threshold = info["labels"].get("aircraft_threshold")
        if localizer is not None and aircraft_threshold is not None:
            aircraft_threshold = env_probability("PLANESPOTTER_AIRCRAFT_THRESHOLD", aircraft_threshold)
        rule = conf.ConfidenceRule.from_labels(info["labels"])
        bank = None
        if rule.novelty_threshold is not None:
            try:
                bank = conf.load_bank(path)
            except (OSError, ValueError) as e:
                raise mio.ModelLoadError(f"{path}: labels.json sets a novelty threshold but {conf.BANK_FILE} "
                                         f"cannot be read ({e})") from None
        return cls(stage1, stage2, info["labels"], spec, info["version"], threshold, info, type_threshold,
                   localizer, aircraft_threshold, rule, bank)

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
            if self.localizer is not None:
                self.localizer.predict_on_batch(np.zeros((n, self.localizer_size, self.localizer_size, 3), np.float32))

    def probabilities(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Raw forward passes with routing.

        Args:
            x: float32 ``(n, H, W, 3)`` preprocessed images.
        Returns:
            ``(p_manufacturer (n, M), {manufacturer: (n, T_m) array})``; rows of a stage-2 array
            that were not routed there are NaN.
        """
        p_m, p_t, _ = self.forward_signals(x)
        return p_m, p_t

    def stage1_signals(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Stage 1 with the version's confidence signals (:mod:`model.confidence`).

        Args:
            x: float32 ``(n, H, W, 3)`` preprocessed images.
        Returns:
            ``(p_manufacturer (n, M) float64, novelty (n,) float32 k-NN distance in [0, 2] or
            None, views_disagree (n,) bool or None)``. With TTA ``flip`` the probabilities are
            the mean of the image's and its mirror image's.
        """
        x = np.asarray(x, np.float32)
        novelty = disagree = None
        if self.novelty:
            if self._features is None:
                self._features = conf.feature_model(self.stage1)
            p, f = self._features.predict_on_batch(x)
            p = np.asarray(p, np.float64)
            novelty = conf.knn_distance(np.asarray(f), self.bank, self.confidence.k)
        else:
            p = np.asarray(self.stage1.predict_on_batch(x), np.float64)
        p_flip = None
        if self.tta == "flip" or self.views:  # the mirror image as a second batch of the same size
            p_flip = np.asarray(self.stage1.predict_on_batch(np.ascontiguousarray(x[:, :, ::-1])), np.float64)
        if self.views:
            p_zoom = np.asarray(self.stage1.predict_on_batch(conf.zoom(x)), np.float64)
            top = p.argmax(axis=1)
            disagree = (p_flip.argmax(axis=1) != top) | (p_zoom.argmax(axis=1) != top)
        if self.tta == "flip":
            p = (p + p_flip) / 2
        return p, novelty, disagree

    def forward_signals(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
        """:meth:`probabilities` with the signals that decide "unsure": ``(p_manufacturer,
        {manufacturer: p_leaves}, {"novelty": (n,) or None, "views_disagree": (n,) or None,
        "unsure": bool (n,)})``. An unsure image is routed to both leading manufacturers."""
        x = np.asarray(x, np.float32)
        flip = self.tta == "flip"

        def run(model, rows):
            p = np.asarray(model.predict_on_batch(rows), np.float64)
            if flip:  # the mirror image as a second batch of the same size (batch size changes floats)
                p = (p + np.asarray(model.predict_on_batch(np.ascontiguousarray(rows[:, :, ::-1])), np.float64)) / 2
            return p

        p_m, novelty, disagree = self.stage1_signals(x)
        top = p_m.argmax(axis=1)
        confident = p_m.max(axis=1) >= self.threshold
        if novelty is not None:
            confident &= novelty < self.confidence.novelty_threshold
        if disagree is not None:
            confident &= ~disagree
        second = np.argsort(-p_m, axis=1)[:, 1] if p_m.shape[1] > 1 else top
        p_t = {}
        for j, m in enumerate(self.manufacturers):
            model = self.stage2.get(m)
            if model is None:
                continue
            rows = np.flatnonzero((top == j) | (~confident & (second == j)))
            out = np.full((len(x), len(self.labels["types"][m])), np.nan)
            if len(rows):
                out[rows] = run(model, x[rows])
            p_t[m] = out
        return p_m, p_t, {"novelty": novelty, "views_disagree": disagree, "unsure": ~confident}

    def families(self, manufacturer: str) -> list[str]:
        """The family of each stage-2 leaf of ``manufacturer`` (see :func:`leaf_families`)."""
        return leaf_families(self.labels, manufacturer)

    def branch(self, manufacturer: str, p_manufacturer: float, p_leaves: np.ndarray | None) -> dict:
        """One manufacturer's answer from its stage-2 leaf probabilities ``(T,)`` (``None`` or NaN
        when it has no stage-2 model): the best family by summed leaf probability, and the best
        leaf as ``type`` only when it is an ICAO type with probability >= ``type_threshold``.

        Returns:
            ``{"manufacturer", "manufacturer_probability", "family", "family_probability",
            "type", "type_probability", "joint_probability"}``; ``joint_probability`` is
            ``P(manufacturer) * P(answer | manufacturer)`` at the answer's level (type, else
            family, else ``P(manufacturer)`` alone).
        """
        out = {"manufacturer": manufacturer, "manufacturer_probability": p_manufacturer, "family": None,
               "family_probability": None, "type": None, "type_probability": None,
               "joint_probability": p_manufacturer}
        if p_leaves is None or np.isnan(p_leaves[0]):
            return out
        leaves, fams = self.labels["types"][manufacturer], self.families(manufacturer)
        totals: dict[str, float] = {}
        for f, p in zip(fams, p_leaves):
            totals[f] = totals.get(f, 0.0) + float(p)
        family = max(totals, key=lambda f: (totals[f], -fams.index(f)))  # ties: first in output order
        out.update(family=family, family_probability=totals[family],
                   joint_probability=p_manufacturer * totals[family])
        k = int(np.argmax(p_leaves))
        if is_type_leaf(leaves[k]) and float(p_leaves[k]) >= self.type_threshold:
            out.update(type=leaves[k], type_probability=float(p_leaves[k]),
                       joint_probability=p_manufacturer * float(p_leaves[k]))
        return out

    def predict(self, x: np.ndarray, top_k: int = 3, boxes: list | None = None,
                aircraft: np.ndarray | None = None) -> list[dict]:
        """Classify preprocessed images.

        Args:
            x: float32 ``(n, H, W, 3)`` (each image whole, or cut to its box);
            top_k: how many (manufacturer, leaf) pairs to list (>= 1);
            boxes: the box each image was cut to (``[left, top, right, bottom]`` in the uploaded
                image's pixels) or ``None``, reported as ``box``; default all ``None``;
            aircraft: the localizer's aircraft probability per image (:meth:`model.pipeline.Pipeline.locate`), or
                ``None``. Below :attr:`aircraft_threshold` the answer is "not an aircraft".
        Returns:
            One dict per image (``None`` where a level is not answered)::

                {"manufacturer": {"label": str | None, "probability": float | None},  # None: no aircraft
                 "family": {"label": str | None, "probability": float | None,  # P(family | manufacturer)
                            "joint_probability": float | None},
                 "type": {"label": str | None, "probability": float | None,    # P(type | manufacturer)
                          "joint_probability": float | None},
                 "answer": {"level": "type" | "family" | "manufacturer" | "none",
                            "label": str,   # "B77W", "B777 family", "Boeing", "Other" or "none"
                            "text": str},   # in words: "Boeing B77W", "Boeing B777 family",
                                            # "another manufacturer (not Airbus or Boeing)", "not an aircraft"
                 "aircraft": {"probability": float | None, "threshold": float | None},
                 "box": [left, top, right, bottom] | None,
                 "unsure": bool,   # stage 1 under the threshold, an unusual photo, or views that disagree
                 "unsure_reasons": [str, ...],  # why, codes of model.confidence.REASONS; [] when sure
                 "branches": [Cascade.branch(...), ...],   # what stage 1/2 said, also for "none"
                 "top_k": [{"manufacturer", "family", "type", "probability"}, ...]}  # joint; type None for family leaves

            Level ``manufacturer`` is the answer for ``Other`` (no family, no type) and for a
            manufacturer without a stage-2 model.
        """
        p_m, p_t, signals = self.forward_signals(x)
        results = []
        for i in range(len(p_m)):
            order = np.argsort(-p_m[i], kind="stable")
            unsure = bool(signals["unsure"][i])
            branches, pairs = [], []
            for j in order[: 2 if unsure else 1]:
                m = self.manufacturers[j]
                pm = float(p_m[i, j])
                pt = p_t[m][i] if m in p_t else None
                branches.append(self.branch(m, pm, pt))
                if pt is not None and not np.isnan(pt[0]):
                    pairs += [(pm * float(p), m, f, t if is_type_leaf(t) else None)
                              for p, t, f in zip(pt, self.labels["types"][m], self.families(m))]
                else:
                    pairs.append((pm, m, None, None))
            best = branches[0]
            p_air = None if aircraft is None else float(aircraft[i])
            no_aircraft = p_air is not None and self.aircraft_threshold is not None and p_air < self.aircraft_threshold
            level = ("none" if no_aircraft else "type" if best["type"] else "family" if best["family"]
                     else "manufacturer")
            label = {"type": best["type"], "family": f"{best['family']}{FAMILY_LEAF_SUFFIX}",
                     "manufacturer": best["manufacturer"], "none": "none"}[level]
            pairs.sort(key=lambda t: -t[0])
            reasons = [] if no_aircraft or not unsure else self.unsure_reasons(
                float(p_m[i, order[0]]), pairs, None if signals["novelty"] is None else float(signals["novelty"][i]),
                None if signals["views_disagree"] is None else bool(signals["views_disagree"][i]))
            box = None if boxes is None or boxes[i] is None else [int(v) for v in boxes[i]]
            if no_aircraft:
                head = {"manufacturer": {"label": None, "probability": None},
                        "family": {"label": None, "probability": None, "joint_probability": None},
                        "type": {"label": None, "probability": None, "joint_probability": None}}
            else:
                head = {
                    "manufacturer": {"label": best["manufacturer"], "probability": best["manufacturer_probability"]},
                    "family": {"label": best["family"], "probability": best["family_probability"],
                               "joint_probability": (best["manufacturer_probability"] * best["family_probability"]
                                                     if best["family"] else None)},
                    "type": {"label": best["type"], "probability": best["type_probability"],
                             "joint_probability": best["joint_probability"] if best["type"] else None}}
            results.append({
                **head,
                "answer": {"level": level, "label": label, "text": answer_text(level, label, best["manufacturer"])},
                "aircraft": {"probability": p_air, "threshold": self.aircraft_threshold},
                "box": box,
                "unsure": unsure and not no_aircraft,
                "unsure_reasons": reasons,
                "branches": branches,
                "top_k": [{"manufacturer": m, "family": f, "type": t, "probability": p}
                          for p, m, f, t in pairs[:max(1, top_k)]],
            })
        return results

    def unsure_reasons(self, p_top: float, pairs: list, novelty: float | None, disagree: bool | None) -> list[str]:
        """Why an unsure answer is unsure, as codes of :data:`model.confidence.REASONS` in that
        order: ``low_confidence`` (stage 1's top probability under the threshold; reported as
        ``types_close`` instead when the second joint probability of ``pairs`` — ``(p, …)``
        sorted best first — is at least ``confidence.types_close`` times the first),
        ``unusual_photo`` (novelty at or above its threshold), ``views_disagree``."""
        out = []
        if p_top < self.threshold:
            close = (self.confidence.types_close is not None and len(pairs) > 1
                     and pairs[1][0] >= self.confidence.types_close * pairs[0][0])
            out.append("types_close" if close else "low_confidence")
        if novelty is not None and self.novelty and novelty >= self.confidence.novelty_threshold:
            out.append("unusual_photo")
        if disagree:
            out.append("views_disagree")
        return sorted(out, key=conf.REASONS.index)


def env_probability(name: str, default: float) -> float:
    """A threshold in [0, 1] from environment variable ``name``; unset or empty: ``default``.

    Raises:
        ValueError: the value is not a number in [0, 1] (the message names the variable).
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={raw!r} is outside [0, 1]")
    return value


def answer_text(level: str, label: str, manufacturer: str | None) -> str:
    """An answer in a spotter's words: ``"Boeing B738"``, ``"Boeing B737 family"``, ``"Airbus"``,
    :data:`OTHER_TEXT` for manufacturer ``Other`` and :data:`NONE_TEXT` for level ``none``."""
    if level == "none":
        return NONE_TEXT
    if manufacturer == "Other":
        return OTHER_TEXT
    if level == "manufacturer":
        return manufacturer or ""
    return f"{manufacturer} {label}"
