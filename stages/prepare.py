"""Stage `prepare`: validate the raw file against the data contract, clean it, split it."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from predictflow import paths, stage
from predictflow.data import prepare_metrics, split
from predictflow.io import atomic_path, write_json
from predictflow.params import load_params
from predictflow.schema import clean, read_raw

log = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, default=paths.RAW_DATA)
    parser.add_argument("--train", type=Path, default=paths.PREPARED_TRAIN)
    parser.add_argument("--test", type=Path, default=paths.PREPARED_TEST)
    parser.add_argument("--metrics", type=Path, default=paths.PREPARE_METRICS)
    parser.add_argument("--params", type=Path, default=paths.PARAMS)
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
    write_json(args.metrics, prepare_metrics(report, train, test))
    log.info("%d rows -> train %d, test %d", len(frame), len(train), len(test))


if __name__ == "__main__":
    stage.run("prepare", main)
