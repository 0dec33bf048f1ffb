"""The report's plain data, built by pure functions: the pipeline graph, the default selection,
best metric values, per-stage out hashes, warnings and drift checks; `report_render` draws it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from predictflow.lineage.tracking import METRIC_KEYS

if TYPE_CHECKING:
    pass


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
DRIFT_RUNS_PER_VERSION = 3  # a daily cron would otherwise fill the page


# --- build (pure) ----------------------------------------------------------------------------


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


def when(millis: int | None) -> str:
    """A store timestamp (ms) as the page shows it; empty when unknown."""
    if not millis:
        return ""
    return datetime.fromtimestamp(millis / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
