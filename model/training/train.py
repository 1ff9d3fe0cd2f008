"""Training the cascade: stage 1 (manufacturer) and one stage-2 model per manufacturer over its
*leaves* (ICAO types, and "<family> family" for families known only without a usable type),
calibrated by temperature scaling, evaluated, exported as a model version.

Data: one or more datasets of the shared schema (renders from ``synth``, imported or scraped
photos), read by :func:`model.data.read_metadata`. Rows keep their ``domain`` (render or photo)
and ``source``; training weights balance manufacturers, their families and the two domains
(:func:`model.training.weighting.balanced_weights`), so 417 Airbus photos are not drowned by 4,244 Boeings.
Early stopping and calibration use the validation *photos* whenever there are any.

Two training modes, chosen by the backbone:

- ``lite0`` / ``lite2`` / ``vgg16-frozen`` (the registry :mod:`model.backbones`): features of the
  ImageNet backbone computed once and cached on disk by image sha256 (:mod:`model.training.features`);
  both stages are trained together on them (:mod:`model.training.joint`): with ``--fine-tune`` the
  backbone's upper part (above its default cut) is fine-tuned on cached feature maps, else a
  small head is trained on pooled features. ``--photo-views N`` adds N photo-like augmented
  views of every training photo (:mod:`model.training.augment`). The exported models are backbone + head.
- ``compact`` (and ``vgg16`` fine-tuning): images → augmentation (Keras layers in the tf.data
  graph) → CNN per stage, early stopping on validation loss, best weights kept (stage 2 over
  ICAO types only).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import data as mdata
from .. import io as mio
from .. import preprocessing as pp
from ..cascade import FAMILY_LEAF_SUFFIX, Cascade, is_type_leaf
from . import augment, tracking
from .calibration import calibrate, calibrated, calibration_report
from .weighting import class_weights

STAGE1_MANUFACTURERS = ("Airbus", "Boeing", "Other")


@dataclass
class TrainConfig:
    """Training settings (CLI flags of ``python -m model train`` map 1:1)."""

    data: str | list[str] = "data/raw/synth"  # one dataset folder/CSV, or several (stacked)
    models_dir: str = "models"
    reports_dir: str = "reports"
    backbone: str = "compact"
    weights: str | None = None
    image_size: int = 96
    resize: str = "bilinear"
    epochs: int = 12
    type_epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 2e-3
    patience: int = 4
    width: int = 24
    seed: int = 0
    threshold: float = 0.6
    augment: bool = True
    mixed_precision: bool = False  # GPU only: keras mixed_float16 policy
    fine_tune: bool = False  # feature backbones: stage 1 fine-tunes above the default cut (stage 2: heads)
    grayscale: bool = False
    min_type_images: int = 8  # training rows a type (or a family-only leaf) needs to be a class
    type_threshold: float = 0.5  # P(type | manufacturer) a type needs to be named (else: family)
    photo_share: float = 0.5  # share of each family's training weight on photos when it has renders too
    family_power: float = 0.5  # 1: every family of a manufacturer weighs the same; 0: by row count
    source_power: float = 0.5  # 1: every source of a (manufacturer, family, domain) cell weighs the same
    photo_views: int = 0  # photo-like augmented views per training photo (feature backbones)
    leaf_weight: float = 1.0  # weight of the stage-2 (leaf) loss in joint training
    cut: str | None = None  # --fine-tune: where the backbone is cut (default: the backbone's)
    full: bool = False  # fine-tune the whole backbone on augmented images (model.training.full; slow on a CPU)
    init_weights: str | None = None  # --full: start from these weights (model.training.full.save_weights)
    save_weights: str | None = None  # --full: also write the trained weights here (float16 .npz)
    workers: int = 0  # --full: augmentation threads (0: the CPU count, at most 8)
    localizer: bool = True  # pretrained backbones: ship the ImageNet-head localizer (aircraft gate, crop)
    crop: bool = False  # classify a box around the aircraft (model.preprocessing.CropRule), in training and serving
    crop_rule: dict | None = None  # CropRule fields overriding its defaults (with crop)
    tta: str | None = None  # "flip": average the probabilities of the image and its mirror at inference
    source_balance: bool = False  # stage 1: both manufacturers weigh the same inside each photo source
    one_source_stage1: float = 1.0  # stage-1 weight factor of a photo source with one manufacturer (0: stage 2 only)
    view_styles: bool = False  # --photo-views with night/dusk, squashed, zoomed-out and watermarked styles
    version: str | None = None
    verbose: int = 2
    extra: dict = field(default_factory=dict)

    def spec(self) -> pp.PreprocessingSpec:
        return pp.PreprocessingSpec(height=self.image_size, width=self.image_size, resize=self.resize,
                                    jpeg_draft=pp.DEFAULT_JPEG_DRAFT)


def _log(msg: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _datasets(x_tr, y_tr, x_va, y_va, spec, cfg: TrainConfig):
    import tensorflow as tf

    aug = augment.augmentation(extra=True, grayscale=cfg.grayscale, seed=cfg.seed) if cfg.augment else None
    scale = tf.constant(spec.scale, tf.float32)
    offset = tf.constant(spec.offset, tf.float32)

    def prep(x, y):
        return tf.cast(x, tf.float32) * scale + offset, y

    def prep_aug(x, y):
        x, y = prep(augment.jpeg_recompress(x, seed=cfg.seed), y)  # re-compression on uint8 pixels
        return aug(x, training=True), y

    train = (tf.data.Dataset.from_tensor_slices((x_tr, y_tr))
             .shuffle(len(x_tr), seed=cfg.seed, reshuffle_each_iteration=True)
             .batch(cfg.batch_size)
             .map(prep_aug if aug is not None else prep, num_parallel_calls=tf.data.AUTOTUNE)
             .prefetch(tf.data.AUTOTUNE))
    val = (tf.data.Dataset.from_tensor_slices((x_va, y_va)).batch(cfg.batch_size)
           .map(prep, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
    return train, val


def plot_history(history: dict, title: str, path: Path) -> Path:
    """Training curves (loss and accuracy, train vs validation) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + key in history:
                ax.plot(range(1, len(history[prefix + key]) + 1), history[prefix + key], style,
                        label=(prefix or "train_").rstrip("_"))
        ax.set_xlabel("epoch")
        ax.set_title(key)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def distribution_strategy(mixed_precision: bool = False):
    """``tf.distribute.MirroredStrategy`` over all GPUs when more than one is visible, else the
    default strategy; with ``mixed_precision`` and a GPU, Keras' ``mixed_float16`` policy (the
    ``logits`` layers are built with ``dtype="float32"`` so losses and softmax stay float32)."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if mixed_precision and gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    if len(gpus) > 1:
        _log(f"MirroredStrategy over {len(gpus)} GPUs")
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def fit_image_classifier(name: str, n_classes: int, x_tr, y_tr, x_va, y_va, cfg: TrainConfig,
                         epochs: int, version: str):
    """Train one CNN on uint8 pixels. Returns ``(logits_model, history_dict)``."""
    import keras

    spec = cfg.spec()
    keras.utils.set_random_seed(cfg.seed)
    with distribution_strategy(cfg.mixed_precision).scope():
        if cfg.backbone == "compact":
            from ..backbones.compact import build_compact_cnn

            model = build_compact_cnn(spec.input_shape, n_classes, width=cfg.width, name=name)
        elif cfg.backbone == "vgg16":
            from ..backbones.vgg16 import build_vgg16_classifier

            model = build_vgg16_classifier(spec.input_shape, n_classes, weights=cfg.weights, name=name)
        else:
            raise ValueError(f"backbone {cfg.backbone!r} does not train on images")
        model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    train, val = _datasets(x_tr, y_tr, x_va, y_va, spec, cfg)
    reports = Path(cfg.reports_dir)
    ckpt = reports / "checkpoints" / version / f"{name}.best.keras"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True),
        keras.callbacks.ModelCheckpoint(ckpt, monitor="val_loss", save_best_only=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2),
        keras.callbacks.TensorBoard(log_dir=str(reports / "tensorboard" / version / name)),
        keras.callbacks.CSVLogger(str(reports / "checkpoints" / version / f"{name}.history.csv")),
    ]
    hist = model.fit(train, validation_data=val, epochs=epochs, callbacks=callbacks,
                     class_weight=class_weights(y_tr, n_classes), verbose=cfg.verbose, shuffle=False)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    return model, history


def logits_of(model, x_uint8: np.ndarray, spec: pp.PreprocessingSpec, batch_size: int = 128) -> np.ndarray:
    """Logits ``(n, k)`` of a logits model over uint8 pixels, batch by batch (predict_on_batch)."""
    out = [np.asarray(model.predict_on_batch(pp.scale(x_uint8[s:s + batch_size], spec)))
           for s in range(0, len(x_uint8), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]))


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


def model_card(cfg: TrainConfig, df: pd.DataFrame, labels: dict, metrics: dict, version: str) -> str:
    """The Markdown model card of a version: model, training data (every source with its licence
    terms and counts per split), metrics on rendered and on real test images, limits."""
    counts = df.groupby(["domain", "split", "manufacturer"]).size().unstack(fill_value=0)
    by_source = df.groupby(["source", "split"]).size().unstack(fill_value=0)
    licences = "\n".join(f"- `{src}`: {lic or 'unknown'}" for src, lic in
                         df.groupby("source")["licence"].agg(lambda v: "; ".join(sorted(set(v))[:2])).items())
    datasets = ", ".join(f"`{d}`" for d in sorted(set(df["dataset"])))

    def table(section: dict | None, title: str) -> str:
        if not section:
            return f"{title}: none in the test split.\n"
        rows = [("n", section.get("n")), ("manufacturer accuracy", section.get("manufacturer_accuracy")),
                ("manufacturer balanced accuracy", section.get("manufacturer_balanced_accuracy")),
                *[(f"recall {m}", r) for m, r in (section.get("recall") or {}).items()],
                ("family accuracy", section.get("family_accuracy")),
                ("ICAO type top-1 / top-3 (trained types)",
                 f"{_f(section.get('type_top1'))} / {_f(section.get('type_top3'))}"),
                ("stage-1 ECE", section.get("ece"))]
        return f"{title}\n\n| metric | value |\n|---|---|\n" + "\n".join(
            f"| {k} | {_f(v)} |" for k, v in rows) + "\n"

    leaves = "; ".join(f"{m}: {', '.join(t)}" for m, t in labels["types"].items())
    oos = metrics.get("out_of_scope") or {}
    scope = ("" if not oos else
             f"""
## Out of scope: other makers and images without an aircraft
Stage 1 has a class `Other` (other makers' aircraft; answered "another manufacturer", no family
or type) when the training data holds such photos. The localizer (EfficientNet-Lite0's ImageNet head
on the whole image) answers "not an aircraft" below an aircraft probability of
{_f(labels.get("aircraft_threshold"))} (chosen on validation photos and generated negatives).

| metric | value |
|---|---|
| `Other` test photos answered `Other` (n {oos.get("n_other")}) | {_f(oos.get("other_as_other"))} |
| negatives answered "not an aircraft" (n {oos.get("n_negatives")}) | {_f(oos.get("negatives_as_none"))} |
| Airbus/Boeing test photos sent to `Other` or "not an aircraft" (n {oos.get("n_airbus_boeing")}) | {_f(oos.get("airbus_boeing_out"))} |
| stage-1 ECE over {", ".join(oos.get("stage1_classes") or [])} | {_f(oos.get("ece_stage1"))} |
""")
    crop = ("Each image is first localised (class activation map of the ImageNet head) and the classifier "
            f"sees a box around the aircraft (rule: {json.dumps(cfg.crop_rule or {})} over the defaults of "
            "`model.preprocessing.CropRule`)." if cfg.crop else "The classifier sees the whole image.")
    tta = " Probabilities are averaged over the image and its mirror (TTA)." if labels.get("tta") == "flip" else ""
    return f"""# planespotter model {version}

## Model
Two-stage cascade. Stage 1: manufacturer ({", ".join(labels["manufacturer"])}); stage 2 per
manufacturer, over ICAO type designators and whole-family classes ({leaves}). The answer names
a type only when it is a trained class with P(type | manufacturer) >= {labels.get("type_threshold", 0.5)};
otherwise it stops at the family ("B777 family").
Backbone: `{cfg.backbone}`{" (upper part fine-tuned)" if cfg.fine_tune else ""}; input
{cfg.image_size}x{cfg.image_size} RGB, Pillow `{cfg.resize}` resize, scaled to [0, 1].
Probabilities calibrated by temperature scaling on the validation split (photos where there are any).
{crop}{tta}
Routing threshold {cfg.threshold}: below it the answer is "unsure" and both branches are reported.

## Training data
Datasets: {datasets}. Renders are split by livery/airline, photos by airframe (registration) or
near-duplicate group, so neither is in two splits.

```
{counts.to_string()}
```

Per source:

```
{by_source.to_string()}
```

Licence terms of the images it was trained on:
{licences}

Real photos (sources other than `flightgear*`) may only be used for internal training and
evaluation: they are not redistributed with this model, and the model's figures on them are
internal measurements. FlightGear renders derive from GPL-2.0-or-later models and liveries.

## Metrics (held-out test split)
{table(metrics.get("real"), "Real photos")}
{table(metrics.get("test"), "Renders")}
Calibration (validation ECE before → after): {json.dumps({k: [round(v["val_ece_before"], 4), round(v["val_ece_after"], 4)] for k, v in metrics.get("calibration", {}).items()})}

{scope}
{loso_section(cfg)}
## Intended use and limits
Classifying photos of Airbus and Boeing airliners by manufacturer, family and ICAO type. The real
photos it learnt from are few for Airbus and skewed to the 737 and 747 (see the counts above), so
expect lower accuracy on photos unlike them; figures on photos from other sources are lower than
on this test split: the leave-one-source-out figures (`make eval-sources`, README) are the ones
that predict a new photo collection. Types outside the label list are answered at family level at
best. Not for safety-relevant identification.

Known to go wrong (README, "What the model gets wrong"):
- four-engined wide-bodies mixed up (A340/A380 said 747, and back), above all on photos from
  collections it never saw;
- photos in styles its training photos lack: night and dusk, head-on and tail-on views, an
  aircraft seen from below, small aircraft in wide scenes;
- Airbus recall on photos from a new collection is lower than Boeing recall (few Airbus photos,
  from few sources);
- other makers' aircraft unlike the `Other` photos it learnt from (FGVC-Aircraft style only) may
  still get an Airbus or Boeing answer.
"""


def loso_section(cfg: TrainConfig) -> str:
    """The model card's leave-one-source-out section: ``<reports_dir>/sources.md`` (written by
    ``make eval-sources``, :func:`model.training.sources.markdown_table`) when it exists, else a pointer to
    the command. Those figures come from folds trained with each photo origin held out, not from
    this version itself."""
    md = Path(cfg.reports_dir) / "sources.md"
    head = ("## Photos from sources it never saw (leave-one-source-out)\n"
            "Each row trains the recipe once per photo origin with that origin held out, and scores "
            "the held-out photos (`make eval-sources`; the folds are not this version).\n\n")
    if md.is_file():
        return head + md.read_text().strip() + "\n"
    return head + "No `make eval-sources` report next to this training (README has the last measured table).\n"


def _f(v) -> str:
    return "–" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _train_joint(cfg: TrainConfig, df: pd.DataFrame, pixels: np.ndarray, sel: dict, manufacturers: list[str],
                 types: dict, families: dict, spec: pp.PreprocessingSpec, version: str):
    """Feature backbones: both stages trained together on cached features (:mod:`model.training.joint`).

    Returns:
        ``(stage1, stage2, calibration, history, seconds)`` with calibrated image models.
    """
    import keras

    from . import features, joint

    t = time.time()
    cut = (cfg.cut or features.default_cut(cfg.backbone)) if cfg.fine_tune else None
    feats = features.compute(cfg.backbone, pixels, df, spec, weights=cfg.weights, cut=cut)
    seconds = {"features": round(time.time() - t, 1)}
    tr = sel["train"]
    x_tr, rows_tr = feats[tr], df.iloc[tr]
    photo_tr = tr[(df.loc[tr, "domain"] == "photo").to_numpy()]
    if cfg.photo_views > 0 and len(photo_tr):
        t = time.time()
        sub = df.iloc[photo_tr]
        aug = augment.STYLES if cfg.view_styles else augment.PhotoAugment()
        boxes = sub["model_box"] if "model_box" in sub else sub["crop_box"]
        views = augment.make_views(sub["abs_path"].tolist(), sub["sha256"].tolist(), boxes.tolist(),
                                   spec, cfg.photo_views, seed=cfg.seed, aug=aug)
        keyed = pd.concat([sub.assign(sha256=sub["sha256"] + f"#view{v}-{cfg.seed}-{aug.key()}")
                           for v in range(cfg.photo_views)], ignore_index=True)
        x_tr = np.concatenate([x_tr, features.compute(cfg.backbone, views, keyed, spec, weights=cfg.weights, cut=cut)])
        rows_tr = pd.concat([rows_tr, keyed], ignore_index=True)
        seconds["photo_views"] = round(time.time() - t, 1)
        _log(f"{len(keyed)} augmented views of {len(photo_tr)} training photos in {seconds['photo_views']}s")
    y, w, _, _, columns = _targets(rows_tr, manufacturers, types, families, cfg.photo_share, cfg.family_power,
                                   cfg.source_power, cfg.source_balance, cfg.one_source_stage1)
    va = _judging_rows(df, sel)
    y_va, w_va, mask_va, lab_va, _ = _targets(df.iloc[va], manufacturers, types, families, 0.5, 0.0)
    keras.utils.set_random_seed(cfg.seed)
    bb = None if cut is None else features.backbones.get(cfg.backbone)
    upper = None if bb is None else bb.build_upper(spec.input_shape, cut, cfg.weights)
    model, trunk = joint.build(x_tr.shape[1:], len(manufacturers), y["leaves"].shape[1], upper=upper, seed=cfg.seed)
    t = time.time()
    history = joint.fit(model, trunk, x_tr, y, w, feats[va], y_va, w_va,
                        epochs=cfg.epochs, leaf_weight=cfg.leaf_weight, fine_tune=cut is not None,
                        patience=cfg.patience, verbose=cfg.verbose)
    seconds["fit"] = round(time.time() - t, 1)
    _log(f"joint training: {len(x_tr)} rows, {seconds['fit']}s, {len(history.get('loss', []))} epochs")
    plot_history(history, "joint (manufacturer + stage-2 leaves)", Path(cfg.reports_dir) / "figures" / "training_joint.png")
    z = joint.logits(model, feats[va])
    stage1, stage2, calibration = _calibrate_and_export(
        model, z, df, va, y_va["manufacturer"], mask_va, lab_va, columns, cfg, spec, cut, "features")
    return stage1, stage2, calibration, history, seconds


def _calibrate_and_export(model, z: dict, df: pd.DataFrame, va: np.ndarray, y_va: np.ndarray, mask_va: np.ndarray,
                          lab_va: np.ndarray, columns: dict, cfg: TrainConfig, spec: pp.PreprocessingSpec,
                          cut: str | None, inputs: str):
    """Temperatures from the validation logits ``z`` (stage 1 on every row, stage 2 per
    manufacturer on the rows labelled with one of its leaves), then the calibrated image models
    (:func:`model.training.joint.export`). Returns ``(stage1, stage2, calibration report)``."""
    from . import joint

    calibration = {"manufacturer": calibration_report(z["manufacturer"], y_va)}
    stage1_logits, stage2_logits = joint.export(model, cfg.backbone, spec, cfg.weights, cut, columns, inputs=inputs)
    stage1 = calibrated(stage1_logits, calibration["manufacturer"]["temperature"], "manufacturer")
    stage2 = {}
    for m, cols in columns.items():
        # calibrate on the validation rows labelled with one leaf of m (not family-only rows)
        single = (df.loc[va, "manufacturer"].to_numpy() == m) & lab_va & (mask_va.sum(1) == 1)
        z_m = z["leaves"][single][:, cols]
        calibration[f"type_{m}"] = calibration_report(z_m, mask_va[single][:, cols].argmax(1))
        stage2[m] = calibrated(stage2_logits[m], calibration[f"type_{m}"]["temperature"], f"type_{m}")
    for name, rep in calibration.items():
        _log(f"{name}: val acc {rep['val_accuracy'] if rep['val_accuracy'] is not None else float('nan'):.3f} "
             f"(n {rep['n_val']}), T={rep['temperature']:.3f}, "
             f"ECE {rep['val_ece_before']:.3f} -> {rep['val_ece_after']:.3f}")
    return stage1, stage2, calibration


def _targets(rows: pd.DataFrame, manufacturers: list[str], types: dict, families: dict, photo_share: float,
             family_power: float, source_power: float = 0.0, source_balance: bool = False,
             one_source_stage1: float = 1.0):
    """Targets and weights of ``rows``: ``(y, w, mask, labelled, columns)``; ``y`` and ``w`` are
    ``{"manufacturer": ..., "leaves": ...}`` dicts for :mod:`model.training.joint` / :mod:`model.training.full` (leaf
    weights 0 on rows without a stage-2 target; see :func:`leaf_targets`,
    :func:`model.training.weighting.balanced_weights`)."""
    from .weighting import balanced_weights

    mask, labelled, columns = leaf_targets(rows, types, families)
    w = balanced_weights(rows["manufacturer"], rows["family"], rows["domain"], photo_share, family_power,
                         source=rows["source"], source_power=source_power)
    m_index = {m: i for i, m in enumerate(manufacturers)}
    y = {"manufacturer": rows["manufacturer"].map(m_index).to_numpy(), "leaves": mask}
    w1 = w
    if source_balance or one_source_stage1 != 1.0:
        from .weighting import source_manufacturer_weights

        w1 = source_manufacturer_weights(w, rows["manufacturer"], rows["source"], rows["domain"],
                                         balance=source_balance, one_manufacturer_factor=one_source_stage1)
    return y, {"manufacturer": w1, "leaves": w * labelled}, mask, labelled, columns


def _judging_rows(df: pd.DataFrame, sel: dict) -> np.ndarray:
    """The validation rows that steer early stopping and calibration: the photos when there are any.
    Their loss is weighted by manufacturer only (``family_power`` 0: the view of balanced
    accuracy), since per-family weights on a few hundred photos make the validation loss noisy."""
    va = sel["validation"]
    photos = va[(df.loc[va, "domain"] == "photo").to_numpy()]
    return photos if len(photos) else va


def _train_full(cfg: TrainConfig, df: pd.DataFrame, pixels: np.ndarray, sel: dict, manufacturers: list[str],
                types: dict, families: dict, spec: pp.PreprocessingSpec, version: str):
    """``--full``: the whole backbone and both heads fine-tuned on augmented images (:mod:`model.training.full`)."""
    import os

    import keras

    from . import full, joint

    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    tr, va = sel["train"], _judging_rows(df, sel)
    y, w, _, _, columns = _targets(df.iloc[tr], manufacturers, types, families, cfg.photo_share, cfg.family_power,
                                   cfg.source_power)
    y_va, w_va, mask_va, lab_va, _ = _targets(df.iloc[va], manufacturers, types, families, 0.5, 0.0)
    keras.utils.set_random_seed(cfg.seed)
    model, base = full.build(cfg.backbone, spec, cfg.weights, len(manufacturers), y["leaves"].shape[1])
    if cfg.init_weights:
        full.load_weights(model, cfg.init_weights)
        _log(f"weights from {cfg.init_weights}")
    workers = cfg.workers or min(8, os.cpu_count() or 1)
    t = time.time()
    history = full.fit(model, base,
                       full.AugmentedBatches.make(pixels, tr, y, w, spec, cfg.batch_size, True, cfg.seed, workers),
                       full.AugmentedBatches.make(pixels, va, y_va, w_va, spec, cfg.batch_size, False),
                       epochs=cfg.epochs, leaf_weight=cfg.leaf_weight, patience=cfg.patience, verbose=cfg.verbose)
    seconds = {"fit": round(time.time() - t, 1)}
    _log(f"full fine-tuning: {len(tr)} images, {seconds['fit']}s, {len(history.get('loss', []))} epochs")
    if cfg.save_weights:
        full.save_weights(model, cfg.save_weights)
        _log(f"weights saved to {cfg.save_weights}")
    if history:
        plot_history(history, "full fine-tuning", Path(cfg.reports_dir) / "figures" / "training_full.png")
    z = joint.logits(model, pp.scale(pixels[va], spec), batch_size=cfg.batch_size)
    stage1, stage2, calibration = _calibrate_and_export(
        model, z, df, va, y_va["manufacturer"], mask_va, lab_va, columns, cfg, spec, None, "images")
    return stage1, stage2, calibration, history, seconds


def _train_images(cfg: TrainConfig, df: pd.DataFrame, pixels: np.ndarray, sel: dict, manufacturers: list[str],
                  types: dict, spec: pp.PreprocessingSpec, version: str):
    """``compact`` / ``vgg16``: one CNN per stage trained on images (stage 2 over ICAO types only)."""
    calibration, histories, seconds = {}, {}, {}

    def fit(name, n_classes, rows_tr, y_tr, rows_va, y_va, epochs):
        t = time.time()
        model, hist = fit_image_classifier(name, n_classes, pixels[rows_tr], y_tr, pixels[rows_va], y_va, cfg,
                                           epochs, version)
        seconds[name] = round(time.time() - t, 1)
        histories[name] = hist
        plot_history(hist, name, Path(cfg.reports_dir) / "figures" / f"training_{name}.png")
        final, calibration[name] = calibrate(name, model, logits_of(model, pixels[rows_va], spec), y_va)
        return final

    m_index = {m: i for i, m in enumerate(manufacturers)}
    y_m = df["manufacturer"].map(m_index).to_numpy()
    stage1 = fit("manufacturer", len(manufacturers), sel["train"], y_m[sel["train"]], sel["validation"],
                 y_m[sel["validation"]], cfg.epochs)
    stage2 = {}
    for m, leaves in types.items():
        t_index = {t: i for i, t in enumerate(leaves)}
        rows = {s: sel[s][(df.loc[sel[s], "manufacturer"] == m).to_numpy()
                          & df.loc[sel[s], "icao_type"].isin(leaves).to_numpy()] for s in sel}
        y_t = df["icao_type"].map(t_index).fillna(-1).astype(int).to_numpy()
        stage2[m] = fit(f"type_{m}", len(leaves), rows["train"], y_t[rows["train"]], rows["validation"],
                        y_t[rows["validation"]], cfg.type_epochs)
    return stage1, stage2, calibration, histories, seconds


@dataclass
class Prepared:
    """What every training over one set of datasets shares (:func:`prepare`): the rows with their
    splits, the decoded pixels (cut to the aircraft box when cropping), the localizer's outputs.

    Attributes:
        df: rows (:func:`model.data.read_metadata` + ``split``), manufacturers in
            :data:`STAGE1_MANUFACTURERS`; pixels: uint8 ``(n, H, W, 3)``; spec: with ``crop`` set
            when cropping; aircraft: float32 ``(n,)`` localizer aircraft probability, or ``None``;
            boxes: each row's classifier crop box text (dataset box composed with the aircraft box);
            aircraft_boxes: the aircraft box alone per row, in the image's pixels, or ``None``.
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
    from . import features
    from .. import localize as loc

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
        _log(f"localizer over {len(df)} images in {time.time() - t:.1f}s")
        if cfg.crop:
            rule = pp.CropRule(**(cfg.crop_rule or {}))
            spec = pp.PreprocessingSpec(**{**spec.to_dict(), "crop": rule.to_dict()})
            boxes = loc.dataset_boxes(df, cams, rule)
            df["model_box"] = boxes
            cropped = np.mean([b != c for b, c in zip(boxes, df["crop_box"])])
            _log(f"aircraft crop: {cropped:.1%} of the images cut to a box")
    t = time.time()
    pixels = mdata.load_pixels(df["abs_path"].tolist(), spec, shas=df["sha256"].tolist(), crop_boxes=boxes,
                               draft_boxes=df["crop_box"].tolist() if cfg.crop else None)
    _log(f"decoded {len(pixels)} images in {time.time() - t:.1f}s")
    return Prepared(df, pixels, spec, aircraft, boxes, localizer_model)


def aircraft_boxes(prep: Prepared, rows: np.ndarray) -> list:
    """The aircraft box of each of ``rows`` as the answer reports it (``[l, t, r, b]`` in the
    image's pixels; ``None`` when the row is not cut beyond its dataset box)."""
    out = []
    for i in rows:
        b, d = prep.boxes[i], prep.df["crop_box"].iat[i]
        out.append(None if b == d else list(pp.parse_crop_box(b)))
    return out


def fit_cascade(cfg: TrainConfig, prep: Prepared, sel: dict, version: str, judge_sel: dict | None = None):
    """Train both stages on the rows of ``sel["train"]`` (validation: ``sel["validation"]``),
    calibrate, and build the in-memory :class:`Cascade` (with the localizer and its gate).

    Returns:
        ``(cascade, labels, calibration, history, seconds, manufacturers)``.
    Raises:
        ValueError: fewer than two manufacturers, or a split lacks one.
    """
    from . import features

    df, pixels, spec = prep.df, prep.pixels, prep.spec
    train_rows = df.iloc[sel["train"]]
    manufacturers = [m for m in STAGE1_MANUFACTURERS if (train_rows["manufacturer"] == m).any()]
    if len(manufacturers) < 2:
        raise ValueError(f"need at least two manufacturers, found {manufacturers}")
    present = set(df.iloc[sel["validation"]]["manufacturer"])
    if not set(manufacturers) <= present:
        raise ValueError(f"split 'validation' lacks manufacturers {set(manufacturers) - present}")
    types, families = stage2_leaves(train_rows, manufacturers, cfg.min_type_images)
    if cfg.full:
        if cfg.backbone not in features.FEATURE_BACKBONES:
            raise ValueError(f"--full needs a pretrained backbone ({', '.join(features.FEATURE_BACKBONES)}), "
                             f"not {cfg.backbone!r}")
        stage1, stage2, calibration, history, seconds = _train_full(
            cfg, df, pixels, sel, manufacturers, types, families, spec, version)
    elif cfg.backbone in features.FEATURE_BACKBONES:
        stage1, stage2, calibration, history, seconds = _train_joint(
            cfg, df, pixels, sel, manufacturers, types, families, spec, version)
    else:
        types = {m: [t for t in leaves if is_type_leaf(t)] for m, leaves in types.items()}
        types = {m: leaves for m, leaves in types.items() if len(leaves) >= 2}
        families = {m: {t: families[m][t] for t in leaves} for m, leaves in types.items()}
        stage1, stage2, calibration, history, seconds = _train_images(
            cfg, df, pixels, sel, manufacturers, types, spec, version)
    labels = {"manufacturer": manufacturers, "types": {m: types[m] for m in stage2},
              "families": {m: families[m] for m in stage2}, "type_threshold": cfg.type_threshold}
    if cfg.tta:
        labels["tta"] = cfg.tta
    localizer = prep.localizer_model
    aircraft_threshold = None
    if localizer is not None:
        aircraft_threshold, gate = choose_aircraft_threshold(prep, sel["validation"])
        labels["aircraft_threshold"] = aircraft_threshold
        _log(f"aircraft gate: threshold {aircraft_threshold:.4g} ({gate})")
    cascade = Cascade(stage1, stage2, labels, spec, version, cfg.threshold, type_threshold=cfg.type_threshold,
                      localizer=localizer, aircraft_threshold=aircraft_threshold,
                      info={"aircraft_gate": gate} if localizer is not None else None)
    return cascade, labels, calibration, history, seconds, manufacturers


#: Share of validation aircraft photos the gate may call "not an aircraft" at most.
GATE_MAX_REJECT = 0.005


def choose_aircraft_threshold(prep: Prepared, val_rows: np.ndarray, n_negatives: int = 64) -> tuple[float, dict]:
    """The "not an aircraft" threshold on the localizer's aircraft probability, chosen on
    validation images: the validation photos (aircraft, any maker) and generated negatives
    (:func:`model.negatives.generated`, seed 1; the test negatives use other seeds and
    scikit-image's photos). The threshold is the geometric mean of the highest negative score and
    the :data:`GATE_MAX_REJECT` quantile of the photos' scores (the latter alone when they overlap).

    Returns:
        ``(threshold, report)``; report: counts, the two anchors, validation rejection rates.
    """
    from .. import localize as loc
    from .. import negatives

    photos = val_rows[(prep.df["domain"].iloc[val_rows] == "photo").to_numpy()]
    pos = prep.aircraft[photos] if len(photos) else prep.aircraft[val_rows]
    neg_imgs = [im for _, im in negatives.generated(n_negatives, seed=1)]
    neg, _ = loc.run(prep.localizer_model, np.stack([loc.localizer_input(im, 224) for im in neg_imgs]))
    q = float(np.quantile(pos, GATE_MAX_REJECT))
    top_neg = float(neg.max())
    t = float(np.sqrt(q * top_neg)) if top_neg < q else q
    return t, {"n_aircraft": int(len(pos)), "n_negatives": int(len(neg)), "aircraft_quantile": q,
               "max_negative": top_neg, "aircraft_rejected": float(np.mean(pos < t)),
               "negatives_accepted": float(np.mean(neg >= t))}


def train(cfg: TrainConfig) -> Path:
    """Train, calibrate, evaluate and export a cascade from ``cfg.data`` (one dataset or several),
    tracked as one MLflow run named after the version (:mod:`model.training.tracking`).

    Returns:
        The new version folder (``models/<version>``); ``models/latest`` points to it.
    Raises:
        model.data.DatasetError: unusable dataset; ValueError: a split lacks a manufacturer.
    """
    version = cfg.version or mio.new_version()
    with tracking.start(tracking.TRAIN_EXPERIMENT, version, cfg) as run:
        path = _train(cfg, version)
        run.log_version(path, Path(cfg.reports_dir) / "figures")
    return path


def _train(cfg: TrainConfig, version: str) -> Path:
    """:func:`train`'s work, without the tracking: the new version folder."""
    from .. import evaluate as mev

    t0 = time.time()
    prep = prepare(cfg)
    df, pixels, spec = prep.df, prep.pixels, prep.spec
    _log(f"version {version}: {len(df)} images ({(df['domain'] == 'photo').sum()} photos), "
         f"backbone {cfg.backbone}, input {spec.input_shape}")
    sel = {s: np.flatnonzero(df["split"].to_numpy() == s) for s in ("train", "validation", "test")}
    cascade, labels, calibration, history, seconds, manufacturers = fit_cascade(cfg, prep, sel, version)
    stage1, stage2 = cascade.stage1, cascade.stage2
    train_rows = df.iloc[sel["train"]]
    photo_type_counts = train_rows[train_rows["domain"] == "photo"]["icao_type"].value_counts().to_dict()
    metrics = {
        "version": version,
        "config": {k: v for k, v in cfg.__dict__.items() if k != "extra"},
        "counts": {s: {f"{d}/{m}": int(n) for (d, m), n in df.iloc[sel[s]].groupby(["domain", "manufacturer"])
                       .size().items()} for s in sel},
        "type_counts_train": {m: sub.value_counts().to_dict()
                              for m, sub in train_rows.groupby("manufacturer")["icao_type"]},
        "photo_type_counts_train": {k: int(v) for k, v in photo_type_counts.items() if k},
        "calibration": calibration,
        "aircraft_gate": (cascade.info or {}).get("aircraft_gate"),
        "history": history,
        "train_seconds": seconds,
    }
    test = sel["test"][df["manufacturer"].iloc[sel["test"]].isin(["Airbus", "Boeing"]).to_numpy()]
    metrics.update(mev.evaluate_domains(cascade, df.iloc[test], pixels[test],
                                        train_type_counts=metrics["photo_type_counts_train"],
                                        boxes=aircraft_boxes(prep, test),
                                        aircraft=None if prep.aircraft is None else prep.aircraft[test]))
    if cascade.localizer is not None:
        every = sel["test"]
        metrics["out_of_scope"] = mev.out_of_scope(cascade, df.iloc[every], pixels[every], prep.aircraft[every],
                                                   aircraft_boxes(prep, every),
                                                   figures_dir=Path(cfg.reports_dir) / "figures")
    for section in ("real", "test"):
        if metrics.get(section):
            m = metrics[section]
            _log(f"{section} test: n {m['n']}, manufacturer balanced acc {_f(m['manufacturer_balanced_accuracy'])}, "
                 f"family {_f(m['family_accuracy'])}, type top-1 {_f(m['type_top1'])}")
    if metrics.get("out_of_scope"):
        _log(f"out of scope: {json.dumps({k: v for k, v in metrics['out_of_scope'].items() if not isinstance(v, (dict, list))})}")
    metrics["total_seconds"] = round(time.time() - t0, 1)
    path = mio.save_version(cfg.models_dir, stage1, stage2, labels, spec, metrics,
                            model_card(cfg, df, labels, metrics, version), version=version,
                            localizer=cascade.localizer)
    _log(f"saved {path} in {time.time() - t0:.0f}s total")
    return path
