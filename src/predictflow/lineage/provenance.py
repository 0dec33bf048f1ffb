"""One view answering both questions about a registered version: which run, which data.

`facts()` gathers everything from the registry, the run and the `dvc.lock` the run recorded at
registration; `render()` prints it as one screen. The JSON form (`predictflow lineage --json`)
is the stable interface documented in the README.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from predictflow.core import paths
from predictflow.lineage import evidence, registry
from predictflow.lineage.names import MODEL_NAME
from predictflow.lineage.reader import Reader, Version
from predictflow.lineage.registry_read import as_reader
from predictflow.lineage.tracking import METRIC_KEYS, REQUIRED_LINEAGE

if TYPE_CHECKING:
    from mlflow import MlflowClient

RECORDED_LOCK = "lineage/dvc.lock"


def ui_base() -> str:
    """Where runs are linked: the tracking server itself, else `PREDICTFLOW_UI_URL` (set it when
    `make ui` runs elsewhere, e.g. `PORT=5050 make ui`), else `make ui`'s default address."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return os.environ.get("PREDICTFLOW_UI_URL", "http://127.0.0.1:5000")


# MLflow 3.17's UI shows a run or experiment in its GenAI layout unless the URL (or the browser's
# last choice) says otherwise; the parameter makes a printed link open as model training wherever
# the UI is served (a team server, a plain `mlflow ui`). See docs/ui.md.
TRAINING_VIEW = "workflowType=machine_learning"


def run_link(experiment_id: str, run_id: str, base: str | None = None) -> str:
    """The run's page in the MLflow UI, in the model-training view."""
    return f"{base or ui_base()}/#/experiments/{experiment_id}/runs/{run_id}?{TRAINING_VIEW}"


# `register` is running when the lock is logged, so the lock's entry for it is the previous
# run's: another version's hashes. It is never shown (older runs logged it).
UNRECORDED_STAGES = ("register",)


def recorded_stages(source: Reader | MlflowClient, run_id: str) -> dict[str, dict[str, Any]]:
    """Each upstream stage's dep/out md5s and params from the `dvc.lock` logged at registration
    (`register` itself left out: see UNRECORDED_STAGES)."""
    text = as_reader(source).artifact_text(run_id, RECORDED_LOCK)
    if text is None:
        return {}
    return {
        name: {"deps": stage.deps, "outs": stage.outs, "params": stage.params}
        for name, stage in evidence.read_lock(text).items()
        if name not in UNRECORDED_STAGES
    }


def facts(source: Reader | MlflowClient, version: Any, workspace: Path) -> dict[str, Any]:
    """Everything known about one version (anything with a `.version` number), as plain
    JSON-able data. A `registry_read` reader spares a read-only command MLflow's import."""
    reader = as_reader(source)
    version = reader.version(MODEL_NAME, str(version.version))  # with aliases
    tags = version.tags
    model_md5 = tags.get("model_md5")
    sealed = tags.get("sealed_commit") or (
        evidence.sealed_commit(workspace, paths.MODEL.as_posix(), model_md5) if model_md5 else None
    )
    missing = [k for k in REQUIRED_LINEAGE if not tags.get(k)]
    run = reader.run(version.run_id)
    if run is None:  # the run was deleted (e.g. `mlflow gc`): say so, keep the rest
        return {
            **_version_facts(version, sealed, [*missing, "run"]),
            "run": {
                "id": version.run_id,
                "name": None,
                "experiment_id": None,
                "status": "MISSING",
                "link": None,
            },
            "params": {},
            "metrics": {},
            "stages": {},
        }
    return {
        **_version_facts(version, sealed, missing),
        "run": {
            "id": run.run_id,
            "name": run.run_name,
            "experiment_id": run.experiment_id,
            "status": run.status,
            "link": run_link(run.experiment_id, run.run_id),
        },
        "params": {k: v for k, v in sorted(run.params.items()) if "." in k},
        "metrics": dict(sorted(run.metrics.items())),
        "stages": recorded_stages(reader, run.run_id),
    }


def _version_facts(version: Version, sealed: str | None, missing: list[str]) -> dict:
    """What the registry itself records for a version (tags, aliases, audit trail)."""
    tags = version.tags
    return {
        "model": MODEL_NAME,
        "version": int(version.version),
        "uri": f"models:/{MODEL_NAME}/{version.version}",
        "aliases": sorted(version.aliases),
        "stage": version.current_stage,
        "code": {
            "git_commit": tags.get("git_commit"),
            "git_dirty": tags.get("git_dirty") == "true" if "git_dirty" in tags else None,
            "sealed_commit": sealed,
        },
        "data": {"path": tags.get("data_path"), "md5": tags.get("data_md5")},
        "model_md5": tags.get("model_md5"),
        "dvc_exp_name": tags.get("dvc_exp_name"),
        "model_card": tags.get("model_card"),  # runs:/<run>/model_card/model_card.md
        "promotions": registry.promotion_history(version),
        "missing_lineage": missing,
    }


def render(view: dict[str, Any]) -> str:
    """The one-screen text form."""
    code, data, run = view["code"], view["data"], view["run"]
    aliases = ", ".join(view["aliases"]) or "none"
    dirty = {True: "dirty", False: "clean", None: "unknown"}[code["git_dirty"]]
    # MLflow reports "no legacy stage" as the string "None"; say nothing rather than that.
    stage = f"  stage: {view['stage']}" if view["stage"] not in (None, "None") else ""
    lines = [
        f"{view['model']} version {view['version']}  aliases: {aliases}{stage}",
        "",
        "Which experiment produced it",
        f"  run         {run['id']} ({run['name']}, {run['status']})",
        f"  link        {run['link']}",
    ]
    if view["dvc_exp_name"]:
        lines.append(f"  experiment  {view['dvc_exp_name']} (dvc exp)")
    if view.get("model_card"):
        lines.append(f"  model card  {view['model_card']}")
    held_out = [(k, view["metrics"][k]) for k in METRIC_KEYS if k in view["metrics"]]
    lines.append("  held-out    " + (", ".join(f"{k} {v:.4f}" for k, v in held_out) or "none"))
    model_params = {k: v for k, v in view["params"].items() if k.startswith("model.")}
    lines.append("  params      " + ", ".join(f"{k}={v}" for k, v in model_params.items()))
    lines += [
        "",
        "Which data and code",
        f"  data        {data['path']} md5 {data['md5']}",
        f"  code        git {code['git_commit']} ({dirty})",
        f"  sealed      {code['sealed_commit'] or 'not yet: no committed dvc.lock pins it'}",
        f"  model md5   {view['model_md5']}",
    ]
    if view["missing_lineage"]:
        lines.append(f"  WARNING     lineage tags missing: {', '.join(view['missing_lineage'])}")
    if view["stages"]:
        lines += ["", "DVC stages at registration (outs)"]
        for name, stage in view["stages"].items():
            outs = ", ".join(f"{path} {md5[:8]}" for path, md5 in stage["outs"].items())
            lines.append(f"  {name:<22}{outs}")
        lines += [
            f"  {name:<22}not recorded: dvc.lock gets its entry only after registration"
            for name in UNRECORDED_STAGES
        ]
    lines += ["", "Promotions"]
    lines += [
        f"  {e['when']}  held {e['from']} -> {e['to']} (now holds {e.get('holds', e['to'])})"
        f"  by {e['who']}: {e['reason']}"
        + ("" if e.get("status", "done") == "done" else f"  [{e['status'].upper()}]")
        for e in view["promotions"]
    ] or ["  none"]
    return "\n".join(lines)
