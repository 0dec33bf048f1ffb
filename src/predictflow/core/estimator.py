"""The estimator: a featurizer fitted on the train split, a classifier, and the pipeline of both.

The registered model is the whole scikit-learn pipeline, cleaning step included, so anything that
holds raw-layout rows as a CSV reader gives them (batch scoring, `mlflow.pyfunc`, `mlflow models
serve`) scores them with no extra code and exactly as `evaluate` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from predictflow.base.errors import StageError
from predictflow.core.io import read_batches
from predictflow.core.params import FeaturizeParams, ModelParams
from predictflow.core.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES, TARGET

# Rows per batch where a split is streamed (featurize's transform, train's XGBoost input): memory
# then grows with the columns, not the rows. 2^16 rows: 24 MB of features, and the transform's
# text-to-object conversions stay small (2^18 rows peaked 0.5 GB higher at 1M rows).
BATCH_ROWS = 65_536


def build_featurizer(params: FeaturizeParams) -> ColumnTransformer:
    """Impute + scale numbers, one-hot categories; unseen categories at scoring become zeros."""
    share = params.min_category_share
    encoder = OneHotEncoder(
        handle_unknown="infrequent_if_exist" if share > 0 else "ignore",
        min_frequency=share if share > 0 else None,
        sparse_output=False,
    )
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    featurizer = ColumnTransformer(
        [("num", numeric, list(NUMERIC_FEATURES)), ("cat", encoder, list(CATEGORICAL_FEATURES))],
        remainder="drop",
    )
    return featurizer.set_output(transform="pandas")


def fit_featurizer(
    train: Path, params: FeaturizeParams, batch_rows: int = BATCH_ROWS
) -> ColumnTransformer:
    """`build_featurizer(params).fit(<the whole train split>)`, in memory that barely grows
    with its rows: the pickle is the same bytes (a test compares them).

    `ColumnTransformer.fit` is a `fit_transform`: at 4M rows it builds a dense 4M x 45 matrix
    (twice, for the concatenation) only to count its columns. Yet the encoder's fitted state is
    the set of categories, and only the numeric part needs every row. So the transformer is
    fitted on a few of the split's rows whose categorical columns cycle through every category
    the split has (found batch by batch), and its numeric part is then refitted on the split's
    numeric columns. `min_category_share` > 0 needs each category's share: then the whole split
    is fitted as before.
    """
    if params.min_category_share > 0:
        return build_featurizer(params).fit(pd.read_parquet(train))
    found: dict[str, set[str]] = {column: set() for column in CATEGORICAL_FEATURES}
    for batch in read_batches(train, batch_rows, columns=list(CATEGORICAL_FEATURES)):
        for column, values in found.items():
            values.update(batch[column].unique())
    head = next(read_batches(train, max(len(values) for values in found.values())))
    featurizer = fitted_on_skeleton(build_featurizer(params), head, found)
    numeric = pd.read_parquet(train, columns=list(NUMERIC_FEATURES))
    return with_numeric_part(featurizer, lambda part: part.fit(numeric))


def with_numeric_part(
    featurizer: ColumnTransformer, fit: Callable[[Pipeline], Pipeline]
) -> ColumnTransformer:
    """`featurizer` whose fitted numeric part is replaced by `fit(<an unfitted copy of it>)`:
    the skeleton fit saw only a few rows, and the scaler must see them all."""
    unfitted = {name: part for name, part, _ in featurizer.transformers}
    numeric_part = fit(clone(unfitted["num"]))
    featurizer.transformers_ = [
        (name, numeric_part if name == "num" else part, columns)
        for name, part, columns in featurizer.transformers_
    ]
    return featurizer


def fitted_on_skeleton(
    featurizer: ColumnTransformer, head: pd.DataFrame, found: dict[str, set[str]]
) -> ColumnTransformer:
    """`featurizer` fitted on as many of `head`'s rows as the largest category set, whose
    categorical columns cycle through every category `found` (the numeric part is then refitted
    by the caller on every row)."""
    rows = max(len(values) for values in found.values())
    skeleton = head.iloc[np.arange(rows) % len(head)].reset_index(drop=True)
    for column, values in found.items():
        ordered = sorted(values)
        skeleton[column] = pd.Series(
            [ordered[i % len(ordered)] for i in range(rows)], dtype=head[column].dtype
        )
    return featurizer.fit(skeleton)


def rare_skeleton_rows(counts: dict[str, dict[str, int]], rows: int, share: float) -> int | None:
    """The fewest rows of a skeleton in which each category is rare (`count < share * rows`,
    scikit-learn's `min_frequency` test) exactly when it is rare in the split whose category
    `counts` (column -> category -> rows) and `rows` are given; None if none up to 10^6."""
    rare = {c: {k for k, n in found.items() if n < share * rows} for c, found in counts.items()}
    widest = max(len(found) for found in counts.values())
    for size in range(max(widest, int(1 / share) + 1), 1_000_000):
        limit = share * size
        if all(
            _fits(len(found) - len(rare[c]), len(rare[c]), size, limit)
            for c, found in counts.items()
        ):
            return size
    return None


def _fits(common: int, rare: int, size: int, limit: float) -> bool:
    """Whether `size` rows can hold `rare` categories each under `limit` rows and `common` ones
    each at or above it (rare ones one row each, or all rows spread evenly when all are rare)."""
    if not common:
        return -(-size // rare) < limit
    return (not rare or limit > 1) and (size - rare) // common >= limit


def fitted_on_counts(
    featurizer: ColumnTransformer,
    head: pd.DataFrame,
    counts: dict[str, dict[str, int]],
    rows: int,
    share: float,
) -> ColumnTransformer:
    """`featurizer` (with `min_frequency` = `share`) fitted on a skeleton whose categories are
    rare exactly where the split's `counts` make them rare, so its encoder is the one a fit on
    the split gives (checked: a mismatch is a StageError, not a silent other model)."""
    size = rare_skeleton_rows(counts, rows, share)
    if size is None:
        raise StageError(
            f"featurize.min_category_share {share}: no small skeleton reproduces these category "
            "shares; set scale.engine: local"
        )
    skeleton = head.iloc[np.arange(size) % len(head)].reset_index(drop=True)
    for column, found in counts.items():
        rare = sorted(k for k, n in found.items() if n < share * rows)
        common = sorted(k for k, n in found.items() if n >= share * rows)
        values = list(rare) if common else []
        room = size - len(values)
        pool = common or rare
        values += [pool[i % len(pool)] for i in range(room)]
        skeleton[column] = pd.Series(values, dtype=head[column].dtype)
    featurizer.fit(skeleton)
    encoder = featurizer.named_transformers_["cat"]
    for column, learned in zip(
        encoder.feature_names_in_, encoder.infrequent_categories_, strict=True
    ):
        wanted = sorted(k for k, n in counts[column].items() if n < share * rows)
        if sorted([] if learned is None else learned.tolist()) != wanted:
            raise StageError(
                f"featurize.min_category_share {share}: column {column}: the skeleton fit found "
                f"rare categories {learned}, the split {wanted}; set scale.engine: local"
            )
    return featurizer


def featurize(
    train: pd.DataFrame, test: pd.DataFrame, params: FeaturizeParams
) -> tuple[ColumnTransformer, pd.DataFrame, pd.DataFrame]:
    """Fit on train (no test statistics leak into scaling or categories); keep the label."""
    featurizer = build_featurizer(params).fit(train)
    return featurizer, feature_frame(featurizer, train), feature_frame(featurizer, test)


def featurize_batches(
    featurizer: ColumnTransformer, splits: Iterable[pd.DataFrame]
) -> Iterator[pd.DataFrame]:
    """The fitted featurizer over a split streamed in batches: one feature batch per batch.

    Row-wise, so the concatenated batches equal `featurize`'s frame for the whole split.
    """
    for split in splits:
        yield feature_frame(featurizer, split)


def feature_frame(featurizer: ColumnTransformer, split: pd.DataFrame) -> pd.DataFrame:
    """The features of `split`'s rows, with its label."""
    features = featurizer.transform(split)
    features[TARGET] = split[TARGET].to_numpy()
    return features


def build_classifier(params: ModelParams, seed: int) -> object:
    """The classifier `model.type` names, with every hyperparameter from params.yaml."""
    if params.type == "logistic_regression":
        return LogisticRegression(C=params.C, max_iter=2000, random_state=seed)
    from xgboost import XGBClassifier

    return XGBClassifier(
        n_estimators=params.n_estimators,
        max_depth=params.max_depth,
        learning_rate=params.learning_rate,
        subsample=params.subsample,
        colsample_bytree=params.colsample_bytree,
        min_child_weight=params.min_child_weight,
        reg_lambda=params.reg_lambda,
        tree_method="hist",
        # logloss only: a per-round AUC sorts both splits 200 times (1.6x the fit at 1M rows);
        # the held-out ROC AUC is computed once, by `evaluate`.
        eval_metric="logloss",
        random_state=seed,
    )


def fit_classifier(
    classifier: object,
    x_train: pd.DataFrame,
    y_train: pd.Series,
    x_test: pd.DataFrame,
    y_test: pd.Series,
) -> dict[str, list[float]]:
    """Fit; return per-iteration curves as {"train/logloss": [...], "test/logloss": [...]}.

    The test split is only watched (no early stopping), so it stays a fair held-out set. A
    model without boosting rounds gets one point per split, so the plot is never empty.
    """
    if isinstance(classifier, LogisticRegression):
        from sklearn.metrics import log_loss

        classifier.fit(x_train, y_train)
        return {
            "train/logloss": [float(log_loss(y_train, classifier.predict_proba(x_train)[:, 1]))],
            "test/logloss": [float(log_loss(y_test, classifier.predict_proba(x_test)[:, 1]))],
        }
    classifier.fit(  # type: ignore[attr-defined]
        x_train, y_train, eval_set=[(x_train, y_train), (x_test, y_test)], verbose=False
    )
    return round_curves(classifier)


def round_curves(classifier: Any) -> dict[str, list[float]]:
    """A boosted fit's per-round curves, watched on [train, test], by split: {"train/logloss":
    [...], "test/logloss": [...]}."""
    results = classifier.evals_result()
    curves: dict[str, list[float]] = {}
    for split, name in (("validation_0", "train"), ("validation_1", "test")):
        for metric, values in results[split].items():
            curves[f"{name}/{metric}"] = [float(v) for v in values]
    return curves


def fit_classifier_from_files(
    classifier: object, train: Path, test: Path, batch_rows: int = BATCH_ROWS
) -> dict[str, list[float]]:
    """`fit_classifier` on feature files, without holding the XGBoost input whole in memory.

    XGBoost reads each split through an iterator, batch by batch, into a `QuantileDMatrix`
    (binned features, ~1 byte a value instead of 8); only the labels are held whole, because the
    scikit-learn wrapper derives `classes_` from them. The linear model needs its data whole.
    """
    if isinstance(classifier, LogisticRegression):
        train_set, test_set = pd.read_parquet(train), pd.read_parquet(test)
        return fit_classifier(
            classifier,
            train_set.drop(columns=[TARGET]),
            train_set[TARGET],
            test_set.drop(columns=[TARGET]),
            test_set[TARGET],
        )
    x_train, x_test = _feature_batches(train, batch_rows), _feature_batches(test, batch_rows)
    y_train = pd.read_parquet(train, columns=[TARGET])[TARGET]
    y_test = pd.read_parquet(test, columns=[TARGET])[TARGET]
    with _quantile_dmatrix_from_iterators(classifier):
        return fit_classifier(classifier, x_train, y_train, x_test, y_test)  # type: ignore[arg-type]


def _feature_batches(path: Path, batch_rows: int) -> Any:
    """An `xgboost.DataIter` over a feature file: features and label, one batch at a time."""
    import xgboost

    class FeatureBatches(xgboost.DataIter):
        def __init__(self) -> None:
            super().__init__(release_data=True)
            self._batches: Iterator[pd.DataFrame] | None = None

        def next(self, input_data: Callable[..., None]) -> bool:
            if self._batches is None:
                self._batches = read_batches(path, batch_rows)
            batch = next(self._batches, None)
            if batch is None:
                return False
            input_data(data=batch.drop(columns=[TARGET]), label=batch[TARGET].to_numpy())
            return True

        def reset(self) -> None:
            self._batches = None

        def __deepcopy__(self, memo: dict) -> FeatureBatches:
            # MLflow's autolog deep-copies `fit`'s X (a whole frame, once); a copy of this
            # iterator is a fresh iterator over the same file.
            return FeatureBatches()

    return FeatureBatches()


@contextmanager
def _quantile_dmatrix_from_iterators(classifier: object) -> Iterator[None]:
    """While `classifier.fit` runs, a `DataIter` passed as X becomes an iterator-built
    `QuantileDMatrix` (labels come with its batches).

    The scikit-learn wrapper builds its matrices through `_create_dmatrix`, which takes arrays
    only; everything else in `fit` (params, classes, eval names, autolog's per-round curves) is
    the wrapper's own. The override lives on the instance only while fitting, so the pickle
    holds no trace of it.
    """
    import xgboost

    original = classifier._create_dmatrix  # type: ignore[attr-defined]

    def create(ref: object, **kwargs: Any) -> object:
        data = kwargs["data"]
        if not isinstance(data, xgboost.DataIter):
            return original(ref=ref, **kwargs)
        return xgboost.QuantileDMatrix(
            data,
            ref=ref,
            missing=kwargs["missing"],
            enable_categorical=kwargs["enable_categorical"],
            feature_types=kwargs["feature_types"],
            nthread=classifier.n_jobs,  # type: ignore[attr-defined]
            max_bin=classifier.max_bin,  # type: ignore[attr-defined]
        )

    classifier._create_dmatrix = create  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del classifier._create_dmatrix  # type: ignore[attr-defined]


def feature_importance(model: Pipeline) -> pd.DataFrame:
    """Importance per engineered feature: XGBoost gain share, or |coefficient| (linear model)."""
    names = model.named_steps["features"].get_feature_names_out()
    classifier = model.named_steps["classifier"]
    if isinstance(classifier, LogisticRegression):
        values = abs(classifier.coef_[0])
    else:
        values = classifier.feature_importances_
    frame = pd.DataFrame({"feature": names, "importance": [float(v) for v in values]})
    return frame.sort_values(["importance", "feature"], ascending=[False, True], ignore_index=True)
