"""Stage `register`: register the model in MLflow only if every upstream stage matches dvc.lock.

A registered version must be reproducible from what is recorded: the lock's hashes, the data
pin and the git commit. So registration refuses when `dvc status` shows any upstream change or
when the model file is not the one the lock records. Experiments are registered too (tagged
with their name) but never move an alias: only a plain `dvc repro` moves `staging`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from predictflow import lineage, registry, stage, tracking
from predictflow.io import write_json
from predictflow.params import load_params

log = logging.getLogger(__name__)

UPSTREAM = "evaluate"


def describe_stale(stale: dict[str, list[object]]) -> str:
    """`train (changed outs: models/model.pkl)`-style summary of `dvc status` output."""
    parts = []
    for name, changes in stale.items():
        details = []
        for change in changes:
            if isinstance(change, dict):
                for kind, paths in change.items():
                    if isinstance(paths, dict):
                        details.append(f"{kind}: {', '.join(f'{p} {s}' for p, s in paths.items())}")
                    else:
                        details.append(str(kind))
            else:
                details.append(str(change))
        parts.append(f"{name.split(':')[-1]} ({'; '.join(details)})" if details else name)
    return ", ".join(parts)


def check_lock(root: Path, model: Path) -> str:
    """Refuse unless the lock is clean; return the model md5 the lock records."""
    stale = lineage.stale_stages(root, UPSTREAM)
    if stale:
        raise stage.StageError(
            f"dvc.lock is not clean, refusing to register: {describe_stale(stale)}; "
            "run `dvc repro` first"
        )
    locked = lineage.locked_out_md5(lineage.load_lock(root), model.as_posix())
    actual = lineage.file_md5(model)
    if locked != actual:
        raise stage.StageError(
            f"{model}: md5 {actual} differs from dvc.lock ({locked}); refusing to register"
        )
    return actual


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/model.pkl"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/eval.json"))
    parser.add_argument("--receipt", type=Path, default=Path("models/registration.json"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()

    import mlflow

    params = load_params(args.params)
    workspace, store = lineage.workspace_root(), tracking.store_root()
    model_md5 = check_lock(workspace, args.model)
    roc_auc = float(json.loads(args.metrics.read_text(encoding="utf-8"))["roc_auc"])

    runs = tracking.runs_with_model(tracking.connect(store), model_md5)
    if not runs:
        raise stage.StageError(
            f"no finished MLflow run in {tracking.tracking_uri(store)} logged model md5 "
            f"{model_md5}; run `dvc repro -f train` to log it again"
        )
    run = runs[0]
    tags = {k: v for k, v in run.data.tags.items() if k in tracking.LineageTags.__annotations__}
    client = mlflow.MlflowClient()
    with mlflow.start_run(run_id=run.info.run_id):
        mlflow.log_artifact(str(workspace / lineage.LOCK_FILE), "lineage")
    version, created = registry.register(client, store, run, model_md5, tags)
    stage.checkpoint("register:created")
    gate = roc_auc >= params.registry.min_roc_auc
    experiment = lineage.dvc_exp_name()
    if gate and experiment is None:
        registry.set_alias(client, "staging", version.version)
    log.info(
        "%s version %s of %s (run %s); quality gate roc_auc %.4f >= %.4f: %s; %s",
        "registered" if created else "already registered as",
        version.version,
        tracking.MODEL_NAME,
        run.info.run_id,
        roc_auc,
        params.registry.min_roc_auc,
        "passed" if gate else "failed",
        f"experiment {experiment}: aliases unchanged"
        if experiment
        else ("alias staging -> this version" if gate else "alias staging unchanged"),
    )
    write_json(
        args.receipt,
        {
            "model_name": tracking.MODEL_NAME,
            "model_md5": model_md5,
            "data_md5": tags.get("data_md5"),
            "quality_gate": {
                "metric": "roc_auc",
                "value": roc_auc,
                "min": params.registry.min_roc_auc,
                "passed": gate,
            },
        },
    )


if __name__ == "__main__":
    stage.run("register", main)
