"""Stage `prepare`: validate the raw file against the data contract, clean it, split it."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from predictflow import stage
from predictflow.io import atomic_path, write_json
from predictflow.params import PrepareParams, load_params
from predictflow.schema import TARGET, CleanReport, clean, read_raw

log = logging.getLogger(__name__)


def split(frame: pd.DataFrame, params: PrepareParams, seed: int) -> tuple[pd.DataFrame, ...]:
    """Stratified on the target so both splits keep the churn rate."""
    if frame[TARGET].value_counts().min() < 2:
        raise stage.StageError(f"column '{TARGET}': each class needs at least 2 rows to split")
    train, test = train_test_split(
        frame, test_size=params.test_size, random_state=seed, stratify=frame[TARGET]
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


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
    train, test = split(frame, params.prepare, params.base.seed)
    with atomic_path(args.train) as train_tmp, atomic_path(args.test) as test_tmp:
        train.to_parquet(train_tmp, index=False)
        test.to_parquet(test_tmp, index=False)
    write_json(args.metrics, report_metrics(report, train, test))
    log.info("%d rows -> train %d, test %d", len(frame), len(train), len(test))


if __name__ == "__main__":
    stage.run("prepare", main)
