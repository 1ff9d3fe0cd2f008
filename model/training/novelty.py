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


def photo_features(cascade, pixels: np.ndarray, rows: np.ndarray, batch_size: int = 64, fm=None) -> np.ndarray:
    """Penultimate stage-1 features ``(len(rows), D)`` float32 of uint8 pixels ``pixels[rows]``
    (``fm``, default :func:`model.confidence.feature_model` of stage 1). Raises ValueError: a
    stage 1 without them."""
    fm = fm or conf.feature_model(cascade.stage1)
    out = [np.asarray(fm.predict_on_batch(pp.scale(pixels[rows[s:s + batch_size]], cascade.spec))[1])
           for s in range(0, len(rows), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, fm.output_shape[1][-1]), np.float32)


def bank_rows(df, sel: dict, k: int, seed: int, max_bank: int = MAX_BANK) -> tuple[np.ndarray, np.ndarray]:
    """The rows whose features make the novelty bank and its scale: ``(train, validation)`` int
    row indices, the photos of ``sel["train"]`` (at most ``max_bank``, a seeded sample) and of
    ``sel["validation"]``; every row of both splits when there are fewer than ``k`` training
    photos or no validation photo (renders alone).

    Raises:
        ValueError: fewer than ``k`` training rows or no validation row even then.
    """
    photos = (df["domain"] == "photo").to_numpy()
    tr, va = (sel[s][photos[sel[s]]] for s in ("train", "validation"))
    if len(tr) < k or not len(va):  # no photos: every row
        tr, va = sel["train"], sel["validation"]
    if len(tr) < k or not len(va):
        raise ValueError(f"novelty needs >= {k} training images and a validation image ({len(tr)} and {len(va)})")
    if len(tr) > max_bank:
        tr = np.sort(np.random.default_rng(seed).choice(tr, max_bank, replace=False))
    return tr, va


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
        tr, va = bank_rows(df, sel, cfg.novelty_k, cfg.seed)
        bank = conf.unit(photo_features(cascade, pixels, tr))
        d_val = conf.knn_distance(photo_features(cascade, pixels, va), bank, cfg.novelty_k)
        rule.novelty_threshold = round(float(np.quantile(d_val, cfg.novelty_quantile / 100)), 5)
        cascade.bank = bank
        log(f"novelty: bank of {len(bank)} training photos, k={cfg.novelty_k}, threshold "
            f"{rule.novelty_threshold} (validation photos' {cfg.novelty_quantile}th percentile)")
    cascade.confidence = rule
    return rule.as_dict()

