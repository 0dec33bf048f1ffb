"""What `predictflow report` shows: gathered (MLflow, git, files) and built into plain data
(default selection, best metric values, per-stage out hashes, warnings)."""

from __future__ import annotations

import base64
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from predictflow.lineage import evidence, provenance, registry
from predictflow.lineage.names import MODEL_NAME, MONITORING_EXPERIMENT
from predictflow.lineage.tracking import METRIC_KEYS

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion


DEFAULT_OUTPUT = Path("reports/lineage.html")
# In every page we write (the template shows it); `report` replaces only a file holding it.
GENERATOR = "by <code>predictflow report</code>"
PLOT_DIR = "evaluation"
# Figure `evaluate` renders and `register` attaches to the run under `evaluation/` -> caption.
PLOTS = {
    "roc.png": "ROC curve",
    "precision_recall.png": "Precision-recall curve",
    "confusion_matrix.png": "Confusion matrix",
    "feature_importance.png": "Feature importance",
}
LOWER_IS_BETTER = frozenset({"log_loss"})
PREFERRED_ALIASES = ("production", "staging")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DRIFT_RUNS_PER_VERSION = 3  # a daily cron would otherwise fill the page
# Results per request: MLflow's default page for runs, well under its limit for versions (200,000).
SEARCH_PAGE = 1000


# --- 1. gather (MLflow, git, files) -------------------------------------------------------------


def all_versions(client: MlflowClient) -> list[ModelVersion]:
    """Every registered version of the model, newest first (MLflow's own helper follows the
    result pages)."""
    from mlflow.utils import get_results_from_paginated_fn

    versions = get_results_from_paginated_fn(
        lambda size, token: client.search_model_versions(
            f"name = '{MODEL_NAME}'", max_results=size, page_token=token
        ),
        max_results_per_page=SEARCH_PAGE,
    )
    if not versions:
        raise registry.RegistryError(
            f"no registered version of {MODEL_NAME!r} yet; run `make repro`"
        )
    return sorted(versions, key=lambda v: int(v.version), reverse=True)


def drift_runs(client: MlflowClient) -> list[Run]:
    """Every `predictflow drift` run of the model in the monitoring experiment, newest first."""
    from mlflow.utils import get_results_from_paginated_fn

    experiment = client.get_experiment_by_name(MONITORING_EXPERIMENT)
    if experiment is None:  # no drift check yet
        return []
    return get_results_from_paginated_fn(
        lambda size, token: client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.model_name = '{MODEL_NAME}'",
            order_by=["attributes.start_time DESC"],
            max_results=size,
            page_token=token,
        ),
        max_results_per_page=SEARCH_PAGE,
    )


def evaluation_plots(client: MlflowClient, run_id: str) -> dict[str, str | None]:
    """Each evaluation figure of a run as a `data:image/png;base64,...` URI (None if not logged)."""
    from mlflow.exceptions import MlflowException

    plots: dict[str, str | None] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in PLOTS:
            try:
                data = Path(
                    client.download_artifacts(run_id, f"{PLOT_DIR}/{name}", tmp)
                ).read_bytes()
            except (MlflowException, OSError):
                plots[name] = None
                continue
            plots[name] = data_uri(data) if data.startswith(PNG_MAGIC) else None
    return plots


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def read_pipeline(workspace: Path) -> Pipeline:
    """The stage graph `dvc dag` draws, from the workspace's `dvc.yaml` and `.dvc` files."""
    spec = evidence.read_pipeline(workspace)
    if not spec:
        return Pipeline(nodes=(), edges=())
    deps = {dep for stage in stage_specs(spec).values() for dep in stage[0]}
    tracked = {dep for dep in deps if (workspace / f"{dep}.dvc").is_file()}
    return pipeline_graph(spec, tracked)


# --- 2. build (pure) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pipeline:
    """Nodes in topological order (`.dvc` data sources and stages) and the edges between them."""

    nodes: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    sources: dict[str, str] = field(default_factory=dict)  # "<path>.dvc" node -> data path


def _paths(entries: list[Any] | None) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else str(e) for e in entries or []]


def stage_specs(spec: dict[str, Any]) -> dict[str, tuple[list[str], list[str]]]:
    """stage -> (deps, outs incl. metrics and plots) as declared in `dvc.yaml`."""
    stages = {}
    for name, stage in (spec.get("stages") or {}).items():
        outs = [p for kind in ("outs", "metrics", "plots") for p in _paths(stage.get(kind))]
        stages[name] = (_paths(stage.get("deps")), outs)
    return stages


def pipeline_graph(spec: dict[str, Any], tracked: set[str]) -> Pipeline:
    """Edges from a stage's outs (or a DVC-tracked file) to the stages that read them; nodes in
    topological order, ties broken by the order of `dvc.yaml` (data sources first)."""
    stages = stage_specs(spec)
    producer = {out: name for name, (_, outs) in stages.items() for out in outs}
    sources = {f"{dep}.dvc": dep for dep in sorted(tracked)}
    edges: list[tuple[str, str]] = []
    for name, (deps, _) in stages.items():
        for dep in deps:
            origin = producer.get(dep) or (f"{dep}.dvc" if dep in tracked else None)
            if origin and origin != name and (origin, name) not in edges:
                edges.append((origin, name))
    declared = [*sources, *stages]
    return Pipeline(nodes=topological(declared, edges), edges=tuple(edges), sources=sources)


def topological(declared: list[str], edges: list[tuple[str, str]]) -> tuple[str, ...]:
    """`declared` in an order where every edge points forward: of the nodes ready at each step
    the first declared goes next (so a chain reads in `dvc.yaml` order)."""
    sorter = TopologicalSorter({name: set() for name in declared})
    for origin, target in edges:
        sorter.add(target, origin)
    try:
        sorter.prepare()
    except CycleError:  # dvc refuses cycles; keep the declared order if one slips through
        return tuple(declared)
    rank = {name: i for i, name in enumerate(declared)}
    ready: list[str] = []
    order: list[str] = []
    while sorter.is_active():
        ready.extend(sorter.get_ready())
        node = min(ready, key=rank.__getitem__)
        ready.remove(node)
        sorter.done(node)
        order.append(node)
    return tuple(order)


def default_version(views: list[dict[str, Any]]) -> int:
    """The version holding `production`, else `staging`, else the newest."""
    for alias in PREFERRED_ALIASES:
        for view in views:
            if alias in view["aliases"]:
                return view["version"]
    return max(view["version"] for view in views)


def best_values(views: list[dict[str, Any]]) -> dict[str, float]:
    """Best value of each held-out metric (lowest log loss, highest others), for the metrics
    whose values differ between versions: a tie of all versions has no best."""
    best = {}
    for key in METRIC_KEYS:
        values = [v["metrics"][key] for v in views if key in v["metrics"]]
        if len(set(values)) > 1:
            best[key] = min(values) if key in LOWER_IS_BETTER else max(values)
    return best


@dataclass(frozen=True)
class StageOuts:
    """One node of the graph for the selected version: its out hashes, or why there are none."""

    name: str
    outs: dict[str, str]
    note: str = ""  # set when `outs` is empty or must be read with care


def stage_outs(view: dict[str, Any], pipeline: Pipeline) -> list[StageOuts]:
    """Per node, the hashes the `dvc.lock` logged at registration recorded for this version.

    That lock is logged by the register stage before it finishes, so its `register` entry is
    absent or left from an earlier run: an entry whose deps disagree with its upstream stages'
    outs in the same lock is reported as such instead of being shown as this version's.
    """
    recorded: dict[str, dict[str, Any]] = view["stages"]
    produced = {path: md5 for stage in recorded.values() for path, md5 in stage["outs"].items()}
    rows = []
    for name in [*pipeline.nodes, *(s for s in recorded if s not in pipeline.nodes)]:
        if name in pipeline.sources:
            md5 = view["data"]["md5"] if view["data"]["path"] == pipeline.sources[name] else None
            outs = {pipeline.sources[name]: md5} if md5 else {}
            note = "" if md5 else "no data md5 recorded for this version"
            rows.append(StageOuts(name, outs, note))
            continue
        stage = recorded.get(name)
        if stage is None:
            note = (
                "no hashes recorded: the dvc.lock logged at registration has no entry for this "
                "stage"
            )
            if name == "register":
                note += f" (it was still running: its result is version {view['version']})"
            rows.append(StageOuts(name, {}, note))
            continue
        stale = sorted(
            path
            for path, md5 in stage["deps"].items()
            if path in produced and produced[path] != md5 and path not in stage["outs"]
        )
        if stale:
            note = (
                f"not this version's: the recorded entry read {', '.join(stale)} with other "
                "hashes than the upstream stages produced (an earlier run's entry)"
            )
            if name == "register":
                note += f"; this run registered version {view['version']}"
            rows.append(StageOuts(name, {}, note))
            continue
        if name not in pipeline.nodes:
            rows.append(StageOuts(name, stage["outs"], "not in the workspace's dvc.yaml any more"))
            continue
        rows.append(StageOuts(name, stage["outs"]))
    return rows


def warnings_for(views: list[dict[str, Any]]) -> list[str]:
    """Plain sentences for what a reader must not miss."""
    out = []
    for view in views:
        if view["missing_lineage"]:
            out.append(
                f"Version {view['version']} lacks lineage tags: "
                f"{', '.join(view['missing_lineage'])}. Which code and data produced it cannot "
                "be shown; it cannot be reproduced from this registry."
            )
    return out


@dataclass(frozen=True)
class DriftCheck:
    """One `predictflow drift` run, as the report's drift section shows it."""

    version: int
    when: str
    verdict: str
    drifted: list[str] | None  # None: a run logged before the `drifted` tag existed
    batch_md5: str | None
    batch_rows: int | None
    run: dict[str, str]  # id, name, link (as provenance.facts() gives a version's run)


def drift_checks(
    runs: list[Run], ui: str, per_version: int = DRIFT_RUNS_PER_VERSION
) -> list[DriftCheck]:
    """The newest `per_version` runs of each model version (newest version first), from runs
    given newest first."""
    kept: Counter[int] = Counter()
    checks = []
    for run in runs:
        tags = run.data.tags
        version = tags.get("model_version", "")
        if not version.isdigit() or kept[int(version)] >= per_version:
            continue
        kept[int(version)] += 1
        drifted = tags.get("drifted")
        rows = run.data.metrics.get("batch_rows")
        info = run.info
        checks.append(
            DriftCheck(
                version=int(version),
                when=_when(info.start_time),
                verdict=tags.get("verdict", "not recorded"),
                drifted=None if drifted is None else [f for f in drifted.split(",") if f],
                batch_md5=tags.get("batch_md5"),
                batch_rows=None if rows is None else int(rows),
                run={
                    "id": info.run_id,
                    "name": info.run_name or info.run_id,
                    "link": provenance.run_link(info.experiment_id, info.run_id, ui),
                },
            )
        )
    return sorted(checks, key=lambda check: -check.version)  # stable: newest run first


@dataclass(frozen=True)
class Report:
    """Everything the page shows, as plain data."""

    model: str
    generated: str
    ui: str
    views: list[dict[str, Any]]  # provenance.facts() of each version, newest first
    registered: dict[int, str]  # version -> when it was registered
    selected: int
    pipeline: Pipeline
    plots: dict[str, str | None]  # figure file -> data URI of the selected version's run
    drift: list[DriftCheck] = field(default_factory=list)

    @property
    def view(self) -> dict[str, Any]:
        return next(v for v in self.views if v["version"] == self.selected)

    def facts(self) -> dict[str, Any]:
        """What `predictflow report --json` prints besides the output path."""
        return {
            "model": self.model,
            "versions": [v["version"] for v in self.views],
            "selected": self.selected,
            "selected_aliases": self.view["aliases"],
            "stages": list(self.pipeline.nodes),
            "plots": sorted(name for name in PLOTS if self.plots.get(name)),
            "missing_plots": sorted(name for name in PLOTS if not self.plots.get(name)),
            "warnings": warnings_for(self.views),
            "drift_checks": [
                {"version": c.version, "verdict": c.verdict, "run_id": c.run["id"]}
                for c in self.drift
            ],
        }


def collect(client: MlflowClient, workspace: Path, version: str | None = None) -> Report:
    """Gather everything for the report; `version` as `registry.resolve` takes it, or None."""
    versions = all_versions(client)
    views = [provenance.facts(client, v, workspace) for v in versions]
    selected = int(registry.resolve(client, version).version) if version else default_version(views)
    view = next((v for v in views if v["version"] == selected), None)
    if view is None:  # a models:/ URI of another model
        raise registry.RegistryError(f"version {selected} is not a version of {MODEL_NAME!r}")
    ui = provenance.ui_base()
    return Report(
        model=MODEL_NAME,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        ui=ui,
        views=views,
        registered={int(v.version): _when(v.creation_timestamp) for v in versions},
        selected=selected,
        pipeline=read_pipeline(workspace),
        plots=evaluation_plots(client, view["run"]["id"]),
        drift=drift_checks(drift_runs(client), ui),
    )


def _when(millis: int | None) -> str:
    if not millis:
        return ""
    return datetime.fromtimestamp(millis / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
