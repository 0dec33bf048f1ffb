"""What `predictflow report` shows, gathered from MLflow, git and files, then built into the
report's plain data (`report_build`)."""

from __future__ import annotations

import base64
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from predictflow.lineage import evidence, provenance, registry
from predictflow.lineage.names import MODEL_NAME, MONITORING_EXPERIMENT
from predictflow.ops.report_build import (
    DRIFT_RUNS_PER_VERSION,
    PLOT_DIR,
    PLOTS,
    DriftCheck,
    Pipeline,
    Report,
    default_version,
    pipeline_graph,
    stage_specs,
    when,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
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
                when=when(info.start_time),
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
        registered={int(v.version): when(v.creation_timestamp) for v in versions},
        selected=selected,
        pipeline=read_pipeline(workspace),
        plots=evaluation_plots(client, view["run"]["id"]),
        drift=drift_checks(drift_runs(client), ui),
    )
