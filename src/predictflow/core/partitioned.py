"""`prepare` under `scale.engine: dask`: the raw parts cleaned on the cluster, split by customer.

The raw data is a file (one part) or a folder of CSV parts (`dvc add data/customers`, a part per
month, say). Each part is read and cleaned on a worker under the same contract as the local
engine, so a bad value is the same one line naming the part, column, line and value. What only
the whole table can answer (ids unique across parts, rows left, both classes in each split) is
checked from small per-part summaries.

The split is a seeded hash of `customerID`: a customer is held out or not by its id alone,
whatever part or machine holds its row, so no shuffle of the whole table is needed. The local
engine's stratified split keeps the churn rate exact; the hash keeps it within sampling noise
(docs/scaling.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from predictflow.base.errors import StageError
from predictflow.core.cleaning import clean
from predictflow.core.data import split_metrics
from predictflow.core.io import atomic_dir
from predictflow.core.params import Params
from predictflow.core.rawfile import check_parts_unchanged, check_unchanged, raw_parts, read_raw
from predictflow.core.schema import ID, TARGET, CleanReport, DataContractError, fail

if TYPE_CHECKING:
    from distributed import Client

HELD_OUT = "_held_out"  # the split column while the parts are on the cluster; never written
_BUCKETS = 1_000_000  # resolution of the hash split: test_size in steps of 1e-6


def held_out(ids: pd.Series, test_size: float, seed: int) -> np.ndarray:
    """Whether each customer is held out: a seeded hash of its id, so stable per customer."""
    key = f"predictflow{seed:010d}"[-16:]  # pandas takes a 16-character hash key
    hashed = pd.util.hash_pandas_object(ids, index=False, hash_key=key).to_numpy()
    return (hashed % _BUCKETS) < round(test_size * _BUCKETS)


@dataclass
class PartSummary:
    """What the stage needs from a cleaned part to check the whole table and write its metrics."""

    part: str
    read_md5: str  # of exactly the bytes parsed
    report: CleanReport
    counts: dict[tuple[bool, int], int] = field(default_factory=dict)  # (held out, label) -> rows


def clean_part(
    part: str, shown: str, test_size: float, seed: int
) -> tuple[pd.DataFrame, PartSummary]:
    """One raw part (read at the absolute path `part`, named `shown` in messages) read and
    cleaned under the strict contract, with its split column."""
    digest = hashlib.md5()
    try:
        frame, report = clean(read_raw(part, digest=digest), part, whole_file=False)
    except DataContractError as err:
        raise DataContractError(str(err).replace(part, shown, 1)) from None
    frame[HELD_OUT] = held_out(frame[ID], test_size, seed)
    counts = frame.groupby([HELD_OUT, TARGET]).size()
    summary = PartSummary(shown, digest.hexdigest(), report, {k: int(v) for k, v in counts.items()})
    return frame, summary


def rows_with_ids(cleaned: tuple[pd.DataFrame, PartSummary], ids: set[str]) -> pd.Series:
    """A cleaned part's ids that are in `ids`, by record index (the index `clean` kept)."""
    frame = cleaned[0]
    return frame.loc[frame[ID].isin(ids), ID]


def fail_on_repeat(parts: list[str], hits: list[pd.Series]) -> None:
    """Name the first id seen again in a later part: its part, line and value (`schema.fail`)."""
    seen: set[str] = set()
    for part, found in zip(parts, hits, strict=True):
        for index, customer in found.items():
            if customer in seen:
                fail(part, ID, index, customer, "duplicated customer id (in an earlier part too)")
        seen.update(found.tolist())


def check_split(summaries: list[PartSummary], test_size: float, source: str) -> dict:
    """Refuse a table that leaves a split without a class; else `metrics/prepare.json`."""
    total: dict[tuple[bool, int], int] = {}
    report = CleanReport()
    for summary in summaries:
        report.add(summary.report)
        for key, rows in summary.counts.items():
            total[key] = total.get(key, 0) + rows
    rows = {split: total.get((split, 0), 0) + total.get((split, 1), 0) for split in (False, True)}
    if not rows[False] + rows[True]:
        raise DataContractError(f"{source}: no usable rows left after cleaning")
    for split, name in ((False, "train"), (True, "held-out")):
        missing = [label for label, code in (("Yes", 1), ("No", 0)) if not total.get((split, code))]
        if missing:
            raise StageError(
                f"{source}: the {name} split (a hash of {ID} at prepare.test_size {test_size}) "
                f"has no '{missing[0]}' row: {rows[False]} train and {rows[True]} held-out rows; "
                "add rows of that class or change prepare.test_size"
            )
    churned = {split: total.get((split, 1), 0) for split in (False, True)}
    return split_metrics(report, (rows[False], churned[False]), (rows[True], churned[True]))


def part_name(number: int) -> str:
    """Zero-padded, so every reader's name order is the partition order."""
    return f"part.{number:05d}.parquet"


def prepare(
    client: Client,
    raw: Path,
    train: Path,
    test: Path,
    params: Params,
) -> dict:
    """Clean every raw part on the cluster, check the whole table, write both splits as parts.

    Returns `metrics/prepare.json`. Nothing is written unless every check passed.
    """
    import dask
    import dask.dataframe as dd

    parts = raw_parts(raw)
    shown = [str(p) for p in parts]
    test_size, seed = params.prepare.test_size, params.base.seed
    cleaned = client.map(
        clean_part,
        [str(p.absolute()) for p in parts],
        shown,
        test_size=test_size,
        seed=seed,
        pure=False,
    )
    summaries = client.gather(client.map(lambda result: result[1], cleaned))
    frames = [dask.delayed(lambda result: result[0])(future) for future in cleaned]
    table = dd.from_delayed(frames, verify_meta=False)
    repeated = table[ID].value_counts()
    repeated = set(repeated[repeated > 1].index.compute().tolist())
    if repeated:
        hits = client.gather(client.map(rows_with_ids, cleaned, ids=repeated))
        fail_on_repeat(shown, hits)
    metrics = check_split(summaries, test_size, str(raw))
    for summary in summaries:  # a part replaced while it was read
        check_unchanged(summary.part, summary.read_md5)
    check_parts_unchanged(raw, parts)  # ...or added or removed
    n = params.scale.partitions
    written = table[~table[HELD_OUT]], table[table[HELD_OUT]]
    with atomic_dir(train) as train_tmp, atomic_dir(test) as test_tmp:
        for split, folder in zip(written, (train_tmp, test_tmp), strict=True):
            rows = split.drop(columns=[HELD_OUT]).repartition(npartitions=n)
            write_parts(rows, folder)
    return metrics


def write_parts(frame: Any, folder: Path) -> None:
    """A Dask frame as a folder of parquet parts, one per partition, in name order. The path
    is made absolute: workers need not share the stage's working directory."""
    frame.to_parquet(
        folder.absolute(), write_index=False, name_function=part_name, write_metadata_file=False
    )


def read_parts(path: Path, columns: list[str] | None = None) -> Any:
    """A prepared split or feature set as a Dask frame, a partition per part in name order."""
    import dask.dataframe as dd

    return dd.read_parquet(Path(path).absolute(), columns=columns)
