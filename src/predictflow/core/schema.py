"""The raw-data contract: the IBM Telco Customer Churn layout, its columns, values and target.

One place decides what a valid customer row is. `prepare` applies it strictly (training data must
be clean); `predictflow predict` applies it leniently (unseen categories are scored and reported,
`Churn` is optional). Every violation is a `DataContractError` whose message names the file, the
column, the line and the offending value (`fail`), so the command line can print it as one line.
`rawfile` reads a raw file as strings; `cleaning` turns it typed under this contract.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass, field

import pandas as pd

from predictflow.base.errors import UserError

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


def fail(source: str, column: str, index: int | None, value: object, problem: str) -> None:
    """One line naming the file, column, line (a parquet part: row, from 1) and value."""
    if index is None:
        where = ""
    elif source.lower().endswith(".parquet"):
        where = f", row {int(index) + 1}"
    else:
        where = f", line {_line(source, index)}"
    raise DataContractError(f"{source}: column '{column}'{where}: {problem} (got {value!r})")


def parse_target(values: pd.Series, source: str, lenient: bool) -> pd.Series:
    """Trimmed `Churn` text as 0/1 under the strict or the lenient reading; else one line."""
    key = values.str.lower() if lenient else values
    allowed = LENIENT_TARGET_VALUES if lenient else TARGET_VALUES
    unknown = ~key.isin(allowed)
    if unknown.any():
        index = unknown.idxmax()
        fail(source, TARGET, index, values[index], TARGET_RULES[lenient])
    return key.map(allowed).astype("int64")
