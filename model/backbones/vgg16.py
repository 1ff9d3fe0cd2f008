"""VGG16 (``keras.applications.VGG16``, no top, global average pooling): 224 px, 512 features.

ImageNet weights: Keras downloads ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`` where
there is internet; offline, ``PLANESPOTTER_VGG16_WEIGHTS=/path/to/that.h5`` or ``--weights <path>``,
or ``--weights none`` (random initialisation). Training calls this frozen feature extractor
``vgg16-frozen``; ``--backbone vgg16`` and the R original's recipe fine-tune the whole network
(:func:`model.architectures.build_vgg16_classifier`, :func:`model.architectures.build_r_original`).
"""

from __future__ import annotations

from .base import PRETRAINED, RANDOM, Backbone, WeightsSource

#: Keras' published ImageNet no-top VGG16 weights file name (keras.applications.vgg16).
VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
#: Its URL and md5 (``keras.applications.vgg16.WEIGHTS_PATH_NO_TOP``, ``file_hash``).
VGG16_NOTOP_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + VGG16_NOTOP_FILE
VGG16_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"
#: Setting that names a local VGG16 weights file for offline machines.
VGG16_WEIGHTS_ENV = "PLANESPOTTER_VGG16_WEIGHTS"
#: Caffe-style ImageNet channel means in BGR order, from keras.applications.imagenet_utils.
VGG16_MEAN_BGR = (103.939, 116.779, 123.68)


class VGG16(Backbone):
    """Keras' VGG16 with a frozen 1x1 input adapter ([0, 1] RGB → caffe BGR, mean subtracted,
    :func:`model.architectures.vgg16_input_adapter`). Cuts: ``block3_pool`` (28x28x256 at
    224 px) and ``block4_pool`` (14x14x512, the default: fine-tunes block 5)."""

    name = "vgg16"
    feature_name = "vgg16-frozen"
    default_image_size = 224
    feature_dim = 512
    description = "VGG16 (keras.applications), ImageNet via Keras download, 224 px, 512-d"
    weights_source = WeightsSource(
        origin="Keras download (keras.applications.vgg16, ported from VGG Oxford's release)",
        file=VGG16_NOTOP_FILE, md5=VGG16_NOTOP_MD5, url=VGG16_NOTOP_URL,
        licence="Creative Commons Attribution (VGG, University of Oxford)", converted=None, env_var=VGG16_WEIGHTS_ENV,
        make_target=None)
    cuts = ("block3_pool", "block4_pool")
    default_cut = "block4_pool"

    def resolve_weights(self, weights: str | None) -> str | None:
        """``"none"`` → ``None``; ``None``/``"imagenet"`` → ``$PLANESPOTTER_VGG16_WEIGHTS`` when
        set, else ``"imagenet"`` once Keras' download has worked; a path → that path
        (:func:`model.architectures.resolve_vgg16_weights`).

        Raises:
            WeightsUnavailableError: no file, and the download fails (offline).
        """
        from .. import architectures as arch

        if weights == RANDOM:
            return None
        return arch.resolve_vgg16_weights("imagenet" if weights in PRETRAINED else weights)

    def _build(self, input_shape: tuple, resolved_weights: str | None, pooling: str | None):
        import keras

        from .. import architectures as arch

        base = keras.applications.VGG16(include_top=False, weights=resolved_weights, input_shape=input_shape,
                                        pooling=pooling)
        inputs = keras.Input(shape=input_shape, name="image")
        x = arch.vgg16_input_adapter()(inputs)
        # Flat, so that the cut layers are reachable by name; fresh copies of the layers (same
        # config and weights), because a layer called in two graphs reports the first graph's output.
        for layer in base.layers[1:]:
            copy = layer.__class__.from_config(layer.get_config())
            x = copy(x)
            copy.set_weights(layer.get_weights())
        return keras.Model(inputs, x, name="vgg16")


BACKBONE = VGG16()
