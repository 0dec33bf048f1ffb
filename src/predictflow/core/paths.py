"""Every path the pipeline reads or writes, as code outside `dvc.yaml` needs them.

Their home is `dvc.yaml`'s `vars: paths:`, which the stages' `cmd`, `deps` and `outs` interpolate
(`${paths.model}`); these constants are the same strings, and `tests/test_stage_claims.py` fails
when the two differ. Stage scripts take them as argument defaults, so a stage run by hand writes
where `dvc repro` would; commands (`promote`, `lineage`, `tune`, ...) look files up by them.
"""

from __future__ import annotations

from pathlib import Path

PARAMS = Path("params.yaml")
RAW_DATA = Path("data/customers.csv")  # tracked by `data/customers.csv.dvc`, never by git
RAW_DATA_PIN = Path("data/customers.csv.dvc")
PREPARED_TRAIN = Path("data/prepared/train.parquet")
PREPARED_TEST = Path("data/prepared/test.parquet")  # the held-out split every gate scores
PREPARE_METRICS = Path("metrics/prepare.json")
FEATURES_TRAIN = Path("data/features/train.parquet")
FEATURES_TEST = Path("data/features/test.parquet")
FEATURIZER = Path("models/featurizer.pkl")
MODEL = Path("models/model.pkl")  # the bytes dvc.lock hashes and the registry serves
TRAIN_LIVE = Path("metrics/train")  # DVCLive's directory: plots/ and metrics.json
PREDICTIONS = Path("data/predictions/test.parquet")
EVAL_METRICS = Path("metrics/eval.json")
EVAL_PLOTS = Path("metrics/eval_plots")
EVAL_FIGURES = Path("metrics/eval_figures")
RECEIPT = Path("models/registration.json")

# `dvc.yaml`'s `vars: paths:` keys, for the test that holds the two equal.
DVC_VARS: dict[str, Path] = {
    "raw": RAW_DATA,
    "prepared_train": PREPARED_TRAIN,
    "prepared_test": PREPARED_TEST,
    "prepare_metrics": PREPARE_METRICS,
    "features_train": FEATURES_TRAIN,
    "features_test": FEATURES_TEST,
    "featurizer": FEATURIZER,
    "model": MODEL,
    "train_live": TRAIN_LIVE,
    "predictions": PREDICTIONS,
    "eval_metrics": EVAL_METRICS,
    "eval_plots": EVAL_PLOTS,
    "eval_figures": EVAL_FIGURES,
    "receipt": RECEIPT,
}
