"""Training the cascade: stage 1 (manufacturer) and one stage-2 ICAO type classifier per
manufacturer, calibrated by temperature scaling, evaluated, exported as a model version.

Two training modes, chosen by the backbone:

- ``compact`` (and ``vgg16`` fine-tuning): images → augmentation (Keras layers in the tf.data
  graph) → CNN, early stopping on validation loss, best weights kept;
- ``lite0`` / ``lite2`` / ``vgg16-frozen`` (the registry :mod:`model.backbones`): bottleneck
  features of a frozen ImageNet backbone computed once and cached on disk by image sha256 + backbone + preprocessing (:mod:`model.features`), then a
  small head is trained on them in seconds; the exported model is backbone + head.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import architectures as arch
from . import calibration as cal
from . import data as mdata
from . import io as mio
from . import preprocessing as pp
from .weighting import class_weights

STAGE1_MANUFACTURERS = ("Airbus", "Boeing", "Other")


@dataclass
class TrainConfig:
    """Training settings (CLI flags of ``python -m model train`` map 1:1)."""

    data: str = "data/raw/synth"
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
    min_type_images: int = 8
    version: str | None = None
    verbose: int = 2
    extra: dict = field(default_factory=dict)

    def spec(self) -> pp.PreprocessingSpec:
        return pp.PreprocessingSpec(height=self.image_size, width=self.image_size, resize=self.resize)


def _log(msg: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _datasets(x_tr, y_tr, x_va, y_va, spec, cfg: TrainConfig):
    import tensorflow as tf

    aug = arch.augmentation(extra=True, grayscale=cfg.grayscale, seed=cfg.seed) if cfg.augment else None
    scale = tf.constant(spec.scale, tf.float32)
    offset = tf.constant(spec.offset, tf.float32)

    def prep(x, y):
        return tf.cast(x, tf.float32) * scale + offset, y

    def prep_aug(x, y):
        x, y = prep(arch.jpeg_recompress(x, seed=cfg.seed), y)  # re-compression on uint8 pixels
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
            model = arch.build_compact_cnn(spec.input_shape, n_classes, width=cfg.width, name=name)
        elif cfg.backbone == "vgg16":
            model = arch.build_vgg16_classifier(spec.input_shape, n_classes, weights=cfg.weights, name=name)
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


def calibrated(model, temperature: float, name: str):
    """``model`` (→ logits) followed by ``Rescaling(1/T)`` and ``Softmax``: calibrated probabilities."""
    import keras

    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    z = model(inputs)
    z = keras.layers.Rescaling(1.0 / temperature, name="temperature")(z)
    probs = keras.layers.Softmax(name="probabilities")(z)
    return keras.Model(inputs, probs, name=name)


def calibrate(name: str, model, z_va: np.ndarray, y_va: np.ndarray) -> tuple[object, dict]:
    """Fit a temperature on validation logits ``z_va`` ``(n, k)``; returns ``(calibrated_model, report)``."""
    t = cal.fit_temperature(z_va, y_va)
    report = {
        "temperature": t,
        "val_nll_before": cal.nll(z_va, y_va, 1.0) if len(y_va) else None,
        "val_nll_after": cal.nll(z_va, y_va, t) if len(y_va) else None,
        "val_ece_before": cal.expected_calibration_error(cal.softmax(z_va, 1.0), y_va),
        "val_ece_after": cal.expected_calibration_error(cal.softmax(z_va, t), y_va),
        "val_accuracy": float((z_va.argmax(1) == y_va).mean()) if len(y_va) else None,
    }
    return calibrated(model, t, name), report


def model_card(cfg: TrainConfig, df: pd.DataFrame, labels: dict, metrics: dict, version: str) -> str:
    """The Markdown model card of a version."""
    counts = df.groupby(["split", "manufacturer"]).size().unstack(fill_value=0)
    sources = ", ".join(sorted(set(df.get("source", pd.Series(["?"])).replace("", "?"))))
    licences = ", ".join(sorted(set(df.get("licence", pd.Series(["?"])).replace("", "unknown"))))
    test = metrics.get("test", {})
    return f"""# planespotter model {version}

## Model
Two-stage cascade. Stage 1: manufacturer ({", ".join(labels["manufacturer"])}); stage 2: ICAO type
designator per manufacturer ({"; ".join(f"{m}: {', '.join(t)}" for m, t in labels["types"].items())}).
Backbone: `{cfg.backbone}`; input {cfg.image_size}x{cfg.image_size} RGB, Pillow `{cfg.resize}` resize,
scaled to [0, 1]. Probabilities calibrated by temperature scaling on the validation split.
Routing threshold {cfg.threshold}: below it the answer is "unsure" and both branches are reported.

## Data
Source(s): {sources}. Image licence(s): {licences}. Splits by livery/airline (no livery in two splits):

```
{counts.to_string()}
```

## Metrics (held-out test split)
| metric | value |
|---|---|
| manufacturer accuracy (stage 1) | {test.get("manufacturer_accuracy", float("nan")):.4f} |
| type accuracy given the true manufacturer (stage 2) | {test.get("type_accuracy_given_manufacturer", float("nan")):.4f} |
| end-to-end accuracy (both right, routed) | {test.get("end_to_end_accuracy", float("nan")):.4f} |
| unsure rate | {test.get("unsure_rate", float("nan")):.4f} |
| n test | {test.get("n_test", 0)} |

Calibration (validation ECE before → after): {json.dumps({k: [round(v["val_ece_before"], 4), round(v["val_ece_after"], 4)] for k, v in metrics.get("calibration", {}).items()})}

## Intended use and limits
Classifying photos of Airbus and Boeing airliners by manufacturer and ICAO type. When trained on
FlightGear renders only, accuracy on real photos is far below the figures above (renders lack
real lighting, backgrounds and wear); types outside the label list are forced into the nearest
known type. Not for safety-relevant identification.
"""


def train(cfg: TrainConfig) -> Path:
    """Train, calibrate, evaluate and export a cascade from ``cfg.data``.

    Returns:
        The new version folder (``models/<version>``); ``models/latest`` points to it.
    Raises:
        model.data.DatasetError: unusable dataset; ValueError: a split lacks a manufacturer.
    """
    from . import evaluate as mev
    from . import features

    t0 = time.time()
    version = cfg.version or mio.new_version()
    spec = cfg.spec()
    df = mdata.assign_splits(mdata.read_metadata(cfg.data), seed=cfg.seed)
    df = df[df["manufacturer"].isin(STAGE1_MANUFACTURERS)].reset_index(drop=True)
    manufacturers = [m for m in STAGE1_MANUFACTURERS if (df["manufacturer"] == m).any()]
    if len(manufacturers) < 2:
        raise ValueError(f"need at least two manufacturers, found {manufacturers}")
    _log(f"version {version}: {len(df)} images, backbone {cfg.backbone}, input {spec.input_shape}")
    for split in ("train", "validation", "test"):
        present = set(df.loc[df["split"] == split, "manufacturer"])
        if split != "test" and present != set(manufacturers):
            raise ValueError(f"split {split!r} lacks manufacturers {set(manufacturers) - present}")
    t = time.time()
    pixels = mdata.load_pixels(df["abs_path"].tolist(), spec, shas=df.get("sha256", pd.Series()).tolist() or None)
    _log(f"decoded {len(pixels)} images in {time.time() - t:.1f}s")
    feature_mode = cfg.backbone in features.FEATURE_BACKBONES
    cut = features.default_cut(cfg.backbone) if (feature_mode and cfg.fine_tune) else None
    feats = features.compute(cfg.backbone, pixels, df, spec, weights=cfg.weights, cut=cut) if feature_mode else None
    maps = None
    if cut is not None:  # stage 1 fine-tunes on the maps; stage 2 heads use the pooled features
        maps, feats = feats, features.pooled_from_cut(feats, spec, weights=cfg.weights, backbone=cfg.backbone, cut=cut)
    sel = {s: np.flatnonzero(df["split"].to_numpy() == s) for s in ("train", "validation", "test")}
    timings, histories, calibration = {}, {}, {}

    def fit(name, n_classes, rows_tr, y_tr, rows_va, y_va, epochs):
        t = time.time()
        if maps is not None and name == "manufacturer":
            head, hist = features.fit_upper(name, n_classes, maps[rows_tr], y_tr, maps[rows_va], y_va, cfg, spec, cut=cut)
            model = features.full_model_cut(head, spec, weights=cfg.weights, name=f"{name}_logits",
                                            backbone=cfg.backbone, cut=cut)
            z_va = np.asarray(head.predict(maps[rows_va], batch_size=64, verbose=0)) if len(rows_va) else np.zeros((0, n_classes))
        elif feature_mode:
            head, hist = features.fit_head(name, n_classes, feats[rows_tr], y_tr, feats[rows_va], y_va, cfg)
            model = features.full_model(cfg.backbone, head, spec, weights=cfg.weights, name=f"{name}_logits")
            z_va = np.asarray(head.predict_on_batch(feats[rows_va])) if len(rows_va) else np.zeros((0, n_classes))
        else:
            model, hist = fit_image_classifier(name, n_classes, pixels[rows_tr], y_tr, pixels[rows_va],
                                               y_va, cfg, epochs, version)
            z_va = logits_of(model, pixels[rows_va], spec)
        timings[name] = round(time.time() - t, 1)
        histories[name] = hist
        plot_history(hist, name, Path(cfg.reports_dir) / "figures" / f"training_{name}.png")
        final, report = calibrate(name, model, z_va, y_va)
        calibration[name] = report
        _log(f"{name}: {len(rows_tr)} train images, {timings[name]}s, val acc {report['val_accuracy']:.3f}, "
             f"T={report['temperature']:.3f}, ECE {report['val_ece_before']:.3f} -> {report['val_ece_after']:.3f}")
        return final

    m_index = {m: i for i, m in enumerate(manufacturers)}
    y_m = df["manufacturer"].map(m_index).to_numpy()
    stage1 = fit("manufacturer", len(manufacturers), sel["train"], y_m[sel["train"]],
                 sel["validation"], y_m[sel["validation"]], cfg.epochs)
    stage2, types = {}, {}
    for m in manufacturers:
        if m == "Other":
            continue
        tr_types = df.loc[sel["train"]].query("manufacturer == @m and icao_type != ''")["icao_type"].value_counts()
        labels_t = sorted(tr_types[tr_types >= cfg.min_type_images].index)
        if len(labels_t) < 2:
            continue
        t_index = {t: i for i, t in enumerate(labels_t)}
        rows = {s: sel[s][(df.loc[sel[s], "manufacturer"] == m).to_numpy()
                          & df.loc[sel[s], "icao_type"].isin(labels_t).to_numpy()] for s in sel}
        y_t = df["icao_type"].map(t_index).fillna(-1).astype(int).to_numpy()
        stage2[m] = fit(f"type_{m}", len(labels_t), rows["train"], y_t[rows["train"]],
                        rows["validation"], y_t[rows["validation"]], cfg.type_epochs)
        types[m] = labels_t
    labels = {"manufacturer": manufacturers, "types": types}
    from .cascade import Cascade

    cascade = Cascade(stage1, stage2, labels, spec, version, cfg.threshold)
    test_metrics = mev.evaluate(cascade, df.loc[sel["test"]], pixels[sel["test"]])
    _log("test: " + ", ".join(f"{k} {v:.3f}" for k, v in test_metrics.items() if isinstance(v, float)))
    metrics = {
        "version": version,
        "config": {k: v for k, v in cfg.__dict__.items() if k != "extra"},
        "counts": {s: df.loc[sel[s], "manufacturer"].value_counts().to_dict() for s in sel},
        "type_counts_train": {m: sub.value_counts().to_dict()
                              for m, sub in df.loc[sel["train"]].groupby("manufacturer")["icao_type"]},
        "calibration": calibration,
        "history": histories,
        "train_seconds": timings,
        "test": test_metrics,
        "total_seconds": round(time.time() - t0, 1),
    }
    path = mio.save_version(cfg.models_dir, stage1, stage2, labels, spec, metrics,
                            model_card(cfg, df, labels, metrics, version), version=version)
    _log(f"saved {path} in {time.time() - t0:.0f}s total")
    return path
