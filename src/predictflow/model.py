"""The served model: the pipeline `train` registers, and its first step.

This module's name is the served model's pickle path: every registered version names
`predictflow.model.ContractCleaner`, so the class stays here (registered versions keep loading,
and a retrain of the same inputs pickles the same bytes). The fitting lives in
`predictflow.core.estimator`.
"""

from __future__ import annotations

import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from predictflow.core.cleaning import clean_features


class ContractCleaner(TransformerMixin, BaseEstimator):
    """The data contract's lenient cleaning as the served pipeline's first step.

    Without it the registry would serve a model that needs code outside it (training/serving
    skew): blank `TotalCharges`, numbers as text and stray spaces would fail or score wrong.
    Stateless, so the pickle stays byte-identical for the same data and params.
    """

    def fit(self, rows: pd.DataFrame, y: object = None) -> ContractCleaner:
        return self

    def transform(self, rows: pd.DataFrame) -> pd.DataFrame:
        return clean_features(rows)

    def __sklearn_is_fitted__(self) -> bool:
        return True


def assemble(featurizer: ColumnTransformer, classifier: object) -> Pipeline:
    """The served model: contract cleaning, fitted featurizer, fitted classifier."""
    return Pipeline(
        [("clean", ContractCleaner()), ("features", featurizer), ("classifier", classifier)]
    )
