"""Stage `prepare`: the stratified, leak-free split (`predictflow.core.data`), and the stage run
as DVC runs it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from predictflow.base.errors import StageError
from predictflow.core import cleaning, rawfile, schema
from predictflow.core.data import split
from predictflow.core.params import PrepareParams
from predictflow.ops import synth

from .conftest import committed_text, cut_into_parts

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "stages" / "prepare.py"

RAW = Path("data/customers.csv")
TRAIN = Path("data/prepared/train.parquet")
TEST = Path("data/prepared/test.parquet")
METRICS = Path("metrics/prepare.json")
SOURCE = "data/customers.csv"


@pytest.fixture(scope="module")
def customers(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("raw") / "customers.csv"
    synth.write_csv(path, rows=300, seed=1)
    frame, _ = cleaning.clean(rawfile.read_raw(path), str(path))
    return frame


# --- split ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("test_size", [0.2, 0.25, 0.5], ids=["0.2", "0.25", "0.5"])
def test_split_sizes_follow_test_size(customers: pd.DataFrame, test_size: float) -> None:
    train, test = split(customers, PrepareParams(test_size=test_size), seed=42, source=SOURCE)

    assert len(test) == math.ceil(test_size * len(customers))
    assert len(train) + len(test) == len(customers)
    assert list(train.columns) == list(customers.columns)
    assert train.index.equals(pd.RangeIndex(len(train)))
    assert test.index.equals(pd.RangeIndex(len(test)))


def test_split_is_stratified_on_churn(customers: pd.DataFrame) -> None:
    train, test = split(customers, PrepareParams(test_size=0.2), seed=42, source=SOURCE)

    churners = int(customers["Churn"].sum())
    assert 0 < churners < len(customers)
    for part in (train, test):
        expected = churners * len(part) / len(customers)
        assert abs(int(part["Churn"].sum()) - expected) <= 1


def test_split_has_no_customer_in_both_parts(customers: pd.DataFrame) -> None:
    train, test = split(customers, PrepareParams(test_size=0.2), seed=42, source=SOURCE)

    assert set(train["customerID"]).isdisjoint(test["customerID"])
    assert sorted([*train["customerID"], *test["customerID"]]) == sorted(customers["customerID"])
    rebuilt = pd.concat([train, test]).sort_values("customerID").reset_index(drop=True)
    original = customers.sort_values("customerID").reset_index(drop=True)
    pd.testing.assert_frame_equal(rebuilt, original)


def test_split_is_deterministic_for_a_seed(customers: pd.DataFrame) -> None:
    params = PrepareParams(test_size=0.2)

    first = split(customers, params, seed=7, source=SOURCE)
    again = split(customers.copy(), params, seed=7, source=SOURCE)
    other = split(customers, params, seed=8, source=SOURCE)

    for a, b in zip(first, again, strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert set(first[1]["customerID"]) != set(other[1]["customerID"])


def _frame(yes: int, no: int) -> pd.DataFrame:
    """The smallest frame `split` needs: ids and the target, churners first."""
    return pd.DataFrame(
        {"customerID": [f"c{i}" for i in range(yes + no)], "Churn": [1] * yes + [0] * no}
    )


def _too_small(rows: str, test_size: float, train: int, test: int, fix: str) -> str:
    return (
        f"{SOURCE}: {rows} cannot be split at prepare.test_size {test_size} into {train} train "
        f"and {test} held-out rows: each split needs a Yes and a No row (at least 2 rows of each "
        f"class in all); {fix}"
    )


MORE = "add rows, or set prepare.test_size so both splits get at least 2 rows"
RARER = "add rows of the rarer class"

# (churners, non-churners, test_size, the exact refusal): scikit-learn raised a ValueError
# traceback for the first ones, and silently held out a split with one class for the last ones.
UNSPLITTABLE = [
    pytest.param(1, 1, 0.2, _too_small("2 usable rows (1 Yes, 1 No)", 0.2, 1, 1, RARER), id="2"),
    pytest.param(2, 2, 0.2, _too_small("4 usable rows (2 Yes, 2 No)", 0.2, 3, 1, MORE), id="4"),
    pytest.param(2, 3, 0.2, _too_small("5 usable rows (2 Yes, 3 No)", 0.2, 4, 1, MORE), id="5"),
    pytest.param(
        1, 299, 0.2, _too_small("300 usable rows (1 Yes, 299 No)", 0.2, 240, 60, RARER),
        id="one-churner-in-300",
    ),
    pytest.param(
        2, 8, 0.9, _too_small("10 usable rows (2 Yes, 8 No)", 0.9, 1, 9, MORE),
        id="train-of-one-row",
    ),
    pytest.param(
        2, 8, 0.2,
        f"{SOURCE}: the held-out split has no 'Yes' row: 2 of 10 usable rows (2 Yes, 8 No) at "
        "prepare.test_size 0.2; add rows to the file or raise prepare.test_size",
        id="held-out-without-churner",
    ),
    pytest.param(
        8, 2, 0.2,
        f"{SOURCE}: the held-out split has no 'No' row: 2 of 10 usable rows (8 Yes, 2 No) at "
        "prepare.test_size 0.2; add rows to the file or raise prepare.test_size",
        id="held-out-without-non-churner",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("yes", "no", "test_size", "expected"), UNSPLITTABLE)
def test_split_refuses_what_cannot_give_both_classes_to_both_parts(
    yes: int, no: int, test_size: float, expected: str
) -> None:
    with pytest.raises(StageError) as info:
        split(_frame(yes, no), PrepareParams(test_size=test_size), 42, source=SOURCE)

    assert str(info.value) == expected


@pytest.mark.parametrize(("yes", "no"), [(2, 2), (3, 7)], ids=["4-rows", "10-rows"])
def test_split_accepts_the_smallest_frames_that_hold_both_classes_in_each_part(
    yes: int, no: int
) -> None:
    train, test = split(_frame(yes, no), PrepareParams(test_size=0.5), 42, source=SOURCE)

    assert set(train["Churn"]) == set(test["Churn"]) == {0, 1}


# --- the stage end to end -------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A working directory laid out like the repository: params.yaml, data/, metrics/."""
    (tmp_path / "params.yaml").write_text(committed_text("params.yaml"), encoding="utf-8")
    for directory in (RAW.parent, TRAIN.parent, METRICS.parent):
        (tmp_path / directory).mkdir(parents=True, exist_ok=True)
    return tmp_path


def _run(project: Path, raw: Path = RAW) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, str(SCRIPT), "--raw", str(raw), "--train", str(TRAIN),
        "--test", str(TEST), "--metrics", str(METRICS), "--params", "params.yaml",
    ]  # fmt: skip
    return subprocess.run(
        command, cwd=project, capture_output=True, text=True, timeout=120, check=False
    )


def _assert_no_outputs(project: Path) -> None:
    """Neither output exists, nor any temp file a half-done write could leave."""
    assert not (project / TRAIN).exists()
    assert not (project / TEST).exists()
    assert not (project / METRICS).exists()
    assert sorted(p.name for p in (project / TRAIN.parent).iterdir()) == []
    assert sorted(p.name for p in (project / METRICS.parent).iterdir()) == []


def _assert_one_error_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"prepare: error: {expected}"]
    assert result.stderr.endswith("\n")
    assert result.stdout == ""


@pytest.mark.pipeline  # runs the real stage or command as a process
def test_stage_writes_train_test_and_metrics(project: Path) -> None:
    synth.write_csv(project / RAW, rows=300, seed=1)

    result = _run(project)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    train = pd.read_parquet(project / TRAIN)
    test = pd.read_parquet(project / TEST)
    assert list(train.columns) == list(schema.RAW_COLUMNS)
    assert list(test.columns) == list(schema.RAW_COLUMNS)
    assert train["Churn"].dtype == "int64" and train["tenure"].dtype == "int64"
    assert train["MonthlyCharges"].dtype == "float64"
    assert set(train["customerID"]).isdisjoint(test["customerID"])
    metrics = json.loads((project / METRICS).read_text(encoding="utf-8"))
    assert metrics["rows_raw"] == 300
    assert metrics["rows_dropped"] == 0
    assert metrics["rows_train"] == len(train) == 240
    assert metrics["rows_test"] == len(test) == 60
    assert metrics["rows_train"] + metrics["rows_test"] + metrics["rows_dropped"] == 300
    assert metrics["churn_rate_train"] == round(float(train["Churn"].mean()), 6)
    assert metrics["churn_rate_test"] == round(float(test["Churn"].mean()), 6)
    assert sorted(p.name for p in (project / TRAIN.parent).iterdir()) == [
        "test.parquet",
        "train.parquet",
    ]
    assert sorted(p.name for p in (project / METRICS.parent).iterdir()) == ["prepare.json"]


@pytest.mark.pipeline  # runs the real stage or command as a process
def test_stage_counts_rows_dropped_for_blank_total_charges(project: Path) -> None:
    rows = [list(row) for row in synth.iter_rows(300, 1)]
    blanked = [i for i, row in enumerate(rows) if row[5] != "0"][:3]
    for i in blanked:
        rows[i][schema.RAW_COLUMNS.index("TotalCharges")] = " "
    lines = [",".join(schema.RAW_COLUMNS), *(",".join(row) for row in rows)]
    (project / RAW).write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")

    result = _run(project)

    assert result.returncode == 0, result.stderr
    metrics = json.loads((project / METRICS).read_text(encoding="utf-8"))
    assert metrics["rows_raw"] == 300
    assert metrics["rows_dropped"] == 3
    assert metrics["rows_train"] + metrics["rows_test"] == 297
    assert "dropped 3 row(s) with blank TotalCharges at tenure > 0" in result.stderr


@pytest.mark.pipeline  # runs the real stage or command as a process
def test_stage_rejects_a_bad_churn_value_with_one_line(project: Path) -> None:
    synth.write_csv(project / RAW, rows=300, seed=1)
    lines = (project / RAW).read_text(encoding="utf-8").splitlines()
    fields = lines[4].split(",")  # file line 5
    assert fields[-1] in ("Yes", "No")
    lines[4] = ",".join([*fields[:-1], "Maybe"])
    (project / RAW).write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = _run(project)

    _assert_one_error_line(
        result, f"{RAW}: column 'Churn', line 5: must be Yes or No (got 'Maybe')"
    )
    _assert_no_outputs(project)


@pytest.mark.pipeline  # runs the real stage or command as a process
def test_stage_rejects_a_missing_raw_file_with_one_line(project: Path) -> None:
    result = _run(project, raw=Path("data/nope.csv"))

    _assert_one_error_line(result, "data/nope.csv: file not found")
    _assert_no_outputs(project)


@pytest.mark.pipeline  # runs the real stage or command as a process
def test_stage_rejects_bad_params_with_one_line(project: Path) -> None:
    synth.write_csv(project / RAW, rows=300, seed=1)
    params = project / "params.yaml"
    text = params.read_text(encoding="utf-8")
    params.write_text(text.replace("max_depth: 4", "max_depth: 0"), encoding="utf-8")
    assert params.read_text(encoding="utf-8") != text

    result = _run(project)

    _assert_one_error_line(
        result, "params.yaml: model.max_depth: Input should be greater than or equal to 1 (got 0)"
    )
    assert "model.max_depth" in result.stderr
    _assert_no_outputs(project)


@pytest.mark.pipeline  # runs the real stage or command as a process
def test_stage_rejects_a_four_row_file_with_one_line(project: Path) -> None:
    synth.write_csv(project / RAW, rows=300, seed=1)
    header, *rows = (project / RAW).read_text(encoding="utf-8").splitlines()
    four = [
        *[r for r in rows if r.endswith(",Yes")][:2],
        *[r for r in rows if r.endswith(",No")][:2],
    ]
    (project / RAW).write_text("\n".join([header, *four]) + "\n", encoding="utf-8")

    result = _run(project)

    _assert_one_error_line(
        result,
        f"{RAW}: 4 usable rows (2 Yes, 2 No) cannot be split at prepare.test_size 0.2 into 3 "
        "train and 1 held-out rows: each split needs a Yes and a No row (at least 2 rows of "
        "each class in all); add rows, or set prepare.test_size so both splits get at least 2 rows",
    )
    _assert_no_outputs(project)


HEAD_BYTES = 65536  # what read_raw reads to check a file's head before it parses from byte 0


def _position(pid: int, fd: str) -> int:
    """The file offset of a process's open file, as /proc/PID/fdinfo shows it."""
    info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
    return int(next(line.split()[1] for line in info.splitlines() if line.startswith("pos:")))


def _swap_by_mv(raw: Path) -> None:
    """Another file moved over the raw one (a new inode: the reader keeps the old one)."""
    small = raw.with_name("small.csv")
    synth.write_csv(small, rows=300, seed=2)
    os.replace(small, raw)


def _rewrite_head_in_place(raw: Path) -> None:
    """The first bytes rewritten in place (same inode, same size): the reader is past them."""
    with raw.open("r+b") as handle:
        header = handle.readline()
        line = handle.readline()
        handle.seek(len(header))
        handle.write(line.replace(b"Yes", b"No!") if b"Yes" in line else line.replace(b"No", b"Ys"))


@pytest.mark.pipeline  # runs the real stage or command as a process
@pytest.mark.parametrize("swap", [_swap_by_mv, _rewrite_head_in_place], ids=["mv", "in-place"])
def test_stage_refuses_a_raw_file_changed_while_it_reads(project: Path, swap) -> None:
    """What DVC hashes after the stage must be what the stage read: the file is replaced once
    prepare has opened it (seen in /proc), before it has finished reading."""
    synth.write_csv(project / RAW, rows=150_000, seed=1)
    command = [
        sys.executable, str(SCRIPT), "--raw", str(RAW), "--train", str(TRAIN),
        "--test", str(TEST), "--metrics", str(METRICS), "--params", "params.yaml",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    raw = (project / RAW).resolve()
    fds = Path(f"/proc/{process.pid}/fd")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError):
            # past the head `read_raw` checks first (64 KiB, then a seek back to 0): the parser
            # has read the bytes the in-place swap rewrites, so what changes is only the md5
            if any(
                os.readlink(fd) == str(raw) and _position(process.pid, fd.name) > HEAD_BYTES
                for fd in fds.iterdir()
            ):
                break
        time.sleep(0.005)
    assert process.poll() is None, "prepare finished before the file could be replaced"
    swap(project / RAW)
    stdout, stderr = process.communicate(timeout=120)
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    now = hashlib.md5((project / RAW).read_bytes()).hexdigest()
    assert result.returncode == 1, stderr
    assert "Traceback" not in stderr
    (line,) = stderr.splitlines()
    assert line.startswith(f"prepare: error: {RAW}: changed while prepare read it (read md5 ")
    assert f"now {now}); nothing written" in line
    _assert_no_outputs(project)


@pytest.mark.pipeline  # runs the real stage or command as a process
def test_stage_names_the_part_and_line_of_an_id_repeated_across_parts(project: Path) -> None:
    synth.write_csv(project / RAW, rows=300, seed=1)
    first, second, _ = cut_into_parts(project / RAW, project / "data" / "customers", parts=3)
    repeated = first.read_text().splitlines()[1].split(",")[0]
    lines = second.read_text().splitlines()
    lines[3] = ",".join([repeated, *lines[3].split(",")[1:]])  # file line 4 of the second part
    second.write_text("\n".join(lines) + "\n")

    result = _run(project, raw=Path("data/customers"))

    _assert_one_error_line(
        result,
        f"data/customers/2026-02.csv: column 'customerID', line 4: duplicated customer id "
        f"(in an earlier part too) (got {repeated!r})",
    )
    _assert_no_outputs(project)


@pytest.mark.pipeline  # runs the real stage or command as a process
def test_stage_refuses_a_folder_holding_other_than_csv_parts(project: Path) -> None:
    synth.write_csv(project / RAW, rows=300, seed=1)
    cut_into_parts(project / RAW, project / "data" / "customers", parts=2)
    (project / "data" / "customers" / "notes.txt").write_text("exported by hand\n")

    result = _run(project, raw=Path("data/customers"))

    _assert_one_error_line(
        result,
        "data/customers/notes.txt: not a data part (.csv, .parquet); a raw folder holds only CSV "
        "or parquet parts of the same columns",
    )
    _assert_no_outputs(project)


def _as_parquet_parts(whole: Path, folder: Path) -> list[Path]:
    """`whole`'s rows as two typed parquet parts (pandas' own inference: ints, floats, text),
    as a warehouse export would write them."""
    frame = pd.read_csv(whole)
    folder.mkdir(parents=True)
    half = len(frame) // 2
    parts = [folder / "2026-01.parquet", folder / "2026-02.parquet"]
    frame.iloc[:half].to_parquet(parts[0], index=False)
    frame.iloc[half:].to_parquet(parts[1], index=False)
    return parts


@pytest.mark.pipeline  # runs the real stage or command as a process
@pytest.mark.parametrize("layout", ["csv", "parquet"])
def test_stage_reads_a_folder_of_parts_as_the_file_they_were_cut_from(
    project: Path, layout: str
) -> None:
    """The local engine over a DVC-tracked folder of CSV parts, or of typed parquet parts (read
    as text under the same contract; blank charges arrive as nulls): the same splits, byte for
    byte, as over the single file the parts came from (the parts are one table, in name
    order)."""
    synth.write_csv(project / RAW, rows=300, seed=1)
    assert _run(project).returncode == 0
    whole = {p: (project / p).read_bytes() for p in (TRAIN, TEST, METRICS)}
    folder = project / "data" / "customers"
    if layout == "csv":
        cut_into_parts(project / RAW, folder, parts=3)
    else:
        _as_parquet_parts(project / RAW, folder)
    for path in whole:
        (project / path).unlink()

    result = _run(project, raw=Path("data/customers"))

    assert result.returncode == 0, result.stderr
    assert {p: (project / p).read_bytes() for p in whole} == whole


@pytest.mark.pipeline  # runs the real stage or command as a process
def test_stage_names_the_parquet_part_row_and_value_of_a_bad_value(project: Path) -> None:
    synth.write_csv(project / RAW, rows=300, seed=1)
    _, second = _as_parquet_parts(project / RAW, project / "data" / "customers")
    rows = pd.read_parquet(second)
    rows.loc[9, "tenure"] = -3  # the part's 10th row
    rows.to_parquet(second, index=False)

    result = _run(project, raw=Path("data/customers"))

    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        "prepare: error: data/customers/2026-02.parquet: column 'tenure', row 10:"
    )
    assert line.endswith("(got '-3')")
    _assert_no_outputs(project)


@pytest.mark.pipeline  # runs the real stage or command as a process
def test_stage_refuses_an_unreadable_parquet_part_with_one_line(project: Path) -> None:
    synth.write_csv(project / RAW, rows=300, seed=1)
    first, _ = _as_parquet_parts(project / RAW, project / "data" / "customers")
    first.write_bytes(first.read_bytes()[:200])  # cut short, as by a failed upload

    result = _run(project, raw=Path("data/customers"))

    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        "prepare: error: data/customers/2026-01.parquet: not a readable parquet file ("
    )
    _assert_no_outputs(project)


def test_the_dask_engine_cleans_a_parquet_part_as_the_csv_it_came_from(tmp_path: Path) -> None:
    """What a worker runs per part (`partitioned.clean_part`): the same rows, split column and
    counts from a parquet part as from its CSV, and the md5 of exactly the part's bytes."""
    from predictflow.core.partitioned import clean_part

    csv_part = tmp_path / "2026-01.csv"
    synth.write_csv(csv_part, rows=200, seed=3)
    (parquet_part,) = _as_parquet_parts(csv_part, tmp_path / "parts")[:1]
    pd.read_csv(csv_part).to_parquet(parquet_part, index=False)  # all 200 rows in one part

    from_csv, csv_summary = clean_part(str(csv_part), "a.csv", 0.2, 42)
    from_parquet, summary = clean_part(str(parquet_part), "a.parquet", 0.2, 42)

    pd.testing.assert_frame_equal(from_parquet, from_csv)
    assert summary.counts == csv_summary.counts
    assert summary.read_md5 == hashlib.md5(parquet_part.read_bytes()).hexdigest()


@pytest.mark.pipeline  # runs the real stage or command as a process
def test_stage_refuses_a_part_added_to_the_folder_while_it_reads(project: Path) -> None:
    """DVC hashes the whole raw folder after the stage: a part added once prepare has started
    reading (seen in /proc) would be in the lock's md5 but not in the model. One line, nothing
    written."""
    synth.write_csv(project / RAW, rows=150_000, seed=1)
    first, _ = cut_into_parts(project / RAW, project / "data" / "customers", parts=2)
    command = [
        sys.executable, str(SCRIPT), "--raw", "data/customers", "--train", str(TRAIN),
        "--test", str(TEST), "--metrics", str(METRICS), "--params", "params.yaml",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    fds = Path(f"/proc/{process.pid}/fd")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) == str(first.resolve()) for fd in fds.iterdir()):
                break
        time.sleep(0.005)
    assert process.poll() is None, "prepare finished before a part could be added"
    late = project / "data" / "customers" / "2026-03.csv"
    synth.write_csv(late, rows=50, seed=9)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    assert stderr.splitlines() == [
        f"prepare: error: data/customers: part {late.relative_to(project)} was added while "
        "prepare read the folder; nothing written: run `dvc repro` again once the folder is "
        "complete"
    ]
    _assert_no_outputs(project)
