"""`predictflow report`'s page: the jinja2 template with autoescape, the version columns and the
stage graph's layout (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup

from predictflow.lineage.names import MONITORING_EXPERIMENT
from predictflow.lineage.tracking import METRIC_KEYS

if TYPE_CHECKING:
    pass

from predictflow.ops.report_build import (
    DRIFT_RUNS_PER_VERSION,
    GENERATOR,
    PLOT_DIR,
    PLOTS,
    Pipeline,
    Report,
    best_values,
    stage_outs,
    warnings_for,
)

# --- 3. render (pure) ---------------------------------------------------------------------------

# No network at view time: only inline styles and data: images may load.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@cache
def _environment() -> jinja2.Environment:
    # Autoescape on: every value is escaped unless the template is its markup. StrictUndefined:
    # a misspelt name fails the render instead of leaving a hole in the page.
    return jinja2.Environment(
        loader=jinja2.PackageLoader("predictflow", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(report: Report) -> str:
    view = report.view
    columns = shown_versions(report.views, report.selected)
    differing, shared = split_params(columns)
    hidden = [v["version"] for v in report.views if v not in columns]
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            csp=Markup(CSP),  # a constant: its quotes stay quotes, as the test of the page reads it
            title=f"{report.model}: lineage report",
            generated=report.generated,
            generator=Markup(GENERATOR),
            views=report.views,
            selected=report.selected,
            view=view,
            warnings=warnings_for(report.views),
            columns=columns,
            best=best_values(columns),
            registered=report.registered,
            metric_keys=METRIC_KEYS,
            differing=differing,
            shared=shared,
            hidden=hidden,
            hidden_ranges=version_ranges(hidden),
            promotions=promotion_events(report.views),
            drift_runs=report.drift,
            drift_per_version=DRIFT_RUNS_PER_VERSION,
            drift_experiment=MONITORING_EXPERIMENT,
            graph=graph_layout(report.pipeline),
            stage_rows=stage_outs(view, report.pipeline),
            plot_captions=PLOTS,
            plot_dir=PLOT_DIR,
            plots=report.plots,
            ui=report.ui,
        )
    )


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


def split_params(views: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """Param keys whose values differ between versions, and the values all versions share."""
    keys = sorted({k for v in views for k in v["params"]})
    values = {k: {v["params"].get(k) for v in views} for k in keys}
    differing = [k for k in keys if len(values[k]) > 1]
    return differing, {k: views[0]["params"][k] for k in keys if len(values[k]) == 1}


def promotion_events(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every recorded alias move of every version, oldest first."""
    return sorted(
        ({**event, "version": v["version"]} for v in views for event in v["promotions"]),
        key=lambda ev: (ev.get("when", ""), ev["version"]),
    )


BOX_W, BOX_H, GAP, PAD = 190, 46, 46, 14


@dataclass(frozen=True)
class Box:
    name: str
    label: str
    x: int
    y: int
    source: bool  # a `.dvc` data source (drawn smaller and in another colour)
    width: int = BOX_W
    height: int = BOX_H

    @property
    def fill(self) -> str:
        return "#fdf6e3" if self.source else "#eef4fc"

    @property
    def stroke(self) -> str:
        return "#c9a227" if self.source else "#2f6fbd"

    @property
    def font_size(self) -> int:
        return 13 if self.source else 15

    @property
    def font_weight(self) -> int:
        return 400 if self.source else 600

    @property
    def text_x(self) -> float:
        return self.x + BOX_W / 2

    @property
    def text_y(self) -> float:
        return self.y + BOX_H / 2 + 5


@dataclass(frozen=True)
class GraphLayout:
    """The stage graph as SVG geometry: boxes left to right in topological order, a straight
    arrow between neighbours, and an arc above the chain for each edge that skips nodes."""

    nodes: tuple[str, ...]
    width: int
    height: int
    lines: list[tuple[float, float, float, float]]
    arcs: list[str]  # SVG path data
    boxes: list[Box]


def graph_layout(pipeline: Pipeline) -> GraphLayout | None:
    if not pipeline.nodes:
        return None
    x = {name: PAD + i * (BOX_W + GAP) for i, name in enumerate(pipeline.nodes)}
    index = {name: i for i, name in enumerate(pipeline.nodes)}
    longest = max((abs(index[b] - index[a]) for a, b in pipeline.edges), default=1)
    top = PAD + 22 * max(longest - 1, 0)
    lines, arcs = [], []
    for a, b in pipeline.edges:
        span = index[b] - index[a]
        if span == 1:
            y = top + BOX_H / 2
            lines.append((x[a] + BOX_W, y, x[b] - 2, y))
        else:  # skips nodes: an arc from the top of one box to the top of the other
            x1, x2 = x[a] + BOX_W * 0.75, x[b] + BOX_W * 0.25
            lift = top - 22 * (abs(span) - 1) - 4
            arcs.append(f"M{x1},{top} C{x1},{lift} {x2},{lift} {x2},{top - 2}")
    boxes = [
        Box(
            name=name,
            label=name if len(name) <= 26 else "\u2026" + name[-25:],
            x=x[name],
            y=top,
            source=name in pipeline.sources,
        )
        for name in pipeline.nodes
    ]
    return GraphLayout(
        nodes=pipeline.nodes,
        width=PAD * 2 + len(pipeline.nodes) * BOX_W + (len(pipeline.nodes) - 1) * GAP,
        height=top + BOX_H + PAD,
        lines=lines,
        arcs=arcs,
        boxes=boxes,
    )
