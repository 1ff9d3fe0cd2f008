"""The settings of one training (:class:`TrainConfig`, the flags of ``python -m model train``) and
the training log line."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .. import preprocessing as pp

#: Stage-1 classes, in output order (a training keeps those its training rows have).
STAGE1_MANUFACTURERS = ("Airbus", "Boeing", "Other")


@dataclass
class TrainConfig:
    """Training settings (CLI flags of ``python -m model train`` map 1:1)."""

    data: str | list[str] = "data/raw/synth"  # one dataset folder/CSV, or several (stacked)
    models_dir: str = "models"
    reports_dir: str = "reports"
    backbone: str = "compact"
    weights: str | None = None
    image_size: int = 96
    resize: str = "bilinear"
    epochs: int = 12
    type_epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 2e-3
    patience: int = 4
    width: int = 24
    seed: int = 0
    threshold: float = 0.6
    augment: bool = True
    mixed_precision: bool = False  # GPU only: keras mixed_float16 policy
    fine_tune: bool = False  # feature backbones: stage 1 fine-tunes above the default cut (stage 2: heads)
    grayscale: bool = False
    min_type_images: int = 8  # training rows a type (or a family-only leaf) needs to be a class
    type_threshold: float = 0.5  # P(type | manufacturer) a type needs to be named (else: family)
    photo_share: float = 0.5  # share of each family's training weight on photos when it has renders too
    family_power: float = 0.5  # 1: every family of a manufacturer weighs the same; 0: by row count
    source_power: float = 0.5  # 1: every source of a (manufacturer, family, domain) cell weighs the same
    photo_views: int = 0  # photo-like augmented views per training photo (feature backbones)
    leaf_weight: float = 1.0  # weight of the stage-2 (leaf) loss in joint training
    cut: str | None = None  # --fine-tune: where the backbone is cut (default: the backbone's)
    full: bool = False  # fine-tune the whole backbone on augmented images (model.training.full; slow on a CPU)
    init_weights: str | None = None  # --full: start from these weights (model.training.full.save_weights)
    save_weights: str | None = None  # --full: also write the trained weights here (float16 .npz)
    workers: int = 0  # --full: augmentation threads (0: the CPU count, at most 8)
    localizer: bool = True  # pretrained backbones: ship the ImageNet-head localizer (aircraft gate, crop)
    crop: bool = False  # classify a box around the aircraft (model.preprocessing.CropRule), in training and serving
    crop_rule: dict | None = None  # CropRule fields overriding its defaults (with crop)
    tta: str | None = None  # "flip": average the probabilities of the image and its mirror at inference
    source_balance: bool = False  # stage 1: both manufacturers weigh the same inside each photo source
    one_source_stage1: float = 1.0  # stage-1 weight factor of a photo source with one manufacturer (0: stage 2 only)
    view_styles: bool = False  # --photo-views with night/dusk, squashed, zoomed-out and watermarked styles
    novelty_quantile: float | None = None  # unsure when the k-NN feature distance passes this percentile of validation photos'
    novelty_k: int = 10  # the neighbour whose distance counts (model.confidence.knn_distance)
    views: bool = False  # unsure when the mirror image or a zoomed crop changes stage 1's answer
    version: str | None = None
    verbose: int = 2
    extra: dict = field(default_factory=dict)

    def spec(self) -> pp.PreprocessingSpec:
        """The preprocessing spec of a new version: ``image_size`` square, ``resize`` filter, the
        default JPEG draft (:data:`model.preprocessing.DEFAULT_JPEG_DRAFT`)."""
        return pp.PreprocessingSpec(height=self.image_size, width=self.image_size, resize=self.resize,
                                    jpeg_draft=pp.DEFAULT_JPEG_DRAFT)

    def as_dict(self) -> dict:
        """Every field but ``extra`` (the ``config`` of metrics.json and of the LOSO report)."""
        return {k: v for k, v in self.__dict__.items() if k != "extra"}


def log(msg: str) -> None:
    """Print one timestamped training log line (``[train HH:MM:SS] msg``), flushed."""
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", flush=True)
