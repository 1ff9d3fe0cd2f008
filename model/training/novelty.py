"""The version's confidence rule (:class:`model.confidence.ConfidenceRule`) fitted at training time:
the feature bank of the training photos and the novelty threshold on the validation photos'
scale, so that a threshold chosen on held-out origins (:mod:`model.training.levers`) carries over to
any training of the recipe.

The threshold is the ``novelty_quantile``-th percentile of the validation photos' k-NN distances
to the bank (Sun et al. 2022 pick theirs so that 95 % of in-distribution data stays: the same
rule, with the share chosen on held-out origins).
"""

from __future__ import annotations

import numpy as np

from .. import confidence as conf
from .. import preprocessing as pp
from .config import TrainConfig, log

#: Training photos in a version's bank at most (a seeded sample): 4,000 x 1,280 float16 = 10 MB.
MAX_BANK = 4000


def photo_features(cascade, pixels: np.ndarray, rows: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Penultimate stage-1 features ``(len(rows), D)`` float32 of uint8 pixels ``pixels[rows]``
    (:func:`model.confidence.feature_model`). Raises ValueError: a stage 1 without them."""
    fm = conf.feature_model(cascade.stage1)
    out = [np.asarray(fm.predict_on_batch(pp.scale(pixels[rows[s:s + batch_size]], cascade.spec))[1])
           for s in range(0, len(rows), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, fm.output_shape[1][-1]), np.float32)


def fit_confidence(cfg: TrainConfig, cascade, df, pixels: np.ndarray, sel: dict) -> dict | None:
    """Switch the configuration's confidence rule on in ``cascade`` (in place) and return it as
    ``labels["confidence"]`` (``None`` when the configuration asks for none).

    With ``cfg.novelty_quantile``: the bank is the training photos' features (at most
    :data:`MAX_BANK`, a seeded sample; ``cascade.bank``, unit length), the threshold the
    quantile of the validation photos' k-NN distances (``cfg.novelty_k``). Data without photos
    (renders alone) uses every training and validation row instead. With ``cfg.views``:
    the mirror image and the zoomed crop must agree.

    Raises:
        ValueError: novelty asked for with a stage 1 without penultimate features (compact,
            VGG16), or with no training or validation photos.
    """
    if cfg.novelty_quantile is None and not cfg.views:
        return None
    rule = conf.ConfidenceRule(views=bool(cfg.views), k=cfg.novelty_k)
    if cfg.novelty_quantile is not None:
        photos = (df["domain"] == "photo").to_numpy()
        tr, va = (sel[s][photos[sel[s]]] for s in ("train", "validation"))
        if len(tr) < cfg.novelty_k or not len(va):  # no photos: every row
            tr, va = sel["train"], sel["validation"]
        if len(tr) < cfg.novelty_k or not len(va):
            raise ValueError(f"novelty needs >= {cfg.novelty_k} training images and a validation image "
                             f"({len(tr)} and {len(va)})")
        if len(tr) > MAX_BANK:
            tr = np.sort(np.random.default_rng(cfg.seed).choice(tr, MAX_BANK, replace=False))
        bank = conf.unit(photo_features(cascade, pixels, tr))
        d_val = conf.knn_distance(photo_features(cascade, pixels, va), bank, cfg.novelty_k)
        rule.novelty_threshold = round(float(np.quantile(d_val, cfg.novelty_quantile / 100)), 5)
        cascade.bank = bank
        log(f"novelty: bank of {len(bank)} training photos, k={cfg.novelty_k}, threshold "
            f"{rule.novelty_threshold} (validation photos' {cfg.novelty_quantile}th percentile)")
    cascade.confidence = rule
    return rule.as_dict()

