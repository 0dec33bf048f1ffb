"""Stage `featurize`: fit the feature transformer on the train split only, apply it to both."""

from __future__ import annotations

import argparse
import logging
import pickle
from pathlib import Path

import pandas as pd
from sklearn.compose import ColumnTransformer

from predictflow import stage
from predictflow.io import atomic_path
from predictflow.model import build_featurizer
from predictflow.params import FeaturizeParams, load_params
from predictflow.schema import TARGET

log = logging.getLogger(__name__)


def featurize(
    train: pd.DataFrame, test: pd.DataFrame, params: FeaturizeParams
) -> tuple[ColumnTransformer, pd.DataFrame, pd.DataFrame]:
    """Fit on train (no test statistics leak into scaling or categories); keep the label."""
    featurizer = build_featurizer(params).fit(train)

    def apply(split: pd.DataFrame) -> pd.DataFrame:
        features = featurizer.transform(split)
        features[TARGET] = split[TARGET].to_numpy()
        return features

    return featurizer, apply(train), apply(test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=Path, default=Path("data/prepared/train.parquet"))
    parser.add_argument("--test", type=Path, default=Path("data/prepared/test.parquet"))
    parser.add_argument("--out-train", type=Path, default=Path("data/features/train.parquet"))
    parser.add_argument("--out-test", type=Path, default=Path("data/features/test.parquet"))
    parser.add_argument("--featurizer", type=Path, default=Path("models/featurizer.pkl"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()

    params = load_params(args.params)
    featurizer, train, test = featurize(
        pd.read_parquet(args.train), pd.read_parquet(args.test), params.featurize
    )
    with (
        atomic_path(args.out_train) as train_tmp,
        atomic_path(args.out_test) as test_tmp,
        atomic_path(args.featurizer) as featurizer_tmp,
    ):
        train.to_parquet(train_tmp, index=False)
        test.to_parquet(test_tmp, index=False)
        with open(featurizer_tmp, "wb") as handle:
            pickle.dump(featurizer, handle, protocol=5)
    log.info("%d features from %d train rows", train.shape[1] - 1, len(train))


if __name__ == "__main__":
    stage.run("featurize", main)
