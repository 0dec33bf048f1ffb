"""Memory flat in rows: `prepare` reads and cleans the raw file in chunks and writes in batches.

On real-layout data the chunked path must give what the whole-frame path gave: the same cleaned
rows and values, the same split (rows, order, values), the same prepared parquet bytes, the same
metrics. Small chunks and batches (many more than one) are the point: one would prove nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from predictflow.core.cleaning import as_written, clean
from predictflow.core.data import prepare_metrics, split, split_batches, split_indices
from predictflow.core.io import write_batches
from predictflow.core.params import load_params
from predictflow.core.rawfile import clean_file, read_raw
from predictflow.core.schema import TARGET, DataContractError
from predictflow.ops.synth import write_csv

from .conftest import REPO

CHUNK = 997  # 11 chunks of the 10,000 raw rows
BATCH = 1_000  # 8 train batches, 2 held-out batches


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10,000 synthetic customers, roughened as real files are: blank TotalCharges at a positive
    tenure (dropped rows), padded values, blank lines (records keep their numbers)."""
    path = tmp_path_factory.mktemp("prepare_stream") / "customers.csv"
    write_csv(path, rows=10_000, seed=11)
    header, *rows = path.read_text().splitlines()
    for number in range(0, len(rows), 137):
        fields = rows[number].split(",")
        fields[19] = "" if fields[5] != "0" else fields[19]
        fields[1] = f" {fields[1]} "
        rows[number] = ",".join(fields)
    for number in range(len(rows) - 1, 0, -1500):
        rows.insert(number, "")
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_clean_file_in_chunks_gives_the_whole_frame_clean(raw: Path) -> None:
    whole, whole_report = clean(read_raw(raw), str(raw))
    compact, report = clean_file(raw, CHUNK)
    assert report == whole_report
    assert report.rows_dropped_total_charges > 0 and report.total_charges_filled > 0
    pd.testing.assert_frame_equal(as_written(compact), whole, check_exact=True)


def test_split_of_the_labels_writes_the_whole_frame_split(raw: Path, tmp_path: Path) -> None:
    params = load_params(REPO / "params.yaml")
    whole, report = clean(read_raw(raw), str(raw))
    old_train, old_test = split(whole, params.prepare, params.base.seed, str(raw))
    compact, _ = clean_file(raw, CHUNK)
    labels = compact[TARGET].to_numpy()
    train, test = split_indices(labels, params.prepare, params.base.seed, str(raw))
    for old, positions in ((old_train, train), (old_test, test)):
        out = tmp_path / "batched.parquet"
        assert write_batches(out, split_batches(compact, positions, BATCH)) == len(old)
        pd.testing.assert_frame_equal(pd.read_parquet(out), old, check_exact=True)
    assert prepare_metrics(report, labels[train], labels[test]) == {
        "rows_raw": report.rows_read,
        "rows_dropped": report.rows_dropped_total_charges,
        "total_charges_filled": report.total_charges_filled,
        "extra_columns": 0,
        "rows_train": len(old_train),
        "rows_test": len(old_test),
        "churn_rate_train": round(float(old_train[TARGET].mean()), 6),
        "churn_rate_test": round(float(old_test[TARGET].mean()), 6),
    }


def test_prepare_stage_writes_the_bytes_of_to_parquet(raw: Path, tmp_path: Path) -> None:
    """The stage's files are byte for byte what one `to_parquet` of the old split wrote."""
    params = load_params(REPO / "params.yaml")
    outs = {name: tmp_path / f"{name}.parquet" for name in ("train", "test")}
    subprocess.run(
        [
            sys.executable, REPO / "stages" / "prepare.py", "--raw", raw,
            "--train", outs["train"], "--test", outs["test"],
            "--metrics", tmp_path / "prepare.json", "--params", REPO / "params.yaml",
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    whole, _ = clean(read_raw(raw), str(raw))
    old = split(whole, params.prepare, params.base.seed, str(raw))
    for name, part in zip(("train", "test"), old, strict=True):
        expected = tmp_path / f"old-{name}.parquet"
        part.to_parquet(expected, index=False)
        assert outs[name].read_bytes() == expected.read_bytes()
    metrics = json.loads((tmp_path / "prepare.json").read_text())
    assert metrics["rows_train"] == len(old[0]) and metrics["rows_test"] == len(old[1])


def test_checks_across_chunks_name_the_whole_file(raw: Path, tmp_path: Path) -> None:
    """A duplicated id in a later chunk, a class found in a later chunk only: whole-file facts."""
    lines = raw.read_text().splitlines()
    header, rows = lines[0], [line for line in lines[1:] if line][:3000]
    duplicate = tmp_path / "duplicate.csv"
    repeated = rows[5].split(",")[0]
    late = rows[2500].split(",")
    duplicate.write_text("\n".join([header, *rows[:2500], ",".join([repeated, *late[1:]])]) + "\n")
    with pytest.raises(DataContractError) as whole_error:
        clean(read_raw(duplicate), str(duplicate))
    with pytest.raises(DataContractError) as chunked_error:
        clean_file(duplicate, CHUNK)
    assert str(chunked_error.value) == str(whole_error.value)
    assert "duplicated customer id" in str(whole_error.value) and "line 2502" in str(
        whole_error.value
    )

    by_class = sorted(rows, key=lambda row: row.rsplit(",", 1)[1])  # every No, then every Yes
    ordered = tmp_path / "ordered.csv"
    ordered.write_text("\n".join([header, *by_class]) + "\n")
    compact, _ = clean_file(ordered, CHUNK)  # no chunk holds both classes; the file does
    assert set(compact[TARGET]) == {0, 1}
    only_no = tmp_path / "only-no.csv"
    only_no.write_text("\n".join([header, *(r for r in rows if r.endswith(",No"))]) + "\n")
    with pytest.raises(DataContractError, match="only one class present"):
        clean_file(only_no, CHUNK)
