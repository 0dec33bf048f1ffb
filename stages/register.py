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
from typing import TYPE_CHECKING

from predictflow import access, lineage, modelcard, promotion, registry, stage, tracking
from predictflow.io import write_json
from predictflow.params import RegisterParams, load_params

if TYPE_CHECKING:
    from mlflow.entities import Run

log = logging.getLogger(__name__)

STAGE = "register"
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


def check_lock(root: Path, model: Path, metrics: Path) -> str:
    """Refuse unless the lock is clean; return the model md5 the lock records.

    `dvc status` trusts its mtime cache, so a file rewritten with the same size and mtime
    passes it: the model and the metrics file the gate reads are hashed again here.
    """
    stale = lineage.stale_stages(root, UPSTREAM)
    if stale:
        raise stage.StageError(
            f"dvc.lock is not clean, refusing to register: {describe_stale(stale)}; "
            "run `dvc repro` first"
        )
    lock = lineage.load_lock(root)
    hashes = {}
    for path in (model, metrics):
        locked = lineage.locked_out_md5(lock, path.as_posix())
        hashes[path] = lineage.file_md5(path)
        if locked != hashes[path]:
            raise stage.StageError(
                f"{path}: md5 {hashes[path]} differs from dvc.lock ({locked}); refusing to "
                f"register (run `dvc repro -f {'train' if path == model else 'evaluate'}`)"
            )
    return hashes[model]


def held_out_counts(test: Path) -> tuple[int, int]:
    """Rows of the held-out split and rows of its smallest class (0 when a class is absent)."""
    import pandas as pd

    from predictflow.schema import TARGET

    target = pd.read_parquet(test, columns=[TARGET])[TARGET]
    counts = target.value_counts()
    return len(target), min(int(counts.get(label, 0)) for label in (0, 1))


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


def lock_without_self(root: Path, dest: Path) -> Path:
    """A copy of `dvc.lock` without this stage's entry: while `register` runs, that entry is
    still the previous run's (another version's hashes), so it is left out, never shown."""
    import yaml

    lock = yaml.safe_load((root / lineage.LOCK_FILE).read_text(encoding="utf-8")) or {}
    (lock.get("stages") or {}).pop(STAGE, None)
    path = dest / lineage.LOCK_FILE
    path.write_text(yaml.safe_dump(lock, sort_keys=False), encoding="utf-8")
    return path


def attach_evaluation(
    run: Run, scores: dict[str, float], test: Path, figures_dir: Path, plots_dir: Path
) -> None:
    """Attach `evaluate`'s files to the train run, as `evaluate` itself once did.

    The metrics name the held-out split as their dataset (DVC's md5 as digest) and the logged
    model as theirs, so the model's page shows which data it was scored on.
    """
    import mlflow

    run_id = run.info.run_id
    root = tracking.store_root()
    split = tracking.parquet_dataset(
        test, tracking.repository(root), run.data.tags.get("git_commit", "")
    )
    tracking.log_dataset(run_id, split, "evaluation")
    model_id = run.outputs.model_outputs[-1].model_id if run.outputs.model_outputs else None
    mlflow.log_metrics(scores, run_id=run_id, model_id=model_id, dataset=split)
    mlflow.log_artifacts(str(figures_dir), "evaluation", run_id=run_id)
    mlflow.log_artifacts(str(plots_dir), "evaluation/data", run_id=run_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/model.pkl"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/eval.json"))
    parser.add_argument("--test", type=Path, default=Path("data/prepared/test.parquet"))
    parser.add_argument("--figures-dir", type=Path, default=Path("metrics/eval_figures"))
    parser.add_argument("--plots-dir", type=Path, default=Path("metrics/eval_plots"))
    parser.add_argument("--receipt", type=Path, default=Path("models/registration.json"))
    parser.add_argument("--prepare-metrics", type=Path, default=Path("metrics/prepare.json"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()

    import mlflow

    params = load_params(args.params)
    workspace, store = lineage.workspace_root(), tracking.store_root()
    model_md5 = check_lock(workspace, args.model, args.metrics)
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
    tags = {k: v for k, v in run.data.tags.items() if k in tracking.LineageTags.__annotations__}
    tags |= {registry.HELD_OUT_ROWS: str(rows), registry.HELD_OUT_MIN_CLASS: str(smallest)}
    client = mlflow.MlflowClient()
    attach_evaluation(run, scores, args.test, args.figures_dir, args.plots_dir)
    with tempfile.TemporaryDirectory() as tmp:
        lock = lock_without_self(workspace, Path(tmp))
        mlflow.log_artifact(str(lock), "lineage", run_id=run.info.run_id)
    version, created = registry.register(client, store, run, model_md5, tags)
    stage.checkpoint("register:created")
    card = modelcard.CardFacts(
        model=tracking.MODEL_NAME,
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
        client, tracking.MODEL_NAME, str(version.version), run.info.run_id, modelcard.render(card)
    )
    gate = roc_auc >= params.registry.min_roc_auc
    experiment = lineage.dvc_exp_name()
    if gate and experiment is None:
        with tracking.store_lock(store, "promote"):
            registry.move_alias(
                client,
                "staging",
                str(version.version),
                who=access.caller(tracking.tracking_uri(store)).acting_as("dvc repro"),
                reason=f"quality gate passed: roc_auc {roc_auc:.4f} >= "
                f"{params.registry.min_roc_auc}",
            )
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
