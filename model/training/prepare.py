"""Data preparation shared by every training over one set of datasets: the rows with their splits,
the decoded pixels, the localizer's outputs (:func:`prepare`), and the stage-2 classes and
training targets derived from the rows (:func:`stage2_leaves`, :func:`leaf_targets`,
:func:`targets`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import data as mdata
from .. import localize as loc
from .. import preprocessing as pp
from ..cascade import FAMILY_LEAF_SUFFIX
from . import features
from .config import STAGE1_MANUFACTURERS, TrainConfig, log
from .weighting import balanced_weights, source_manufacturer_weights


@dataclass
class Prepared:
    """What every training over one set of datasets shares (:func:`prepare`): the rows with their
    splits, the decoded pixels (cut to the aircraft box when cropping), the localizer's outputs.

    Attributes:
        df: rows (:func:`model.data.read_metadata` + ``split``), manufacturers in
            :data:`~model.training.config.STAGE1_MANUFACTURERS`; pixels: uint8 ``(n, H, W, 3)``;
            spec: with ``crop`` set when cropping; aircraft: float32 ``(n,)`` localizer aircraft
            probability, or ``None``; boxes: each row's classifier crop box text (dataset box
            composed with the aircraft box); localizer_model: the Keras localizer, or ``None``.
    """

    df: pd.DataFrame
    pixels: np.ndarray
    spec: pp.PreprocessingSpec
    aircraft: np.ndarray | None
    boxes: list
    localizer_model: object = None


def prepare(cfg: TrainConfig) -> Prepared:
    """Read the datasets, assign splits, run the localizer (cached) and decode the pixels (cached).

    Raises:
        model.data.DatasetError: unusable dataset.
    """
    spec = cfg.spec()
    df = mdata.assign_splits(mdata.read_metadata(cfg.data), seed=cfg.seed)
    df = df[df["manufacturer"].isin(STAGE1_MANUFACTURERS)].reset_index(drop=True)
    aircraft, boxes, localizer_model = None, df["crop_box"].tolist(), None
    if cfg.localizer and cfg.backbone in features.FEATURE_BACKBONES and cfg.backbone.startswith("lite"):
        t = time.time()
        # The localizer is always Lite0: a weights file given for another backbone is not its own.
        loc_weights = None if cfg.weights in (None, "imagenet") or cfg.backbone != "lite0" else cfg.weights
        localizer_model = loc.build_localizer(224, loc_weights)
        aircraft, cams = loc.dataset_locate(df, 224, loc_weights, localizer=localizer_model, spec=spec)
        log(f"localizer over {len(df)} images in {time.time() - t:.1f}s")
        if cfg.crop:
            rule = pp.CropRule(**(cfg.crop_rule or {}))
            spec = pp.PreprocessingSpec(**{**spec.to_dict(), "crop": rule.to_dict()})
            boxes = loc.dataset_boxes(df, cams, rule)
            df["model_box"] = boxes
            cropped = np.mean([b != c for b, c in zip(boxes, df["crop_box"])])
            log(f"aircraft crop: {cropped:.1%} of the images cut to a box")
        del cams
    t = time.time()
    pixels = mdata.load_pixels(df["abs_path"].tolist(), spec, shas=df["sha256"].tolist(), crop_boxes=boxes,
                               draft_boxes=df["crop_box"].tolist() if cfg.crop else None)
    log(f"decoded {len(pixels)} images in {time.time() - t:.1f}s")
    return Prepared(df, pixels, spec, aircraft, boxes, localizer_model)


def aircraft_boxes(prep: Prepared, rows: np.ndarray) -> list:
    """The aircraft box of each of ``rows`` as the answer reports it (``[l, t, r, b]`` in the
    image's pixels; ``None`` when the row is not cut beyond its dataset box)."""
    out = []
    for i in rows:
        b, d = prep.boxes[i], prep.df["crop_box"].iat[i]
        out.append(None if b == d else list(pp.parse_crop_box(b)))
    return out


def split_rows(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """``{"train" | "validation" | "test": int row indices}`` of ``df`` by its ``split`` column."""
    return {s: np.flatnonzero(df["split"].to_numpy() == s) for s in ("train", "validation", "test")}


def stage2_leaves(df_train: pd.DataFrame, manufacturers: list[str], min_images: int = 8) -> tuple[dict, dict]:
    """The stage-2 classes ("leaves") of each manufacturer, from the training rows.

    A leaf is an ICAO type with at least ``min_images`` training rows, or ``"<family> family"``
    for a family that has at least ``min_images`` rows but no type leaf (its rows name no type,
    or only rare ones). Manufacturer ``Other`` and manufacturers with fewer than two leaves get no
    stage 2.

    Returns:
        ``(types, families)``: ``{manufacturer: [leaf, ...]}`` (types sorted, then family leaves
        sorted) and ``{manufacturer: {leaf: family}}``.
    """
    types, families = {}, {}
    for m in manufacturers:
        if m == "Other":
            continue
        sub = df_train[(df_train["manufacturer"] == m) & (df_train["family"] != "")]
        counts = sub[sub["icao_type"] != ""].groupby(["icao_type", "family"]).size()
        type_leaves = {t: f for (t, f), n in counts.items() if n >= min_images}
        fam_rows = sub["family"].value_counts()
        fam_leaves = {f"{f}{FAMILY_LEAF_SUFFIX}": f for f, n in fam_rows.items()
                      if n >= min_images and f not in type_leaves.values()}
        leaves = sorted(type_leaves) + sorted(fam_leaves)
        if len(leaves) >= 2:
            types[m] = leaves
            families[m] = {**type_leaves, **fam_leaves}
    return types, families


def leaf_targets(df: pd.DataFrame, types: dict, families: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """Partial-label targets over the global leaf list (all manufacturers' leaves, concatenated).

    A row whose type is a leaf allows that leaf alone; a row with a known family (and no leaf
    type) allows every leaf of its family; other rows (no family, manufacturer without stage 2,
    a family without leaves) are unlabelled.

    Returns:
        ``(mask, labelled, columns)``: float32 ``(n, L)`` (all ones on unlabelled rows), bool
        ``(n,)``, and ``{manufacturer: [column indices]}``.
    """
    columns, offset, leaf_index = {}, 0, {}
    for m, leaves in types.items():
        columns[m] = list(range(offset, offset + len(leaves)))
        leaf_index.update({(m, leaf): offset + k for k, leaf in enumerate(leaves)})
        offset += len(leaves)
    mask = np.zeros((len(df), max(offset, 1)), np.float32)
    for i, (m, t, f) in enumerate(zip(df["manufacturer"], df["icao_type"], df["family"])):
        if (m, t) in leaf_index:
            mask[i, leaf_index[(m, t)]] = 1.0
        elif f and m in families:
            for leaf, fam in families[m].items():
                if fam == f:
                    mask[i, leaf_index[(m, leaf)]] = 1.0
    labelled = mask.sum(1) > 0
    mask[~labelled] = 1.0
    return mask, labelled, columns


def targets(rows: pd.DataFrame, manufacturers: list[str], types: dict, families: dict, photo_share: float,
            family_power: float, source_power: float = 0.0, source_balance: bool = False,
            one_source_stage1: float = 1.0):
    """Targets and weights of ``rows``: ``(y, w, mask, labelled, columns)``; ``y`` and ``w`` are
    ``{"manufacturer": ..., "leaves": ...}`` dicts for :mod:`model.training.joint` /
    :mod:`model.training.full` (``y["manufacturer"]`` int ``(n,)``, ``y["leaves"]`` the float32
    mask ``(n, L)``; weights float ``(n,)``, leaf weights 0 on rows without a stage-2 target; see
    :func:`leaf_targets`, :func:`model.training.weighting.balanced_weights`)."""
    mask, labelled, columns = leaf_targets(rows, types, families)
    w = balanced_weights(rows["manufacturer"], rows["family"], rows["domain"], photo_share, family_power,
                         source=rows["source"], source_power=source_power)
    m_index = {m: i for i, m in enumerate(manufacturers)}
    y = {"manufacturer": rows["manufacturer"].map(m_index).to_numpy(), "leaves": mask}
    w1 = w
    if source_balance or one_source_stage1 != 1.0:
        w1 = source_manufacturer_weights(w, rows["manufacturer"], rows["source"], rows["domain"],
                                         balance=source_balance, one_manufacturer_factor=one_source_stage1)
    return y, {"manufacturer": w1, "leaves": w * labelled}, mask, labelled, columns


def judging_rows(df: pd.DataFrame, sel: dict) -> np.ndarray:
    """The validation rows that steer early stopping and calibration: the photos when there are any.
    Their loss is weighted by manufacturer only (``family_power`` 0: the view of balanced
    accuracy), since per-family weights on a few hundred photos make the validation loss noisy."""
    va = sel["validation"]
    photos = va[(df.loc[va, "domain"] == "photo").to_numpy()]
    return photos if len(photos) else va
