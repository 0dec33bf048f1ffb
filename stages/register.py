"""Stage `register`: register the model in MLflow only if every upstream stage matches dvc.lock.

A registered version must be reproducible from what is recorded: the lock's hashes, the data
pin and the git commit. So registration refuses when `dvc status` shows any upstream change or
when the model file is not the one the lock records. Experiments are registered too (tagged
with their name) but never move an alias: only a plain `dvc repro` moves `staging`.

It is also the one stage after `train` that opens the store: it finds the train run once (by
model md5) and attaches what `evaluate` wrote to files (metrics, figures, plot tables).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from predictflow.core import paths
from predictflow.core.data import held_out_counts
from predictflow.core.io import write_json
from predictflow.core.params import RegisterParams, load_params
from predictflow.lineage import (
    access,
    evidence,
    modelcard,
    names,
    promotion,
    registry,
    stage,
    tracking,
)

log = logging.getLogger(__name__)

STAGE = "register"
UPSTREAM = "evaluate"


def check_held_out(test: Path, params: RegisterParams) -> tuple[int, int]:
    """Refuse a split too small for its metrics to mean anything; return its counts."""
    rows, smallest = held_out_counts(test)
    gate = promotion.held_out_gate(rows, smallest, params.min_test_rows, params.min_test_class_rows)
    if not gate.passed:
        raise stage.StageError(
            f"{test}: held-out split too small to judge the model: {gate.detail}; nothing "
            "registered: add data, or raise prepare.test_size, or lower those params"
        )
    return rows, smallest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=paths.MODEL)
    parser.add_argument("--metrics", type=Path, default=paths.EVAL_METRICS)
    parser.add_argument("--test", type=Path, default=paths.PREPARED_TEST)
    parser.add_argument("--figures-dir", type=Path, default=paths.EVAL_FIGURES)
    parser.add_argument("--plots-dir", type=Path, default=paths.EVAL_PLOTS)
    parser.add_argument("--receipt", type=Path, default=paths.RECEIPT)
    parser.add_argument("--prepare-metrics", type=Path, default=paths.PREPARE_METRICS)
    parser.add_argument("--raw", type=Path, default=paths.RAW_DATA, help="tagged, not read")
    parser.add_argument("--params", type=Path, default=paths.PARAMS)
    args = parser.parse_args()

    import mlflow

    params = load_params(args.params)
    workspace, store = evidence.workspace_root(), tracking.store_root()
    # Data and model facts come from the lock just checked; code facts from the train run.
    hashes = evidence.check_lock(workspace, UPSTREAM, {args.model: "train", args.metrics: UPSTREAM})
    model_md5 = hashes[args.model]
    rows, smallest = check_held_out(args.test, params.registry)
    scores = {k: float(v) for k, v in json.loads(args.metrics.read_text(encoding="utf-8")).items()}
    roc_auc = scores["roc_auc"]

    runs = tracking.runs_with_model(tracking.connect(store), model_md5)
    if not runs:
        raise stage.StageError(
            f"no finished MLflow run in {tracking.tracking_uri(store)} logged model md5 "
            f"{model_md5}; run `dvc repro -f train` to log it again"
        )
    run = runs[0]
    evidence.check_trained_params(workspace, "train", run.data.params)
    tags = {k: v for k, v in run.data.tags.items() if k in tracking.LineageTags.__annotations__}
    tags |= {
        "data_path": args.raw.as_posix(),
        "data_md5": evidence.locked_data_md5(workspace, args.raw),
        "model_md5": model_md5,
        registry.HELD_OUT_ROWS: str(rows),
        registry.HELD_OUT_MIN_CLASS: str(smallest),
    }
    client = mlflow.MlflowClient()
    tracking.attach_evaluation(run, scores, args.test, args.figures_dir, args.plots_dir)
    with tempfile.TemporaryDirectory() as tmp:
        lock = evidence.lock_without(workspace, STAGE, Path(tmp))
        mlflow.log_artifact(str(lock), "lineage", run_id=run.info.run_id)
    version, created = registry.register(client, store, run, model_md5, tags)
    stage.checkpoint("register:created")
    card = modelcard.CardFacts(
        model=names.MODEL_NAME,
        version=str(version.version),
        run_id=run.info.run_id,
        tags=tags,
        data=json.loads(args.prepare_metrics.read_text(encoding="utf-8")),
        scores=scores,
        segments=modelcard.read_segments(args.plots_dir / "segments.csv"),
        threshold=params.evaluate.threshold,
        confidence=params.evaluate.confidence,
        resamples=params.evaluate.bootstrap_resamples,
        bins=params.evaluate.calibration_bins,
    )
    modelcard.attach(
        client, names.MODEL_NAME, str(version.version), run.info.run_id, modelcard.render(card)
    )
    gate = roc_auc >= params.registry.min_roc_auc
    experiment = evidence.dvc_exp_name()
    if gate and experiment is None:
        who = access.caller(tracking.tracking_uri(store)).acting_as("dvc repro")
        with registry.move_lock(client, store, "staging", who):
            registry.move_alias(
                client,
                "staging",
                str(version.version),
                who=who,
                reason=f"quality gate passed: roc_auc {roc_auc:.4f} >= "
                f"{params.registry.min_roc_auc}",
            )
    log.info(
        "%s version %s of %s (run %s); quality gate roc_auc %.4f >= %.4f: %s; %s",
        "registered" if created else "already registered as",
        version.version,
        names.MODEL_NAME,
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
            "model_name": names.MODEL_NAME,
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
