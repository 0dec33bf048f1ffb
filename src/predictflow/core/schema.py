"""The raw-data contract: the IBM Telco Customer Churn layout, and how a raw file becomes typed.

One place decides what a valid customer row is. `prepare` applies it strictly (training data must
be clean); `predictflow predict` applies it leniently (unseen categories are scored and reported,
`Churn` is optional). Every violation is a `DataContractError` whose message names the file, the
column, the line and the offending value, so the command line can print it as one line.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import pandas as pd

from predictflow.base.errors import UserError

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

ID = "customerID"
TARGET = "Churn"
TARGET_VALUES = {"Yes": 1, "No": 0}
# Scoring reads labels leniently (CONTRACT: `Churn` optional there): Yes/No in any case, or the
# 1/0 a label join may bring. Training data must spell them as the contract does.
LENIENT_TARGET_VALUES = {"yes": 1, "no": 0, "1": 1, "0": 0}
TARGET_RULES = {
    False: "must be Yes or No",
    True: "must be Yes/No (any case) or 1/0, the lenient reading for scored batches",
}

YES_NO = ("Yes", "No")
INTERNET_ADDON = ("Yes", "No", "No internet service")

CATEGORIES: dict[str, tuple[str, ...]] = {
    "gender": ("Female", "Male"),
    "Partner": YES_NO,
    "Dependents": YES_NO,
    "PhoneService": YES_NO,
    "MultipleLines": ("Yes", "No", "No phone service"),
    "InternetService": ("DSL", "Fiber optic", "No"),
    "OnlineSecurity": INTERNET_ADDON,
    "OnlineBackup": INTERNET_ADDON,
    "DeviceProtection": INTERNET_ADDON,
    "TechSupport": INTERNET_ADDON,
    "StreamingTV": INTERNET_ADDON,
    "StreamingMovies": INTERNET_ADDON,
    "Contract": ("Month-to-month", "One year", "Two year"),
    "PaperlessBilling": YES_NO,
    "PaymentMethod": (
        "Electronic check",
        "Mailed check",
        "Bank transfer (automatic)",
        "Credit card (automatic)",
    ),
}
# Bounds keep absurd values (1e30 would overflow int64) out; tenure is in months.
INTEGERS: dict[str, tuple[int, int]] = {"SeniorCitizen": (0, 1), "tenure": (0, 1200)}
FLOATS = ("MonthlyCharges", "TotalCharges")

RAW_COLUMNS: tuple[str, ...] = (
    ID, "gender", "SeniorCitizen", "Partner", "Dependents", "tenure", "PhoneService",
    "MultipleLines", "InternetService", "OnlineSecurity", "OnlineBackup", "DeviceProtection",
    "TechSupport", "StreamingTV", "StreamingMovies", "Contract", "PaperlessBilling",
    "PaymentMethod", "MonthlyCharges", "TotalCharges", TARGET,
)  # fmt: skip
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(CATEGORIES)
NUMERIC_FEATURES: tuple[str, ...] = (*INTEGERS, *FLOATS)
FEATURES: tuple[str, ...] = tuple(c for c in RAW_COLUMNS if c not in (ID, TARGET))


class DataContractError(UserError):
    """A raw file breaks the data contract; the message is one line meant for the user."""


@dataclass
class CleanReport:
    """What cleaning did, so nothing happens silently (logged and written as metrics)."""

    rows_read: int = 0
    rows_dropped_total_charges: int = 0
    total_charges_filled: int = 0
    extra_columns: list[str] = field(default_factory=list)
    unseen_categories: dict[str, int] = field(default_factory=dict)

    def add(self, other: CleanReport) -> None:
        self.rows_read += other.rows_read
        self.rows_dropped_total_charges += other.rows_dropped_total_charges
        self.total_charges_filled += other.total_charges_filled
        self.extra_columns = self.extra_columns or other.extra_columns
        for column, count in other.unseen_categories.items():
            self.unseen_categories[column] = self.unseen_categories.get(column, 0) + count


@dataclass
class FileLabels:
    """Whether a file read in chunks carries labels: decided for the whole file, as `clean`
    decides it for one frame. The lenient `clean` drops a chunk's all-blank `Churn`, so a file
    whose labels stop (or start) at a chunk boundary would otherwise be scored into rows of
    two widths under one header; here it fails where the whole file would, at its first blank
    label."""

    source: str
    labelled: bool | None = None  # the first chunk's answer
    first_index: int = 0

    def check(self, chunk: pd.DataFrame, rows: pd.DataFrame) -> None:
        """`rows` is the lenient `clean` of the raw `chunk` (empty for a header-only file)."""
        if chunk.empty:
            return
        if self.labelled is None:
            self.labelled, self.first_index = TARGET in rows, int(chunk.index[0])
        elif (TARGET in rows) != self.labelled:
            blank = int(chunk.index[0]) if self.labelled else self.first_index
            _fail(self.source, TARGET, blank, "", TARGET_RULES[True])


def _line(source: str, index: int) -> int:
    """File line (as an editor numbers it) where data record `index` starts.

    A quoted field may span lines, so the header and the records before the bad one are read
    again with the csv module, which counts the physical lines they took. Only done on the
    error path; a source that is not a readable file falls back to one line per record.
    """
    records = int(index) + 1  # the header, then every record before this one
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # the contract sets no limit on a field's size
    try:
        with open(source, newline="", encoding="utf-8", errors="replace") as handle:
            reader = csv.reader(handle)
            if sum(1 for _ in itertools.islice(reader, records)) == records:
                return reader.line_num + 1
    except (OSError, csv.Error):
        pass  # not the file the frame came from: the one-line-per-record estimate below
    finally:
        csv.field_size_limit(limit)
    return int(index) + 2


def _fail(source: str, column: str, index: int | None, value: object, problem: str) -> None:
    where = f", line {_line(source, index)}" if index is not None else ""
    raise DataContractError(f"{source}: column '{column}'{where}: {problem} (got {value!r})")


class Digesting:
    """A binary file read through `hashlib` as it is read: the md5 of exactly the bytes parsed,
    however the file at that path changes meanwhile (an atomic `mv` leaves this handle on the
    file it opened)."""

    def __init__(self, handle: BinaryIO, digest: Hash) -> None:
        self.handle, self.digest = handle, digest

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data

    def __iter__(self) -> Iterator[bytes]:  # pandas takes only what has `read` and `__iter__`
        return iter(lambda: self.read(65536), b"")


def read_raw(
    path: Path | str, chunksize: int | None = None, digest: Hash | None = None
) -> pd.DataFrame | Iterator[pd.DataFrame]:
    """Read a raw CSV as strings (no type guessing), or an iterator of chunks if `chunksize`.

    The file is opened once; with `digest`, every byte parsed is fed to it as it is read.
    """
    source = str(path)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed when the last chunk is read
        head = handle.read(65536)
        handle.seek(0)
    except FileNotFoundError:
        raise DataContractError(f"{source}: file not found") from None
    except IsADirectoryError:
        raise DataContractError(f"{source}: is a directory, expected a CSV file") from None
    try:
        _check_head(head, source)
    except DataContractError:
        handle.close()
        raise
    reader = Digesting(handle, digest) if digest is not None else handle
    with _as_contract_errors(source):
        frames = pd.read_csv(
            reader,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8",
            # kept so a row's index stays its record number; dropped in `_drop_blank_rows`
            skip_blank_lines=False,
            chunksize=chunksize,
        )
        if chunksize is None:
            with handle:
                return _drop_blank_rows(frames)
    return _chunks(frames, source, handle)


def _check_head(head: bytes, source: str) -> None:
    """What the first 64 KiB tell: empty, binary, not UTF-8, not comma-separated, repeated
    column names."""
    if not head.strip():
        raise DataContractError(f"{source}: file is empty, expected a CSV header and rows")
    if b"\x00" in head:
        raise DataContractError(f"{source}: binary data (NUL bytes), expected UTF-8 CSV text")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not just a character cut at the 64 KiB boundary
            raise _not_utf8(source) from None
    header_line = head.splitlines()[0].decode("utf-8", errors="replace")
    if "," not in header_line:
        sniffed = next((d for d in ";\t|" if d in header_line), None)
        hint = f"; it looks {sniffed!r}-delimited" if sniffed else ""
        raise DataContractError(f"{source}: expected a comma-separated header{hint}")
    header = [name.strip() for name in next(csv.reader([header_line]))]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:  # pandas would silently rename the second one to `name.1`
        raise DataContractError(f"{source}: duplicated column(s): {', '.join(repeated)}")


@contextmanager
def _as_contract_errors(source: str) -> Iterator[None]:
    """Decoding and parsing failures are the file's fault: say so in one line."""
    try:
        yield
    except UnicodeDecodeError:
        raise _not_utf8(source) from None
    except (pd.errors.ParserError, csv.Error) as err:
        message = " ".join(str(err).split())
        raise DataContractError(f"{source}: not a well-formed CSV ({message})") from None


def _not_utf8(source: str) -> DataContractError:
    """Name the first line holding bytes that are not UTF-8, and the bytes themselves.

    pandas reports an offset into its own buffer, which means nothing to the user, so the
    file is read again line by line (a newline byte is never part of a UTF-8 sequence).
    """
    with open(source, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                bad = raw[err.start : err.end]
                shown = " ".join(f"0x{byte:02X}" for byte in bad)
                noun = "byte" if len(bad) == 1 else "bytes"
                return DataContractError(
                    f"{source}: line {number}: {noun} {shown} is not UTF-8; save the file as UTF-8"
                )
    return DataContractError(f"{source}: not UTF-8 text; save the file as UTF-8")


def _chunks(
    reader: Iterator[pd.DataFrame], source: str, handle: BinaryIO
) -> Iterator[pd.DataFrame]:
    """Chunks are parsed lazily, so their errors surface during iteration: convert them there."""
    with handle, _as_contract_errors(source):
        for chunk in reader:
            yield _drop_blank_rows(chunk)


def _drop_blank_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop empty lines without renumbering, so error messages keep the true line numbers."""
    if frame.empty:
        return frame
    return frame[(frame != "").any(axis=1)]


def _check_columns(raw: pd.DataFrame, source: str, require_target: bool) -> list[str]:
    required = [c for c in RAW_COLUMNS if require_target or c != TARGET]
    present = [c.strip() for c in raw.columns]
    missing = [c for c in required if c not in present]
    if missing:
        raise DataContractError(f"{source}: missing required column(s): {', '.join(missing)}")
    duplicated = sorted({c for c in present if present.count(c) > 1})
    if duplicated:
        raise DataContractError(f"{source}: duplicated column(s): {', '.join(duplicated)}")
    return [c for c in present if c not in RAW_COLUMNS]


def _to_number(values: pd.Series, source: str, column: str) -> pd.Series:
    numbers = pd.to_numeric(values.where(values != ""), errors="coerce")
    bad = (numbers.isna() | (numbers.abs() == float("inf"))) & (values != "")
    if bad.any():
        index = bad.idxmax()
        _fail(source, column, index, values[index], "not a number")
    return numbers


def clean(
    raw: pd.DataFrame,
    source: str,
    *,
    strict_categories: bool = True,
    require_target: bool = True,
    whole_file: bool = True,
) -> tuple[pd.DataFrame, CleanReport]:
    """Validate a raw string frame and return it typed, trimmed and in contract column order.

    Strict mode (training) rejects unknown categories and requires `Churn`; lenient mode
    (scoring) counts unseen categories in the report and keeps `Churn` only when present.
    Blank `TotalCharges` at tenure 0 means nothing billed yet (filled with 0.0); blank at a
    positive tenure is unrecoverable and the row is dropped and counted.

    `whole_file=False` cleans one chunk of a larger file: the checks only the whole file can
    answer (any rows at all, ids unique across chunks, both classes) are left to the caller
    (`clean_file`).
    """
    report = CleanReport(rows_read=len(raw))
    raw = raw.rename(columns=lambda c: c.strip())
    report.extra_columns = _check_columns(raw, source, require_target)
    has_target = TARGET in raw.columns
    columns = [c for c in RAW_COLUMNS if c != TARGET or has_target]
    frame = raw[columns].apply(lambda s: s.str.strip())
    if frame.empty and require_target and whole_file:
        raise DataContractError(f"{source}: no data rows after the header")

    ids = frame[ID]
    if (ids == "").any():
        _fail(source, ID, (ids == "").idxmax(), "", "empty customer id")
    if require_target:
        duplicated = ids.duplicated()
        if duplicated.any():
            index = duplicated.idxmax()
            _fail(source, ID, index, ids[index], "duplicated customer id")

    typed: dict[str, pd.Series] = {ID: ids.astype(str)}
    for column, allowed in CATEGORIES.items():
        values = frame[column]
        unknown = ~values.isin(allowed)
        if unknown.any():
            if strict_categories:
                index = unknown.idxmax()
                _fail(source, column, index, values[index], f"not one of {', '.join(allowed)}")
            report.unseen_categories[column] = int(unknown.sum())
        typed[column] = values.astype(str)
    for column, (low, high) in INTEGERS.items():
        numbers = _to_number(frame[column], source, column)
        if numbers.isna().any():
            _fail(source, column, numbers.isna().idxmax(), "", "missing value")
        if (numbers != numbers.round()).any():
            index = (numbers != numbers.round()).idxmax()
            _fail(source, column, index, frame[column][index], "not a whole number")
        out_of_range = (numbers < low) | (numbers > high)
        if out_of_range.any():
            index = out_of_range.idxmax()
            _fail(source, column, index, frame[column][index], f"must be between {low} and {high}")
        typed[column] = numbers.astype("int64")
    for column in FLOATS:
        numbers = _to_number(frame[column], source, column).astype("float64")
        negative = numbers < 0
        if negative.any():
            index = negative.idxmax()
            _fail(source, column, index, frame[column][index], "must be >= 0")
        typed[column] = numbers
    if typed["MonthlyCharges"].isna().any():
        _fail(
            source, "MonthlyCharges", typed["MonthlyCharges"].isna().idxmax(), "", "missing value"
        )
    if has_target:
        target = frame[TARGET]
        if not require_target and (target == "").all():
            has_target = False
        else:
            typed[TARGET] = parse_target(target, source, lenient=not require_target)

    result = pd.DataFrame(typed)[[c for c in RAW_COLUMNS if c in typed]]
    blank_total = result["TotalCharges"].isna()
    fill = blank_total & (result["tenure"] == 0)
    report.total_charges_filled = int(fill.sum())
    result.loc[fill, "TotalCharges"] = 0.0
    drop = blank_total & ~fill
    report.rows_dropped_total_charges = int(drop.sum())
    result = result[~drop]
    if require_target and whole_file:
        _check_usable(result, source)
    return result, report


def _check_usable(result: pd.DataFrame, source: str) -> None:
    """Training needs rows left after cleaning, of both classes."""
    if result.empty:
        raise DataContractError(f"{source}: no usable rows left after cleaning")
    classes = set(result[TARGET].unique())
    if len(classes) < 2:
        only = "Yes" if 1 in classes else "No"
        raise DataContractError(
            f"{source}: column '{TARGET}': only one class present (all {only!r}); "
            "training needs both Yes and No"
        )


def clean_file(
    path: Path | str, chunk_rows: int, digest: Hash | None = None
) -> tuple[pd.DataFrame, CleanReport]:
    """The strict `clean` of a whole raw file, read and cleaned `chunk_rows` rows at a time.

    The same rows and values as `clean(read_raw(path), ...)`, held compactly: the category
    columns as pandas categoricals (`as_written` turns rows back into the `clean` layout), so
    memory stays far below that of the file's strings. Each chunk is checked as it is read
    (the first bad chunk names its error); the checks that need every row (ids unique across
    chunks, rows left, both classes) run once at the end, with the same messages.
    """
    source = str(path)
    report = CleanReport()
    parts: list[pd.DataFrame] = []
    ids: list[pd.Series] = []
    for chunk in read_raw(path, chunksize=chunk_rows, digest=digest):
        part, chunk_report = clean(chunk, source, whole_file=False)
        report.add(chunk_report)
        ids.append(chunk.rename(columns=lambda c: c.strip())[ID].str.strip())
        parts.append(part.astype(_COMPACT))
    if not report.rows_read:  # no rows at all: the whole-file path says what is wrong
        return clean(read_raw(path), source)
    all_ids = pd.concat(ids)
    del ids
    codes, _ = all_ids.factorize()  # integer codes: no Python string per id
    duplicated = pd.Series(codes, index=all_ids.index).duplicated()
    if duplicated.any():
        index = duplicated.idxmax()
        _fail(source, ID, index, all_ids[index], "duplicated customer id")
    del all_ids, codes, duplicated
    result = pd.concat(parts)
    del parts
    _check_usable(result, source)
    return result, report


_COMPACT = {column: pd.CategoricalDtype(list(allowed)) for column, allowed in CATEGORIES.items()}


def parse_target(values: pd.Series, source: str, lenient: bool) -> pd.Series:
    """Trimmed `Churn` text as 0/1 under the strict or the lenient reading; else one line."""
    key = values.str.lower() if lenient else values
    allowed = LENIENT_TARGET_VALUES if lenient else TARGET_VALUES
    unknown = ~key.isin(allowed)
    if unknown.any():
        index = unknown.idxmax()
        _fail(source, TARGET, index, values[index], TARGET_RULES[lenient])
    return key.map(allowed).astype("int64")


def as_written(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of a `clean_file` frame in the layout `clean` returns (categories as text).

    Each category column's labels are taken by code: 17x faster than `astype(str)`, which goes
    through one Python string per value."""
    return rows.assign(**{column: _labels(rows[column]) for column in CATEGORIES})


def _labels(values: pd.Series) -> pd.Series:
    return pd.Series(values.cat.categories.take(values.cat.codes), index=values.index)


def _as_read(values: pd.Series) -> pd.Series:
    """A column as a CSV reader with `dtype=str` gives it: text, blank where a value is missing."""
    text = values.astype(str)
    return text.where(values.notna(), "")


def clean_features(rows: pd.DataFrame, source: str = "model input") -> pd.DataFrame:
    """Raw-layout rows as a client holds them -> typed features, one row out per row in.

    What the served model applies before featurizing, so every door (pyfunc, REST, `predict`)
    scores a row the same way: numbers may arrive as numbers or as text, `TotalCharges` blank at
    tenure 0, padded with spaces; `customerID` and `Churn` are optional. The lenient contract
    (`clean`) does the work; a row it would drop cannot be scored and is named instead.
    """
    raw = rows.rename(columns=lambda c: str(c).strip()).reset_index(drop=True)
    raw = raw.apply(_as_read)
    if ID not in raw.columns:  # ids only key the output of `predict`; a client need not send one
        raw.insert(0, ID, [f"row {i + 1}" for i in range(len(raw))])
    typed, _ = clean(raw, source, strict_categories=False, require_target=False)
    if len(typed) < len(raw):
        index = raw.index.difference(typed.index)[0]
        _fail(source, "TotalCharges", index, "", "blank at tenure > 0, so the row cannot be scored")
    return typed.loc[:, list(FEATURES)]
