"""The train/held-out split and the facts about it: pure functions over frames and labels.

`prepare` splits with `split`; `predictflow drift` rebuilds a version's training split with the
same function; `evaluate` and `register` check the held-out split's classes with these counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from predictflow.base.errors import StageError
from predictflow.core.cleaning import as_written
from predictflow.core.params import PrepareParams
from predictflow.core.schema import TARGET, TARGET_VALUES, CleanReport


def split(
    frame: pd.DataFrame, params: PrepareParams, seed: int, source: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified on the target so both splits keep the churn rate (see `split_indices`)."""
    train, test = split_indices(frame[TARGET].to_numpy(), params, seed, source)
    return frame.iloc[train].reset_index(drop=True), frame.iloc[test].reset_index(drop=True)


def split_indices(
    labels: np.ndarray, params: PrepareParams, seed: int, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the train and held-out rows, stratified on the target labels.

    A stratified split depends only on the row count and the labels, so it needs no other
    column: the same positions as `train_test_split` on the whole frame, in its order.

    Refused in one line when a split would lack a class: the model cannot learn from a train
    split with one class, and a held-out split with one class cannot be evaluated (ROC AUC is
    undefined). scikit-learn would refuse the smallest cases itself, with a traceback.
    """
    n_test = math.ceil(params.test_size * len(labels))  # what scikit-learn holds out
    n_train = len(labels) - n_test
    rarest = min(label_counts(labels).values())
    if rarest < 2 or min(n_train, n_test) < 2:
        fix = (
            "add rows of the rarer class"
            if rarest < 2
            else "add rows, or set prepare.test_size so both splits get at least 2 rows"
        )
        raise StageError(
            f"{source}: {_rows(labels)} cannot be split at prepare.test_size {params.test_size} "
            f"into {n_train} train and {n_test} held-out rows: each split needs a Yes and a No "
            f"row (at least 2 rows of each class in all); {fix}"
        )
    # imported here: `register` reads the counts below without importing scikit-learn (1-2.6 s)
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        np.arange(len(labels)), test_size=params.test_size, random_state=seed, stratify=labels
    )
    for name, part in (("train", train), ("held-out", test)):
        missing = [label for label, count in label_counts(labels[part]).items() if count == 0]
        if missing:
            raise StageError(
                f"{source}: the {name} split has no '{missing[0]}' row: {len(part)} of "
                f"{_rows(labels)} at prepare.test_size {params.test_size}; add rows to the file "
                f"or {'lower' if name == 'train' else 'raise'} prepare.test_size"
            )
    return train, test


def split_batches(
    frame: pd.DataFrame, positions: np.ndarray, batch_rows: int
) -> Iterator[pd.DataFrame]:
    """The rows of a `clean_file` frame at `positions`, in that order, as `clean` frames of at
    most `batch_rows` rows (for `io.write_batches`): only one batch is expanded at a time."""
    for start in range(0, len(positions), batch_rows):
        rows = frame.iloc[positions[start : start + batch_rows]]
        yield as_written(rows).reset_index(drop=True)


def label_counts(labels: np.ndarray) -> dict[str, int]:
    """Target codes per label (`Yes`/`No`), zeros included."""
    return {label: int((labels == code).sum()) for label, code in TARGET_VALUES.items()}


def _rows(labels: np.ndarray) -> str:
    """`10 usable rows (2 Yes, 8 No)`: what the split had to work with, after cleaning."""
    counts = ", ".join(f"{count} {label}" for label, count in label_counts(labels).items())
    return f"{len(labels)} usable rows ({counts})"


def prepare_metrics(report: CleanReport, train: np.ndarray, test: np.ndarray) -> dict:
    """`metrics/prepare.json`: what cleaning dropped or filled, and the two splits' labels."""
    return split_metrics(report, (len(train), int(train.sum())), (len(test), int(test.sum())))


def split_metrics(report: CleanReport, train: tuple[int, int], test: tuple[int, int]) -> dict:
    """`prepare_metrics` from each split's (rows, churned rows): what the dask engine has."""
    return {
        "rows_raw": report.rows_read,
        "rows_dropped": report.rows_dropped_total_charges,
        "total_charges_filled": report.total_charges_filled,
        "extra_columns": len(report.extra_columns),
        "rows_train": train[0],
        "rows_test": test[0],
        "churn_rate_train": round(train[1] / train[0], 6),
        "churn_rate_test": round(test[1] / test[0], 6),
    }


def check_held_out(y_true: np.ndarray, source: Path | str) -> None:
    """Refuse a held-out split without both classes: ROC AUC and PR AUC are undefined there.

    `prepare` already refuses such a split; this guard holds for any test file given.
    """
    present = set(np.unique(y_true).tolist())
    missing = [label for label, code in TARGET_VALUES.items() if code not in present]
    if missing:
        raise StageError(
            f"{source}: the held-out split has no '{missing[0]}' row ({len(y_true)} rows), so "
            "it cannot be evaluated; add rows to the raw data or raise prepare.test_size"
        )


def held_out_counts(test: Path) -> tuple[int, int]:
    """Rows of the held-out split and rows of its smallest class (0 when a class is absent)."""
    target = pd.read_parquet(test, columns=[TARGET])[TARGET]
    counts = target.value_counts()
    return len(target), min(int(counts.get(label, 0)) for label in (0, 1))
