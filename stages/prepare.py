"""Stage `prepare`: validate the raw file against the data contract, clean it, split it."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from predictflow import stage
from predictflow.io import atomic_path, write_json
from predictflow.params import PrepareParams, load_params
from predictflow.schema import TARGET, TARGET_VALUES, CleanReport, clean, read_raw

log = logging.getLogger(__name__)


def split(
    frame: pd.DataFrame, params: PrepareParams, seed: int, source: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified on the target so both splits keep the churn rate.

    Refused in one line when a split would lack a class: the model cannot learn from a train
    split with one class, and a held-out split with one class cannot be evaluated (ROC AUC is
    undefined). scikit-learn would refuse the smallest cases itself, with a traceback.
    """
    n_test = math.ceil(params.test_size * len(frame))  # what scikit-learn holds out
    n_train = len(frame) - n_test
    rarest = min(_class_counts(frame).values())
    if rarest < 2 or min(n_train, n_test) < 2:
        fix = (
            "add rows of the rarer class"
            if rarest < 2
            else "add rows, or set prepare.test_size so both splits get at least 2 rows"
        )
        raise stage.StageError(
            f"{source}: {_rows(frame)} cannot be split at prepare.test_size {params.test_size} "
            f"into {n_train} train and {n_test} held-out rows: each split needs a Yes and a No "
            f"row (at least 2 rows of each class in all); {fix}"
        )
    train, test = train_test_split(
        frame, test_size=params.test_size, random_state=seed, stratify=frame[TARGET]
    )
    for name, part in (("train", train), ("held-out", test)):
        missing = [label for label, count in _class_counts(part).items() if count == 0]
        if missing:
            raise stage.StageError(
                f"{source}: the {name} split has no '{missing[0]}' row: {len(part)} of "
                f"{_rows(frame)} at prepare.test_size {params.test_size}; add rows to the file "
                f"or {'lower' if name == 'train' else 'raise'} prepare.test_size"
            )
    return train.reset_index(drop=True), test.reset_index(drop=True)


def _class_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Rows per target label (`Yes`/`No`), zeros included."""
    return {label: int((frame[TARGET] == code).sum()) for label, code in TARGET_VALUES.items()}


def _rows(frame: pd.DataFrame) -> str:
    """`10 usable rows (2 Yes, 8 No)`: what the split had to work with, after cleaning."""
    counts = ", ".join(f"{count} {label}" for label, count in _class_counts(frame).items())
    return f"{len(frame)} usable rows ({counts})"


def report_metrics(report: CleanReport, train: pd.DataFrame, test: pd.DataFrame) -> dict:
    return {
        "rows_raw": report.rows_read,
        "rows_dropped": report.rows_dropped_total_charges,
        "total_charges_filled": report.total_charges_filled,
        "extra_columns": len(report.extra_columns),
        "rows_train": len(train),
        "rows_test": len(test),
        "churn_rate_train": round(float(train[TARGET].mean()), 6),
        "churn_rate_test": round(float(test[TARGET].mean()), 6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, default=Path("data/customers.csv"))
    parser.add_argument("--train", type=Path, default=Path("data/prepared/train.parquet"))
    parser.add_argument("--test", type=Path, default=Path("data/prepared/test.parquet"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/prepare.json"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()

    params = load_params(args.params)
    frame, report = clean(read_raw(args.raw), str(args.raw))
    if report.extra_columns:
        log.warning("ignoring extra column(s): %s", ", ".join(report.extra_columns))
    if report.rows_dropped_total_charges:
        log.warning(
            "dropped %d row(s) with blank TotalCharges at tenure > 0",
            report.rows_dropped_total_charges,
        )
    train, test = split(frame, params.prepare, params.base.seed, str(args.raw))
    with atomic_path(args.train) as train_tmp, atomic_path(args.test) as test_tmp:
        train.to_parquet(train_tmp, index=False)
        test.to_parquet(test_tmp, index=False)
    write_json(args.metrics, report_metrics(report, train, test))
    log.info("%d rows -> train %d, test %d", len(frame), len(train), len(test))


if __name__ == "__main__":
    stage.run("prepare", main)
