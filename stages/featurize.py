"""Stage `featurize`: fit the feature transformer on the train split only, apply it to both.

Fitted without transforming the whole split, then both splits are transformed and written batch
by batch: the dense feature matrix (8 bytes a value, 45 columns) is never held whole.
"""

from __future__ import annotations

import argparse
import logging
import pickle
from pathlib import Path

from predictflow.core import paths
from predictflow.core.estimator import BATCH_ROWS, featurize_batches, fit_featurizer
from predictflow.core.io import atomic_path, read_batches, write_batches
from predictflow.core.params import load_params
from predictflow.lineage import stage

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
    if params.scale.engine == "dask":
        from predictflow.core import on_dask
        from predictflow.core.cluster import cluster

        with cluster() as on:
            featurizer = on_dask.fit_featurizer(on.client, args.train, params.featurize)
            with atomic_path(args.featurizer) as featurizer_tmp:
                rows = on_dask.featurize(featurizer, args.train, args.out_train)
                on_dask.featurize(featurizer, args.test, args.out_test)
                with open(featurizer_tmp, "wb") as handle:
                    pickle.dump(featurizer, handle, protocol=5)
        log.info(
            "%d features from %d train rows on Dask", len(featurizer.get_feature_names_out()), rows
        )
        return
    featurizer = fit_featurizer(args.train, params.featurize)
    with (
        atomic_path(args.out_train) as train_tmp,
        atomic_path(args.out_test) as test_tmp,
        atomic_path(args.featurizer) as featurizer_tmp,
    ):
        rows = write_batches(
            train_tmp, featurize_batches(featurizer, read_batches(args.train, BATCH_ROWS))
        )
        write_batches(test_tmp, featurize_batches(featurizer, read_batches(args.test, BATCH_ROWS)))
        with open(featurizer_tmp, "wb") as handle:
            pickle.dump(featurizer, handle, protocol=5)
    log.info("%d features from %d train rows", len(featurizer.get_feature_names_out()), rows)


if __name__ == "__main__":
    stage.run("featurize", main)
