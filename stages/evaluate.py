"""Stage `evaluate`: score the held-out split with the served pipeline; metrics and plots.

Metrics go to `metrics/eval.json` (what `dvc metrics diff` compares), plot data to
`metrics/eval_plots/` (what `dvc plots show` draws), the figures for the MLflow run to
`metrics/eval_figures/` as PNG. No MLflow here: `register`, which connects anyway, attaches
these files to the train run, so one iteration opens the store in two processes, not three.
"""

from __future__ import annotations

import argparse
import logging
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from predictflow import stage
from predictflow.evaluation import (
    classification_metrics,
    figures,
    plot_tables,
    reliability,
    segment_metrics,
    uncertainty_metrics,
)
from predictflow.io import atomic_path, write_json
from predictflow.model import feature_importance
from predictflow.params import load_params
from predictflow.schema import FEATURES, ID, TARGET, TARGET_VALUES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


def write_figures(figures_dir: Path, figs: dict[str, Figure]) -> None:
    """The run's figures as PNG files, rendered here so `register` only uploads them."""
    import matplotlib.pyplot as plt

    for name, fig in figs.items():
        with atomic_path(figures_dir / name) as png_tmp:
            fig.savefig(png_tmp, format="png")
        plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/model.pkl"))
    parser.add_argument("--test", type=Path, default=Path("data/prepared/test.parquet"))
    parser.add_argument("--predictions", type=Path, default=Path("data/predictions/test.parquet"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/eval.json"))
    parser.add_argument("--plots-dir", type=Path, default=Path("metrics/eval_plots"))
    parser.add_argument("--figures-dir", type=Path, default=Path("metrics/eval_figures"))
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
    ev = params.evaluate
    scores |= uncertainty_metrics(
        y_true, proba, ev.bootstrap_resamples, params.base.seed, ev.confidence, ev.calibration_bins
    )
    importance = feature_importance(model)
    tables = {
        **plot_tables(y_true, proba, threshold),
        "importance.csv": importance,
        "reliability.csv": reliability(y_true, proba, ev.calibration_bins),
        # not a plot: the model card's per-segment table, attached to the run with the others
        "segments.csv": pd.DataFrame(segment_metrics(test, y_true, proba)),
    }
    scored = predictions(test, proba, threshold)
    figs = figures(y_true, proba, threshold, importance)
    write_plots(args.plots_dir, tables)
    write_figures(args.figures_dir, figs)
    with atomic_path(args.predictions) as predictions_tmp:
        scored.to_parquet(predictions_tmp, index=False)
    write_json(args.metrics, scores)
    log.info(
        "roc_auc %.4f (%.0f%% interval %.4f-%.4f), accuracy %.4f on %d held-out rows",
        scores["roc_auc"],
        100 * ev.confidence,
        scores["roc_auc_ci_low"],
        scores["roc_auc_ci_high"],
        scores["accuracy"],
        len(test),
    )


if __name__ == "__main__":
    stage.run("evaluate", main, uses_store=False)
