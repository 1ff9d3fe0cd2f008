"""The model card (``model_card.md``) of a version, one function per section."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .config import TrainConfig


def fmt(v) -> str:
    """A figure as the card shows it: ``–`` for ``None``, floats to 4 decimals, else ``str``."""
    return "–" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def model_section(cfg: TrainConfig, labels: dict, version: str) -> str:
    """The title and "Model": stages, classes, backbone, input, calibration, crop, TTA, routing."""
    leaves = "; ".join(f"{m}: {', '.join(t)}" for m, t in labels["types"].items())
    crop = ("Each image is first localised (class activation map of the ImageNet head) and the classifier "
            f"sees a box around the aircraft (rule: {json.dumps(cfg.crop_rule or {})} over the defaults of "
            "`model.preprocessing.CropRule`)." if cfg.crop else "The classifier sees the whole image.")
    tta = " Probabilities are averaged over the image and its mirror (TTA)." if labels.get("tta") == "flip" else ""
    return f"""# planespotter model {version}

## Model
Two-stage cascade. Stage 1: manufacturer ({", ".join(labels["manufacturer"])}); stage 2 per
manufacturer, over ICAO type designators and whole-family classes ({leaves}). The answer names
a type only when it is a trained class with P(type | manufacturer) >= {labels.get("type_threshold", 0.5)};
otherwise it stops at the family ("B777 family").
Backbone: `{cfg.backbone}`{" (upper part fine-tuned)" if cfg.fine_tune else ""}; input
{cfg.image_size}x{cfg.image_size} RGB, Pillow `{cfg.resize}` resize, scaled to [0, 1].
Probabilities calibrated by temperature scaling on the validation split (photos where there are any).
{crop}{tta}
Routing threshold {cfg.threshold}: below it the answer is "unsure" and both branches are reported.
"""


def data_section(df: pd.DataFrame) -> str:
    """"Training data": datasets, counts per domain/split/manufacturer and per source, licences."""
    counts = df.groupby(["domain", "split", "manufacturer"]).size().unstack(fill_value=0)
    by_source = df.groupby(["source", "split"]).size().unstack(fill_value=0)
    licences = "\n".join(f"- `{src}`: {lic or 'unknown'}" for src, lic in
                         df.groupby("source")["licence"].agg(lambda v: "; ".join(sorted(set(v))[:2])).items())
    datasets = ", ".join(f"`{d}`" for d in sorted(set(df["dataset"])))
    return f"""## Training data
Datasets: {datasets}. Renders are split by livery/airline, photos by airframe (registration) or
near-duplicate group, so neither is in two splits.

```
{counts.to_string()}
```

Per source:

```
{by_source.to_string()}
```

Licence terms of the images it was trained on:
{licences}

Real photos (sources other than `flightgear*`) may only be used for internal training and
evaluation: they are not redistributed with this model, and the model's figures on them are
internal measurements. FlightGear renders derive from GPL-2.0-or-later models and liveries.
"""


def metrics_table(section: dict | None, title: str) -> str:
    """One test-split section's figures (:func:`model.evaluate.evaluate`) as a Markdown table."""
    if not section:
        return f"{title}: none in the test split.\n"
    rows = [("n", section.get("n")), ("manufacturer accuracy", section.get("manufacturer_accuracy")),
            ("manufacturer balanced accuracy", section.get("manufacturer_balanced_accuracy")),
            *[(f"recall {m}", r) for m, r in (section.get("recall") or {}).items()],
            ("family accuracy", section.get("family_accuracy")),
            ("ICAO type top-1 / top-3 (trained types)",
             f"{fmt(section.get('type_top1'))} / {fmt(section.get('type_top3'))}"),
            ("stage-1 ECE", section.get("ece"))]
    return f"{title}\n\n| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {fmt(v)} |" for k, v in rows) + "\n"


def metrics_section(metrics: dict) -> str:
    """"Metrics (held-out test split)": photos, renders, calibration ECE before/after."""
    ece = {k: [round(v["val_ece_before"], 4), round(v["val_ece_after"], 4)]
           for k, v in metrics.get("calibration", {}).items()}
    return f"""## Metrics (held-out test split)
{metrics_table(metrics.get("real"), "Real photos")}
{metrics_table(metrics.get("test"), "Renders")}
Calibration (validation ECE before → after): {json.dumps(ece)}
"""


def scope_section(labels: dict, metrics: dict) -> str:
    """"Out of scope" (``Other`` and "not an aircraft"), or ``""`` without those figures."""
    oos = metrics.get("out_of_scope") or {}
    if not oos:
        return ""
    return f"""
## Out of scope: other makers and images without an aircraft
Stage 1 has a class `Other` (other makers' aircraft; answered "another manufacturer", no family
or type) when the training data holds such photos. The localizer (EfficientNet-Lite0's ImageNet head
on the whole image) answers "not an aircraft" below an aircraft probability of
{fmt(labels.get("aircraft_threshold"))} (chosen on validation photos and generated negatives).

| metric | value |
|---|---|
| `Other` test photos answered `Other` (n {oos.get("n_other")}) | {fmt(oos.get("other_as_other"))} |
| negatives answered "not an aircraft" (n {oos.get("n_negatives")}) | {fmt(oos.get("negatives_as_none"))} |
| Airbus/Boeing test photos sent to `Other` or "not an aircraft" (n {oos.get("n_airbus_boeing")}) | {fmt(oos.get("airbus_boeing_out"))} |
| stage-1 ECE over {", ".join(oos.get("stage1_classes") or [])} | {fmt(oos.get("ece_stage1"))} |
"""


def loso_section(cfg: TrainConfig) -> str:
    """The model card's leave-one-source-out section: ``<reports_dir>/sources.md`` (written by
    ``make eval-sources``, :func:`model.training.sources.markdown_table`) when it exists, else a pointer to
    the command. Those figures come from folds trained with each photo origin held out, not from
    this version itself."""
    md = Path(cfg.reports_dir) / "sources.md"
    head = ("## Photos from sources it never saw (leave-one-source-out)\n"
            "Each row trains the recipe once per photo origin with that origin held out, and scores "
            "the held-out photos (`make eval-sources`; the folds are not this version).\n\n")
    if md.is_file():
        return head + md.read_text().strip() + "\n"
    return head + "No `make eval-sources` report next to this training (README has the last measured table).\n"


LIMITS_SECTION = """## Intended use and limits
Classifying photos of Airbus and Boeing airliners by manufacturer, family and ICAO type. The real
photos it learnt from are few for Airbus and skewed to the 737 and 747 (see the counts above), so
expect lower accuracy on photos unlike them; figures on photos from other sources are lower than
on this test split: the leave-one-source-out figures (`make eval-sources`, README) are the ones
that predict a new photo collection. Types outside the label list are answered at family level at
best. Not for safety-relevant identification.

Known to go wrong (README, "What the model gets wrong"):
- four-engined wide-bodies mixed up (A340/A380 said 747, and back), above all on photos from
  collections it never saw;
- photos in styles its training photos lack: night and dusk, head-on and tail-on views, an
  aircraft seen from below, small aircraft in wide scenes;
- Airbus recall on photos from a new collection is lower than Boeing recall (few Airbus photos,
  from few sources);
- other makers' aircraft unlike the `Other` photos it learnt from (FGVC-Aircraft style only) may
  still get an Airbus or Boeing answer.
"""


def model_card(cfg: TrainConfig, df: pd.DataFrame, labels: dict, metrics: dict, version: str) -> str:
    """The Markdown model card of a version: model, training data (every source with its licence
    terms and counts per split), metrics on rendered and on real test images, out of scope,
    leave-one-source-out figures, limits."""
    return "\n".join([model_section(cfg, labels, version), data_section(df), metrics_section(metrics),
                      scope_section(labels, metrics), loso_section(cfg) + "\n" + LIMITS_SECTION])
