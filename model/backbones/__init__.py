"""Every network of the project, and the registry of the pretrained ones: ``get(name)``,
``names()``, ``feature_names()``.

Layout (keras-hub style: one class per backbone, one converter per weights format):

- ``base.py``: the :class:`~model.backbones.base.Backbone` interface every pretrained backbone
  implements (images in [0, 1] → pooled features or a cut feature map);
- ``lite0.py``, ``lite2.py``, ``vgg16.py``: the registry entries, each ``BACKBONE = <instance>``;
  adding a backbone is adding one such file (``vgg16.py`` also builds the whole-network VGG16
  classifier and the R original's model);
- ``efficientnet_lite/``: the EfficientNet-Lite network, its PyTorch → Keras weights converter
  and the backbone class the Lite presets share;
- ``compact.py``: the compact CNN trained from scratch (``--backbone compact``), not a registry
  entry: it has no pretrained weights and is trained whole with its classifier, as is
  ``--backbone vgg16`` (whole-network VGG16 fine-tuning); the registry's ``vgg16`` is the frozen
  feature extractor that training calls ``vgg16-frozen``.

Registry entries are the modules of this folder other than ``base``, ``compact`` and ``_*``
(sub-packages hold networks, not entries). They are imported on the first call, not when this
package is imported, so importing it is cheap and cannot form an import cycle with the modules
they use. Nothing here imports :mod:`model.training`.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import Backbone, WeightsSource, WeightsUnavailableError

__all__ = ["Backbone", "WeightsSource", "WeightsUnavailableError", "get", "names", "feature_names", "all_backbones"]

#: Modules of this folder that are not registry entries: the interface, and the compact CNN
#: (no pretrained weights).
NOT_ENTRIES = frozenset({"base", "compact"})

_REGISTRY: dict[str, Backbone] | None = None


def _discover() -> dict[str, Backbone]:
    global _REGISTRY
    if _REGISTRY is None:
        found: dict[str, Backbone] = {}
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
            if info.ispkg or info.name in NOT_ENTRIES or info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{__name__}.{info.name}")
            backbone = getattr(module, "BACKBONE", None)
            if not isinstance(backbone, Backbone):
                raise TypeError(f"{module.__name__} must define BACKBONE = <a model.backbones.base.Backbone>")
            if backbone.name in found:
                raise ValueError(f"two backbones are called {backbone.name!r}")
            found[backbone.name] = backbone
        _REGISTRY = found
    return _REGISTRY


def names() -> tuple[str, ...]:
    """Registry names of every backbone, sorted (``("lite0", "lite2", "vgg16")``)."""
    return tuple(sorted(_discover()))


def feature_names() -> tuple[str, ...]:
    """The names training uses for frozen features of each backbone (``--backbone``), in the
    order of :func:`names`: ``("lite0", "lite2", "vgg16-frozen")``."""
    return tuple(_discover()[n].cache_name for n in names())


def all_backbones() -> tuple[Backbone, ...]:
    """Every backbone, in the order of :func:`names`."""
    return tuple(_discover()[n] for n in names())


def get(name: str) -> Backbone:
    """The backbone registered as ``name`` or whose :attr:`~Backbone.feature_name` is ``name``.

    Raises:
        ValueError: no such backbone (the message lists the names).
    """
    registry = _discover()
    if name in registry:
        return registry[name]
    for backbone in registry.values():
        if backbone.cache_name == name:
            return backbone
    raise ValueError(f"unknown backbone {name!r}; choose from {list(names())} "
                     f"(training's names: {list(feature_names())})")
