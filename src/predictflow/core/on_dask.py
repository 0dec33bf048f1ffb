"""`featurize`, `train` and `evaluate` on a Dask cluster (`scale.engine: dask`, docs/scaling.md).

Each reads and writes the same paths as the local engine; the prepared splits and the feature
sets are then folders of parquet parts (`part.00000.parquet`, ...), which DVC hashes as one
`.dir` out. What comes out for serving is the same: a picklable scikit-learn featurizer and a
plain `XGBClassifier`, so `predict`, `drift`, serving and the registry see no difference.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from predictflow.base.errors import StageError
from predictflow.core.estimator import (
    build_featurizer,
    feature_frame,
    fitted_on_counts,
    fitted_on_skeleton,
    round_curves,
    with_numeric_part,
)
from predictflow.core.evaluation import churn_scores
from predictflow.core.io import atomic_dir
from predictflow.core.params import FeaturizeParams
from predictflow.core.partitioned import read_parts, write_parts
from predictflow.core.schema import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES, TARGET

if TYPE_CHECKING:
    from distributed import Client
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline


def fit_featurizer(client: Client, train: Path, params: FeaturizeParams) -> ColumnTransformer:
    """The featurizer `estimator.fit_featurizer` fits, from Dask reductions: the category
    counts (the sets, and with `min_category_share` > 0 which are rare:
    `estimator.fitted_on_counts`), then the numeric columns' medians (the imputer's,
    approximate: Dask's quantiles), and the imputed columns' means and variances (the
    scaler's, exact)."""
    import dask

    split = read_parts(train, list(FEATURES))
    tallies = dask.compute(*[split[c].value_counts() for c in CATEGORICAL_FEATURES])
    counts = {
        c: {str(k): int(n) for k, n in v.items()}
        for c, v in zip(CATEGORICAL_FEATURES, tallies, strict=True)
    }
    found = {c: set(v) for c, v in counts.items()}
    numeric = split[list(NUMERIC_FEATURES)]
    medians = numeric.quantile(0.5).compute()
    imputed = numeric.fillna(medians)
    means, variances, count = dask.compute(imputed.mean(), imputed.var(ddof=0), imputed.count())
    head = split.head(max(len(v) for v in found.values()), npartitions=-1)
    share = params.min_category_share
    featurizer = (
        fitted_on_counts(build_featurizer(params), head, counts, int(count.max()), share)
        if share > 0  # rare categories grouped: the skeleton must keep their shares' verdicts
        else fitted_on_skeleton(build_featurizer(params), head, found)
    )
    columns = list(NUMERIC_FEATURES)

    def from_statistics(part: Pipeline) -> Pipeline:
        part.fit(head[columns])  # fitted, then each statistic is replaced by the split's
        part.named_steps["impute"].statistics_ = medians[columns].to_numpy(dtype=float)
        scaler: StandardScaler = part.named_steps["scale"]
        scaler.mean_ = means[columns].to_numpy(dtype=float)
        scaler.var_ = variances[columns].to_numpy(dtype=float)
        scale = np.sqrt(scaler.var_)
        scaler.scale_ = np.where(scale < 10 * np.finfo(float).eps, 1.0, scale)
        scaler.n_samples_seen_ = int(count.max())
        return part

    return with_numeric_part(featurizer, from_statistics)


def featurize(featurizer: ColumnTransformer, split: Path, out: Path) -> int:
    """Transform a split part by part on the cluster into a folder of feature parts."""
    frame = read_parts(split)
    meta = feature_frame(featurizer, frame.head(1, npartitions=-1)).iloc[:0]
    features = frame.map_partitions(lambda part: feature_frame(featurizer, part), meta=meta)
    with atomic_dir(out) as tmp:
        write_parts(features, tmp)
    import pyarrow.dataset as ds

    return ds.dataset(out, format="parquet").count_rows()  # from the parts' footers


def fit_classifier(client: Client, classifier: Any, train: Path, test: Path) -> tuple[Any, dict]:
    """`DaskXGBClassifier` with `classifier`'s params on the feature parts; returns the plain
    `XGBClassifier` holding the fitted booster (what the served pipeline pickles) and the
    per-round curves of both splits."""
    from xgboost import XGBClassifier
    from xgboost.dask import DaskXGBClassifier

    if not isinstance(classifier, XGBClassifier):
        raise StageError(
            f"model.type {type(classifier).__name__}: the dask engine fits xgboost only; set "
            "model.type: xgboost or scale.engine: local"
        )
    # persisted first: read once, and the features and labels keep the same partitions (Dask
    # fuses the parts of a narrow column selection, which XGBoost refuses as inconsistent)
    train_set, test_set = client.persist([read_parts(train), read_parts(test)])
    x_train, y_train = train_set.drop(columns=[TARGET]), train_set[TARGET]
    x_test, y_test = test_set.drop(columns=[TARGET]), test_set[TARGET]
    model = DaskXGBClassifier(**classifier.get_params())
    model.client = client
    model.fit(x_train, y_train, eval_set=[(x_train, y_train), (x_test, y_test)], verbose=False)
    curves = round_curves(model)
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "model.ubj"
        model.save_model(saved)  # with the scikit-learn attributes (classes, params)
        plain = XGBClassifier(**classifier.get_params())
        plain.load_model(saved)
    return plain, curves


def score(model: Any, test: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The held-out rows and their churn scores, scored part by part on the cluster."""
    import dask

    rows = read_parts(test).persist()
    scores = rows.map_partitions(
        lambda part, m: pd.Series(churn_scores(m, part.loc[:, list(FEATURES)]), index=part.index),
        model,
        meta=pd.Series(dtype="float64"),
    )
    frame, proba = dask.compute(rows, scores)
    return frame.reset_index(drop=True), proba.to_numpy()
