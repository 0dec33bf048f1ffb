"""`predictflow report`: one self-contained HTML page about every registered version.

Three steps, kept apart so each can be read (and tested) alone:

1. gather: `provenance.facts()` of every version, the DVC stage graph from `dvc.yaml`, the
   selected version's evaluation figures (downloaded from its run with `MlflowClient`);
2. build: pure functions turn those into plain data (default selection, best metric values,
   per-stage out hashes, warnings);
3. render: plain string templates with `html.escape`; the page needs no network to view
   (inline CSS, inline SVG, PNGs as data URIs, and a Content-Security-Policy that forbids
   loading anything else). The only URLs are links to runs and versions in the MLflow UI.
"""

from __future__ import annotations

import base64
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from predictflow import lineage, provenance, registry
from predictflow.io import atomic_path
from predictflow.tracking import METRIC_KEYS, MODEL_NAME

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

DEFAULT_OUTPUT = Path("reports/lineage.html")
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


# --- 1. gather (MLflow, git, files) -------------------------------------------------------------


def all_versions(client: MlflowClient) -> list[ModelVersion]:
    """Every registered version of the model, newest first (following result pages)."""
    versions: list[ModelVersion] = []
    token = None
    while True:
        page = client.search_model_versions(f"name = '{MODEL_NAME}'", page_token=token)
        versions.extend(page)
        token = getattr(page, "token", None)
        if not token:
            break
    if not versions:
        raise registry.RegistryError(
            f"no registered version of {MODEL_NAME!r} yet; run `make repro`"
        )
    return sorted(versions, key=lambda v: int(v.version), reverse=True)


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
    path = workspace / lineage.PIPELINE_FILE
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
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
    order: list[str] = []
    pending = list(declared)
    while pending:
        ready = next(
            (n for n in pending if all(a in order for a, b in edges if b == n)),
            pending[0],  # a cycle (dvc refuses those): keep the declared order
        )
        order.append(ready)
        pending.remove(ready)
    return Pipeline(nodes=tuple(order), edges=tuple(edges), sources=sources)


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
        }


def collect(client: MlflowClient, workspace: Path, version: str | None = None) -> Report:
    """Gather everything for the report; `version` as `registry.resolve` takes it, or None."""
    versions = all_versions(client)
    views = [provenance.facts(client, v, workspace) for v in versions]
    selected = int(registry.resolve(client, version).version) if version else default_version(views)
    view = next((v for v in views if v["version"] == selected), None)
    if view is None:  # a models:/ URI of another model
        raise registry.RegistryError(f"version {selected} is not a version of {MODEL_NAME!r}")
    return Report(
        model=MODEL_NAME,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        ui=provenance.ui_base(),
        views=views,
        registered={int(v.version): _when(v.creation_timestamp) for v in versions},
        selected=selected,
        pipeline=read_pipeline(workspace),
        plots=evaluation_plots(client, view["run"]["id"]),
    )


def _when(millis: int | None) -> str:
    if not millis:
        return ""
    return datetime.fromtimestamp(millis / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def write(report: Report, output: Path) -> int:
    """Write the page atomically; return its size in bytes."""
    page = render(report).encode("utf-8")
    with atomic_path(output) as tmp:
        tmp.write_bytes(page)
    return len(page)


# --- 3. render (pure) ---------------------------------------------------------------------------

CSS = """
:root { color-scheme: light; --ink: #1f2933; --muted: #616e7c; --line: #d9e2ec; --bg: #f5f7fa;
  --accent: #2f6fbd; --best: #d5f5e3; --best-ink: #146c43; --warn: #fff4e5; --warn-ink: #8a4b00;
  --sel: #eef4fc; }
* { box-sizing: border-box; }
body { margin: 0; padding: 28px 36px 48px; background: var(--bg); color: var(--ink);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 34px 0 10px; }
p.sub { color: var(--muted); margin: 0 0 18px; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono",
  monospace; font-size: 13px; }
a { color: var(--accent); }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px;
  min-width: 180px; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .v { font-size: 17px; font-weight: 600; }
.scroll { overflow-x: auto; background: #fff; border: 1px solid var(--line); border-radius: 8px; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 6px 12px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; }
thead th { background: #fafbfc; position: sticky; top: 0; }
tbody th { font-weight: 500; color: var(--muted); white-space: nowrap; }
tr.group th { background: #fafbfc; color: var(--ink); font-weight: 700; padding-top: 10px; }
td.num { font-variant-numeric: tabular-nums; }
td.sel, th.sel { background: var(--sel); }
td.best { background: var(--best); color: var(--best-ink); font-weight: 700; }
.shared { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px;
  margin-top: 10px; }
.shared h3 { margin: 0 0 6px; font-size: 14px; color: var(--muted); }
.shared dl { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr));
  gap: 2px 18px; margin: 0; }
.shared dl div { display: flex; gap: 8px; min-width: 0; overflow-wrap: anywhere; }
.shared dt { color: var(--muted); white-space: nowrap; }
.shared dd { margin: 0; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
  font-weight: 600; margin-right: 4px; background: #e4e7eb; }
.badge.production { background: #2f855a; color: #fff; }
.badge.staging { background: #2f6fbd; color: #fff; }
.missing { color: var(--warn-ink); font-weight: 600; }
.warning { background: var(--warn); border: 1px solid #f0b35a; border-left: 6px solid #e08a00;
  color: var(--warn-ink); border-radius: 6px; padding: 10px 16px; margin: 16px 0; }
.warning h2 { margin: 0 0 6px; font-size: 16px; }
.warning ul { margin: 0; padding-left: 20px; }
.graph { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px; }
.graph svg { width: 100%; height: auto; display: block; }
.stages { display: grid; grid-template-columns: repeat(auto-fill, minmax(600px, 1fr));
  gap: 12px; margin-top: 12px; }
.stage { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px;
  min-width: 0; overflow-wrap: anywhere; }
.stage h3 { margin: 0 0 6px; font-size: 15px; }
.stage table td, .stage table th { padding: 3px 6px; border: 0; }
.stage .note { color: var(--warn-ink); margin: 0; }
.plots { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 14px; }
figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 8px;
  padding: 10px; text-align: center; }
figure img { max-width: 100%; max-height: 440px; }
figcaption { color: var(--muted); margin-top: 4px; }
p.more { color: var(--muted); margin: 6px 2px 0; }
footer { margin-top: 36px; color: var(--muted); font-size: 13px; }
"""

# No network at view time: only inline styles and data: images may load.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<h1>{title}</h1>
<p class="sub">Generated {generated} by <code>predictflow report</code> &middot;
{count} registered version(s) &middot; details below are for version {selected}</p>
{warnings}
{summary}
<h2>Versions side by side</h2>
{versions}
<h2>Promotion history</h2>
{promotions}
<h2>DVC pipeline of version {selected}</h2>
{graph}
{stages}
<h2>Evaluation of version {selected} (held-out split)</h2>
{plots}
<footer>One self-contained file: no scripts, fonts or images are loaded from anywhere.
Links open runs in the MLflow UI at <code>{ui}</code>.</footer>
</body>
</html>
"""


def e(value: Any) -> str:
    return "" if value is None else escape(str(value), quote=True)


def missing(text: str = "not recorded") -> str:
    return f'<span class="missing">&#9888; {e(text)}</span>'


def mono(value: Any, absent: str = "not recorded") -> str:
    return f'<span class="mono">{e(value)}</span>' if value else missing(absent)


def badges(aliases: list[str]) -> str:
    return "".join(f'<span class="badge {e(a)}">{e(a)}</span>' for a in aliases) or "none"


def render(report: Report) -> str:
    view = report.view
    return PAGE.format(
        csp=CSP,
        title=e(f"{report.model}: lineage report"),
        css=CSS,
        generated=e(report.generated),
        count=len(report.views),
        selected=report.selected,
        warnings=render_warnings(warnings_for(report.views)),
        summary=render_summary(view),
        versions=render_versions(report),
        promotions=render_promotions(report.views),
        graph=render_graph(report.pipeline, report.selected),
        stages=render_stages(stage_outs(view, report.pipeline)),
        plots=render_plots(report.plots),
        ui=e(report.ui),
    )


def render_warnings(warnings: list[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{e(w)}</li>" for w in warnings)
    return (
        f'<div class="warning" role="alert"><h2>&#9888; Missing lineage</h2><ul>{items}</ul></div>'
    )


def render_summary(view: dict[str, Any]) -> str:
    code = view["code"]
    roc = view["metrics"].get("roc_auc")
    cards = [
        ("selected version", f"{view['version']} {badges(view['aliases'])}"),
        ("held-out roc_auc", f"{roc:.4f}" if roc is not None else missing()),
        ("data md5", mono(view["data"]["md5"])),
        ("git commit", mono((code["git_commit"] or "")[:12])),
        ("run", f'<a href="{e(view["run"]["link"])}">{e(view["run"]["name"])}</a>'),
    ]
    body = "".join(
        f'<div class="card"><div class="k">{e(k)}</div><div class="v">{v}</div></div>'
        for k, v in cards
    )
    return f'<div class="cards">{body}</div>'


MAX_COLUMNS = 4  # what fits side by side at 1,600 px with full commits, md5s and run ids
ALIAS_ORDER = {"production": 0, "staging": 1}


def shown_versions(views: list[dict[str, Any]], selected: int) -> list[dict[str, Any]]:
    """The columns worth a reader's width: versions holding an alias (production first), the
    selected one, then the newest, up to MAX_COLUMNS. An experiment sweep registers a version
    per point, so showing every version would push the production column off the page."""

    def alias_rank(view: dict[str, Any]) -> tuple[int, int]:
        return min(ALIAS_ORDER.get(a, len(ALIAS_ORDER)) for a in view["aliases"]), -view["version"]

    chosen = sorted((v for v in views if v["aliases"]), key=alias_rank)
    chosen += [v for v in views if v["version"] == selected and not v["aliases"]]
    for view in views:  # newest first
        if len(chosen) >= MAX_COLUMNS:
            break
        if view not in chosen:
            chosen.append(view)
    return chosen


def version_ranges(numbers: list[int]) -> str:
    """`v1-v42, v44`: consecutive version numbers as ranges."""
    spans: list[list[int]] = []
    for number in sorted(numbers):
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ", ".join(f"v{a}" if a == b else f"v{a}-v{b}" for a, b in spans)


def render_hidden(report: Report, shown: list[dict[str, Any]]) -> str:
    """One line for the versions left out of the table, and how to see one of them."""
    hidden = [v["version"] for v in report.views if v not in shown]
    if not hidden:
        return ""
    return (
        f'<p class="more">+ {len(hidden)} more version{"s" if len(hidden) > 1 else ""}: '
        f"{e(version_ranges(hidden))} (<code>predictflow report --version N</code> "
        "or <code>predictflow lineage models:/churn-predictor/N</code> shows one)</p>"
    )


def render_versions(report: Report) -> str:
    """One column per shown version: registry, code and data, held-out metrics, params."""
    views = shown_versions(report.views, report.selected)
    best = best_values(views)

    def cell(view: dict[str, Any], content: str, cls: str = "") -> str:
        classes = " ".join(
            c for c in (cls, "sel" if view["version"] == report.selected else "") if c
        )
        return f'<td class="{classes}">{content}</td>' if classes else f"<td>{content}</td>"

    def row(label: str, render_cell) -> str:
        return f"<tr><th>{label}</th>{''.join(render_cell(v) for v in views)}</tr>"

    def group(title: str) -> str:
        return f'<tr class="group"><th colspan="{len(views) + 1}">{e(title)}</th></tr>'

    def dirty(view: dict[str, Any]) -> str:
        value = view["code"]["git_dirty"]
        if value is None:
            return missing()
        return missing("uncommitted changes") if value else "clean"

    def sealed(view: dict[str, Any]) -> str:
        commit = view["code"]["sealed_commit"]
        return mono(commit) if commit else missing("not sealed: no committed dvc.lock pins it")

    def metric(key: str):
        def render_cell(view: dict[str, Any]) -> str:
            value = view["metrics"].get(key)
            if value is None:
                return cell(view, missing())
            is_best = value == best.get(key)
            return cell(view, f"{value:.4f}", "num best" if is_best else "num")

        return render_cell

    def param(key: str):
        return lambda view: cell(view, mono(view["params"].get(key), "not set"))

    head = "".join(
        f'<th class="sel">version {v["version"]} (selected)</th>'
        if v["version"] == report.selected
        else f"<th>version {v['version']}</th>"
        for v in views
    )
    rows = [
        group("Registry"),
        row("aliases", lambda v: cell(v, badges(v["aliases"]))),
        row("stage", lambda v: cell(v, e(v["stage"] if v["stage"] != "None" else "none"))),
        row("registered", lambda v: cell(v, e(report.registered.get(v["version"])) or missing())),
        row(
            "MLflow run",
            lambda v: cell(
                v,
                f'<a href="{e(v["run"]["link"])}">{e(v["run"]["name"])}</a><br>'
                f"{mono(v['run']['id'])}",
            ),
        ),
        row("dvc experiment", lambda v: cell(v, e(v["dvc_exp_name"] or "none (dvc repro)"))),
        group("Code and data"),
        row("git commit", lambda v: cell(v, mono(v["code"]["git_commit"]))),
        row("working tree", lambda v: cell(v, dirty(v))),
        row("sealed commit", lambda v: cell(v, sealed(v))),
        row("data", lambda v: cell(v, mono(v["data"]["path"]))),
        row("data md5", lambda v: cell(v, mono(v["data"]["md5"]))),
        row("model md5", lambda v: cell(v, mono(v["model_md5"]))),
        group("Held-out metrics (the best of each highlighted where versions differ)"),
        *(row(e(k), metric(k)) for k in METRIC_KEYS),
    ]
    differing, shared = split_params(views)
    if differing:
        rows.append(group("Run params that differ between versions"))
        rows += [row(e(key), param(key)) for key in differing]
    table = (
        f'<div class="scroll"><table><thead><tr><th></th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
    table += render_hidden(report, views)
    if not shared:
        return table
    title = "Run params" if len(views) == 1 else "Run params shared by every version shown"
    items = "".join(f"<div><dt>{e(k)}</dt><dd>{mono(v)}</dd></div>" for k, v in shared.items())
    return f'{table}<div class="shared"><h3>{title}</h3><dl>{items}</dl></div>'


def split_params(views: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """Param keys whose values differ between versions, and the values all versions share."""
    keys = sorted({k for v in views for k in v["params"]})
    values = {k: {v["params"].get(k) for v in views} for k in keys}
    differing = [k for k in keys if len(values[k]) > 1]
    return differing, {k: views[0]["params"][k] for k in keys if len(values[k]) == 1}


def render_promotions(views: list[dict[str, Any]]) -> str:
    events = sorted(
        ({**event, "version": v["version"]} for v in views for event in v["promotions"]),
        key=lambda ev: (ev.get("when", ""), ev["version"]),
    )
    if not events:
        return (
            "<p>No promotions recorded yet: <code>predictflow promote N --to production</code> "
            "records who, when and why. (<code>dvc repro</code> moves <code>staging</code> by "
            "itself when the quality gate passes.)</p>"
        )
    rows = "".join(
        f"<tr><td>{e(ev.get('when', ''))}</td><td>version {ev['version']}</td>"
        f"<td>{e(ev.get('from') or 'none')} &rarr; <b>{e(ev.get('to', ''))}</b></td>"
        f"<td>{e(ev.get('who', ''))}</td><td>{e(ev.get('reason') or '')}</td></tr>"
        for ev in events
    )
    return (
        '<div class="scroll"><table><thead><tr><th>when</th><th>version</th><th>move</th>'
        f"<th>by</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )


BOX_W, BOX_H, GAP, PAD = 190, 46, 46, 14


def render_graph(pipeline: Pipeline, selected: int) -> str:
    """The stage graph as inline SVG: nodes left to right in topological order, an arrow for
    each edge (edges that skip nodes arc above the chain)."""
    if not pipeline.nodes:
        return f"<p>{missing('no dvc.yaml in the workspace: the stage graph cannot be drawn')}</p>"
    x = {name: PAD + i * (BOX_W + GAP) for i, name in enumerate(pipeline.nodes)}
    index = {name: i for i, name in enumerate(pipeline.nodes)}
    longest = max((abs(index[b] - index[a]) for a, b in pipeline.edges), default=1)
    top = PAD + 22 * max(longest - 1, 0)
    width = PAD * 2 + len(pipeline.nodes) * BOX_W + (len(pipeline.nodes) - 1) * GAP
    parts = [
        f'<svg viewBox="0 0 {width} {top + BOX_H + PAD}" role="img" '
        f'aria-label="DVC stage graph: {e(" -> ".join(pipeline.nodes))}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#52606d"/></marker></defs>',
    ]
    for a, b in pipeline.edges:
        span = index[b] - index[a]
        if span == 1:
            y = top + BOX_H / 2
            parts.append(
                f'<line x1="{x[a] + BOX_W}" y1="{y}" x2="{x[b] - 2}" y2="{y}" stroke="#52606d" '
                'stroke-width="2" marker-end="url(#arrow)"/>'
            )
        else:  # skips nodes: an arc from the top of one box to the top of the other
            x1, x2 = x[a] + BOX_W * 0.75, x[b] + BOX_W * 0.25
            lift = top - 22 * (abs(span) - 1) - 4
            parts.append(
                f'<path d="M{x1},{top} C{x1},{lift} {x2},{lift} {x2},{top - 2}" fill="none" '
                'stroke="#9aa5b1" stroke-width="1.5" stroke-dasharray="5 4" '
                'marker-end="url(#arrow)"/>'
            )
    for name in pipeline.nodes:
        source = name in pipeline.sources
        fill, stroke = ("#fdf6e3", "#c9a227") if source else ("#eef4fc", "#2f6fbd")
        label = name if len(name) <= 26 else "\u2026" + name[-25:]
        parts.append(
            f'<g><title>{e(name)}</title><rect x="{x[name]}" y="{top}" width="{BOX_W}" '
            f'height="{BOX_H}" rx="8" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
            f'<text x="{x[name] + BOX_W / 2}" y="{top + BOX_H / 2 + 5}" text-anchor="middle" '
            f'font-size="{13 if source else 15}" font-weight="{400 if source else 600}" '
            f'fill="#1f2933">{e(label)}</text></g>'
        )
    parts.append("</svg>")
    chain = " \u2192 ".join(pipeline.nodes)
    caption = (
        f'<p class="sub">What <code>dvc dag</code> prints: {e(chain)}. Dashed arcs: a stage '
        "also reads an out of an earlier, non-adjacent stage. Hashes "
        f"below: what the <code>dvc.lock</code> logged with version {selected}'s run recorded."
        "</p>"
    )
    return f'<div class="graph">{"".join(parts)}</div>{caption}'


def render_stages(rows: list[StageOuts]) -> str:
    cards = []
    for row in rows:
        outs = "".join(
            f"<tr><td><code>{e(path)}</code></td><td>{mono(md5)}</td></tr>"
            for path, md5 in row.outs.items()
        )
        table = f"<table>{outs}</table>" if outs else ""
        note = f'<p class="note">&#9888; {e(row.note)}</p>' if row.note else ""
        cards.append(f'<div class="stage"><h3>{e(row.name)}</h3>{table}{note}</div>')
    return f'<div class="stages">{"".join(cards)}</div>'


def render_plots(plots: dict[str, str | None]) -> str:
    figures = []
    for name, caption in PLOTS.items():
        uri = plots.get(name)
        body = (
            f'<img src="{uri}" alt="{e(caption)}">'
            if uri
            else f"<p>{missing(f'{PLOT_DIR}/{name} was not logged to this run')}</p>"
        )
        figures.append(
            f"<figure>{body}<figcaption>{e(caption)} "
            f"(<code>{e(PLOT_DIR)}/{e(name)}</code>)</figcaption></figure>"
        )
    return f'<div class="plots">{"".join(figures)}</div>'


def publish(
    client: MlflowClient, workspace: Path, version: str | None, output: Path
) -> dict[str, Any]:
    """`predictflow report`: collect every version, write the page; return the facts."""
    view = collect(client, workspace, version)
    size = write(view, output)
    return {"output": str(output), "bytes": size, **view.facts()}
