"""Multi-task training of both cascade stages at once, on cached features.

One trunk — a backbone's upper part fine-tuned over cached feature maps (``--fine-tune``), or a
small dense layer over cached pooled features — feeds two linear heads: manufacturer logits
(stage 1) and logits over every stage-2 *leaf* (ICAO types, and ``"<family> family"`` leaves for
families seen only without a usable type). The exported stage-2 model of a manufacturer keeps
that manufacturer's leaf columns, so its softmax is P(leaf | manufacturer).

A photo labelled with a family alone ("B777", no designator) still teaches stage 2: its target is
the *set* of its family's leaves, and its loss is ``-log sum_{leaf in set} p(leaf)`` (the
partial-label likelihood; Jin & Ghahramani 2002, "Learning with multiple labels"). A fully
labelled row is the special case of a one-leaf set, i.e. ordinary cross-entropy.
"""

from __future__ import annotations

import numpy as np

from .. import backbones
from .. import preprocessing as pp


def partial_label_loss(mask, logits):
    """``-log(sum(softmax(logits) * mask))`` per row, computed stably in log space.

    Args:
        mask: float ``(n, L)``, 1 for the leaves the row's label allows, 0 elsewhere; a row must
            allow at least one leaf (give unlabelled rows an all-ones mask and weight 0).
        logits: float ``(n, L)``.
    Returns:
        float ``(n,)``, >= 0; 0 when all the probability is on allowed leaves.
    """
    from keras import ops  # deferred: TensorFlow start-up

    logits = ops.cast(logits, "float32")
    allowed = ops.where(ops.cast(mask, "float32") > 0, logits, ops.full_like(logits, -1e9))
    return ops.logsumexp(logits, axis=-1) - ops.logsumexp(allowed, axis=-1)


def set_trainable(layer, flag: bool) -> None:
    """Set ``layer.trainable`` (a backbone part or a dense layer) and keep every
    BatchNormalization inside it frozen, so fine-tuning never updates the ImageNet statistics."""
    from keras import layers  # deferred: TensorFlow start-up

    layer.trainable = flag
    for sub in getattr(layer, "layers", []):
        if isinstance(sub, layers.BatchNormalization):
            sub.trainable = False


def build(trunk_input_shape: tuple, n_manufacturers: int, n_leaves: int, upper=None, hidden: int = 256,
          dropout: float = 0.3, flip: bool = True, seed: int = 0):
    """The training model: cached features → ``{"manufacturer": logits, "leaves": logits}``.

    Args:
        trunk_input_shape: ``(h, w, c)`` feature maps (with ``upper``) or ``(d,)`` pooled features.
        upper: the backbone's upper part (``Backbone.build_upper``), maps → pooled; ``None`` for
            pooled inputs, which get ``Dense(hidden, relu)`` instead.
        flip: random horizontal flips of the feature maps while training (maps only).
    Returns:
        ``(model, trunk)``: ``trunk`` is the layer whose ``trainable`` :func:`fit` toggles
        (``upper``, or the dense layer).
    """
    import keras  # deferred: TensorFlow start-up
    from keras import layers  # deferred: TensorFlow start-up

    inputs = keras.Input(shape=trunk_input_shape, name="features")
    if upper is not None:
        x = layers.RandomFlip("horizontal", seed=seed)(inputs) if flip else inputs
        x = upper(x, training=False)  # BatchNormalization stays in inference mode
        trunk = upper
    else:
        trunk = layers.Dense(hidden, activation="relu", name="hidden")
        x = trunk(layers.Dropout(dropout)(inputs))
    x = layers.Dropout(dropout)(x)
    outputs = {"manufacturer": layers.Dense(n_manufacturers, name="manufacturer", dtype="float32")(x),
               "leaves": layers.Dense(max(n_leaves, 1), name="leaves", dtype="float32")(x)}
    return keras.Model(inputs, outputs, name="joint"), trunk


def fit(model, trunk, x_tr, y_tr: dict, w_tr: dict, x_va, y_va: dict, w_va: dict, epochs: int,
        leaf_weight: float = 1.0, batch_size: int = 32, head_epochs: int = 2, lr: float = 1e-4,
        patience: int = 3, fine_tune: bool = True, verbose: int = 2) -> dict:
    """Phase 1: the heads alone (trunk frozen, Adam 1e-3, ``head_epochs``); phase 2 (when
    ``fine_tune``): the trunk too, at ``lr`` (BatchNormalization frozen), early stopping on the
    validation loss with the best weights restored. Without ``fine_tune`` (pooled features) one
    phase trains trunk and heads at 1e-3 with early stopping.

    Args:
        y_tr / y_va: ``{"manufacturer": int (n,), "leaves": float mask (n, L)}``.
        w_tr / w_va: sample weights per output, float ``(n,)``.
        leaf_weight: weight of the leaf loss against the manufacturer loss.
    Returns:
        The training history ``{metric: [per epoch]}`` of both phases, concatenated.
    """
    import keras  # deferred: TensorFlow start-up

    def compile_(learning_rate):
        model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss={"manufacturer": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                            "leaves": partial_label_loss},
                      loss_weights={"manufacturer": 1.0, "leaves": leaf_weight})

    history: dict = {}
    phases = ([(1e-3, head_epochs, False, []), (lr, epochs, True, "stop")] if fine_tune
              else [(1e-3, max(epochs, 40), True, "stop")])
    for learning_rate, n_epochs, trainable, stop in phases:
        set_trainable(trunk, trainable)
        compile_(learning_rate)
        callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                                   restore_best_weights=True)] if stop else []
        if np.asarray(x_tr[:0]).dtype == np.float16:  # cached maps kept at float16: cast batch by batch
            hist = model.fit(batches(x_tr, y_tr, w_tr, batch_size, shuffle=True),
                             validation_data=batches(x_va, y_va, w_va, batch_size, shuffle=False),
                             epochs=n_epochs, verbose=verbose, callbacks=callbacks)
        else:
            hist = model.fit(x_tr, y_tr, sample_weight=w_tr, validation_data=(x_va, y_va, w_va), epochs=n_epochs,
                             batch_size=batch_size, verbose=verbose, callbacks=callbacks, shuffle=True)
        for k, vals in hist.history.items():
            history.setdefault(k, []).extend(float(v) for v in vals)
    return history


def batches(x: np.ndarray, y: dict, w: dict, batch_size: int, shuffle: bool):
    """A ``tf.data`` pipeline of ``(x, y, w)`` batches with float16 ``x`` gathered from the NumPy
    array and cast to float32 batch by batch, so the (large) feature maps are held once, at half
    the size (Keras would hold a float32 copy and a TensorFlow copy of it).

    It is Keras' own pipeline for arrays (``ArrayDataAdapter.get_tf_dataset`` of Keras 3: a
    shuffled index permutation per epoch, cut into batches, gathered from the arrays), so a
    training sees the same batches in the same order as ``model.fit(x, y, sample_weight=w,
    shuffle=shuffle)`` on float32 arrays.

    Args:
        x: float16 or float32 ``(n, ...)``; y, w: dicts of ``(n, ...)`` arrays (targets, weights).
    Returns:
        A ``tf.data.Dataset`` of ``(float32 x, y, w)`` batches.
    """
    import tensorflow as tf  # deferred: TensorFlow start-up

    n = len(x)
    n_full, partial = n // batch_size, n % batch_size

    def permutation(_):
        indices = tf.range(n, dtype=tf.int64)
        return tf.random.shuffle(indices) if shuffle else indices

    def slice_batch_indices(indices):
        k = n_full * batch_size
        flat = tf.data.Dataset.from_tensor_slices(tf.reshape(tf.slice(indices, [0], [k]), [n_full, batch_size]))
        if partial:
            flat = flat.concatenate(tf.data.Dataset.from_tensors(tf.slice(indices, [k], [partial])))
        return flat

    indices = tf.data.Dataset.range(1).map(permutation).prefetch(1).flat_map(slice_batch_indices)
    targets = ({k: np.asarray(v) for k, v in y.items()}, {k: np.asarray(v, np.float32) for k, v in w.items()})
    data = tf.data.Dataset.zip((indices, tf.data.Dataset.from_tensors(targets).repeat()))

    def x_batch(i):  # gathered from the NumPy array itself: no TensorFlow copy of the whole array
        return x[i].astype(np.float32)

    def grab(i, d):
        xb = tf.ensure_shape(tf.numpy_function(x_batch, [i], tf.float32), (None, *x.shape[1:]))
        return xb, {k: tf.gather(v, i, axis=0) for k, v in d[0].items()}, \
            {k: tf.gather(v, i, axis=0) for k, v in d[1].items()}

    data = data.map(grab, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    if shuffle:
        options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    data = data.with_options(options)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # the number of batches known, as for arrays: Keras then starts each epoch's iterator when it does for arrays
    data = data.apply(tf.data.experimental.assert_cardinality(n_full + (1 if partial else 0)))
    return data.with_options(options).prefetch(tf.data.AUTOTUNE)


def logits(model, x, batch_size: int = 128) -> dict[str, np.ndarray]:
    """Both heads' logits over cached features ``x``: ``{"manufacturer": (n, M), "leaves": (n, L)}``."""
    out = model.predict(x, batch_size=batch_size, verbose=0)
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def export(model, backbone: str, spec: pp.PreprocessingSpec, weights: str | None, cut: str | None,
           leaf_columns: dict[str, list[int]], inputs: str = "features"):
    """Image models from the trained joint model.

    Args:
        backbone: registry name; cut: the cut the maps were taken at (``None``: pooled features).
        inputs: ``"features"`` (the model was trained on cached maps/pooled features: the frozen
            backbone part is put in front) or ``"images"`` (:mod:`model.training.full`: the model already
            holds the whole, fine-tuned backbone).
        leaf_columns: ``{manufacturer: [leaf column indices]}`` for each stage-2 model.
    Returns:
        ``(stage1, {manufacturer: stage2})``: Keras models, float32 images in [0, 1]
        ``(n, H, W, 3)`` → logits (stage 1 over manufacturers, stage 2 over that manufacturer's
        leaves, in ``leaf_columns`` order). Built from standard Keras layers only, so
        ``keras.models.load_model`` reads them without this package (R through reticulate).
    """
    import keras  # deferred: TensorFlow start-up
    from keras import layers  # deferred: TensorFlow start-up

    frozen = None  # the backbone part in front of the cached features, shared by every image model
    if inputs != "images":
        bb = backbones.get(backbone)
        frozen = bb.build(spec.input_shape, weights) if cut is None else bb.build_lower(spec.input_shape, cut, weights)
        frozen.trainable = False

    def features_of(images):
        return images if frozen is None else frozen(images, training=False)

    # the trained part between the cached features and the heads, without dropout/flip
    trunk_layers = [lyr for lyr in model.layers if lyr.name not in ("manufacturer", "leaves")
                    and not isinstance(lyr, (layers.InputLayer, layers.Dropout, layers.RandomFlip))]

    def trunk(x):
        for lyr in trunk_layers:
            x = lyr(x)
        return x

    def head(name: str, columns: list[int] | None, out_name: str):
        dense = model.get_layer(name)
        kernel, bias = dense.get_weights()
        if columns is not None:
            kernel, bias = kernel[:, columns], bias[columns]
        new = layers.Dense(kernel.shape[1], name=out_name, dtype="float32")
        new.build((None, kernel.shape[0]))
        new.set_weights([kernel, bias])
        return new

    def image_model(name: str, dense):
        images = keras.Input(shape=spec.input_shape, name="image")
        return keras.Model(images, dense(trunk(features_of(images))), name=name)

    stage1 = image_model("manufacturer_logits", head("manufacturer", None, "logits"))
    stage2 = {m: image_model(f"type_{m}_logits", head("leaves", cols, "logits"))
              for m, cols in leaf_columns.items()}
    return stage1, stage2
