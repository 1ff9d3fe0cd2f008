"""Every training run tracked (model.training.tracking): parameters, dataset fingerprints, the git
commit, the machine kind, metrics and artefacts in a real MLflow store (the session's temporary one,
tests/conftest.py), the comparison tables of `make runs`, the headline of the latest training run, and
the README/docs blocks made from them (`make readme-runs`)."""

from __future__ import annotations

import dataclasses
import hashlib
import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

from model.training import tracking
from model.training.config import TrainConfig
from dataset.metadata import write_rows_atomic
from dataset.schema import empty_row

ROOT = Path(__file__).resolve().parents[2]
TYPES = {"Airbus": ("A320", "A388"), "Boeing": ("B738", "B744")}


def _photos(root: Path, origins=("alpha-web", "beta-web"), per_type: int = 12, only: str | None = None) -> Path:
    """Photo rows (domain "photo") of two origins with the splits set: per origin and type 8 train,
    2 validation, 2 test; Airbus images reddish, Boeing bluish, every file different."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for origin in origins:
        for maker, types in TYPES.items():
            if only and maker != only:
                continue
            for t in types:
                for i in range(per_type):
                    img = rng.integers(0, 60, (24, 24, 3), dtype=np.uint8)
                    img[..., 0 if maker == "Airbus" else 2] += 150
                    name = f"images/{origin}-{t}-{i}.png"
                    Image.fromarray(img).save(root / name)
                    row = empty_row()
                    row.update(image_path=name, sha256=hashlib.sha256((root / name).read_bytes()).hexdigest(),
                               manufacturer=maker, icao_type=t, source=origin, registration=f"{origin}-{t}-{i}",
                               split="train" if i < per_type - 4 else "validation" if i < per_type - 2 else "test")
                    rows.append(row)
    write_rows_atomic(root / "metadata.csv", rows)
    return root


def _model(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "model", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


def _runs(experiment: str):
    df = tracking.search(experiment)
    return df.set_index("tags.mlflow.runName") if not df.empty else df


# ------------------------------------------------------------------ parameters and metrics


def test_every_config_field_is_a_parameter_and_the_fingerprint_pins_the_csv(tmp_path):
    cfg = TrainConfig(crop_rule={"threshold": 0.4}, data=["a", "b"])
    params = tracking.config_params(cfg)
    assert set(params) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert params["crop_rule"] == '{"threshold": 0.4}' and params["data"] == '["a", "b"]'
    assert params["cut"] == "None" and params["fine_tune"] == "False"
    assert tracking.config_flags(TrainConfig(epochs=5, type_epochs=5, photo_views=2, view_styles=True,
                                             image_size=288, backbone="lite0")) == \
        "--epochs 5 --photo-views 2 --view-styles"
    assert tracking.config_flags(TrainConfig(data="elsewhere")) == "(defaults)"

    data = _photos(tmp_path / "photos", per_type=4)
    before = tracking.dataset_fingerprints([str(data), str(tmp_path / "missing")])
    assert set(before) == {"dataset.photos", "dataset.photos.rows"} and before["dataset.photos.rows"] == "32"
    assert tracking.dataset_fingerprints(str(data / "metadata.csv")) == before  # folder or CSV alike
    csv = data / "metadata.csv"
    csv.write_text(csv.read_text().replace("A388", "A380", 1))
    assert tracking.dataset_fingerprints(str(data))["dataset.photos"] != before["dataset.photos"]


def test_only_finite_numbers_become_metrics_under_safe_keys():
    flat = tracking.flatten_metrics({"real": {"n": 3, "ok": True, "name": "x", "ece": None, "nan": float("nan"),
                                              "confusion": [[1, 2]], "per_source": {"(none)": {"acc": 0.5}}}})
    assert flat == {"real.n": 3.0, "real.per_source._none_.acc": 0.5}
    m = tracking.version_metrics({"test": {"manufacturer_accuracy": 0.7}, "real": {"family_accuracy": 0.6},
                                  "train_seconds": {"fit": 12.5}, "total_seconds": 30, "history": {"loss": [1.0]},
                                  "config": {"epochs": 5}})
    assert m == {"renders.manufacturer_accuracy": 0.7, "real.family_accuracy": 0.6, "train_seconds.fit": 12.5,
                 "total_seconds": 30.0}


def test_a_failed_run_is_marked_failed_and_left_out_of_the_table(tmp_path):
    cfg = TrainConfig(data=str(_photos(tmp_path / "photos", per_type=4)), backbone="compact")
    with pytest.raises(RuntimeError, match="boom"):
        with tracking.start("unit-failed", "will-fail", cfg):
            raise RuntimeError("boom")
    with tracking.start("unit-failed", "fine", cfg) as run:
        run.log_metrics({"real.manufacturer_balanced_accuracy": 0.75})
        run.log_history({"manufacturer": {"loss": [2.0, 1.5, 1.2]}})
    df = _runs("unit-failed")
    assert df.loc["will-fail", "status"] == "FAILED" and df.loc["fine", "status"] == "FINISHED"
    assert df.loc["fine", "params.git_commit"] == subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT,
                                                                 capture_output=True, text=True).stdout.strip()
    assert df.loc["fine", "params.dataset.photos"] == tracking.dataset_fingerprints(cfg.data)["dataset.photos"]
    steps = MlflowClient(tracking.tracking_uri()).get_metric_history(df.loc["fine", "run_id"],
                                                                     "history.manufacturer.loss")
    assert [(m.step, m.value) for m in steps] == [(0, 2.0), (1, 1.5), (2, 1.2)]
    assert df.loc["fine", "tags.machine"] == tracking.machine_kind()
    table = tracking.runs_table("unit-failed")
    assert "| fine " in table and "will-fail" not in table and "0.750" in table
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    header = table.splitlines()[0]
    assert [c.strip() for c in header.strip("|").split("|")][:3] == ["run", "date", "machine"]
    assert f"| {today} " in table and f"| {tracking.machine_kind()} " in table
    assert "No finished runs" in tracking.runs_table("no-such-experiment")


def test_the_machine_kind_names_cores_memory_and_gpus(monkeypatch):
    kind = tracking.machine_kind()
    assert re.fullmatch(r"\d+ CPU cores?, \d+ GiB(, \d+x .+)*", kind), kind
    assert kind.startswith(f"{len(os.sched_getaffinity(0))} CPU core")
    monkeypatch.setenv("PLANESPOTTER_MACHINE", "CI runner, 2 CPU cores, 24 GiB")
    assert tracking.machine_kind() == "CI runner, 2 CPU cores, 24 GiB"


def test_the_headline_is_the_latest_training_run_and_old_runs_show_no_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    readme = tmp_path / "README.md"
    readme.write_text("# T\n\n<!-- runs:headline -->\n| figure | value |\n| typed | 0.999 |\n<!-- /runs -->\nend\n")
    assert tracking.update_readme(readme) == ["headline"]
    text = readme.read_text()  # an empty store: the block says so, no figures
    assert "0.999" not in text and "No finished runs in experiment `train`" in text and "sqlite" not in text
    assert "No finished runs" in tracking.headline_table()

    cfg = TrainConfig(data=str(_photos(tmp_path / "photos", per_type=4)), backbone="lite0", image_size=288,
                      epochs=5, type_epochs=5, photo_views=2, view_styles=True)
    monkeypatch.setenv("PLANESPOTTER_MACHINE", "old kind")
    with tracking.start(tracking.TRAIN_EXPERIMENT, "20260101T000000Z", cfg) as old:
        old.log_metrics({"real.manufacturer_balanced_accuracy": 0.5})
    MlflowClient(tracking.tracking_uri()).delete_tag(old.run_id, "machine")  # logged before the tag existed
    monkeypatch.setenv("PLANESPOTTER_MACHINE", "2 CPU cores, 24 GiB")
    with tracking.start(tracking.TRAIN_EXPERIMENT, "20260102T000000Z", cfg) as new:
        new.log_metrics({"real.manufacturer_balanced_accuracy": 0.892, "real.recall.Airbus": 0.871,
                         "real.recall.Boeing": 0.912, "real.family_accuracy": 0.839, "real.type_top1": 0.578,
                         "real.type_top3": 0.834, "real.n": 700, "total_seconds": 1971.4})
    tracking.find(tracking.TRAIN_EXPERIMENT, "20260102T000000Z", 0).log_metrics(
        {"smoke.manufacturer_right": 9, "smoke.family_right": 8, "smoke.n": 12})

    head = tracking.headline_table()
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    assert "`20260102T000000Z`" in head and "20260101T000000Z" not in head
    assert f"| measured on | {today}, 2 CPU cores, 24 GiB |" in head
    assert "| recipe | lite0 288 px; data: photos; flags: `--epochs 5 --photo-views 2 --view-styles` |" in head
    assert "balanced manufacturer accuracy (Airbus / Boeing recall) | 0.892 (0.871 / 0.912) |" in head
    assert "| real test photos: ICAO type top-1 / top-3 | 0.578 / 0.834 |" in head
    assert "| real test photos (count) | 700 |" in head and "| 1971 |" in head
    assert "| smoke photos right: manufacturer / family | 9/12 / 8/12 |" in head
    assert "renders' test split" not in head and "`Other`" not in head  # figures not logged: no row
    assert "`20260101T000000Z`" in tracking.headline_table(label="20260101")

    table = tracking.runs_table(tracking.TRAIN_EXPERIMENT)
    old_row = next(line for line in table.splitlines() if "20260101T000000Z" in line)
    assert [c.strip() for c in old_row.strip("|").split("|")][2] == tracking.MISSING
    assert "| 2 CPU cores, 24 GiB " in table

    tracking.update_readme(readme)
    text = readme.read_text()
    assert "No finished runs" not in text and "0.892 (0.871 / 0.912)" in text and text.endswith("<!-- /runs -->\nend\n")


# ------------------------------------------------------------------ real runs through the CLI


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return _photos(tmp_path_factory.mktemp("tracked") / "webphotos")


def test_train_and_eval_sources_are_tracked_and_compared(photos, tmp_path, tracking_store):
    common = ["--data", str(photos), "--backbone", "compact", "--image-size", "32", "--epochs", "1",
              "--models-dir", str(tmp_path / "models"), "--reports-dir", str(tmp_path / "reports"), "--verbose", "0"]
    r = _model("train", *common, "--width", "8", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    version = Path(r.stdout.strip().splitlines()[-1]).name
    r = _model("train", *common, "--leave-one-source-out", "--label", "tiny-loso",
               "--sources-out", str(tmp_path / "reports" / "sources.json"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not (tmp_path / "mlruns").exists()  # the tests' store, not the working directory's
    # every held-out photo's answer, for levers that need no retraining
    import csv as _csv
    preds = list(_csv.DictReader((tmp_path / "reports" / "sources_predictions" / "tiny-loso.csv").open()))
    loso = json.loads((tmp_path / "reports" / "sources.json").read_text())["runs"][-1]
    assert {r["origin"] for r in preds} == set(loso["folds"])
    assert len(preds) == sum(f["n"] for f in loso["folds"].values())
    for r in preds:
        p = [float(v) for k, v in r.items() if k.startswith("p_")]
        assert abs(sum(p) - 1) < 1e-3 and r["unsure"] in ("True", "False")
        assert float(r["top1_joint"]) >= float(r["top2_joint"]) >= 0

    # train: parameters, metrics equal to the version's metrics.json, artefacts
    run = _runs("train").loc[version]
    assert run["status"] == "FINISHED"
    assert {f"params.{f.name}" for f in dataclasses.fields(TrainConfig)} <= set(run.index)
    assert run["params.width"] == "8" and run["params.backbone"] == "compact"
    assert run["params.dataset.webphotos"] == tracking.dataset_fingerprints(str(photos))["dataset.webphotos"]
    assert len(run["params.git_commit"]) == 40
    metrics = json.loads((tmp_path / "models" / version / "metrics.json").read_text())
    assert run["metrics.real.manufacturer_balanced_accuracy"] == pytest.approx(
        metrics["real"]["manufacturer_balanced_accuracy"])
    assert run["metrics.real.per_source.alpha-web.n"] == metrics["real"]["per_source"]["alpha-web"]["n"]
    assert run["metrics.total_seconds"] == pytest.approx(metrics["total_seconds"])
    artifacts = Path(run["artifact_uri"].removeprefix("file://"))
    assert str(artifacts).startswith(str(tracking_store))
    assert (artifacts / "model_card.md").read_text() == (tmp_path / "models" / version / "model_card.md").read_text()
    assert (artifacts / "figures" / "training_manufacturer.png").is_file()
    # train wrote the test split's report itself (make run skips its evaluate step), into its run too
    own = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert own["split"] == "test" and own["real"]["n"] == metrics["real"]["n"]
    assert json.loads((artifacts / "evaluate-test" / "metrics.json").read_text()) == own
    assert (artifacts / "evaluate-test" / "figures" / "real_confusion_manufacturer.png").is_file()
    r = _model("evaluate", "--model-dir", str(tmp_path / "models" / version), "--data", str(photos),
               "--reports-dir", str(tmp_path / "evaluated"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((artifacts / "evaluate-test" / "metrics.json").read_text()) == \
        json.loads((tmp_path / "evaluated" / "metrics.json").read_text())
    assert (artifacts / "evaluate-test" / "figures" / "real_confusion_manufacturer.png").is_file()
    assert json.loads((tmp_path / "evaluated" / "metrics.json").read_text()) == own  # the same figures

    # eval-sources: each held-out origin's figures and their mean, the report as artefacts
    report = json.loads((tmp_path / "reports" / "sources.json").read_text())["runs"][0]
    loso = _runs("eval-sources").loc["tiny-loso"]
    for origin in ("alpha", "beta"):
        assert loso[f"metrics.{origin}.manufacturer_balanced"] == pytest.approx(
            report["folds"][origin]["manufacturer_balanced"])
    assert loso["metrics.mean.family"] == pytest.approx(report["mean"]["family"])
    assert (Path(loso["artifact_uri"].removeprefix("file://")) / "sources.md").is_file()

    # make runs: one table per experiment
    r = _model("runs", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert version in r.stdout and "tiny-loso" in r.stdout
    assert "alpha: balanced / family / type" in r.stdout and "--width 8" in r.stdout

    assert "## headline" in r.stdout and f"`{version}`" in r.stdout

    # make readme-runs: the README's headline and the docs' blocks are regenerated, the rest of
    # each file stays as it was
    readme, results = tmp_path / "README.md", tmp_path / "docs" / "results.md"
    readme.write_text("# Title\n\n<!-- runs:headline -->\n| typed | 0.886 |\n<!-- /runs -->\n\nmore\n")
    results.parent.mkdir()
    results.write_text("# Results\n\n<!-- runs:train -->\nold table\n<!-- /runs -->\n\ntext\n\n"
                       "<!-- runs:eval-sources label=tiny -->\n<!-- /runs -->\nend\n")
    r = _model("runs", "--update-readme", str(readme), str(results), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "README.md: headline regenerated" in r.stdout and "results.md: train, eval-sources regenerated" in r.stdout
    text = readme.read_text()
    assert "0.886" not in text and text.startswith("# Title\n\n<!-- runs:headline -->\n| figure | value |\n")
    assert f"| version | `{version}`" in text and f"| measured on | {run['start_time']:%Y-%m-%d}, " in text
    assert text.endswith("<!-- /runs -->\n\nmore\n")
    text = results.read_text()
    assert "old table" not in text and text.startswith("# Results\n\n<!-- runs:train -->\n| run ")
    assert f"| {version} " in text and "| tiny-loso " in text and text.endswith("<!-- /runs -->\nend\n")
    assert "\ntext\n" in text and f"| {tracking.machine_kind()} " in text
