"""Shadow scoring: how a challenger agrees with the champion on the same batch.

`predictflow predict --shadow URI` scores every chunk with both models (see `scoring.score_csv`)
and accumulates the agreement here without keeping the batch: Pearson from streamed co-moments
(exact), Spearman on a seeded reservoir sample (exact while the batch fits in it), flips counted.
The versions, threshold and agreement go into the scoring record (`record`) and one run in
`churn-monitoring`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from predictflow.lineage import evidence, tracking
from predictflow.monitoring.record import (
    ModelRef,
    check_distinct,
    finish_run,
    monitoring_experiment,
    resolve_model,
    scoring_record,
    write_record,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

SPEARMAN_SAMPLE_ROWS = 100_000  # Spearman needs ranks: exact up to this many rows, sampled above
SAMPLE_SEED = 0


# --- agreement, streamed ----------------------------------------------------------------------


@dataclass
class Agreement:
    """Champion vs shadow over a stream of chunks; memory bounded by the Spearman sample."""

    rows: int = 0
    flips_to_churn: int = 0  # champion says stay, shadow says churn
    flips_to_stay: int = 0
    abs_diff_sum: float = 0.0
    mean: np.ndarray = field(default_factory=lambda: np.zeros(2))
    m2: np.ndarray = field(default_factory=lambda: np.zeros(2))  # sums of squared deviations
    comoment: float = 0.0
    sample: Any = None  # a shift.Reservoir, made on first use

    def add(
        self,
        champion: np.ndarray,
        shadow: np.ndarray,
        champion_predicted: np.ndarray,
        shadow_predicted: np.ndarray,
    ) -> None:
        """Merge one chunk (Chan et al.'s pairwise update keeps Pearson exact and stable)."""
        from predictflow.monitoring.shift import Reservoir

        n = len(champion)
        if n == 0:
            return
        pair = np.column_stack([champion, shadow]).astype("float64")
        chunk_mean = pair.mean(axis=0)
        centred = pair - chunk_mean
        total = self.rows + n
        delta = chunk_mean - self.mean
        self.m2 += (centred**2).sum(axis=0) + delta**2 * self.rows * n / total
        self.comoment += float(centred[:, 0] @ centred[:, 1]) + (
            delta[0] * delta[1] * self.rows * n / total
        )
        self.mean += delta * n / total
        self.rows = total
        self.flips_to_churn += int(((champion_predicted == 0) & (shadow_predicted == 1)).sum())
        self.flips_to_stay += int(((champion_predicted == 1) & (shadow_predicted == 0)).sum())
        self.abs_diff_sum += float(np.abs(pair[:, 0] - pair[:, 1]).sum())
        if self.sample is None:
            self.sample = Reservoir(SPEARMAN_SAMPLE_ROWS, SAMPLE_SEED)
        self.sample.add(pd.DataFrame({"champion": pair[:, 0], "shadow": pair[:, 1]}))

    def as_dict(self) -> dict[str, Any]:
        from scipy import stats

        flips = self.flips_to_churn + self.flips_to_stay
        spread = math.sqrt(self.m2[0] * self.m2[1])
        sample = self.sample.rows if self.sample is not None else None
        spearman = None
        if (
            sample is not None
            and sample["champion"].nunique() > 1
            and sample["shadow"].nunique() > 1
        ):
            spearman = float(stats.spearmanr(sample["champion"], sample["shadow"]).statistic)
        return {
            "rows": self.rows,
            # None when a model gives every row the same score: no correlation is defined
            "pearson": self.comoment / spread if spread > 0 else None,
            "spearman": spearman,
            "spearman_sample_rows": 0 if sample is None else len(sample),
            "flips": flips,
            "flip_share": flips / self.rows if self.rows else 0.0,
            "flips_to_churn": self.flips_to_churn,
            "flips_to_stay": self.flips_to_stay,
            "mean_abs_score_diff": self.abs_diff_sum / self.rows if self.rows else 0.0,
            "champion_mean_score": float(self.mean[0]),
            "shadow_mean_score": float(self.mean[1]),
        }


def render_agreement(record: dict[str, Any]) -> str:
    a, shadow = record["agreement"], record["models"]["shadow"]

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    return (
        f"shadow {shadow['uri']} (version {shadow['version']})"
        f" vs champion (version {record['models']['champion']['version']}): "
        f"Pearson {fmt(a['pearson'])}, Spearman {fmt(a['spearman'])}, decision flips "
        f"{a['flips']} of {a['rows']} ({a['flip_share']:.2%}: {a['flips_to_churn']} to churn, "
        f"{a['flips_to_stay']} to stay)"
    )


def log_shadow_run(root: Path, record: dict[str, Any]) -> str:
    """One monitoring run per shadowed batch: both versions, the batch md5, the agreement."""
    import mlflow

    client = mlflow.MlflowClient(tracking.tracking_uri(root))
    champion, shadow = record["models"]["champion"], record["models"]["shadow"]
    run = client.create_run(
        monitoring_experiment(root),
        run_name=f"shadow-v{shadow['version']}-vs-v{champion['version']}",
        tags={
            "kind": "shadow",
            "model_name": champion["name"] or "",
            "champion_uri": champion["uri"],
            "champion_version": str(champion["version"]),
            "shadow_uri": shadow["uri"],
            "shadow_version": str(shadow["version"]),
            "batch_path": record["input"],
            "batch_md5": record["batch_md5"],
            "threshold": str(record["threshold"]),
        },
    )
    agreement = record["agreement"]
    metrics = {
        k: agreement[k]
        for k in ("rows", "pearson", "spearman", "flip_share", "flips", "mean_abs_score_diff")
    }
    finish_run(client, run.info.run_id, metrics, record)
    return run.info.run_id


def predict_file(
    client: MlflowClient,
    model_uri: str,
    source: Path,
    output: Path,
    threshold: float | None,
    chunk_rows: int,
    quiet: bool = False,
    shadow_uri: str | None = None,
) -> tuple[dict[str, Any], list[str], str]:
    """`predictflow predict [--shadow]`: score `source` into `output` with the verified
    champion (and challenger), write the scoring record beside it, log the agreement as a
    churn-monitoring run; return the facts, the notes for the user and the text to print."""
    from mlflow.exceptions import MlflowException

    from predictflow.core.scoring import default_threshold, notes, score_csv
    from predictflow.lineage import artifacts

    refs: dict[str, ModelRef] = {}
    models = {}
    for role, uri in (("champion", model_uri), ("shadow", shadow_uri)):
        if uri is None:
            continue
        try:  # pinned to the version the alias names now: the record says exactly who scored
            refs[role] = resolve_model(client, uri)
        except (MlflowException, OSError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise artifacts.ArtifactError(f"cannot load model {uri!r}: {first}") from None
        if role == "shadow":
            check_distinct(refs["champion"], refs["shadow"])
        models[role], proof = artifacts.load_with_proof(client, refs[role].pinned_uri, shown=uri)
        # What was verified, recorded: a runs:/ URI or a path gets the md5 its run vouched for.
        refs[role] = replace(refs[role], model_md5=proof.md5, run_id=proof.run_id)
        if role == "shadow":  # the same bytes however named (a path to the champion's folder)
            check_distinct(refs["champion"], refs["shadow"])
    if threshold is None:
        threshold = default_threshold(evidence.workspace_root())
    report = score_csv(
        models["champion"],
        source,
        output,
        threshold,
        chunk_rows,
        progress=False if quiet else None,
        shadow=models.get("shadow"),
        agreement=Agreement() if "shadow" in models else None,
    )
    agreement = report.agreement.as_dict() if report.agreement is not None else None
    record = scoring_record(
        refs,
        source,
        output,
        threshold,
        report.rows_scored,
        agreement,
        report.scores_digest.hexdigest(),
    )
    record["scores_rows_md5"] = report.rows_md5()  # order-free: see scoring.rows_digest
    if agreement is not None:
        record["run_id"] = log_shadow_run(tracking.store_root(), record)
    facts: dict[str, Any] = {
        "model": model_uri,
        "input": str(source),
        "output": str(output),
        "threshold": threshold,
        **report.as_dict(),
        "record": str(write_record(output, record)),
        "versions": {role: ref.version for role, ref in refs.items()},
    }
    text = f"scored {report.rows_scored} rows with {model_uri} -> {output}"
    if agreement is not None:
        facts.update(shadow=shadow_uri, agreement=agreement, run_id=record["run_id"])
        text += f"\n{render_agreement(record)}; run {record['run_id']}"
    return facts, notes(report), text
