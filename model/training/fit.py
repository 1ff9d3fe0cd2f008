"""Fitting the cascade's networks: :func:`fit_cascade` trains both stages on one selection of rows
and builds the in-memory :class:`~model.cascade.Cascade`, by one of three paths:

- :func:`train_joint` (feature backbones): both stages together on cached features
  (:mod:`model.training.joint`), with ``--photo-views`` augmented views of the training photos;
- :func:`train_full` (``--full``): the whole backbone on augmented images (:mod:`model.training.full`);
- :func:`train_images` (``compact`` / ``vgg16``): one CNN per stage on images
  (:func:`fit_image_classifier`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import localize as loc
from .. import preprocessing as pp
from ..cascade import Cascade, is_type_leaf
from . import augment, features, full, joint
from .calibration import calibrate
from .config import STAGE1_MANUFACTURERS, TrainConfig, log
from .export import calibrate_and_export
from .novelty import fit_confidence
from .prepare import Prepared, judging_rows, stage2_leaves, targets
from .weighting import class_weights


def plot_history(history: dict, title: str, path: Path) -> Path:
    """Training curves (loss and accuracy, train vs validation) as a PNG; returns ``path``."""
    import matplotlib  # deferred: matplotlib start-up

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: matplotlib start-up

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
    import keras  # deferred: TensorFlow start-up
    import tensorflow as tf  # deferred: TensorFlow start-up

    gpus = tf.config.list_physical_devices("GPU")
    if mixed_precision and gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    if len(gpus) > 1:
        log(f"MirroredStrategy over {len(gpus)} GPUs")
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _datasets(x_tr, y_tr, x_va, y_va, spec, cfg: TrainConfig):
    import tensorflow as tf  # deferred: TensorFlow start-up

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


def _image_model(name: str, n_classes: int, cfg: TrainConfig, spec: pp.PreprocessingSpec):
    if cfg.backbone == "compact":
        from ..backbones.compact import build_compact_cnn  # deferred: Keras start-up

        return build_compact_cnn(spec.input_shape, n_classes, width=cfg.width, name=name)
    if cfg.backbone == "vgg16":
        from ..backbones.vgg16 import build_vgg16_classifier  # deferred: Keras start-up

        return build_vgg16_classifier(spec.input_shape, n_classes, weights=cfg.weights, name=name)
    raise ValueError(f"backbone {cfg.backbone!r} does not train on images")


def fit_image_classifier(name: str, n_classes: int, x_tr, y_tr, x_va, y_va, cfg: TrainConfig,
                         epochs: int, version: str):
    """Train one CNN (``cfg.backbone``: ``compact`` or ``vgg16``) on uint8 pixels ``(n, H, W, 3)``
    with int labels ``(n,)``; early stopping on the validation loss, best weights kept.

    Returns:
        ``(logits_model, history_dict)``.
    Raises:
        ValueError: a backbone that does not train on images.
    """
    import keras  # deferred: TensorFlow start-up

    spec = cfg.spec()
    keras.utils.set_random_seed(cfg.seed)
    with distribution_strategy(cfg.mixed_precision).scope():
        model = _image_model(name, n_classes, cfg, spec)
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


#: Training photos whose augmented views are made (and go through the backbone) at a time: the
#: uint8 views of one chunk are all that is held (1,024 photos x 2 views at 288 px: 0.5 GB).
VIEW_CHUNK = 1024


def _view_features(cfg: TrainConfig, sub: pd.DataFrame, spec: pp.PreprocessingSpec, cut: str | None,
                   out: np.ndarray) -> pd.DataFrame:
    """The cached features of ``cfg.photo_views`` augmented views of each photo of ``sub``, written
    into ``out`` (``(views * len(sub), ...)``, view-major: row ``v * len(sub) + i``); the views are
    made only where the cache lacks them, :data:`VIEW_CHUNK` photos at a time.

    Returns:
        The rows of the views (``sub`` repeated per view, sha256 keyed by view, seed and style).
    """
    aug = augment.STYLES if cfg.view_styles else augment.PhotoAugment()
    boxes = (sub["model_box"] if "model_box" in sub else sub["crop_box"]).tolist()
    paths, shas, n = sub["abs_path"].tolist(), sub["sha256"].tolist(), len(sub)
    keyed = [sub.assign(sha256=sub["sha256"] + f"#view{v}-{cfg.seed}-{aug.key()}") for v in range(cfg.photo_views)]
    for s in range(0, n, VIEW_CHUNK):
        c = slice(s, min(n, s + VIEW_CHUNK))
        rows = pd.concat([k.iloc[c] for k in keyed], ignore_index=True)

        def views(_rows, c=c):
            return augment.make_views(paths[c], shas[c], boxes[c], spec, cfg.photo_views, seed=cfg.seed, aug=aug,
                                      cache_dir=None)

        got = features.compute(cfg.backbone, views, rows, spec, weights=cfg.weights, cut=cut, dtype=out.dtype)
        for v in range(cfg.photo_views):
            out[v * n + c.start:v * n + c.stop] = got[v * (c.stop - c.start):(v + 1) * (c.stop - c.start)]
    return pd.concat(keyed, ignore_index=True)


def _training_features(cfg: TrainConfig, df: pd.DataFrame, pixels: np.ndarray, tr: np.ndarray,
                       spec: pp.PreprocessingSpec, cut: str | None, seconds: dict):
    """The training rows' cached features followed by their photos' augmented views (float16 maps
    with ``cut``, float32 pooled features without), in one array; and the matching rows."""
    dtype = np.float16 if cut else np.float32
    own = features.compute(cfg.backbone, pixels, df, spec, weights=cfg.weights, cut=cut, rows=tr, dtype=dtype)
    photo_tr = tr[(df.loc[tr, "domain"] == "photo").to_numpy()]
    n_views = cfg.photo_views * len(photo_tr) if cfg.photo_views > 0 else 0
    if not n_views:
        return own, df.iloc[tr]
    t = time.time()
    x_tr = np.empty((len(own) + n_views, *own.shape[1:]), dtype)
    x_tr[:len(own)] = own
    del own
    keyed = _view_features(cfg, df.iloc[photo_tr], spec, cut, x_tr[len(tr):])
    seconds["photo_views"] = round(time.time() - t, 1)
    log(f"{len(keyed)} augmented views of {len(photo_tr)} training photos in {seconds['photo_views']}s")
    return x_tr, pd.concat([df.iloc[tr], keyed], ignore_index=True)


def train_joint(cfg: TrainConfig, df: pd.DataFrame, pixels: np.ndarray, sel: dict, manufacturers: list[str],
                types: dict, families: dict, spec: pp.PreprocessingSpec, version: str):
    """Feature backbones: both stages trained together on cached features (:mod:`model.training.joint`).

    Returns:
        ``(stage1, stage2, calibration, history, seconds)`` with calibrated image models.
    """
    import keras  # deferred: TensorFlow start-up

    t = time.time()
    cut = (cfg.cut or features.default_cut(cfg.backbone)) if cfg.fine_tune else None
    va = judging_rows(df, sel)
    seconds: dict = {}
    x_tr, rows_tr = _training_features(cfg, df, pixels, sel["train"], spec, cut, seconds)
    x_va = features.compute(cfg.backbone, pixels, df, spec, weights=cfg.weights, cut=cut, rows=va,
                            dtype=x_tr.dtype)
    seconds = {"features": round(time.time() - t - seconds.get("photo_views", 0), 1), **seconds}
    y, w, _, _, columns = targets(rows_tr, manufacturers, types, families, cfg.photo_share, cfg.family_power,
                                  cfg.source_power, cfg.source_balance, cfg.one_source_stage1)
    y_va, w_va, mask_va, lab_va, _ = targets(df.iloc[va], manufacturers, types, families, 0.5, 0.0)
    keras.utils.set_random_seed(cfg.seed)
    bb = None if cut is None else features.backbones.get(cfg.backbone)
    upper = None if bb is None else bb.build_upper(spec.input_shape, cut, cfg.weights)
    model, trunk = joint.build(x_tr.shape[1:], len(manufacturers), y["leaves"].shape[1], upper=upper, seed=cfg.seed)
    t = time.time()
    history = joint.fit(model, trunk, x_tr, y, w, x_va, y_va, w_va,
                        epochs=cfg.epochs, leaf_weight=cfg.leaf_weight, fine_tune=cut is not None,
                        patience=cfg.patience, verbose=cfg.verbose)
    seconds["fit"] = round(time.time() - t, 1)
    log(f"joint training: {len(x_tr)} rows, {seconds['fit']}s, {len(history.get('loss', []))} epochs")
    del x_tr
    plot_history(history, "joint (manufacturer + stage-2 leaves)", Path(cfg.reports_dir) / "figures" / "training_joint.png")
    z = joint.logits(model, x_va)
    stage1, stage2, calibration = calibrate_and_export(
        model, z, df, va, y_va["manufacturer"], mask_va, lab_va, columns, cfg, spec, cut, "features")
    return stage1, stage2, calibration, history, seconds


def train_full(cfg: TrainConfig, df: pd.DataFrame, pixels: np.ndarray, sel: dict, manufacturers: list[str],
               types: dict, families: dict, spec: pp.PreprocessingSpec, version: str):
    """``--full``: the whole backbone and both heads fine-tuned on augmented images
    (:mod:`model.training.full`). Returns ``(stage1, stage2, calibration, history, seconds)``."""
    import keras  # deferred: TensorFlow start-up

    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    tr, va = sel["train"], judging_rows(df, sel)
    y, w, _, _, columns = targets(df.iloc[tr], manufacturers, types, families, cfg.photo_share, cfg.family_power,
                                  cfg.source_power)
    y_va, w_va, mask_va, lab_va, _ = targets(df.iloc[va], manufacturers, types, families, 0.5, 0.0)
    keras.utils.set_random_seed(cfg.seed)
    model, base = full.build(cfg.backbone, spec, cfg.weights, len(manufacturers), y["leaves"].shape[1])
    if cfg.init_weights:
        full.load_weights(model, cfg.init_weights)
        log(f"weights from {cfg.init_weights}")
    workers = cfg.workers or min(8, os.cpu_count() or 1)
    t = time.time()
    history = full.fit(model, base,
                       full.AugmentedBatches.make(pixels, tr, y, w, spec, cfg.batch_size, True, cfg.seed, workers),
                       full.AugmentedBatches.make(pixels, va, y_va, w_va, spec, cfg.batch_size, False),
                       epochs=cfg.epochs, leaf_weight=cfg.leaf_weight, patience=cfg.patience, verbose=cfg.verbose)
    seconds = {"fit": round(time.time() - t, 1)}
    log(f"full fine-tuning: {len(tr)} images, {seconds['fit']}s, {len(history.get('loss', []))} epochs")
    if cfg.save_weights:
        full.save_weights(model, cfg.save_weights)
        log(f"weights saved to {cfg.save_weights}")
    if history:
        plot_history(history, "full fine-tuning", Path(cfg.reports_dir) / "figures" / "training_full.png")
    z = joint.logits(model, pp.scale(pixels[va], spec), batch_size=cfg.batch_size)
    stage1, stage2, calibration = calibrate_and_export(
        model, z, df, va, y_va["manufacturer"], mask_va, lab_va, columns, cfg, spec, None, "images")
    return stage1, stage2, calibration, history, seconds


def train_images(cfg: TrainConfig, df: pd.DataFrame, pixels: np.ndarray, sel: dict, manufacturers: list[str],
                 types: dict, spec: pp.PreprocessingSpec, version: str):
    """``compact`` / ``vgg16``: one CNN per stage trained on images (stage 2 over ICAO types only).
    Returns ``(stage1, stage2, calibration, histories, seconds)``."""
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


def _manufacturers(df: pd.DataFrame, sel: dict) -> list[str]:
    """The stage-1 classes of the training rows; raises ValueError when fewer than two, or when
    the validation rows lack one."""
    train_rows = df.iloc[sel["train"]]
    manufacturers = [m for m in STAGE1_MANUFACTURERS if (train_rows["manufacturer"] == m).any()]
    if len(manufacturers) < 2:
        raise ValueError(f"need at least two manufacturers, found {manufacturers}")
    present = set(df.iloc[sel["validation"]]["manufacturer"])
    if not set(manufacturers) <= present:
        raise ValueError(f"split 'validation' lacks manufacturers {set(manufacturers) - present}")
    return manufacturers


def _gate(prep: Prepared, val_rows: np.ndarray) -> tuple[float, dict]:
    """The aircraft gate's threshold (:func:`model.localize.choose_aircraft_threshold`) on the
    validation photos (every validation row when there are none)."""
    photos = val_rows[(prep.df["domain"].iloc[val_rows] == "photo").to_numpy()]
    aircraft = prep.aircraft[photos] if len(photos) else prep.aircraft[val_rows]
    return loc.choose_aircraft_threshold(prep.localizer_model, aircraft)


def fit_cascade(cfg: TrainConfig, prep: Prepared, sel: dict, version: str):
    """Train both stages on the rows of ``sel["train"]`` (validation: ``sel["validation"]``),
    calibrate, and build the in-memory :class:`Cascade` (with the localizer and its gate, and the
    configuration's confidence rule: :func:`model.training.novelty.fit_confidence`).

    Returns:
        ``(cascade, labels, calibration, history, seconds, manufacturers)``.
    Raises:
        ValueError: fewer than two manufacturers, a split lacks one, or ``--full`` without a
            pretrained backbone.
    """
    df, pixels, spec = prep.df, prep.pixels, prep.spec
    manufacturers = _manufacturers(df, sel)
    types, families = stage2_leaves(df.iloc[sel["train"]], manufacturers, cfg.min_type_images)
    if cfg.full:
        if cfg.backbone not in features.FEATURE_BACKBONES:
            raise ValueError(f"--full needs a pretrained backbone ({', '.join(features.FEATURE_BACKBONES)}), "
                             f"not {cfg.backbone!r}")
        stage1, stage2, calibration, history, seconds = train_full(
            cfg, df, pixels, sel, manufacturers, types, families, spec, version)
    elif cfg.backbone in features.FEATURE_BACKBONES:
        stage1, stage2, calibration, history, seconds = train_joint(
            cfg, df, pixels, sel, manufacturers, types, families, spec, version)
    else:
        types = {m: [t for t in leaves if is_type_leaf(t)] for m, leaves in types.items()}
        types = {m: leaves for m, leaves in types.items() if len(leaves) >= 2}
        families = {m: {t: families[m][t] for t in leaves} for m, leaves in types.items()}
        stage1, stage2, calibration, history, seconds = train_images(
            cfg, df, pixels, sel, manufacturers, types, spec, version)
    labels = {"manufacturer": manufacturers, "types": {m: types[m] for m in stage2},
              "families": {m: families[m] for m in stage2}, "type_threshold": cfg.type_threshold}
    if cfg.tta:
        labels["tta"] = cfg.tta
    localizer, aircraft_threshold, info = prep.localizer_model, None, None
    if localizer is not None:
        aircraft_threshold, gate = _gate(prep, sel["validation"])
        labels["aircraft_threshold"] = aircraft_threshold
        info = {"aircraft_gate": gate}
        log(f"aircraft gate: threshold {aircraft_threshold:.4g} ({gate})")
    cascade = Cascade(stage1, stage2, labels, spec, version, cfg.threshold, type_threshold=cfg.type_threshold,
                      localizer=localizer, aircraft_threshold=aircraft_threshold, info=info)
    rule = fit_confidence(cfg, cascade, df, pixels, sel)
    if rule is not None:
        labels["confidence"] = rule
    return cascade, labels, calibration, history, seconds, manufacturers
