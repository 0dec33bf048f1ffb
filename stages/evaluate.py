"""Stage `evaluate`: score the held-out split with the served pipeline; metrics and plots.

Metrics go to `metrics/eval.json` (what `dvc metrics diff` compares), plot data to
`metrics/eval_plots/` (what `dvc plots show` draws), and both to the MLflow run that logged
this exact model (found by its md5).
"""

from __future__ import annotations

import argparse
import logging
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from predictflow import lineage, stage, tracking
from predictflow.evaluation import classification_metrics, figures, plot_tables
from predictflow.io import atomic_path, write_json
from predictflow.model import feature_importance
from predictflow.params import load_params
from predictflow.schema import FEATURES, ID, TARGET, TARGET_VALUES

log = logging.getLogger(__name__)


def predictions(test: pd.DataFrame, proba, threshold: float) -> pd.DataFrame:
    """Per-customer scores of the held-out split (what `predictflow predict` must reproduce)."""
    return pd.DataFrame(
        {
            ID: test[ID].to_numpy(),
            TARGET: test[TARGET].to_numpy(),
            "churn_probability": proba,
            "churn_predicted": (proba >= threshold).astype("int64"),
        }
    )


def check_held_out(y_true: np.ndarray, source: Path) -> None:
    """Refuse a held-out split without both classes: ROC AUC and PR AUC are undefined there.

    `prepare` already refuses such a split; this guard holds for any test file given.
    """
    present = set(np.unique(y_true).tolist())
    missing = [label for label, code in TARGET_VALUES.items() if code not in present]
    if missing:
        raise stage.StageError(
            f"{source}: the held-out split has no '{missing[0]}' row ({len(y_true)} rows), so "
            "it cannot be evaluated; add rows to the raw data or raise prepare.test_size"
        )


def write_plots(plots_dir: Path, tables: dict[str, pd.DataFrame]) -> None:
    """Plot data as CSV tables, the files `dvc plots show` draws (declared in dvc.yaml)."""
    for name, table in tables.items():
        with atomic_path(plots_dir / name) as table_tmp:
            table.to_csv(table_tmp, index=False, float_format="%.6g")


def log_to_run(
    model_md5: str, scores: dict[str, float], figs: dict, plots_dir: Path, test: Path
) -> None:
    """Attach metrics and figures to the train run of this model, if the store has it.

    The metrics name the test split as their dataset and the logged model as theirs, so the
    model version in the registry shows which data it was scored on (DVC's md5 as digest).
    """
    import mlflow

    runs = tracking.runs_with_model(tracking.connect(tracking.store_root()), model_md5)
    if not runs:
        log.warning(
            "no MLflow run logged model md5 %s; metrics stay in DVC only "
            "(`dvc repro -f train` logs a new run)",
            model_md5,
        )
        return
    run = runs[0]
    repo = tracking.repository(tracking.store_root())
    split = tracking.parquet_dataset(test, repo, run.data.tags.get("git_commit", ""))
    tracking.log_dataset(run.info.run_id, split, "evaluation")
    model_id = run.outputs.model_outputs[-1].model_id if run.outputs.model_outputs else None
    with mlflow.start_run(run_id=run.info.run_id):
        mlflow.log_metrics(scores, run_id=run.info.run_id, model_id=model_id, dataset=split)
        for name, fig in figs.items():
            mlflow.log_figure(fig, f"evaluation/{name}")
        mlflow.log_artifacts(str(plots_dir), "evaluation/data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/model.pkl"))
    parser.add_argument("--test", type=Path, default=Path("data/prepared/test.parquet"))
    parser.add_argument("--predictions", type=Path, default=Path("data/predictions/test.parquet"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/eval.json"))
    parser.add_argument("--plots-dir", type=Path, default=Path("metrics/eval_plots"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()

    params = load_params(args.params)
    with open(args.model, "rb") as handle:
        model = pickle.load(handle)
    test = pd.read_parquet(args.test)
    y_true = test[TARGET].to_numpy()
    check_held_out(y_true, args.test)
    proba = model.predict_proba(test.loc[:, list(FEATURES)])[:, 1].astype("float64")
    threshold = params.evaluate.threshold
    # Compute every output first, then write them: a failure leaves the previous ones intact.
    scores = classification_metrics(y_true, proba, threshold)
    importance = feature_importance(model)
    tables = {**plot_tables(y_true, proba, threshold), "importance.csv": importance}
    scored = predictions(test, proba, threshold)
    write_plots(args.plots_dir, tables)
    with atomic_path(args.predictions) as predictions_tmp:
        scored.to_parquet(predictions_tmp, index=False)
    write_json(args.metrics, scores)
    log.info(
        "roc_auc %.4f, accuracy %.4f on %d held-out rows",
        scores["roc_auc"],
        scores["accuracy"],
        len(test),
    )
    log_to_run(
        lineage.file_md5(args.model),
        scores,
        figures(y_true, proba, threshold, importance),
        args.plots_dir,
        args.test,
    )


if __name__ == "__main__":
    stage.run("evaluate", main)
