"""`predictflow report`: one self-contained HTML page about every registered version.

Three steps, kept apart so each can be read (and tested) alone:

1. gather: `provenance.facts()` of every version, the DVC stage graph from `dvc.yaml`, the
   selected version's evaluation figures (downloaded from its run with `MlflowClient`), and the
   last `predictflow drift` runs of each version from the monitoring experiment;
2. build: pure functions turn those into plain data (default selection, best metric values,
   per-stage out hashes, graph layout, warnings);
3. render: the jinja2 template `templates/report.html.j2` with autoescape on; the page needs no
   network to view (inline CSS, inline SVG, PNGs as data URIs, and a Content-Security-Policy
   that forbids loading anything else). The only URLs are links to runs in the MLflow UI.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from predictflow.core.io import atomic_path
from predictflow.ops.report_build import Report
from predictflow.ops.report_facts import collect
from predictflow.ops.report_render import render

if TYPE_CHECKING:
    from mlflow import MlflowClient


def write(report: Report, output: Path) -> int:
    """Write the page atomically; return its size in bytes."""
    page = render(report).encode("utf-8")
    with atomic_path(output) as tmp:
        tmp.write_bytes(page)
    return len(page)


def publish(
    client: MlflowClient, workspace: Path, version: str | None, output: Path
) -> dict[str, Any]:
    """`predictflow report`: collect every version, write the page; return the facts."""
    view = collect(client, workspace, version)
    size = write(view, output)
    return {"output": str(output), "bytes": size, **view.facts()}
