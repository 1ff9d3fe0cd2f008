"""The test-split report of a version: ``reports/metrics.json`` and the confusion matrices under
``reports/figures/``, as ``python -m model evaluate`` writes them and as ``python -m model train``
writes them from its own evaluation (so ``make run`` evaluates the test split once: the Makefile's
``evaluate`` step is skipped while ``reports/metrics.json`` is newer than the model)."""

from __future__ import annotations

import time
from pathlib import Path

from .. import io as mio


def test_report(sections: dict, out_of_scope: dict | None, split: str, data, calibration: dict) -> dict:
    """The report's JSON: the renders' figures at the top level, the photos' under ``"real"``
    (:func:`model.evaluate.evaluate_domains`'s ``"test"`` / ``"real"``), ``out_of_scope`` (when
    the version has a localizer), ``split``, ``data`` (the dataset paths) and each stage's
    ``calibration`` (temperature, validation ECE before/after)."""
    report = {**sections.get("test", {}), **({"real": sections["real"]} if "real" in sections else {})}
    if out_of_scope is not None:
        report["out_of_scope"] = out_of_scope
    report["split"] = split
    report["data"] = [str(d) for d in ([data] if isinstance(data, (str, Path)) else data)]
    report["calibration"] = {k: {kk: v[kk] for kk in ("temperature", "val_ece_before", "val_ece_after")}
                             for k, v in calibration.items()}
    return report


def write_test_report(reports_dir: str | Path, report: dict, run=None, since: float | None = None) -> Path:
    """Write ``<reports_dir>/metrics.json``; with a tracked ``run`` (:class:`model.training.tracking.Run`),
    also log it and the figures written since ``since`` (epoch seconds) as the run's
    ``evaluate-<split>`` artefacts. Returns the JSON's path."""
    reports = Path(reports_dir)
    reports.mkdir(parents=True, exist_ok=True)
    path = reports / "metrics.json"
    mio.write_json(path, report)
    if run is not None:
        folder = f"evaluate-{report['split']}"
        run.log_artifact(path, folder)
        since = time.time() if since is None else since
        for p in sorted((reports / "figures").glob("*.png")):
            if p.stat().st_mtime >= since - 1:
                run.log_artifact(p, f"{folder}/figures")
    return path
