"""The raw-data contract: `read_raw` + `clean` accept the real file's quirks, reject the rest.

Every rejection is a `DataContractError` whose one-line message names the file and the column,
line and value at fault; these tests pin the exact messages a user sees from `prepare`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from predictflow.core import schema
from predictflow.core.cleaning import clean
from predictflow.core.rawfile import read_raw
from predictflow.core.schema import CleanReport, DataContractError
from predictflow.ops import synth

HEADER = ",".join(schema.RAW_COLUMNS)
COL = {name: i for i, name in enumerate(schema.RAW_COLUMNS)}
INT_COLUMNS = ("SeniorCitizen", "tenure", "Churn")
FLOAT_COLUMNS = ("MonthlyCharges", "TotalCharges")
STR_COLUMNS = (schema.ID, *schema.CATEGORICAL_FEATURES)
SEED = 3  # the first 20 rows of this seed hold both classes and only positive tenures


def _rows(n: int = 20, seed: int = SEED) -> list[list[str]]:
    return [list(row) for row in synth.iter_rows(n, seed)]


def _set(rows: list[list[str]], line: int, column: str, value: str) -> None:
    """Set a value by file line (the header is line 1, so the first data row is line 2)."""
    rows[line - 2][COL[column]] = value


def _get(rows: list[list[str]], line: int, column: str) -> str:
    return rows[line - 2][COL[column]]


def _text(rows: list[list[str]], header: str = HEADER, sep: str = ",", eol: str = "\n") -> str:
    return eol.join([header.replace(",", sep), *(sep.join(row) for row in rows)]) + eol


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def _load(path: Path, **kwargs: bool) -> tuple[pd.DataFrame, CleanReport]:
    return clean(read_raw(path), str(path), **kwargs)


# --- valid input ------------------------------------------------------------------------------


def test_valid_file_cleans_to_contract_types_and_order(tmp_path: Path) -> None:
    rows = _rows()
    path = _write(tmp_path / "customers.csv", _text(rows))

    frame, report = _load(path)

    assert list(frame.columns) == list(schema.RAW_COLUMNS)
    assert len(frame) == 20
    for column in INT_COLUMNS:
        assert frame[column].dtype == "int64", column
    for column in FLOAT_COLUMNS:
        assert frame[column].dtype == "float64", column
    for column in STR_COLUMNS:
        assert pd.api.types.is_string_dtype(frame[column].dtype), column
        assert all(type(v) is str for v in frame[column]), column
    assert frame["Churn"].tolist() == [{"Yes": 1, "No": 0}[r[COL["Churn"]]] for r in rows]
    assert set(frame["Churn"]) == {0, 1}
    assert frame["customerID"].tolist() == [r[COL["customerID"]] for r in rows]
    assert frame["tenure"].tolist() == [int(r[COL["tenure"]]) for r in rows]
    assert frame["MonthlyCharges"].tolist() == [float(r[COL["MonthlyCharges"]]) for r in rows]
    assert frame["TotalCharges"].tolist() == [float(r[COL["TotalCharges"]]) for r in rows]
    assert frame["Contract"].tolist() == [r[COL["Contract"]] for r in rows]
    assert report == CleanReport(rows_read=20)


def test_read_raw_keeps_every_value_as_a_string(tmp_path: Path) -> None:
    rows = _rows()
    _set(rows, 2, "tenure", "007")  # no type guessing: the leading zeros survive reading
    path = _write(tmp_path / "customers.csv", _text(rows))

    raw = read_raw(path)

    assert isinstance(raw, pd.DataFrame)
    assert list(raw.columns) == list(schema.RAW_COLUMNS)
    assert raw.loc[0, "tenure"] == "007"
    assert all(type(v) is str for column in raw.columns for v in raw[column])


def test_crlf_line_endings_are_accepted(tmp_path: Path) -> None:
    rows = _rows()
    lf = _load(_write(tmp_path / "lf.csv", _text(rows)))
    crlf_path = _write(tmp_path / "crlf.csv", _text(rows, eol="\r\n"))
    assert b"\r\n" in crlf_path.read_bytes()

    frame, report = _load(crlf_path)

    pd.testing.assert_frame_equal(frame, lf[0])
    assert report == lf[1]
    assert not frame["Churn"].isna().any()


def test_surrounding_whitespace_in_values_and_header_is_stripped(tmp_path: Path) -> None:
    rows = _rows()
    plain = _load(_write(tmp_path / "plain.csv", _text(rows)))
    padded_rows = [[f"  {value} " for value in row] for row in rows]
    padded_header = ",".join(f" {name}  " for name in schema.RAW_COLUMNS)
    path = _write(tmp_path / "padded.csv", _text(padded_rows, header=padded_header))

    frame, report = _load(path)

    assert list(frame.columns) == list(schema.RAW_COLUMNS)
    pd.testing.assert_frame_equal(frame, plain[0])
    assert report == plain[1]


@pytest.mark.parametrize("blank", ["", " ", "   "], ids=["empty", "space", "spaces"])
def test_blank_total_charges_at_tenure_zero_becomes_zero(tmp_path: Path, blank: str) -> None:
    rows = _rows()
    for line in (3, 7):
        _set(rows, line, "tenure", "0")
        _set(rows, line, "TotalCharges", blank)
    path = _write(tmp_path / "customers.csv", _text(rows))

    frame, report = _load(path)

    assert len(frame) == 20
    assert frame.loc[[1, 5], "TotalCharges"].tolist() == [0.0, 0.0]
    assert frame["TotalCharges"].dtype == "float64"
    assert not frame["TotalCharges"].isna().any()
    assert report.total_charges_filled == 2
    assert report.rows_dropped_total_charges == 0


@pytest.mark.parametrize("blank", ["", " ", "   "], ids=["empty", "space", "spaces"])
def test_blank_total_charges_at_positive_tenure_drops_the_row(tmp_path: Path, blank: str) -> None:
    rows = _rows()
    _set(rows, 4, "tenure", "0")
    _set(rows, 4, "TotalCharges", " ")
    _set(rows, 6, "TotalCharges", blank)
    _set(rows, 9, "TotalCharges", blank)
    dropped = {_get(rows, 6, "customerID"), _get(rows, 9, "customerID")}
    assert _get(rows, 6, "tenure") != "0" and _get(rows, 9, "tenure") != "0"
    path = _write(tmp_path / "customers.csv", _text(rows))

    frame, report = _load(path)

    assert len(frame) == 18
    assert dropped.isdisjoint(frame["customerID"])
    assert not frame["TotalCharges"].isna().any()
    assert report.rows_read == 20
    assert report.rows_dropped_total_charges == 2
    assert report.total_charges_filled == 1


def test_extra_columns_are_reported_and_dropped(tmp_path: Path) -> None:
    rows = [[*row, "north", "vip"] for row in _rows()]
    path = _write(tmp_path / "customers.csv", _text(rows, header=HEADER + ", Region ,notes"))

    frame, report = _load(path)

    assert report.extra_columns == ["Region", "notes"]
    assert list(frame.columns) == list(schema.RAW_COLUMNS)
    assert len(frame) == 20


def test_column_order_in_the_file_does_not_matter(tmp_path: Path) -> None:
    rows = _rows()
    plain = _load(_write(tmp_path / "plain.csv", _text(rows)))
    order = list(reversed(schema.RAW_COLUMNS))
    shuffled = [[row[COL[name]] for name in order] for row in rows]
    path = _write(tmp_path / "reversed.csv", _text(shuffled, header=",".join(order)))

    frame, _ = _load(path)

    pd.testing.assert_frame_equal(frame, plain[0])


# --- lenient mode (scoring) ---------------------------------------------------------------------


LENIENT = {"strict_categories": False, "require_target": False}


def test_lenient_mode_keeps_and_counts_unseen_categories(tmp_path: Path) -> None:
    rows = _rows()
    _set(rows, 3, "Contract", "Three year")
    _set(rows, 8, "Contract", "Three year")
    _set(rows, 5, "PaymentMethod", "Bitcoin")
    path = _write(tmp_path / "score.csv", _text(rows))

    frame, report = _load(path, **LENIENT)

    assert report.unseen_categories == {"Contract": 2, "PaymentMethod": 1}
    assert len(frame) == 20
    assert frame.loc[[1, 6], "Contract"].tolist() == ["Three year", "Three year"]
    assert frame.loc[3, "PaymentMethod"] == "Bitcoin"
    assert frame["Churn"].dtype == "int64"


def test_lenient_mode_accepts_a_missing_churn_column(tmp_path: Path) -> None:
    rows = [row[:-1] for row in _rows()]
    header = ",".join(schema.RAW_COLUMNS[:-1])
    path = _write(tmp_path / "score.csv", _text(rows, header=header))

    frame, report = _load(path, **LENIENT)

    assert list(frame.columns) == [c for c in schema.RAW_COLUMNS if c != "Churn"]
    assert len(frame) == 20
    assert report.extra_columns == []


@pytest.mark.parametrize("blank", ["", " "], ids=["empty", "space"])
def test_lenient_mode_accepts_a_churn_column_of_blanks(tmp_path: Path, blank: str) -> None:
    rows = _rows()
    for row in rows:
        row[COL["Churn"]] = blank
    path = _write(tmp_path / "score.csv", _text(rows))

    frame, _ = _load(path, **LENIENT)

    assert list(frame.columns) == [c for c in schema.RAW_COLUMNS if c != "Churn"]
    assert len(frame) == 20


def test_lenient_mode_still_rejects_a_bad_number(tmp_path: Path) -> None:
    rows = _rows()
    _set(rows, 4, "MonthlyCharges", "abc")
    path = _write(tmp_path / "score.csv", _text(rows))

    with pytest.raises(DataContractError) as info:
        _load(path, **LENIENT)

    assert str(info.value) == f"{path}: column 'MonthlyCharges', line 4: not a number (got 'abc')"


# --- chunked reading ----------------------------------------------------------------------------


def test_read_raw_with_chunksize_returns_an_iterator_of_chunks(tmp_path: Path) -> None:
    path = _write(tmp_path / "customers.csv", _text(_rows()))

    chunks = read_raw(path, chunksize=7)

    assert isinstance(chunks, Iterator)
    parts = list(chunks)
    assert [len(part) for part in parts] == [7, 7, 6]
    assert all(isinstance(part, pd.DataFrame) for part in parts)
    whole = read_raw(path)
    assert isinstance(whole, pd.DataFrame)
    pd.testing.assert_frame_equal(pd.concat(parts), whole)


def test_chunks_clean_with_file_line_numbers_and_reports_add_up(tmp_path: Path) -> None:
    rows = _rows()
    _set(rows, 3, "TotalCharges", "")  # dropped, in chunk 1
    _set(rows, 18, "Churn", "Maybe")  # in chunk 3 (lines 16..21)
    path = _write(tmp_path / "customers.csv", _text(rows))

    total = CleanReport()
    chunks = read_raw(path, chunksize=7)
    for number, chunk in enumerate(chunks):
        if number < 2:
            _, report = clean(chunk, str(path))
            total.add(report)
        else:
            with pytest.raises(DataContractError) as info:
                clean(chunk, str(path))

    assert str(info.value) == f"{path}: column 'Churn', line 18: must be Yes or No (got 'Maybe')"
    assert total.rows_read == 14
    assert total.rows_dropped_total_charges == 1


# --- contract violations --------------------------------------------------------------------------

# Each builder writes one bad file into a directory and returns its path and the exact message
# expected, with `{path}` standing for the file's path. A tuple instead of a string lists
# fragments the message must contain (used where the text comes from a library).
Builder = Callable[[Path], tuple[Path, str | tuple[str, ...]]]


def _with(line: int, column: str, value: str, name: str = "customers.csv") -> Builder:
    def build(directory: Path) -> tuple[Path, str]:
        rows = _rows()
        _set(rows, line, column, value)
        return _write(directory / name, _text(rows)), ""

    return build


def _bad_value(line: int, column: str, value: str, problem: str) -> Builder:
    def build(directory: Path) -> tuple[Path, str]:
        path, _ = _with(line, column, value)(directory)
        return path, f"{{path}}: column '{column}', line {line}: {problem} (got {value!r})"

    return build


def _empty(directory: Path) -> tuple[Path, str]:
    return _write(directory / "customers.csv", b""), (
        "{path}: file is empty, expected a CSV header and rows"
    )


def _blank_lines_only(directory: Path) -> tuple[Path, str]:
    return _write(directory / "customers.csv", " \n\r\n  \n"), (
        "{path}: file is empty, expected a CSV header and rows"
    )


def _header_only(directory: Path) -> tuple[Path, str]:
    return _write(directory / "customers.csv", HEADER + "\n"), (
        "{path}: no data rows after the header"
    )


def _missing_column(column: str) -> Builder:
    def build(directory: Path) -> tuple[Path, str]:
        keep = [i for i, name in enumerate(schema.RAW_COLUMNS) if name != column]
        header = ",".join(schema.RAW_COLUMNS[i] for i in keep)
        rows = [[row[i] for i in keep] for row in _rows()]
        path = _write(directory / "customers.csv", _text(rows, header=header))
        return path, f"{{path}}: missing required column(s): {column}"

    return build


def _missing_two_columns(directory: Path) -> tuple[Path, str]:
    header = ",".join(c for c in schema.RAW_COLUMNS if c not in ("gender", "Contract"))
    rows = [[v for v, c in zip(row, schema.RAW_COLUMNS, strict=True)
             if c not in ("gender", "Contract")] for row in _rows()]  # fmt: skip
    path = _write(directory / "customers.csv", _text(rows, header=header))
    return path, "{path}: missing required column(s): gender, Contract"


def _duplicated_column_after_stripping(directory: Path) -> tuple[Path, str]:
    rows = [[*row, row[COL["tenure"]]] for row in _rows()]
    path = _write(directory / "customers.csv", _text(rows, header=HEADER + ", tenure"))
    return path, "{path}: duplicated column(s): tenure"


def _duplicated_id(directory: Path) -> tuple[Path, str]:
    rows = _rows()
    first = _get(rows, 3, "customerID")
    _set(rows, 9, "customerID", first)
    path = _write(directory / "customers.csv", _text(rows))
    return path, f"{{path}}: column 'customerID', line 9: duplicated customer id (got {first!r})"


def _single_class(directory: Path) -> tuple[Path, str]:
    rows = _rows()
    for row in rows:
        row[COL["Churn"]] = "No"
    path = _write(directory / "customers.csv", _text(rows))
    return path, (
        "{path}: column 'Churn': only one class present (all 'No'); training needs both Yes and No"
    )


def _single_class_after_dropping(directory: Path) -> tuple[Path, str]:
    rows = _rows()
    for row in rows:
        if row[COL["Churn"]] == "Yes":
            row[COL["TotalCharges"]] = " "  # positive tenure: every churner is dropped
    path = _write(directory / "customers.csv", _text(rows))
    return path, (
        "{path}: column 'Churn': only one class present (all 'No'); training needs both Yes and No"
    )


def _every_row_dropped(directory: Path) -> tuple[Path, str]:
    rows = _rows()
    for row in rows:
        row[COL["TotalCharges"]] = ""
    path = _write(directory / "customers.csv", _text(rows))
    return path, "{path}: no usable rows left after cleaning"


def _semicolons(directory: Path) -> tuple[Path, str]:
    path = _write(directory / "customers.csv", _text(_rows(), sep=";"))
    return path, "{path}: expected a comma-separated header; it looks ';'-delimited"


def _tabs(directory: Path) -> tuple[Path, str]:
    path = _write(directory / "customers.csv", _text(_rows(), sep="\t"))
    return path, "{path}: expected a comma-separated header; it looks '\\t'-delimited"


def _latin1(directory: Path) -> tuple[Path, str]:
    rows = _rows()
    _set(rows, 4, "gender", "Fémale")
    data = _text(rows).encode("latin-1")
    offset = data.index(b"\xe9")
    assert data[:offset].count(b"\n") == 3  # the bad byte is on line 4
    path = _write(directory / "customers.csv", data)
    return path, "{path}: line 4: byte 0xE9 is not UTF-8; save the file as UTF-8"


def _binary(directory: Path) -> tuple[Path, str]:
    data = b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) * 40
    path = _write(directory / "customers.xlsx", data)
    return path, "{path}: binary data (NUL bytes), expected UTF-8 CSV text"


def _ragged_row(directory: Path) -> tuple[Path, tuple[str, ...]]:
    rows = _rows()
    rows[4].append("surplus")  # line 6
    path = _write(directory / "customers.csv", _text(rows))
    return path, ("{path}: not a well-formed CSV (", "line 6", "21", "22")


def _quoted_newline(directory: Path) -> tuple[Path, str]:
    rows = _rows()
    _set(rows, 4, "PaymentMethod", '"Mailed\ncheck"')
    path = _write(directory / "customers.csv", _text(rows))
    return path, (
        "{path}: column 'PaymentMethod', line 4: not one of Electronic check, Mailed check, "
        "Bank transfer (automatic), Credit card (automatic) (got 'Mailed\\ncheck')"
    )


def _not_found(directory: Path) -> tuple[Path, str]:
    return directory / "no_such_file.csv", "{path}: file not found"


def _directory(directory: Path) -> tuple[Path, str]:
    path = directory / "customers.csv"
    path.mkdir()
    return path, "{path}: is a directory, expected a CSV file"


BAD_INPUTS = [
    pytest.param(_empty, id="empty-file"),
    pytest.param(_blank_lines_only, id="whitespace-only-file"),
    pytest.param(_header_only, id="header-only"),
    pytest.param(_missing_column("tenure"), id="missing-column-tenure"),
    pytest.param(_missing_column("Churn"), id="missing-column-churn"),
    pytest.param(_missing_two_columns, id="missing-two-columns"),
    pytest.param(_duplicated_column_after_stripping, id="duplicated-column-padded"),
    pytest.param(_duplicated_id, id="duplicated-customer-id"),
    pytest.param(_bad_value(5, "customerID", "", "empty customer id"), id="empty-customer-id"),
    pytest.param(_bad_value(5, "Churn", "Maybe", "must be Yes or No"), id="churn-maybe"),
    pytest.param(_bad_value(6, "Churn", "yes", "must be Yes or No"), id="churn-lowercase"),
    pytest.param(_bad_value(7, "Churn", "", "must be Yes or No"), id="churn-blank"),
    pytest.param(_single_class, id="single-class"),
    pytest.param(_single_class_after_dropping, id="single-class-after-dropping"),
    pytest.param(_every_row_dropped, id="every-row-dropped"),
    pytest.param(_bad_value(4, "MonthlyCharges", "abc", "not a number"), id="monthly-charges-abc"),
    pytest.param(_bad_value(4, "MonthlyCharges", "nan", "not a number"), id="monthly-charges-nan"),
    pytest.param(_bad_value(4, "MonthlyCharges", "inf", "not a number"), id="monthly-charges-inf"),
    pytest.param(_bad_value(8, "MonthlyCharges", "", "missing value"), id="monthly-charges-blank"),
    pytest.param(
        _bad_value(8, "MonthlyCharges", "$29.85", "not a number"), id="monthly-charges-dollar"
    ),
    pytest.param(_bad_value(5, "TotalCharges", "-1.00", "must be >= 0"), id="total-negative"),
    pytest.param(_bad_value(6, "tenure", "-3", "must be between 0 and 1200"), id="tenure-negative"),
    pytest.param(_bad_value(7, "tenure", "1.5", "not a whole number"), id="tenure-fraction"),
    pytest.param(_bad_value(7, "tenure", "", "missing value"), id="tenure-blank"),
    pytest.param(_bad_value(7, "tenure", "inf", "not a number"), id="tenure-inf"),
    pytest.param(_bad_value(7, "tenure", "twelve", "not a number"), id="tenure-word"),
    pytest.param(
        _bad_value(3, "SeniorCitizen", "2", "must be between 0 and 1"), id="senior-citizen-2"
    ),
    pytest.param(_bad_value(3, "SeniorCitizen", "Yes", "not a number"), id="senior-citizen-yes"),
    pytest.param(
        _bad_value(8, "Contract", "Three year", "not one of Month-to-month, One year, Two year"),
        id="unknown-category-contract",
    ),
    pytest.param(
        _bad_value(2, "gender", "female", "not one of Female, Male"),
        id="unknown-category-lowercase",
    ),
    pytest.param(_quoted_newline, id="quoted-newline-in-category"),
    pytest.param(_semicolons, id="semicolon-delimited"),
    pytest.param(_tabs, id="tab-delimited"),
    pytest.param(_latin1, id="latin-1-bytes"),
    pytest.param(_binary, id="binary-nul-bytes"),
    pytest.param(_ragged_row, id="ragged-row"),
    pytest.param(_not_found, id="file-not-found"),
    pytest.param(_directory, id="path-is-a-directory"),
]


@pytest.mark.parametrize("build", BAD_INPUTS)
def test_contract_violation_is_a_one_line_data_contract_error(
    tmp_path: Path, build: Builder
) -> None:
    path, expected = build(tmp_path)

    with pytest.raises(DataContractError) as info:
        _load(path)

    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(f"{path}: ")
    if isinstance(expected, str):
        assert message == expected.format(path=path)
    else:
        for fragment in expected:
            assert fragment.format(path=path) in message


@pytest.mark.parametrize(
    "column", ["customerID", "Contract", "MonthlyCharges"], ids=["id", "category", "number"]
)
def test_a_5_mb_field_gives_a_clean_result_or_a_contract_error(tmp_path: Path, column: str) -> None:
    rows = _rows()
    _set(rows, 4, column, "7" * 5_000_000)
    path = _write(tmp_path / "customers.csv", _text(rows))

    try:
        frame, _ = _load(path)
    except DataContractError as err:  # anything else fails the test with its traceback
        message = str(err)
        assert "\n" not in message
        assert message.startswith(f"{path}: column '{column}', line 4: ")
    else:
        assert len(frame) == 20


def test_unknown_category_is_rejected_only_in_strict_mode(tmp_path: Path) -> None:
    path, _ = _with(8, "Contract", "Three year")(tmp_path)

    with pytest.raises(DataContractError):
        _load(path)
    frame, report = _load(path, strict_categories=False)

    assert report.unseen_categories == {"Contract": 1}
    assert frame.loc[6, "Contract"] == "Three year"


# --- header and line-number edge cases ----------------------------------------------------------


def test_exactly_duplicated_header_is_rejected(tmp_path: Path) -> None:
    rows = [[*row, "0"] for row in _rows()]
    path = _write(tmp_path / "customers.csv", _text(rows, header=HEADER + ",tenure"))

    with pytest.raises(DataContractError) as info:
        _load(path)

    assert str(info.value) == f"{path}: duplicated column(s): tenure"


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    rows = _rows()
    _set(rows, 8, "Churn", "Maybe")
    lines = _text(rows).split("\n")
    lines.insert(3, "")  # a blank line 4: the bad row moves to line 9
    path = _write(tmp_path / "customers.csv", "\n".join(lines))

    with pytest.raises(DataContractError) as info:
        _load(path)

    assert str(info.value) == f"{path}: column 'Churn', line 9: must be Yes or No (got 'Maybe')"


def test_tenure_too_large_for_int64_is_rejected(tmp_path: Path) -> None:
    path, _ = _with(5, "tenure", "1e30")(tmp_path)

    with pytest.raises(
        DataContractError, match=r"column 'tenure', line 5: must be between 0 and 1200"
    ):
        _load(path)  # would overflow int64 if it got past the range check


def test_chunked_read_of_late_non_utf8_bytes_is_a_contract_error(tmp_path: Path) -> None:
    rows = _rows(2000)
    _set(rows, 1500, "gender", "Fémale")  # well past the 64 KiB that read_raw checks up front
    path = _write(tmp_path / "customers.csv", _text(rows).encode("latin-1"))
    assert path.read_bytes().index(b"\xe9") > 65536

    with pytest.raises(DataContractError):
        for _ in read_raw(path, chunksize=500):
            pass


# --- line numbers: where the bad record starts, as an editor numbers lines -----------------------

# Each layout: line ending, the `notes` field (a quoted extra column) by data row (0 = the first
# row, on line 2 when no field spans lines), the data row whose Churn is bad, and the physical line
# that row starts on, counted by hand.
LINE_LAYOUTS = [
    pytest.param("\n", {}, 6, 8, id="lf-no-multiline-field"),
    pytest.param("\n", {2: "a\nb"}, 6, 9, id="lf-newline-in-an-earlier-row"),
    pytest.param("\r\n", {2: "a\r\nb"}, 6, 9, id="crlf-crlf-in-an-earlier-row"),
    pytest.param("\r\n", {2: "a\nb"}, 6, 9, id="crlf-file-lf-in-an-earlier-row"),
    pytest.param("\n", {1: "a\n\nb"}, 6, 10, id="two-newlines-in-one-field"),
    pytest.param("\r\n", {1: "a\r\nb", 3: "c\r\nd"}, 6, 10, id="crlf-two-earlier-rows"),
    pytest.param("\n", {2: 'said ""no"",\nthen left'}, 6, 9, id="escaped-quotes-and-comma"),
    pytest.param("\n", {6: "a\nb"}, 6, 8, id="newline-in-the-bad-row-itself"),
    pytest.param("\n", {8: "a\nb"}, 6, 8, id="newline-in-a-later-row"),
    pytest.param("\n", {0: "a\nb"}, 0, 2, id="bad-first-row-with-newline"),
]


def _notes_file(path: Path, eol: str, notes: dict[int, str], bad_row: int) -> Path:
    rows = [[*row, f'"{notes[i]}"' if i in notes else ""] for i, row in enumerate(_rows())]
    rows[bad_row][COL["Churn"]] = "Maybe"
    return _write(path, _text(rows, header=HEADER + ",notes", eol=eol))


@pytest.mark.parametrize(("eol", "notes", "bad_row", "line"), LINE_LAYOUTS)
def test_line_number_is_the_physical_line_the_bad_row_starts_on(
    tmp_path: Path, eol: str, notes: dict[int, str], bad_row: int, line: int
) -> None:
    path = _notes_file(tmp_path / "customers.csv", eol, notes, bad_row)
    assert path.read_bytes().splitlines()[line - 1].count(b"Maybe") == 1

    with pytest.raises(DataContractError) as info:
        _load(path)

    expected = f"column 'Churn', line {line}: must be Yes or No (got 'Maybe')"
    assert str(info.value) == f"{path}: {expected}"


def test_chunked_line_number_counts_multiline_fields_of_earlier_chunks(tmp_path: Path) -> None:
    path = _notes_file(tmp_path / "customers.csv", "\r\n", {1: "a\r\nb", 9: "c\nd"}, 16)

    with pytest.raises(DataContractError) as info:
        for chunk in read_raw(path, chunksize=7):
            clean(chunk, str(path))

    assert str(info.value) == f"{path}: column 'Churn', line 20: must be Yes or No (got 'Maybe')"


# --- bytes that are not UTF-8: name the line and the bytes ---------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [(b"F\xe9male", "byte 0xE9"), (b"F\xe2\x82male", "bytes 0xE2 0x82")],
    ids=["latin-1-e-acute", "cut-3-byte-sequence"],
)
@pytest.mark.parametrize("chunksize", [None, 500], ids=["whole", "chunked"])
def test_non_utf8_bytes_deep_in_the_file_name_the_line_and_bytes(
    tmp_path: Path, value: bytes, shown: str, chunksize: int | None
) -> None:
    rows = _rows(2000)
    rows[1498][COL["gender"]] = "@"  # data row 1498 is on file line 1500
    text = _text(rows).encode("utf-8")
    assert text.count(b"@") == 1
    data = text.replace(b"@", value)
    assert data.index(value) > 65536  # past the head that read_raw checks up front
    path = _write(tmp_path / "customers.csv", data)

    with pytest.raises(DataContractError) as info:
        result = read_raw(path, chunksize=chunksize)
        for _ in [result] if chunksize is None else result:
            pass

    assert str(info.value) == f"{path}: line 1500: {shown} is not UTF-8; save the file as UTF-8"
