"""The R original's recipe (``--recipe r-original``), reproduced for parity.

VGG16 no-top at 150x150 → Flatten → Dense(256, relu) → Dense(1, sigmoid); block1-2 frozen;
RMSprop(1e-5); binary cross-entropy; inputs ``/255`` (Pillow nearest resize, as R keras'
``image_load``); R's ``image_data_generator`` augmentation as Keras layers; 100 epochs x 100 steps
of batch 20 (R: ``fit_generator(train_generator, steps_per_epoch = 100, epochs = 100)``).

The trained model is exported as a model version whose stage 1 outputs
``[P(Airbus), P(Boeing)] = [1 - p, p]`` and has no stage 2, so the same server serves it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import data as mdata
from .. import io as mio
from .. import preprocessing as pp
from ..backbones.vgg16 import build_r_original
from . import augment, tracking

CLASSES = ("Airbus", "Boeing")  # R's flow_images_from_directory sorts class folders

#: The R recipe's training schedule (R: ``fit_generator(steps_per_epoch = 100, epochs = 100)``).
R_ORIGINAL_EPOCHS = 100
R_ORIGINAL_STEPS_PER_EPOCH = 100
R_ORIGINAL_BATCH_SIZE = 20


def compile_r_original(model):
    """The R original's compile step: RMSprop(lr = 1e-5), binary cross-entropy, accuracy."""
    import keras  # deferred: TensorFlow start-up

    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-5),
                  loss="binary_crossentropy", metrics=["accuracy"])
    return model


def r_original_augmentation(seed: int | None = None):
    """The R original's ``image_data_generator`` as Keras layers (no extras)."""
    return augment.augmentation(extra=False, seed=seed)


def two_class_wrapper(model):
    """``p`` (sigmoid, P(Boeing)) → ``[1 - p, p]`` so the cascade's stage-1 contract holds."""
    import keras  # deferred: TensorFlow start-up

    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    p = model(inputs)
    probs = keras.layers.Concatenate(name="probabilities")(
        [keras.layers.Rescaling(-1.0, offset=1.0, name="p_airbus")(p), p])
    return keras.Model(inputs, probs, name="r_original_two_class")


def train_r_original(data: str, models_dir: str = "models", weights: str | None = None,
                     epochs: int = R_ORIGINAL_EPOCHS, steps_per_epoch: int = R_ORIGINAL_STEPS_PER_EPOCH,
                     batch_size: int = R_ORIGINAL_BATCH_SIZE, seed: int = 0, verbose: int = 2) -> Path:
    """Train the R recipe on the Airbus/Boeing rows of ``data``; returns the exported version folder.

    ``validation_steps`` follows R (50 batches, capped by the validation split's size). Tracked as
    one MLflow run of experiment ``train`` named after the version (:mod:`model.training.tracking`).
    """
    version = mio.new_version()
    params = {"recipe": "r-original", "data": data, "weights": weights, "epochs": epochs,
              "steps_per_epoch": steps_per_epoch, "batch_size": batch_size, "seed": seed,
              "backbone": "vgg16", "image_size": pp.R_ORIGINAL_SPEC.height,
              **tracking.dataset_fingerprints(data)}
    with tracking.start(tracking.TRAIN_EXPERIMENT, version, extra_params=params,
                        flags=f"--recipe r-original --weights {weights or 'none'} --epochs {epochs}") as run:
        path = _train_r_original(data, models_dir, weights, epochs, steps_per_epoch, batch_size, seed, verbose,
                                 version)
        run.log_version(path)
    return path


def _train_r_original(data: str, models_dir: str, weights: str | None, epochs: int, steps_per_epoch: int,
                      batch_size: int, seed: int, verbose: int, version: str) -> Path:
    """:func:`train_r_original`'s work, without the tracking: the exported version folder."""
    import keras  # deferred: TensorFlow start-up
    import tensorflow as tf  # deferred: TensorFlow start-up

    spec = pp.R_ORIGINAL_SPEC
    df = mdata.assign_splits(mdata.read_metadata(data), seed=seed)
    df = df[df["manufacturer"].isin(CLASSES)].reset_index(drop=True)
    pixels = mdata.load_pixels(df["abs_path"].tolist(), spec, shas=df["sha256"].tolist())
    y = (df["manufacturer"] == "Boeing").to_numpy().astype(np.float32)
    tr, va, te = (np.flatnonzero(df["split"].to_numpy() == s) for s in ("train", "validation", "test"))
    keras.utils.set_random_seed(seed)
    aug = r_original_augmentation(seed=seed)
    train_ds = (tf.data.Dataset.from_tensor_slices((pixels[tr], y[tr])).shuffle(len(tr), seed=seed).repeat()
                .batch(batch_size).map(lambda x, t: (aug(tf.cast(x, tf.float32) / 255.0, training=True), t),
                                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
    val_ds = (tf.data.Dataset.from_tensor_slices((pixels[va], y[va])).batch(batch_size)
              .map(lambda x, t: (tf.cast(x, tf.float32) / 255.0, t)).repeat())
    model = compile_r_original(build_r_original(weights=weights))
    t0 = time.time()
    hist = model.fit(train_ds, steps_per_epoch=steps_per_epoch, epochs=epochs, validation_data=val_ds,
                     validation_steps=max(1, min(50, len(va) // batch_size)), verbose=verbose, shuffle=False)
    seconds = time.time() - t0
    x_te = pp.scale(pixels[te], spec)
    p = np.concatenate([model.predict_on_batch(x_te[s:s + 64]).ravel() for s in range(0, len(te), 64)]) if len(te) else np.zeros(0)
    acc = float(((p >= 0.5) == (y[te] >= 0.5)).mean()) if len(te) else float("nan")
    metrics = {"recipe": "r-original", "weights": weights or "none", "epochs": epochs,
               "steps_per_epoch": steps_per_epoch, "batch_size": batch_size, "train_seconds": round(seconds, 1),
               "images_per_s": epochs * steps_per_epoch * batch_size / seconds,
               "test": {"manufacturer_accuracy": acc, "n_test": int(len(te))},
               "history": {k: [float(v) for v in vals] for k, vals in hist.history.items()}}
    card = (f"# R original recipe (VGG16 150 px, RMSprop 1e-5, {epochs}x{steps_per_epoch} steps)\n\n"
            f"Weights: {weights or 'random init (offline)'}. Test manufacturer accuracy: {acc:.4f} "
            f"on {len(te)} held-out images.\n")
    labels = {"manufacturer": list(CLASSES), "types": {}}
    return mio.save_version(models_dir, two_class_wrapper(model), {}, labels, spec, metrics, card,
                            version=version)
