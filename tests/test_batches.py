"""Memory flat in rows: `featurize` and `train` stream their splits in batches.

On real-layout data, the batched path must give what the whole-frame path gives: the same fitted
featurizer (pickle bytes), the same feature matrix (columns, dtypes, values) and, through an
iterator-built `QuantileDMatrix`, the same model bytes. Small batches (many more than one)
are the point: one would prove nothing.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from predictflow.core.cleaning import clean
from predictflow.core.data import split
from predictflow.core.estimator import (
    build_classifier,
    build_featurizer,
    featurize,
    featurize_batches,
    fit_classifier,
    fit_classifier_from_files,
    fit_featurizer,
)
from predictflow.core.io import read_batches, write_batches
from predictflow.core.params import FeaturizeParams, load_params
from predictflow.core.rawfile import read_raw
from predictflow.core.schema import TARGET
from predictflow.ops.synth import write_csv

from .conftest import REPO

BATCH = 1_000  # 8 train batches, 2 held-out batches


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Prepared train and held-out splits of 10,000 synthetic customers, as parquet."""
    folder = tmp_path_factory.mktemp("batches")
    raw = folder / "customers.csv"
    write_csv(raw, rows=10_000, seed=11)
    params = load_params(REPO / "params.yaml")
    frame, _ = clean(read_raw(raw), str(raw))
    train, test = split(frame, params.prepare, params.base.seed, str(raw))
    paths = folder / "train.parquet", folder / "test.parquet"
    for part, path in zip((train, test), paths, strict=True):
        part.to_parquet(path, index=False)
    return paths


def test_batched_featurize_writes_the_whole_frame_matrix(splits, tmp_path: Path) -> None:
    train_path, test_path = splits
    params = load_params(REPO / "params.yaml")
    featurizer, train, test = featurize(
        pd.read_parquet(train_path), pd.read_parquet(test_path), params.featurize
    )
    for path, whole in ((train_path, train), (test_path, test)):
        out = tmp_path / path.name
        rows = write_batches(out, featurize_batches(featurizer, read_batches(path, BATCH)))
        batched = pd.read_parquet(out)
        assert rows == len(whole)
        pd.testing.assert_frame_equal(batched, whole, check_exact=True)
        assert batched.dtypes.to_dict() == whole.dtypes.to_dict()


@pytest.mark.parametrize("share", [0.0, 0.05])
def test_fit_featurizer_pickles_as_the_whole_split_fit(splits, share: float) -> None:
    """Fitted from a few cycled rows plus the numeric columns (or whole, when `share` > 0)."""
    train_path, _ = splits
    params = FeaturizeParams(min_category_share=share)
    whole = build_featurizer(params).fit(pd.read_parquet(train_path))
    streamed = fit_featurizer(train_path, params, batch_rows=BATCH)
    assert pickle.dumps(streamed, protocol=5) == pickle.dumps(whole, protocol=5)


def test_write_batches_refuses_nothing_to_write(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no frames to write"):
        write_batches(tmp_path / "empty.parquet", iter(()))
    assert not (tmp_path / "empty.parquet").exists()


def test_batched_xgboost_fit_gives_the_whole_frame_model(splits, tmp_path: Path) -> None:
    train_path, test_path = splits
    params = load_params(REPO / "params.yaml")
    _, train, test = featurize(
        pd.read_parquet(train_path), pd.read_parquet(test_path), params.featurize
    )
    features = {}
    for name, frame in (("train", train), ("test", test)):
        features[name] = tmp_path / f"{name}.parquet"
        frame.to_parquet(features[name], index=False)
    x_train, x_test = train.drop(columns=[TARGET]), test.drop(columns=[TARGET])

    whole = build_classifier(params.model, params.base.seed)
    whole_curves = fit_classifier(whole, x_train, train[TARGET], x_test, test[TARGET])
    batched = build_classifier(params.model, params.base.seed)
    batched_curves = fit_classifier_from_files(
        batched, features["train"], features["test"], batch_rows=BATCH
    )

    assert set(batched_curves) == {"train/logloss", "test/logloss"}
    assert len(batched_curves["test/logloss"]) == params.model.n_estimators
    assert "_create_dmatrix" not in vars(batched)  # nothing of the override in the pickle
    assert batched.get_booster().feature_names == list(x_train.columns)
    # The quantile sketch merged over batches gives the same bins here, so the same bytes.
    assert pickle.dumps(batched, protocol=5) == pickle.dumps(whole, protocol=5)
    assert batched_curves == whole_curves
    assert roc_auc_score(test[TARGET], batched.predict_proba(x_test)[:, 1]) > 0.75


def test_logistic_regression_from_files_gives_one_curve_point(splits, tmp_path: Path) -> None:
    train_path, test_path = splits
    params = load_params(REPO / "params.yaml")
    _, train, test = featurize(
        pd.read_parquet(train_path), pd.read_parquet(test_path), params.featurize
    )
    train.to_parquet(tmp_path / "train.parquet", index=False)
    test.to_parquet(tmp_path / "test.parquet", index=False)
    linear = build_classifier(params.model.model_copy(update={"type": "logistic_regression"}), 42)
    curves = fit_classifier_from_files(
        linear, tmp_path / "train.parquet", tmp_path / "test.parquet"
    )
    assert {name: len(values) for name, values in curves.items()} == {
        "train/logloss": 1,
        "test/logloss": 1,
    }
    assert 0.2 < curves["test/logloss"][0] < 0.7
