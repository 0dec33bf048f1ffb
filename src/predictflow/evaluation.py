"""Held-out metrics and the figures that show them; pure functions over labels and scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sklearn import metrics

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, threshold: float
) -> dict[str, float]:
    """The contract's metric set (`metrics/eval.json`), rounded for stable diffs."""
    predicted = (proba >= threshold).astype(int)
    values = {
        "roc_auc": metrics.roc_auc_score(y_true, proba),
        "pr_auc": metrics.average_precision_score(y_true, proba),
        "accuracy": metrics.accuracy_score(y_true, predicted),
        "precision": metrics.precision_score(y_true, predicted, zero_division=0),
        "recall": metrics.recall_score(y_true, predicted, zero_division=0),
        "f1": metrics.f1_score(y_true, predicted, zero_division=0),
        "log_loss": metrics.log_loss(y_true, proba, labels=[0, 1]),
    }
    return {key: round(float(value), 6) for key, value in values.items()}


def plot_tables(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, pd.DataFrame]:
    """The points `dvc plots` draws: ROC and precision-recall corners, confusion pairs.

    Tables rather than DVCLive's sklearn plots: DVCLive writes them as indented JSON with one
    object per point (per row for the confusion matrix): 2.1-2.7 s at 200,000 held-out rows,
    against 0.5-0.6 s for these tables written as CSV.
    """
    import pandas as pd

    fpr, tpr, roc_thresholds = metrics.roc_curve(y_true, proba)
    precision, recall, pr_thresholds = metrics.precision_recall_curve(
        y_true,
        proba,
        drop_intermediate=True,  # the same step curve from its corners
    )
    labels = np.array(["No", "Yes"])
    return {
        "roc.csv": pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": roc_thresholds}),
        "precision_recall.csv": pd.DataFrame(
            {"precision": precision[:-1], "recall": recall[:-1], "threshold": pr_thresholds}
        ),
        "confusion_matrix.csv": pd.DataFrame(
            {
                "actual": labels[np.asarray(y_true, dtype=int)],
                "predicted": labels[(proba >= threshold).astype(int)],
            }
        ),
    }


def figures(
    y_true: np.ndarray, proba: np.ndarray, threshold: float, importance: pd.DataFrame
) -> dict[str, Figure]:
    """ROC, precision-recall, confusion matrix and top-20 importance, for the MLflow run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, Figure] = {}
    fig, ax = plt.subplots(figsize=(5, 5))
    metrics.RocCurveDisplay.from_predictions(y_true, proba, ax=ax)
    out["roc.png"] = fig
    fig, ax = plt.subplots(figsize=(5, 5))
    metrics.PrecisionRecallDisplay.from_predictions(y_true, proba, ax=ax)
    out["precision_recall.png"] = fig
    fig, ax = plt.subplots(figsize=(5, 5))
    metrics.ConfusionMatrixDisplay.from_predictions(
        y_true, (proba >= threshold).astype(int), display_labels=["No", "Yes"], ax=ax
    )
    out["confusion_matrix.png"] = fig
    top = importance.head(20).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.barh(top["feature"], top["importance"])
    ax.set_title("Feature importance (top 20)")
    fig.tight_layout()
    out["feature_importance.png"] = fig
    return out
