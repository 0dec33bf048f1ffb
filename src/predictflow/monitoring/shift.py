"""Distribution shift, streamed: PSI over reference quantile bins, KS and chi-square tests, and
a seeded reservoir for the samples a KS test needs (memory flat in the batch size).

Statistics are numpy/scipy rather than Evidently: Evidently 0.7.23 installs into the pinned set
without changing a pin (33 more packages), but `from evidently import Report` fails on pandas 3.1.1
(`infer_dtype_from_object` is gone), and `import evidently` alone is slow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from predictflow.base.errors import StageError
from predictflow.core.cleaning import clean
from predictflow.core.params import DriftParams
from predictflow.core.rawfile import read_raw
from predictflow.core.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from predictflow.core.scoring import DEFAULT_CHUNK_ROWS, Model, churn_probability

if TYPE_CHECKING:
    pass

SCORE = "churn_probability"
EPSILON = 1e-4  # share floor in PSI: an empty bin would otherwise make it infinite


def inner_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Bin boundaries at the reference's quantiles; the outer bins are open-ended, so no batch
    value falls outside them."""
    quantiles = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(quantiles)


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)


def psi(reference: np.ndarray, batch: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins."""
    ref = np.clip(reference / max(reference.sum(), 1), EPSILON, None)
    new = np.clip(batch / max(batch.sum(), 1), EPSILON, None)
    return float(np.sum((new - ref) * np.log(new / ref)))


class Reservoir:
    """A uniform sample of at most `size` rows of a stream: each row draws a seeded random key
    and the rows with the smallest keys are kept (memory bounded by `size`)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.keys = np.empty(0)
        self.rows: pd.DataFrame | None = None

    def add(self, rows: pd.DataFrame) -> None:
        keys = np.concatenate([self.keys, self.rng.random(len(rows))])
        pool = rows if self.rows is None else pd.concat([self.rows, rows], ignore_index=True)
        keep = np.argsort(keys, kind="stable")[: self.size]
        self.keys, self.rows = keys[keep], pool.iloc[keep].reset_index(drop=True)


@dataclass
class BatchStats:
    """What is accumulated over the batch's chunks."""

    rows: int = 0
    numeric: dict[str, np.ndarray] = field(default_factory=dict)
    categories: dict[str, dict[str, int]] = field(default_factory=dict)


def numeric_columns() -> tuple[str, ...]:
    return (*NUMERIC_FEATURES, SCORE)


def scan_batch(
    model: Model,
    source: Path,
    edges: dict[str, np.ndarray],
    reservoir: Reservoir,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> BatchStats:
    """Stream the batch: bin counts for numbers and scores, counts per category, a sample."""
    stats = BatchStats()
    for chunk in read_raw(source, chunksize=chunk_rows):
        rows, _ = clean(chunk, str(source), strict_categories=False, require_target=False)
        if rows.empty:
            continue
        rows = rows.assign(**{SCORE: churn_probability(model, rows)})
        stats.rows += len(rows)
        for column in numeric_columns():
            counts = bin_counts(rows[column].to_numpy(dtype="float64"), edges[column])
            stats.numeric[column] = stats.numeric.get(column, 0) + counts
        for column in CATEGORICAL_FEATURES:
            counts = stats.categories.setdefault(column, {})
            for value, count in rows[column].value_counts().items():
                counts[str(value)] = counts.get(str(value), 0) + int(count)
        reservoir.add(rows.loc[:, list(numeric_columns())])
    if stats.rows == 0:
        raise StageError(f"{source}: no usable rows to compare (every row was blank or dropped)")
    return stats


def shift_status(values: dict[str, float], params: DriftParams) -> str:
    """`drift` on a large shift (or a moderate one the test confirms, or too many unseen values);
    `warn` on a moderate shift or a significant test alone (large batches make tiny shifts
    significant, so a p-value alone never means drift)."""
    shift, p_value = values["psi"], values["p_value"]
    if (
        shift >= params.psi_drift
        or (shift >= params.psi_warn and p_value < params.p_value)
        or values.get("unseen_share", 0.0) > params.max_unseen_share
    ):
        return "drift"
    if shift >= params.psi_warn or p_value < params.p_value:
        return "warn"
    return "ok"


def compare(
    reference: pd.DataFrame,
    stats: BatchStats,
    sample: pd.DataFrame,
    edges: dict[str, np.ndarray],
    params: DriftParams,
) -> dict[str, dict[str, Any]]:
    """Per feature (and the model's score): the statistics and a status."""
    features: dict[str, dict[str, Any]] = {}
    for column in numeric_columns():
        ref_values = reference[column].to_numpy(dtype="float64")
        values = {
            "kind": "score" if column == SCORE else "numeric",
            **numeric_shift(
                ref_values,
                stats.numeric[column],
                edges[column],
                sample[column].to_numpy(dtype="float64"),
            ),
            "reference_mean": float(ref_values.mean()),
        }
        features[column] = {**values, "status": shift_status(values, params)}
    for column in CATEGORICAL_FEATURES:
        ref_counts = {str(k): int(v) for k, v in reference[column].value_counts().items()}
        values = {
            "kind": "categorical",
            **categorical_shift(ref_counts, stats.categories[column], stats.rows),
        }
        features[column] = {**values, "status": shift_status(values, params)}
    return features


def numeric_shift(
    reference: np.ndarray, batch_counts: np.ndarray, edges: np.ndarray, batch_sample: np.ndarray
) -> dict[str, Any]:
    """PSI over the reference's quantile bins (`batch_counts` binned with `edges`) and a KS test
    of the reference against `batch_sample` (drift and data diff share these statistics)."""
    from scipy import stats as scipy_stats

    test = scipy_stats.ks_2samp(reference, batch_sample)
    return {
        "test": "ks",
        "psi": psi(bin_counts(reference, edges), batch_counts),
        "statistic": float(test.statistic),
        "p_value": float(test.pvalue),
    }


def categorical_shift(
    ref_counts: dict[str, int], batch_counts: dict[str, int], batch_rows: int
) -> dict[str, Any]:
    """PSI and a chi-square test over the union of categories, and the batch's share of
    categories the reference never had."""
    from scipy import stats as scipy_stats

    union = sorted(ref_counts.keys() | batch_counts.keys())
    ref_vec = np.array([ref_counts.get(c, 0) for c in union], dtype="float64")
    new_vec = np.array([batch_counts.get(c, 0) for c in union], dtype="float64")
    table = np.vstack([ref_vec, new_vec])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] > 1:
        test = scipy_stats.chi2_contingency(table)
        statistic, p_value = float(test.statistic), float(test.pvalue)
    else:  # one category on both sides: nothing can differ
        statistic, p_value = 0.0, 1.0
    unseen = {c: n for c, n in batch_counts.items() if c not in ref_counts}
    return {
        "test": "chi2",
        "psi": psi(ref_vec, new_vec),
        "statistic": statistic,
        "p_value": p_value,
        "unseen_share": sum(unseen.values()) / max(batch_rows, 1),
        "unseen": sorted(unseen),
    }


# A batch needs this many rows per PSI bin: below it, empty or doubled bins are chance, and a
