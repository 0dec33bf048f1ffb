"""Stage `featurize`: fit the feature transformer on the train split only, apply it to both."""

from __future__ import annotations

import argparse
import logging
import pickle
from pathlib import Path

import pandas as pd

from predictflow import paths, stage
from predictflow.io import atomic_path
from predictflow.model import featurize
from predictflow.params import load_params

log = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=Path, default=paths.PREPARED_TRAIN)
    parser.add_argument("--test", type=Path, default=paths.PREPARED_TEST)
    parser.add_argument("--out-train", type=Path, default=paths.FEATURES_TRAIN)
    parser.add_argument("--out-test", type=Path, default=paths.FEATURES_TEST)
    parser.add_argument("--featurizer", type=Path, default=paths.FEATURIZER)
    parser.add_argument("--params", type=Path, default=paths.PARAMS)
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
