"""The peer: the ADR's one-process alternative that `make bench` measures PredictFlow against.

One script, as a user would write it instead of a DVC pipeline: an MLflow SQLite store in a temp
dir, autolog, the pipeline's own split, featurizer and XGBoost params (imported, not copied), fit,
`log_model(..., registered_model_name=...)`, held-out ROC AUC logged. Prints one JSON line.

    python benchmarks/peer.py --data data/customers.csv [--params params.yaml] [--store DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

STARTED = time.perf_counter()

import mlflow  # noqa: E402  (import time is part of what is measured)
from sklearn.metrics import roc_auc_score  # noqa: E402

from predictflow.core.cleaning import clean  # noqa: E402
from predictflow.core.data import split  # noqa: E402  (prepare's own split)
from predictflow.core.estimator import build_classifier, build_featurizer, fit_classifier  # noqa: E402
from predictflow.core.params import load_params  # noqa: E402
from predictflow.core.rawfile import read_raw  # noqa: E402
from predictflow.core.schema import FEATURES, TARGET  # noqa: E402
from predictflow.lineage.names import MODEL_NAME  # noqa: E402
from predictflow.model import assemble  # noqa: E402


def run(data: Path, params_path: Path, store: Path) -> dict[str, object]:
    params = load_params(params_path)
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    # artifacts in the store too: MLflow's default for a SQLite store is ./mlruns in the cwd
    artifacts = (store / "artifacts").resolve().as_uri()
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("churn-peer", artifacts))
    # The same autolog flavour and options as `train` (curves only; the model is logged below).
    mlflow.xgboost.autolog(log_models=False, log_datasets=False, silent=True)
    frame, _ = clean(read_raw(data), str(data))
    train, test = split(frame, params.prepare, params.base.seed, str(data))
    with mlflow.start_run():
        featurizer = build_featurizer(params.featurize).fit(train)
        x_train, x_test = featurizer.transform(train), featurizer.transform(test)
        classifier = build_classifier(params.model, params.base.seed)
        fit_classifier(classifier, x_train, train[TARGET], x_test, test[TARGET])
        model = assemble(featurizer, classifier)
        proba = model.predict_proba(test.loc[:, list(FEATURES)])[:, 1]
        auc = float(roc_auc_score(test[TARGET], proba))
        mlflow.log_metric("test_roc_auc", auc)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format="cloudpickle",
            # given, as `train` does: inferring them takes 7-9 s (docs/benchmarks.md)
            pip_requirements=["mlflow", "scikit-learn", "xgboost", "pandas"],
            registered_model_name=MODEL_NAME,
        )
    return {"rows": len(frame), "roc_auc": auc, "version": info.registered_model_version}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/customers.csv"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--store", type=Path, default=None, help="MLflow store dir (default: temp)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="predictflow-peer-") as tmp:
        facts = run(args.data, args.params, args.store or Path(tmp))
    facts["seconds"] = round(time.perf_counter() - STARTED, 3)
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
