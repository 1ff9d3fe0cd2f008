"""Every training run tracked in MLflow's local store, and the table that compares them.

``python -m model train`` (experiment ``train``, run name = the version) and ``make eval-sources``
(experiment ``eval-sources``, run name = the configuration's label) each open one MLflow run and
log:

- parameters: every :class:`~model.training.config.TrainConfig` field (lists and dicts as JSON),
  each dataset's fingerprint (``dataset.<folder>``: the first 16 hex digits of the sha256 of its
  ``metadata.csv``, which lists every image's sha256, and ``dataset.<folder>.rows``), and the git
  commit of the code (``git_commit``; ``git_dirty`` says whether tracked code differed from it);
- tags: the flags that differ from the defaults (``flags``) and the machine kind the run was
  measured on (``machine``: CPU cores, memory, GPUs; :func:`machine_kind`);
- metrics: the renders' test figures (``renders.*``), the real photos' (``real.*``, per source
  under ``real.per_source.<source>.*``), the out-of-scope figures, calibration, the train seconds
  (``train_seconds.*``, ``total_seconds``) and the per-epoch history (``history.*``, step = epoch);
  for leave-one-source-out, each held-out origin's figures (``<origin>.*``) and their ``mean.*``;
- artefacts: the figures the run wrote (``figures/``), the model card and ``metrics.json`` (train)
  or the sources report (eval-sources). ``python -m model evaluate`` (``make evaluate``) adds its
  report and confusion matrices to the version's run (``evaluate-<split>/``).

The store is ``mlruns/`` under the working directory (git-ignored): an SQLite database
``mlruns/mlflow.db`` (MLflow's recommended local backend) and the artefacts under
``mlruns/artifacts/<experiment>/``. ``MLFLOW_TRACKING_URI`` points elsewhere (the tests use a
temporary store). ``make runs`` prints :func:`runs_table`; ``make readme-runs`` regenerates the
generated blocks of README.md (:func:`headline_table`) and docs/*.md (:func:`runs_table`) with
:func:`update_readme`; ``make mlflow-ui`` browses the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pandas as pd

from dataset.schema import METADATA_FILE

from ..io import METRICS, MODEL_CARD, write_text

#: Local store folder (relative to the working directory) when ``MLFLOW_TRACKING_URI`` is unset.
STORE_DIR = Path("mlruns")
#: Experiment of ``python -m model train`` and of ``make eval-sources``.
TRAIN_EXPERIMENT = "train"
SOURCES_EXPERIMENT = "eval-sources"
#: Sections of a version's ``metrics.json`` logged as metrics, and their metric prefix.
METRIC_SECTIONS = {"test": "renders", "real": "real", "out_of_scope": "out_of_scope",
                   "calibration": "calibration", "aircraft_gate": "aircraft_gate",
                   "train_seconds": "train_seconds"}
#: Characters MLflow accepts in metric and parameter keys (others become ``_``).
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` when set, else the SQLite database of :data:`STORE_DIR`
    (``sqlite:////abs/path/mlruns/mlflow.db``; the folder is created)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    store = STORE_DIR.resolve()
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def _experiment_id(client, name: str) -> str:
    """The id of experiment ``name``, created when missing; with an SQLite store its artefacts go
    to ``artifacts/<name>/`` beside the database (MLflow's default would be ``./mlruns`` of
    whatever the working directory is)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    uri, location = client.tracking_uri, None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///"):]).parent / "artifacts" / name).as_uri()
    return client.create_experiment(name, artifact_location=location)


def dataset_fingerprints(data: str | list[str]) -> dict[str, str]:
    """Parameters that pin each dataset: ``{"dataset.<folder>": sha256[:16], "dataset.<folder>.rows": n}``.

    Args:
        data: dataset folder(s) or ``metadata.csv`` file(s), as ``--data`` takes them.
    Returns:
        Two entries per dataset; the fingerprint is the first 16 hex digits of the sha256 of the
        CSV's bytes (the CSV holds each image's sha256, so it changes when any image does). A
        dataset without a CSV is left out (reading it fails with its own error).
    """
    out: dict[str, str] = {}
    for d in [data] if isinstance(data, (str, os.PathLike)) else data:
        csv = Path(d) / METADATA_FILE if Path(d).is_dir() else Path(d)
        if not csv.is_file():
            continue
        raw = csv.read_bytes()
        name = _key(csv.parent.name)
        out[f"dataset.{name}"] = hashlib.sha256(raw).hexdigest()[:16]
        out[f"dataset.{name}.rows"] = str(max(raw.count(b"\n") - 1, 0))
    return out


def git_commit(cwd: str | os.PathLike | None = None) -> dict[str, str]:
    """``{"git_commit": <sha>, "git_dirty": "true"|"false"}`` of the checkout holding this code
    (dirty: a tracked file other than Markdown differs from the commit); ``"unknown"`` where there
    is no git or no repository (an installed wheel, an image)."""
    where = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", ":/", ":(exclude,top)*.md"], cwd=where,
                               capture_output=True, timeout=30).returncode != 0
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": sha, "git_dirty": str(dirty).lower()}


def machine_kind() -> str:
    """The kind of machine this process runs on, as figures name it: ``"2 CPU cores, 24 GiB"``, or
    with GPUs ``"16 CPU cores, 126 GiB, 1x NVIDIA H100 80GB HBM3"`` (CPU cores this process may use,
    physical memory rounded to GiB, or the cgroup's limit when lower; GPU names from
    ``nvidia-smi``). ``$PLANESPOTTER_MACHINE`` replaces it (a machine that knows its own name)."""
    if os.environ.get("PLANESPOTTER_MACHINE"):
        return os.environ["PLANESPOTTER_MACHINE"]
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 0
    parts = [f"{cpus} CPU core{'s' if cpus != 1 else ''}"]
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        memory = 0
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit() and 0 < int(limit) < (memory or int(limit) + 1):
            memory = int(limit)
    except OSError:
        pass
    if memory:
        parts.append(f"{round(memory / 2 ** 30)} GiB")
    try:
        names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=20, check=True).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        names = []
    counts: dict[str, int] = {}
    for n in (n.strip() for n in names):
        if n:
            counts[n] = counts.get(n, 0) + 1
    parts += [f"{k}x {name}" for name, k in counts.items()]
    return ", ".join(parts)


def config_params(cfg) -> dict[str, str]:
    """Every field of a ``TrainConfig`` dataclass as a parameter string (lists and dicts as
    sorted JSON, ``None`` as ``"None"``)."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = json.dumps(v, sort_keys=True, default=str) if isinstance(v, (list, tuple, dict)) else str(v)
    return out


def flatten_metrics(metrics: dict, prefix: str = "") -> dict[str, float]:
    """Every finite int/float leaf of nested dicts as ``{"<prefix>.<key>.<key>": value}``
    (booleans, strings, ``None`` and lists are left out; keys made MLflow-safe)."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        key = f"{prefix}.{_key(k)}" if prefix else _key(k)
        if isinstance(v, dict):
            out.update(flatten_metrics(v, key))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[key] = float(v)
    return out


def version_metrics(metrics: dict) -> dict[str, float]:
    """The metrics of a version's ``metrics.json`` that a training run logs (:data:`METRIC_SECTIONS`,
    a section that is one number, e.g. the R recipe's ``train_seconds``, under its prefix alone;
    ``total_seconds``)."""
    sections = {prefix: metrics[section] for section, prefix in METRIC_SECTIONS.items() if section in metrics}
    return flatten_metrics({**sections, "total_seconds": metrics.get("total_seconds")})


def _key(k) -> str:
    return _KEY_UNSAFE.sub("_", str(k)) or "_"


class Run:
    """One open MLflow run (:func:`start`): log metrics, the per-epoch history and artefacts."""

    def __init__(self, client, run_id: str, started: float):
        self.client, self.run_id, self.started = client, run_id, started

    def log_metrics(self, metrics: dict[str, float]) -> None:
        """Log ``{key: value}`` at step 0."""
        self._log([(k, v, 0) for k, v in metrics.items()])

    def log_history(self, history: dict, prefix: str = "history") -> None:
        """Per-epoch curves ``{name: [value per epoch]}`` (nested dicts per stage allowed) as
        metrics with step = epoch index (non-finite values left out)."""
        for k, v in history.items():
            if isinstance(v, dict):
                self.log_history(v, f"{prefix}.{_key(k)}")
            elif isinstance(v, (list, tuple)):
                self._log([(f"{prefix}.{_key(k)}", x, i) for i, x in enumerate(v)
                           if isinstance(x, (int, float)) and math.isfinite(x)])

    def _log(self, points: list[tuple[str, float, int]]) -> None:
        """``(key, value, step)`` points, in batches of 1,000 (MLflow's limit per call)."""
        from mlflow.entities import Metric  # deferred: mlflow start-up

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v, step in points]
        for s in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[s:s + 1000])

    def log_artifact(self, path: str | os.PathLike, folder: str | None = None) -> None:
        """Copy a file into the run's artefacts (under ``folder``); a missing file is skipped."""
        if Path(path).is_file():
            self.client.log_artifact(self.run_id, str(path), folder)

    def log_version(self, version_dir: str | os.PathLike, figures_dir: str | os.PathLike | None = None) -> dict:
        """What a training run logs of the version it exported: the metrics of its ``metrics.json``
        (:func:`version_metrics`) and their per-epoch history, the model card and ``metrics.json``
        as artefacts, and the figures written since the run started (``figures_dir``). Returns the
        version's metrics."""
        version_dir = Path(version_dir)
        metrics = json.loads((version_dir / METRICS).read_text())
        self.log_metrics(version_metrics(metrics))
        self.log_history(metrics.get("history") or {})
        self.log_artifact(version_dir / MODEL_CARD)
        self.log_artifact(version_dir / METRICS)
        if figures_dir is not None:
            self.log_new_figures(figures_dir)
        return metrics

    def log_new_figures(self, figures_dir: str | os.PathLike, folder: str = "figures") -> None:
        """Every PNG under ``figures_dir`` written since :attr:`started`, into ``folder``."""
        for p in sorted(Path(figures_dir).glob("*.png")):
            if p.stat().st_mtime >= self.started - 1:
                self.log_artifact(p, folder)


def find(experiment: str, run_name: str, since: float) -> Run | None:
    """The newest run of ``experiment`` named ``run_name`` (a version's training run), to add
    artefacts to after it ended (``python -m model evaluate``); :attr:`Run.started` = ``since``.
    ``None`` when there is none (a version trained before tracking, or elsewhere)."""
    from mlflow import MlflowClient  # deferred: mlflow start-up

    client = MlflowClient(tracking_uri=tracking_uri())
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs([found.experiment_id], filter_string=f"attributes.run_name = '{run_name}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return Run(client, runs[0].info.run_id, since) if runs else None


@contextlib.contextmanager
def start(experiment: str, run_name: str, cfg=None, extra_params: dict | None = None,
          flags: str | None = None) -> Iterator[Run]:
    """Open a run in ``experiment`` of :func:`tracking_uri`, log its parameters (``cfg``'s fields,
    the datasets' fingerprints, the git commit, ``extra_params``) and yield a :class:`Run`. The
    run ends FINISHED, or FAILED when the block raises (the exception goes on). Its ``flags`` tag
    (the table's column) is ``flags``, else :func:`config_flags` of ``cfg``; its ``machine`` tag is
    :func:`machine_kind`.

    Raises:
        mlflow.exceptions.MlflowException: the store cannot be opened.
    """
    from mlflow import MlflowClient  # deferred: mlflow start-up
    from mlflow.entities import Param, RunStatus  # deferred: mlflow start-up

    client = MlflowClient(tracking_uri=tracking_uri())
    params = {**(config_params(cfg) if cfg is not None else {}),
              **(dataset_fingerprints(cfg.data) if cfg is not None else {}),
              **git_commit(), **{k: str(v) for k, v in (extra_params or {}).items()}}
    started = time.time()
    tags = {"mlflow.source.name": "python -m model train", "machine": machine_kind()}
    if flags is not None or cfg is not None:
        tags["flags"] = flags if flags is not None else config_flags(cfg)
    mlrun = client.create_run(_experiment_id(client, experiment), run_name=run_name, tags=tags)
    run_id = mlrun.info.run_id
    try:
        items = [Param(_key(k), v) for k, v in params.items()]
        for s in range(0, len(items), 100):  # MLflow's limit of parameters per call
            client.log_batch(run_id, params=items[s:s + 100])
        yield Run(client, run_id, started)
    except BaseException:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))


# ------------------------------------------------------------------ the comparison tables

#: Columns of :func:`runs_table` per experiment: header → (kind, metric/parameter key(s)).
TRAIN_COLUMNS = {
    "real balanced": ("metric", "metrics.real.manufacturer_balanced_accuracy"),
    "Airbus / Boeing": ("pair", ("metrics.real.recall.Airbus", "metrics.real.recall.Boeing")),
    "family": ("metric", "metrics.real.family_accuracy"),
    "type top-1 / top-3": ("pair", ("metrics.real.type_top1", "metrics.real.type_top3")),
    "ECE": ("metric", "metrics.real.ece"),
    "sure accuracy / share / AURC": ("pair", ("metrics.real.manufacturer_selective.sure_accuracy",
                                              "metrics.real.manufacturer_selective.sure_coverage",
                                              "metrics.real.manufacturer_selective.aurc")),
    "renders balanced": ("metric", "metrics.renders.manufacturer_balanced_accuracy"),
    "train s": ("seconds", "metrics.total_seconds"),
}
SOURCES_COLUMNS = {
    "**mean balanced**": ("metric", "metrics.mean.manufacturer_balanced"),
    "mean family": ("metric", "metrics.mean.family"),
    "mean type": ("metric", "metrics.mean.type_top1"),
    "**mean sure accuracy** / share": ("pair", ("metrics.mean.sure_accuracy", "metrics.mean.sure_coverage")),
    "mean AURC / accuracy at 80 % / ECE": ("pair", ("metrics.mean.aurc", "metrics.mean.accuracy_at_80",
                                                    "metrics.mean.ece")),
    "s": ("seconds", "metrics.total_seconds"),
}
#: Rows of :func:`headline_table` after the version, date and recipe: label → (kind, key(s)); a row
#: whose figures were all not logged is left out. ``smoke.*`` are logged by whoever runs the smoke
#: photos against the version (``find(TRAIN_EXPERIMENT, version, …).log_metrics``).
HEADLINE_ROWS = {
    "real test photos: balanced manufacturer accuracy (Airbus / Boeing recall)":
        ("balanced", ("metrics.real.manufacturer_balanced_accuracy", "metrics.real.recall.Airbus",
                      "metrics.real.recall.Boeing")),
    "real test photos: family accuracy": ("metric", "metrics.real.family_accuracy"),
    "real test photos: ICAO type top-1 / top-3": ("pair", ("metrics.real.type_top1", "metrics.real.type_top3")),
    "real test photos: calibration error (ECE, manufacturer)": ("metric", "metrics.real.ece"),
    "real test photos: answers without \"unsure\": accuracy / share of photos":
        ("pair", ("metrics.real.manufacturer_selective.sure_accuracy",
                  "metrics.real.manufacturer_selective.sure_coverage")),
    "real test photos (count)": ("count", "metrics.real.n"),
    "renders' test split: balanced manufacturer / family / type top-1":
        ("pair", ("metrics.renders.manufacturer_balanced_accuracy", "metrics.renders.family_accuracy",
                  "metrics.renders.type_top1")),
    "other makers' test photos answered `Other`": ("metric", "metrics.out_of_scope.other_as_other"),
    "images without an aircraft answered \"not an aircraft\"": ("metric", "metrics.out_of_scope.negatives_as_none"),
    "Airbus/Boeing test photos answered `Other` or \"not an aircraft\"":
        ("metric", "metrics.out_of_scope.airbus_boeing_out"),
    "smoke photos right: manufacturer / family": ("fraction", ("metrics.smoke.manufacturer_right",
                                                               "metrics.smoke.family_right", "metrics.smoke.n")),
    "training seconds (all of `python -m model train`)": ("seconds", "metrics.total_seconds"),
}
#: Experiment name of the README's headline block (``<!-- runs:headline -->``): the latest finished
#: run of :data:`TRAIN_EXPERIMENT`.
HEADLINE = "headline"
#: What a missing figure, date or machine shows.
MISSING = "—"
#: ``TrainConfig`` fields that are not flags (shown in their own columns, or paths and bookkeeping).
_NOT_FLAGS = {"data", "models_dir", "reports_dir", "verbose", "version", "backbone", "image_size", "extra"}


def search(experiment: str):
    """Every run of ``experiment`` as a DataFrame (``mlflow.search_runs``: ``params.*``,
    ``metrics.*``, ``tags.*`` columns, ``start_time``), oldest first; empty when the experiment
    does not exist."""
    import mlflow  # deferred: mlflow start-up
    client = mlflow.MlflowClient(tracking_uri=tracking_uri())
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return pd.DataFrame()
    mlflow.set_tracking_uri(tracking_uri())
    df = mlflow.search_runs(experiment_ids=[found.experiment_id], order_by=["attributes.start_time ASC"])
    return df.reset_index(drop=True)


def finished_runs(experiment: str, label: str | None = None):
    """The FINISHED runs of ``experiment`` (:func:`search`), oldest first; ``label``: only those
    whose name starts with it."""
    df = search(experiment)
    if not df.empty:
        df = df[df["status"] == "FINISHED"]
        if label:
            df = df[df["tags.mlflow.runName"].str.startswith(label)]
    return df


def config_flags(cfg) -> str:
    """The fields of a ``TrainConfig`` that differ from its defaults, as ``python -m model train``
    flags (``--photo-views 2 --view-styles``; paths, the backbone and the size left out,
    ``--type-epochs`` only where it differs from ``--epochs``); ``"(defaults)"`` when none do."""
    params, defaults = config_params(cfg), config_params(type(cfg)())
    out = []
    for name, v in params.items():
        if name in _NOT_FLAGS or v == defaults[name] or (name == "type_epochs" and v == params["epochs"]):
            continue
        flag = "--" + name.replace("_", "-")
        out.append(flag if v == "True" else f"{flag} {v}")
    return " ".join(out) or "(defaults)"


def _ok(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v, kind: str = "metric") -> str:
    if not _ok(v):
        return "–"
    return f"{v:.0f}" if kind in ("seconds", "count") else f"{v:.3f}"


def _date(r: dict) -> str:
    """The run's start date (UTC, ``YYYY-MM-DD``), :data:`MISSING` when unknown."""
    t = r.get("start_time")
    try:
        return t.strftime("%Y-%m-%d")
    except (AttributeError, ValueError):
        return MISSING


def _machine(r: dict) -> str:
    """The run's ``machine`` tag; :data:`MISSING` for runs logged before it existed."""
    m = r.get("tags.machine")
    return m if isinstance(m, str) and m else MISSING


def _describe(r: dict) -> dict[str, str]:
    """The columns every table starts with: run, date, machine, commit (``+``: uncommitted
    changes), backbone and size, datasets, flags."""
    return {"run": r.get("tags.mlflow.runName", ""), "date": _date(r), "machine": _machine(r),
            "commit": str(r.get("params.git_commit") or "")[:8] + ("+" if r.get("params.git_dirty") == "true" else ""),
            "backbone, px": f"{r.get('params.backbone')} {r.get('params.image_size')}",
            "data": " ".join(sorted(c[len("params.dataset."):] for c, v in r.items()
                                    if c.startswith("params.dataset.") and not c.endswith(".rows")
                                    and isinstance(v, str))),
            "flags": r.get("tags.flags") if isinstance(r.get("tags.flags"), str) else ""}


def no_runs(experiment: str, label: str | None = None, where: bool = True) -> str:
    """The one line a table says when ``experiment`` has no finished run (``where``: name the store)."""
    what = f"experiment `{experiment}`" + (f" named `{label}…`" if label else "")
    store = f" of {tracking_uri()}" if where else " in the run store (`mlruns/`, or `MLFLOW_TRACKING_URI`)"
    return f"No finished runs in {what}{store}.\n"


def runs_table(experiment: str = TRAIN_EXPERIMENT, label: str | None = None, where: bool = True) -> str:
    """A Markdown table comparing the finished runs of ``experiment`` (``train`` or
    ``eval-sources``), oldest first: each run's name, date (UTC), machine kind (``machine`` tag,
    ``—`` for runs logged before it), commit (``+``: uncommitted changes), backbone, size,
    datasets, the flags that differ from the defaults (:func:`config_flags`, the run's ``flags``
    tag), and its figures (eval-sources: each held-out origin's balanced / family / type top-1 and
    the accuracy / share of its answers given without "unsure" / AURC, then their means). ``label``: only runs whose name starts with it. A one-line message when
    there is none (``where``: naming the store's URI)."""
    df = finished_runs(experiment, label)
    if df.empty:
        return no_runs(experiment, label, where)
    origins = sorted({c.split(".")[1] for c in df.columns
                      if c.startswith("metrics.") and c.endswith(".manufacturer_balanced")} - {"mean"})
    rows = []
    for _, r in df.iterrows():
        r = r.to_dict()
        row = _describe(r)
        for o in origins:
            row[f"{o}: balanced / family / type"] = " / ".join(_fmt(r.get(f"metrics.{o}.{m}")) for m in ("manufacturer_balanced", "family", "type_top1"))
            row[f"{o}: sure accuracy / share / AURC"] = " / ".join(
                _fmt(r.get(f"metrics.{o}.{m}")) for m in ("sure_accuracy", "sure_coverage", "aurc"))
        for header, (kind, key) in (SOURCES_COLUMNS if experiment == SOURCES_EXPERIMENT else TRAIN_COLUMNS).items():
            row[header] = " / ".join(_fmt(r.get(k)) for k in key) if kind == "pair" else _fmt(r.get(key), kind)
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False, tablefmt="github", disable_numparse=True) + "\n"


def headline_table(label: str | None = None, where: bool = True) -> str:
    """The default model version's figures as a two-column Markdown table: the latest finished run
    of :data:`TRAIN_EXPERIMENT` (``label``: the latest whose name starts with it), its version,
    the date and machine kind it was measured on, its recipe, then :data:`HEADLINE_ROWS` (rows not
    logged by that run left out). A one-line message when there is no such run."""
    df = finished_runs(TRAIN_EXPERIMENT, label)
    if df.empty:
        return no_runs(TRAIN_EXPERIMENT, label, where)
    r = df.iloc[-1].to_dict()
    d = _describe(r)
    commit = f" (commit `{d['commit']}`)" if d["commit"] else ""
    rows = [("version", f"`{d['run']}`{commit}"),
            ("measured on", f"{d['date']}, {d['machine']}"),
            ("recipe", f"{d['backbone, px']} px; data: {d['data'] or MISSING}; flags: `{d['flags'] or MISSING}`")]
    for name, (kind, keys) in HEADLINE_ROWS.items():
        keys = (keys,) if isinstance(keys, str) else keys
        v = [r.get(k) for k in keys]
        if not any(_ok(x) for x in v):
            continue
        if kind == "balanced":
            text = f"{_fmt(v[0])} ({_fmt(v[1])} / {_fmt(v[2])})"
        elif kind == "pair":
            text = " / ".join(_fmt(x) for x in v)
        elif kind == "fraction":
            text = " / ".join(f"{_fmt(x, 'count')}/{_fmt(v[-1], 'count')}" for x in v[:-1])
        else:
            text = _fmt(v[0], kind)
        rows.append((name, text))
    out = ["| figure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(out) + "\n"


#: A generated block of a Markdown file: ``<!-- runs:<experiment> [label=<prefix>] -->`` … ``<!-- /runs -->``.
_BLOCK = re.compile(r"(<!-- runs:(?P<experiment>[\w-]+)(?: label=(?P<label>[^>]*?))? -->\n)(?P<body>.*?)(<!-- /runs -->)",
                    re.S)


def update_readme(path: str | os.PathLike) -> list[str]:
    """Regenerate every ``<!-- runs:<experiment> [label=<prefix>] -->`` … ``<!-- /runs -->`` block of
    a Markdown file (``make readme-runs``: README.md and docs/*.md): ``runs:headline`` with
    :func:`headline_table`, any other experiment with :func:`runs_table` of it. An empty store
    gives each block a one-line message, no figures. The file is rewritten atomically (temporary
    file, then rename), and only when a block changed.

    Returns:
        The experiments of the blocks found (in order).
    Raises:
        OSError: the file cannot be read or written.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    found: list[str] = []

    def table(m: re.Match) -> str:
        found.append(m["experiment"])
        label = (m["label"] or "").strip() or None
        body = (headline_table(label, where=False) if m["experiment"] == HEADLINE
                else runs_table(m["experiment"], label=label, where=False))
        return m.group(1) + body + m.group(5)

    new = _BLOCK.sub(table, text)
    if new != text:
        write_text(path, new)
    return found
