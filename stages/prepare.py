"""Stage `prepare`: validate the raw file against the data contract, clean it, split it.

Under `scale.engine: dask` the raw file or folder of parts is cleaned on the cluster and split
by a seeded hash of the customer id (`core.partitioned.prepare`); what follows is the local engine.

The raw file (or a DVC-tracked folder of CSV parts, read in name order as one table) is read and
cleaned in chunks and held compactly (`rawfile.clean_parts`); the split needs
only the labels, and each split is written in batches of parquet's default row group size, so
the prepared files have the row groups a single `to_parquet` gives them."""

from __future__ import annotations

import argparse
import hashlib
import logging
from pathlib import Path

from predictflow.core import paths
from predictflow.core.data import prepare_metrics, split_batches, split_indices
from predictflow.core.io import atomic_path, write_batches, write_json
from predictflow.core.params import load_params
from predictflow.core.rawfile import (
    check_parts_unchanged,
    check_unchanged,
    clean_parts,
    raw_parts,
)
from predictflow.core.schema import TARGET
from predictflow.lineage import stage

log = logging.getLogger(__name__)

CHUNK_ROWS = 200_000  # raw rows read and cleaned at a time
BATCH_ROWS = 1024 * 1024  # rows per write: pyarrow's default row group size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, default=paths.RAW_DATA)
    parser.add_argument("--train", type=Path, default=paths.PREPARED_TRAIN)
    parser.add_argument("--test", type=Path, default=paths.PREPARED_TEST)
    parser.add_argument("--metrics", type=Path, default=paths.PREPARE_METRICS)
    parser.add_argument("--params", type=Path, default=paths.PARAMS)
    args = parser.parse_args()

    params = load_params(args.params)
    if params.scale.engine == "dask":
        from predictflow.core.cluster import cluster
        from predictflow.core.partitioned import prepare

        with cluster() as on:
            metrics = prepare(on.client, args.raw, args.train, args.test, params)
        write_json(args.metrics, metrics)
        log.info(
            "%d rows -> train %d, test %d on %d Dask worker(s)",
            metrics["rows_raw"],
            metrics["rows_train"],
            metrics["rows_test"],
            on.workers,
        )
        return
    parts = raw_parts(args.raw)  # the file, or a folder's CSV parts in name order
    reads = [hashlib.md5() for _ in parts]
    frame, report = clean_parts(list(zip(parts, reads, strict=True)), CHUNK_ROWS, str(args.raw))
    for part, read in zip(parts, reads, strict=True):
        check_unchanged(part, read.hexdigest())
    check_parts_unchanged(args.raw, parts)
    if report.extra_columns:
        log.warning("ignoring extra column(s): %s", ", ".join(report.extra_columns))
    if report.rows_dropped_total_charges:
        log.warning(
            "dropped %d row(s) with blank TotalCharges at tenure > 0",
            report.rows_dropped_total_charges,
        )
    labels = frame[TARGET].to_numpy()
    train, test = split_indices(labels, params.prepare, params.base.seed, str(args.raw))
    with atomic_path(args.train) as train_tmp, atomic_path(args.test) as test_tmp:
        write_batches(train_tmp, split_batches(frame, train, BATCH_ROWS))
        write_batches(test_tmp, split_batches(frame, test, BATCH_ROWS))
    write_json(args.metrics, prepare_metrics(report, labels[train], labels[test]))
    log.info("%d rows -> train %d, test %d", len(frame), len(train), len(test))


if __name__ == "__main__":
    stage.run("prepare", main)
