"""The synthetic data generator: byte-stable, schema-valid, realistic but not separable."""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from predictflow.core import cleaning, rawfile, schema
from predictflow.ops import synth

# md5 of `write_csv(path)` with the defaults. data/customers.csv.dvc pins these same bytes: a
# generator change that alters them breaks `dvc pull`/`dvc status` for every fresh clone.
DEFAULT_MD5 = "39b3116321d1196462c9e8bec213c2f9"

ADDONS = (
    "OnlineSecurity",
    "OnlineBackup",
    "DeviceProtection",
    "TechSupport",
    "StreamingTV",
    "StreamingMovies",
)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def default_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synth") / "customers.csv"
    synth.write_csv(path)
    return path


@pytest.fixture(scope="module")
def default_raw(default_file: Path) -> pd.DataFrame:
    return rawfile.read_raw(default_file)


@pytest.fixture(scope="module")
def default_clean(default_file: Path, default_raw: pd.DataFrame) -> pd.DataFrame:
    frame, _ = cleaning.clean(default_raw, str(default_file))
    return frame


def test_defaults_match_the_real_data_set_size() -> None:
    assert synth.DEFAULT_ROWS == 7043
    assert synth.DEFAULT_SEED == 42


def test_default_file_bytes_are_pinned(default_file: Path) -> None:
    assert _md5(default_file) == DEFAULT_MD5, (
        "synth.write_csv() with the defaults no longer produces the pinned bytes; "
        "data/customers.csv.dvc pins these bytes (md5), so fresh clones would get different data. "
        "If the change is intended, regenerate data/customers.csv, update the .dvc file and "
        "DEFAULT_MD5 together."
    )


def test_same_rows_and_seed_give_identical_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    synth.write_csv(first, rows=500, seed=7)
    synth.write_csv(second, rows=500, seed=7)
    assert first.read_bytes() == second.read_bytes()


def test_different_seed_gives_different_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    synth.write_csv(first, rows=500, seed=7)
    synth.write_csv(second, rows=500, seed=8)
    assert first.read_bytes() != second.read_bytes()


def test_smaller_row_count_is_a_prefix(tmp_path: Path) -> None:
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    synth.write_csv(small, rows=300, seed=3)
    synth.write_csv(large, rows=1000, seed=3)
    assert large.read_bytes().startswith(small.read_bytes())


def test_iter_rows_matches_the_written_file(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    synth.write_csv(path, rows=200, seed=11)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[1:] == [",".join(row) for row in synth.iter_rows(200, 11)]
    assert all(len(row) == len(schema.RAW_COLUMNS) for row in synth.iter_rows(50, 11))


def test_file_layout(default_file: Path) -> None:
    data = default_file.read_bytes()
    data.decode("utf-8")
    assert b"\r" not in data
    assert data.endswith(b"\n") and not data.endswith(b"\n\n")
    lines = data.split(b"\n")[:-1]
    assert lines[0].decode() == ",".join(schema.RAW_COLUMNS)
    assert len(lines) == synth.DEFAULT_ROWS + 1


def test_passes_the_strict_schema(default_file: Path, default_raw: pd.DataFrame) -> None:
    assert list(default_raw.columns) == list(schema.RAW_COLUMNS)
    frame, report = cleaning.clean(default_raw, str(default_file))
    assert len(frame) == synth.DEFAULT_ROWS
    assert report.rows_dropped_total_charges == 0
    assert report.extra_columns == []
    assert report.unseen_categories == {}


def test_customer_ids_are_unique_and_real_format(default_raw: pd.DataFrame) -> None:
    ids = default_raw[schema.ID]
    assert ids.is_unique
    assert ids.map(lambda value: re.fullmatch(r"\d{4}-[A-Z]{5}", value) is not None).all()


def test_customer_id_letters_are_a_bijection_of_the_row_index() -> None:
    assert math.gcd(synth._ID_STRIDE, synth._ID_SPACE) == 1
    assert synth._ID_SPACE == 26**5
    assert synth.MAX_ROWS >= 10_000_000


def test_churn_rate_is_realistic(default_clean: pd.DataFrame) -> None:
    assert 0.23 <= default_clean[schema.TARGET].mean() <= 0.30


def test_blank_total_charges_exactly_at_tenure_zero(default_raw: pd.DataFrame) -> None:
    blank = default_raw["TotalCharges"] == ""
    new = default_raw["tenure"] == "0"
    assert new.sum() >= 1
    assert (blank == new).all()


def test_total_charges_track_tenure_times_monthly(default_clean: pd.DataFrame) -> None:
    billed = default_clean[default_clean["tenure"] > 0]
    ratio = billed["TotalCharges"] / (billed["tenure"] * billed["MonthlyCharges"])
    assert ratio.between(0.85, 1.15).all()
    assert default_clean["MonthlyCharges"].between(18.25, 118.75).all()
    assert default_clean["tenure"].between(0, 72).all()


def test_service_consistency_rules(default_raw: pd.DataFrame) -> None:
    no_phone = default_raw["PhoneService"] == "No"
    assert ((default_raw["MultipleLines"] == "No phone service") == no_phone).all()
    no_internet = default_raw["InternetService"] == "No"
    for addon in ADDONS:
        assert ((default_raw[addon] == "No internet service") == no_internet).all(), addon


@pytest.mark.parametrize(
    ("column", "value", "share", "tolerance"),
    [
        ("gender", "Male", 0.50, 0.04),
        ("SeniorCitizen", "1", 0.16, 0.03),
        ("Partner", "Yes", 0.48, 0.04),
        ("Dependents", "Yes", 0.30, 0.04),
        ("PhoneService", "Yes", 0.90, 0.03),
        ("InternetService", "Fiber optic", 0.44, 0.04),
        ("InternetService", "No", 0.22, 0.04),
        ("Contract", "Month-to-month", 0.55, 0.04),
        ("Contract", "Two year", 0.24, 0.04),
        ("PaperlessBilling", "Yes", 0.59, 0.04),
        ("PaymentMethod", "Electronic check", 0.34, 0.04),
    ],
)
def test_marginals_resemble_the_real_data(
    default_raw: pd.DataFrame, column: str, value: str, share: float, tolerance: float
) -> None:
    assert abs((default_raw[column] == value).mean() - share) <= tolerance


def test_logistic_regression_auc_is_good_but_not_perfect(default_clean: pd.DataFrame) -> None:
    features = default_clean[list(schema.FEATURES)]
    target = default_clean[schema.TARGET]
    x_train, x_test, y_train, y_test = train_test_split(
        features, target, test_size=0.2, stratify=target, random_state=0
    )
    model = make_pipeline(
        ColumnTransformer(
            [
                ("onehot", OneHotEncoder(), list(schema.CATEGORICAL_FEATURES)),
                ("scale", StandardScaler(), list(schema.NUMERIC_FEATURES)),
            ]
        ),
        LogisticRegression(max_iter=2000),
    ).fit(x_train, y_train)
    auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    assert 0.78 <= auc <= 0.92, auc


def test_write_csv_creates_parent_dirs_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "customers.csv"
    synth.write_csv(path, rows=10, seed=1)
    synth.write_csv(path, rows=20, seed=1)  # overwrite in place
    assert len(path.read_text(encoding="utf-8").splitlines()) == 21
    assert [p.name for p in path.parent.iterdir()] == ["customers.csv"]


def test_interrupted_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "customers.csv"
    synth.write_csv(path, rows=10, seed=1)
    before = path.read_bytes()
    calls = 0
    real_row = synth._row

    def failing_row(*args: object) -> tuple[str, ...]:
        nonlocal calls
        calls += 1
        if calls > synth._BATCH_ROWS + 5:  # after at least one batch reached the temp file
            raise KeyboardInterrupt
        return real_row(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(synth, "_row", failing_row)
    with pytest.raises(KeyboardInterrupt):
        synth.write_csv(path, rows=3 * synth._BATCH_ROWS, seed=1)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["customers.csv"]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rows": 0, "seed": 1}, "rows"),
        ({"rows": -5, "seed": 1}, "rows"),
        ({"rows": 2.5, "seed": 1}, "rows"),
        ({"rows": True, "seed": 1}, "rows"),
        ({"rows": synth.MAX_ROWS + 1, "seed": 1}, "rows"),
        ({"rows": 10, "seed": -1}, "seed"),
        ({"rows": 10, "seed": "42"}, "seed"),
    ],
)
def test_invalid_arguments_name_the_argument(
    tmp_path: Path, kwargs: dict[str, object], name: str
) -> None:
    value = repr(kwargs[name])
    with pytest.raises(ValueError, match=rf"^{name} .*{re.escape(value)}"):
        synth.write_csv(tmp_path / "bad.csv", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=rf"^{name} .*{re.escape(value)}"):
        synth.iter_rows(**kwargs)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
