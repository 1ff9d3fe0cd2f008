"""Command line: ``python -m model {train,evaluate,score,info,runs} ...`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import backbones
from . import data as mdata
from . import evaluate as mev
from . import io as mio
from . import localize as loc
from . import preprocessing as pp
from .backbones import WeightsUnavailableError
from .cascade import Cascade
from .data import DatasetError
from .io import ModelLoadError
from .pipeline import Pipeline
from .registry import ENV as REGISTRY_ENV
from .registry import TAR1090_URL, RegistryError, load_configured
from .registry import download as download_registry
from .score import score_folder
from .training import tracking
from .training.config import TrainConfig
from .training.derive import add_confidence
from .training.recipe_r import train_r_original
from .training.report import test_report, write_test_report
from .training.sources import eval_sources
from .training.train import train

DEFAULT_MODEL_DIR = os.environ.get("PLANESPOTTER_MODEL_DIR", "models/latest")


def _percent(text: str) -> float:
    """argparse type: a number in (0, 100]."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < v <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentile in (0, 100]")
    return v


def _train(args) -> int:
    if args.recipe == "r-original":
        print(train_r_original(args.data, args.models_dir, weights=args.weights,
                               epochs=args.epochs if args.epochs_set else 100,
                               steps_per_epoch=args.steps_per_epoch, seed=args.seed, verbose=args.verbose))
        return 0

    cfg = TrainConfig(data=args.data, models_dir=args.models_dir, reports_dir=args.reports_dir,
                      backbone=args.backbone, weights=args.weights, image_size=args.image_size,
                      epochs=args.epochs, type_epochs=args.type_epochs or args.epochs,
                      batch_size=args.batch_size, seed=args.seed, threshold=args.threshold,
                      width=args.width, augment=not args.no_augment, grayscale=args.grayscale,
                      patience=args.patience, verbose=args.verbose, fine_tune=args.fine_tune,
                      mixed_precision=args.mixed_precision, min_type_images=args.min_type_images,
                      type_threshold=args.type_threshold, photo_share=args.photo_share,
                      family_power=args.family_power, source_power=args.source_power,
                      photo_views=args.photo_views,
                      leaf_weight=args.leaf_weight, cut=args.cut, full=args.full, init_weights=args.init_weights,
                      save_weights=args.save_weights, workers=args.workers, localizer=not args.no_localizer,
                      crop=args.crop, tta=args.tta, source_balance=args.source_balance,
                      one_source_stage1=args.one_source_stage1, view_styles=args.view_styles,
                      novelty_quantile=args.novelty_quantile, novelty_k=args.novelty_k, views=args.views,
                      crop_rule=json.loads(args.crop_rule) if args.crop_rule else None)
    if args.leave_one_source_out:
        entry = eval_sources(cfg, origins=args.origins, out=args.sources_out, label=args.label)
        print(json.dumps({"label": entry["label"], "mean": entry["mean"],
                          "folds": {o: {k: f[k] for k in ("n", "manufacturer_balanced", "family", "type_top1")}
                                    for o, f in entry["folds"].items()}}, indent=2))
        return 0
    path = train(cfg)
    print(path)
    return 0


def _evaluate(args) -> int:
    started = time.time()
    cascade = Cascade.load(args.model_dir, threshold=args.threshold)
    df = mdata.assign_splits(mdata.read_metadata(args.data), seed=args.seed)
    df = df[(df["split"] == args.split) & df["manufacturer"].isin(cascade.manufacturers)].reset_index(drop=True)
    if df.empty:
        raise SystemExit(f"error: no {args.split!r} rows with known manufacturers in {args.data}")
    aircraft, boxes, aboxes = None, df["crop_box"].tolist(), None
    if cascade.localizer is not None:
        aircraft, cams = loc.dataset_locate(df, cascade.localizer_size, localizer=cascade.localizer,
                                            spec=cascade.spec)
        boxes = loc.dataset_boxes(df, cams, cascade.crop_rule)
        aboxes = [None if b == d else list(pp.parse_crop_box(b)) for b, d in zip(boxes, df["crop_box"])]
    pixels = mdata.load_pixels(df["abs_path"].tolist(), cascade.spec, shas=df["sha256"].tolist(),
                               crop_boxes=boxes,
                               draft_boxes=df["crop_box"].tolist() if cascade.crop_rule is not None else None)
    reports = Path(args.reports_dir)
    version_metrics = (cascade.info or {}).get("metrics", {})
    idx = np.flatnonzero(df["manufacturer"].isin(["Airbus", "Boeing"]).to_numpy())
    sections = mev.evaluate_domains(cascade, df.iloc[idx].reset_index(drop=True), pixels[idx],
                                    figures_dir=reports / "figures",
                                    train_type_counts=version_metrics.get("photo_type_counts_train"),
                                    boxes=None if aboxes is None else [aboxes[i] for i in idx],
                                    aircraft=None if aircraft is None else aircraft[idx])
    oos = None
    if cascade.localizer is not None:
        oos = mev.out_of_scope(cascade, df, pixels, aircraft, aboxes, figures_dir=reports / "figures")
    metrics = test_report(sections, oos, args.split, args.data, version_metrics.get("calibration", {}))
    # the version's training run (when the store has it) gets the evaluation's report and figures
    write_test_report(reports, metrics, tracking.find(tracking.TRAIN_EXPERIMENT, cascade.version, since=started),
                      since=started)
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}, indent=2))
    return 0


def _score(args) -> int:
    cascade = Cascade.load(args.model_dir, threshold=args.threshold)
    registry = None
    if args.registration:
        try:
            registry = load_configured()
        except RegistryError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if registry is None:
            print(f"error: --registration needs a registry: set {REGISTRY_ENV} to a CSV(.gz) of registration, "
                  "ICAO type (make registry writes one)", file=sys.stderr)
            return 2
    summary = score_folder(Pipeline(cascade, registry), args.images, args.out, batch_size=args.batch_size,
                           num_shards=args.num_shards, shard_index=args.shard_index,
                           progress=not args.no_progress, read=args.registration)
    print(json.dumps(summary), file=sys.stderr)
    return 0


def _registry(args) -> int:
    try:
        n = download_registry(args.out, url=args.url)
    except RegistryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.out}: {n} registrations (used by default; or PLANESPOTTER_REGISTRY={args.out})", file=sys.stderr)
    return 0


def _confidence(args) -> int:
    try:
        out = add_confidence(args.model_dir, args.novelty_quantile, args.novelty_k, args.views)
    except (ModelLoadError, DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


def _info(args) -> int:
    info = mio.read_version_info(args.model_dir)
    print(json.dumps({k: info[k] for k in ("version", "created", "path", "labels", "preprocessing")}, indent=2))
    return 0


def _runs(args) -> int:
    if args.update_readme:
        for path in args.update_readme:
            changed = tracking.update_readme(path)
            print(f"{path}: {', '.join(changed) if changed else 'no runs blocks'} regenerated")
        return 0
    experiments = (tracking.HEADLINE, tracking.TRAIN_EXPERIMENT, tracking.SOURCES_EXPERIMENT) \
        if args.experiment == "all" else (args.experiment,)
    for e in experiments:
        table = tracking.headline_table(label=args.label) if e == tracking.HEADLINE \
            else tracking.runs_table(e, label=args.label)
        print(f"## {e}\n\n{table}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train, calibrate, evaluate and export a cascade version")
    t.add_argument("--data", nargs="+", default=["data/raw/synth"],
                   help="dataset folder(s) or metadata.csv file(s) of the shared schema: renders, imported or "
                        "scraped photos (several are stacked)")
    t.add_argument("--models-dir", default="models")
    t.add_argument("--reports-dir", default="reports")
    t.add_argument("--recipe", default="cascade", choices=("cascade", "r-original"),
                   help="r-original: the R project's VGG16 recipe exactly (binary, 150 px, 100x100 steps)")
    t.add_argument("--steps-per-epoch", type=int, default=100, help="r-original recipe only")
    t.add_argument("--backbone", default="compact", choices=("compact", "vgg16", *backbones.feature_names()),
                   help="compact/vgg16 train whole on images; the others (model/backbones/) train heads on "
                        "cached frozen features")
    t.add_argument("--weights", default=None,
                   help="backbone weights: 'imagenet', 'none' or a file (offline: `make backbones` for "
                        "lite0/lite2, or PLANESPOTTER_<NAME>_WEIGHTS, e.g. PLANESPOTTER_VGG16_WEIGHTS)")
    t.add_argument("--image-size", type=int, default=96, help="input size in pixels (square)")
    t.add_argument("--epochs", type=int, default=12, help="stage-1 epochs (max; early stopping)")
    t.add_argument("--type-epochs", type=int, default=None, help="stage-2 epochs (default: --epochs)")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--width", type=int, default=24, help="compact CNN stem width")
    t.add_argument("--patience", type=int, default=4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threshold", type=float, default=0.6, help="stage-1 routing threshold")
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--fine-tune", action="store_true",
                   help="feature backbones: fine-tune the stage-1 model above the backbone's default cut on "
                        "cached feature maps (lite0/lite2: blocks 6-7 on block-5 maps; vgg16-frozen: block 5); "
                        "stage 2 and the default: a head on frozen pooled features")
    t.add_argument("--grayscale", action="store_true", help="random grayscale augmentation")
    t.add_argument("--cut", default=None, help="--fine-tune: the layer the backbone is cut at (default: the "
                                               "backbone's, e.g. lite0 block5c_add; lite0 block4c_add tunes more)")
    t.add_argument("--photo-views", type=int, default=0,
                   help="feature backbones: photo-like augmented views per training photo (random-resized crop, "
                        "flip, colour, blur, JPEG), added as training rows")
    t.add_argument("--photo-share", type=float, default=0.5,
                   help="share of each family's training weight on photos when it has renders too (0-1)")
    t.add_argument("--family-power", type=float, default=0.5,
                   help="1: every family of a manufacturer weighs the same in training; 0: families by row count; "
                        "0.5: by the square root of the row count")
    t.add_argument("--source-power", type=float, default=0.5,
                   help="1: every photo collection of a (manufacturer, family) weighs the same in training; 0: by row "
                        "count; 0.5 (measured best on a held-out collection): by its square root")
    t.add_argument("--leaf-weight", type=float, default=1.0, help="weight of the stage-2 loss in joint training")
    t.add_argument("--min-type-images", type=int, default=8,
                   help="training rows an ICAO type (or a family-only class) needs to become a stage-2 class")
    t.add_argument("--full", action="store_true",
                   help="fine-tune the whole backbone on freshly augmented images (make train-full; slow on a CPU, "
                        "any Keras backend: KERAS_BACKEND=torch on a GPU machine)")
    t.add_argument("--init-weights", default=None, help="--full: start from these weights (a --save-weights file)")
    t.add_argument("--save-weights", default=None, help="--full: also write the trained weights (float16 .npz)")
    t.add_argument("--workers", type=int, default=0, help="--full: augmentation threads (0: CPU count, max 8)")
    t.add_argument("--type-threshold", type=float, default=0.5,
                   help="P(type | manufacturer) a type needs to be named; below it the answer is the family")
    t.add_argument("--mixed-precision", action="store_true",
                   help="GPU only: mixed_float16 (training uses MirroredStrategy when >1 GPU is visible)")
    t.add_argument("--no-localizer", action="store_true",
                   help="lite backbones: no ImageNet-head localizer (no 'not an aircraft' gate, no crop)")
    t.add_argument("--crop", action="store_true",
                   help="classify a box around the aircraft found by the localizer's class activation map")
    t.add_argument("--crop-rule", default=None, help='--crop: JSON of CropRule fields, e.g. \'{"threshold": 0.35}\'')
    t.add_argument("--tta", default=None, choices=("flip",),
                   help="test-time augmentation stored in the version: flip = mean of image and mirror")
    t.add_argument("--source-balance", action="store_true",
                   help="stage 1: Airbus and Boeing weigh the same inside each photo source")
    t.add_argument("--one-source-stage1", type=float, default=1.0,
                   help="stage-1 weight factor of a photo source with one manufacturer (0: it teaches stage 2 only)")
    t.add_argument("--view-styles", action="store_true",
                   help="--photo-views: add night/dusk casts, squashed aspects, zoomed-out scenes and watermarks")
    t.add_argument("--novelty-quantile", type=_percent, default=None,
                   help="unsure when a photo's k-NN feature distance to the training photos reaches this percentile "
                        "(0-100) of the validation photos' distances (model.confidence; default off)")
    t.add_argument("--novelty-k", type=int, default=10, help="--novelty-quantile: the neighbour whose distance counts")
    t.add_argument("--views", action="store_true",
                   help="unsure when the mirror image or a zoomed centre crop changes stage 1's answer (3 stage-1 passes)")
    t.add_argument("--leave-one-source-out", action="store_true",
                   help="instead of one model: train once per photo origin with that origin held out, and report "
                        "each held-out origin's figures and their mean (make eval-sources; model.training.sources)")
    t.add_argument("--origins", nargs="+", default=None, help="--leave-one-source-out: origins to hold out (default all)")
    t.add_argument("--label", default=None, help="--leave-one-source-out: the configuration's name in the report")
    t.add_argument("--sources-out", default="reports/sources.json",
                   help="--leave-one-source-out: the JSON report (runs accumulate; a Markdown table beside it)")
    t.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2))
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="evaluate a version on a split; writes reports/metrics.json (also into the "
                                         "version's tracked training run, when the store has it)")
    e.add_argument("--model-dir", default=DEFAULT_MODEL_DIR)
    e.add_argument("--data", nargs="+", default=["data/raw/synth"], help="dataset folder(s) or CSV(s)")
    e.add_argument("--split", default="test", choices=("train", "validation", "test"))
    e.add_argument("--reports-dir", default="reports")
    e.add_argument("--threshold", type=float, default=None)
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=_evaluate)

    s = sub.add_parser("score", help="batch-score a folder of images to CSV (resumable)")
    s.add_argument("--images", required=True, help="folder of JPEG/PNG/WebP images (recursive)")
    s.add_argument("--out", required=True, help="CSV to write/append")
    s.add_argument("--model-dir", default=DEFAULT_MODEL_DIR)
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--num-shards", type=int, default=1)
    s.add_argument("--shard-index", type=int, default=int(os.environ.get("JOB_COMPLETION_INDEX", 0)))
    s.add_argument("--threshold", type=float, default=None)
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--registration", action="store_true",
                   help=f"also read each aircraft's registration (needs a registry: ${REGISTRY_ENV})")
    s.set_defaults(func=_score)

    g = sub.add_parser("registry", help="download a current public registry (registration -> ICAO type)")
    g.add_argument("--out", default="data/external/registry.csv.gz")
    g.add_argument("--url", default=TAR1090_URL, help="tar1090-db's aircraft.csv.gz (semicolon CSV, gzip)")
    g.set_defaults(func=_registry)

    c = sub.add_parser("confidence", help="a new version with a confidence rule (novelty, views), fitted on the "
                                          "version's own training photos; the networks are unchanged")
    c.add_argument("--model-dir", default=DEFAULT_MODEL_DIR)
    c.add_argument("--novelty-quantile", type=_percent, default=None,
                   help="unsure at this percentile (0-100) of the validation photos' k-NN distances (default off)")
    c.add_argument("--novelty-k", type=int, default=10)
    c.add_argument("--views", action="store_true", help="unsure when the mirror image or a zoomed crop disagree")
    c.set_defaults(func=_confidence)

    i = sub.add_parser("info", help="print a version's manifest, labels and preprocessing")
    i.add_argument("--model-dir", default=DEFAULT_MODEL_DIR)
    i.set_defaults(func=_info)

    r = sub.add_parser("runs", help="compare the tracked training runs (MLflow store mlruns/, or MLFLOW_TRACKING_URI)")
    r.add_argument("--experiment", default="all", choices=("all", "headline", "train", "eval-sources"),
                   help="headline: the latest training run's figures; train: python -m model train runs; "
                        "eval-sources: make eval-sources runs")
    r.add_argument("--label", default=None, help="only runs whose name starts with this")
    r.add_argument("--update-readme", metavar="MARKDOWN", nargs="+", default=None,
                   help="instead of printing: regenerate the <!-- runs:EXPERIMENT --> blocks of these files "
                        "(runs:headline, runs:train, runs:eval-sources)")
    r.set_defaults(func=_runs)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.epochs_set = any(a == "--epochs" or a.startswith("--epochs=") for a in argv)
    try:
        return args.func(args)
    except (ModelLoadError, DatasetError, WeightsUnavailableError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
