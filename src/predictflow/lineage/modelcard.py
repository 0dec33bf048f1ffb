"""The model card of a registered version: what it is for, what it learned from, how good it is
and where it is weak, in one Markdown page logged on its run.

Every number comes from a file the pipeline already wrote and DVC hashes (`metrics/eval.json`,
`metrics/prepare.json`, the segments table in `metrics/eval_plots/`), printed as the file has it,
so the card and `dvc metrics show` never disagree. Rendering is pure; `attach` is the only part
that talks to MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

ARTIFACT_PATH = "model_card/model_card.md"  # under the train run's artifacts
TAG = "model_card"  # version tag: runs:/<run id>/model_card/model_card.md

# A segment ranks "poorly" below this ROC AUC; below MIN_SEGMENT_ROWS its metrics are noise.
WEAK_SEGMENT_AUC = 0.65
MIN_SEGMENT_ROWS = 100
# An expected calibration error above this is worth a sentence: scores are not probabilities.
NOTABLE_ECE = 0.05

TEMPLATE = "model_card.md.j2"  # in templates/ (package data), beside the report's


@dataclass(frozen=True)
class CardFacts:
    """Everything a card shows, gathered by `register` from files the pipeline wrote."""

    model: str
    version: str
    run_id: str
    tags: dict[str, str]
    data: dict[str, Any]  # metrics/prepare.json
    scores: dict[str, float]  # metrics/eval.json
    segments: list[dict[str, Any]]  # metrics/eval_plots/segments.csv rows
    threshold: float
    confidence: float
    resamples: int
    bins: int


def known_limits(facts: CardFacts) -> list[str]:
    """The standing caveats, then what this version's own numbers show."""
    scores = facts.scores
    limits = [
        f"Measured on one held-out split of {facts.data.get('rows_test')} rows: the intervals "
        "cover its sampling error, not a change in customers since. Check a new batch with "
        "`predictflow drift` before trusting scores on it.",
        "Learned from one snapshot of customers; churn drivers that the data does not record "
        "(price changes, competitors' offers, service incidents) are invisible to it.",
    ]
    if scores.get("ece", 0.0) > NOTABLE_ECE:
        limits.append(
            f"Scores are not well calibrated (ece {scores['ece']}): use them to rank customers, "
            "not as churn probabilities."
        )
    for s in facts.segments:
        where = f"{s['segment']} = {s['value']}"
        if s["rows"] < MIN_SEGMENT_ROWS:
            limits.append(f"{where}: only {s['rows']} held-out rows; its metrics are noisy.")
        if s["roc_auc"] is None:
            limits.append(f"{where}: one class only in the held-out split; roc_auc undefined.")
        elif s["roc_auc"] < WEAK_SEGMENT_AUC:
            limits.append(
                f"{where}: ranks customers poorly within the segment (roc_auc {s['roc_auc']} "
                f"against {scores['roc_auc']} overall); its scores mostly say which segment a "
                "customer is in."
            )
    return limits


def render(facts: CardFacts) -> str:
    """The card as Markdown (jinja2; undefined names fail instead of printing nothing)."""
    import jinja2

    from predictflow.lineage.tracking import METRIC_KEYS

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("predictflow", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown, not HTML
    )
    return env.get_template(TEMPLATE).render(
        model=facts.model,
        version=facts.version,
        run_id=facts.run_id,
        tags=facts.tags,
        data=facts.data,
        scores=facts.scores,
        segments=facts.segments,
        point_keys=[k for k in METRIC_KEYS if k not in ("roc_auc", "pr_auc")],
        threshold=facts.threshold,
        confidence_pct=f"{100 * facts.confidence:g}",
        resamples=facts.resamples,
        bins=facts.bins,
        limits=known_limits(facts),
    )


def read_segments(path: Any) -> list[dict[str, Any]]:
    """The segments table `evaluate` wrote, with an empty roc_auc read back as None."""
    import pandas as pd

    table = pd.read_csv(path, dtype={"value": str})
    rows = table.astype(object).where(table.notna(), None).to_dict("records")
    return [{**r, "rows": int(r["rows"])} for r in rows]


def attach(client: MlflowClient, model: str, version: str, run_id: str, card: str) -> str:
    """Log the card on the version's run and record where in a version tag; returns the URI.

    Logged again on every registration of the same model (same path, same text), so a
    `register` killed between the version and its card completes it on the next run.
    """
    import mlflow

    mlflow.log_text(card, ARTIFACT_PATH, run_id=run_id)
    uri = f"runs:/{run_id}/{ARTIFACT_PATH}"
    client.set_model_version_tag(model, version, TAG, uri)
    return uri
