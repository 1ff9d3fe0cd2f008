"""Fine-tuning the whole backbone on images (``python -m model train --full``, ``make train-full``).

The slow, thorough counterpart of the cached-feature training in :mod:`model.training.joint`: every layer
of the backbone (BatchNormalization kept in inference mode) and both heads are trained on
images, each batch freshly augmented with the photo-like views of :mod:`model.training.augment` (random-
resized crop, flip, colour, blur, JPEG) in worker threads. Keras 3 only — no TensorFlow call — so
it runs on any Keras backend: TensorFlow on the CPU here, PyTorch on a GPU machine
(``KERAS_BACKEND=torch``), where ``--save-weights`` brings the trained weights back and
``--init-weights ... --epochs 0`` exports them on a machine that has the data.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .. import backbones
from .. import preprocessing as pp
from . import augment, joint


class AugmentedBatches:
    """A ``keras.utils.PyDataset`` factory (built lazily so importing this module needs no Keras)."""

    @staticmethod
    def make(pixels: np.ndarray, rows: np.ndarray, y: dict, w: dict, spec: pp.PreprocessingSpec,
             batch_size: int, train: bool, seed: int = 0, workers: int = 1):
        """Batches ``(x float32 (b, H, W, 3) in [0, 1], y, sample_weight)`` over ``pixels[rows]``.

        Args:
            pixels: uint8 ``(N, H, W, 3)`` at the model's size; rows: int indices into it.
            y, w: per-output arrays aligned with ``rows`` (``{"manufacturer": ..., "leaves": ...}``).
            train: shuffle each epoch and draw a random :func:`model.training.augment.random_view` of every
                image; else the plain pixels in order.
        """
        import keras  # deferred: TensorFlow start-up

        class _Batches(keras.utils.PyDataset):
            def __init__(self):
                super().__init__(workers=workers, use_multiprocessing=False)
                self.epoch = 0
                self.order = np.arange(len(rows))
                self.on_epoch_end()

            def __len__(self):
                return math.ceil(len(rows) / batch_size)

            def __getitem__(self, i):
                idx = self.order[i * batch_size:(i + 1) * batch_size]
                if train:
                    rng = np.random.default_rng([seed, self.epoch, i])
                    x = np.stack([augment.random_view(Image.fromarray(pixels[rows[j]]), spec, rng) for j in idx])
                else:
                    x = pixels[rows[idx]]
                return (pp.scale(x, spec), {k: v[idx] for k, v in y.items()}, {k: v[idx] for k, v in w.items()})

            def on_epoch_end(self):
                if train:
                    self.order = np.random.default_rng([seed, self.epoch]).permutation(len(rows))
                    self.epoch += 1

        return _Batches()


def build(backbone: str, spec: pp.PreprocessingSpec, weights: str | None, n_manufacturers: int, n_leaves: int,
          dropout: float = 0.3):
    """The whole backbone + the two heads of :func:`model.training.joint.build`: images → logits dict.
    BatchNormalization layers are frozen (inference statistics), the rest trainable."""
    import keras  # deferred: TensorFlow start-up
    from keras import layers  # deferred: TensorFlow start-up

    base = backbones.get(backbone).build(spec.input_shape, weights)
    joint.set_trainable(base, True)
    images = keras.Input(shape=spec.input_shape, name="image")
    x = layers.Dropout(dropout)(base(images, training=False))
    outputs = {"manufacturer": layers.Dense(n_manufacturers, name="manufacturer", dtype="float32")(x),
               "leaves": layers.Dense(max(n_leaves, 1), name="leaves", dtype="float32")(x)}
    return keras.Model(images, outputs, name="full"), base


def fit(model, base, train_batches, val_batches, epochs: int, lr: float = 1e-4, head_epochs: int = 1,
        leaf_weight: float = 1.0, patience: int = 3, verbose: int = 2) -> dict:
    """Phase 1: heads only (``head_epochs`` at 1e-3); phase 2: everything at ``lr`` with cosine
    decay over ``epochs``, early stopping on the validation loss, best weights restored.
    ``epochs`` 0 trains nothing (export of ``--init-weights``). Returns the history."""
    import keras  # deferred: TensorFlow start-up

    history: dict = {}
    if epochs <= 0:
        return history
    steps = len(train_batches)
    phases = ((1e-3, head_epochs, False), (keras.optimizers.schedules.CosineDecay(lr, max(1, epochs * steps)),
                                           epochs, True))
    for learning_rate, n_epochs, trainable in phases:
        if n_epochs <= 0:
            continue
        joint.set_trainable(base, trainable)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss={"manufacturer": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                            "leaves": joint.partial_label_loss},
                      loss_weights={"manufacturer": 1.0, "leaves": leaf_weight})
        callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                                   restore_best_weights=True)] if trainable else []
        hist = model.fit(train_batches, validation_data=val_batches, epochs=n_epochs, verbose=verbose,
                         callbacks=callbacks)
        for k, vals in hist.history.items():
            history.setdefault(k, []).extend(float(v) for v in vals)
    return history


def save_weights(model, path) -> None:
    """The trained model's weights as float16 arrays in one ``.npz`` (half the size of float32,
    so a Lite0/Lite2 model comes back from a GPU machine under 16 MB); written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, **{f"w{i:04d}": np.asarray(w, np.float16) for i, w in enumerate(model.get_weights())})
    os.replace(tmp, path)


def load_weights(model, path) -> None:
    """Set ``model``'s weights from :func:`save_weights`' file.

    Raises:
        ValueError: the file holds another number or shape of arrays than the model.
    """
    with np.load(path) as f:
        arrays = [f[k] for k in sorted(f.files)]
    current = model.get_weights()
    if len(arrays) != len(current) or any(a.shape != c.shape for a, c in zip(arrays, current)):
        raise ValueError(f"{path}: {len(arrays)} arrays do not fit this model's {len(current)} "
                         "(another backbone, image size or label set?)")
    model.set_weights([a.astype(c.dtype) for a, c in zip(arrays, current)])
