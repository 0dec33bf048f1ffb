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

import pandas as pd

from predictflow.core import paths
from predictflow.core.data import check_held_out
from predictflow.core.estimator import feature_importance
from predictflow.core.evaluation import (
    churn_scores,
    classification_metrics,
    figures,
    plot_tables,
    reliability,
    segment_metrics,
    uncertainty_metrics,
)
from predictflow.core.io import atomic_path, write_json
from predictflow.core.params import load_params
from predictflow.core.schema import FEATURES, TARGET
from predictflow.core.scoring import prediction_frame
from predictflow.lineage import stage

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)


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
    parser.add_argument("--model", type=Path, default=paths.MODEL)
    parser.add_argument("--test", type=Path, default=paths.PREPARED_TEST)
    parser.add_argument("--predictions", type=Path, default=paths.PREDICTIONS)
    parser.add_argument("--metrics", type=Path, default=paths.EVAL_METRICS)
    parser.add_argument("--plots-dir", type=Path, default=paths.EVAL_PLOTS)
    parser.add_argument("--figures-dir", type=Path, default=paths.EVAL_FIGURES)
    parser.add_argument("--params", type=Path, default=paths.PARAMS)
    args = parser.parse_args()

    params = load_params(args.params)
    with open(args.model, "rb") as handle:
        model = pickle.load(handle)
    if params.scale.engine == "dask":
        from predictflow.core import on_dask
        from predictflow.core.cluster import cluster

        with cluster():
            test, proba = on_dask.score(model, args.test)
        check_held_out(test[TARGET].to_numpy(), args.test)
    else:
        test = pd.read_parquet(args.test)
        check_held_out(test[TARGET].to_numpy(), args.test)
        proba = churn_scores(model, test.loc[:, list(FEATURES)])
    y_true = test[TARGET].to_numpy()
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
    scored = prediction_frame(test, proba, threshold)
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
