"""Stage `train`: fit the classifier, log the run to MLflow and the curves to DVCLive.

The model file DVC hashes (`models/model.pkl`) is copied byte for byte out of the MLflow model
this run logged, so the version the registry serves is exactly the one `dvc.lock` pins.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from predictflow.base.errors import machine_cause
from predictflow.core import paths
from predictflow.core.estimator import build_classifier, fit_classifier_from_files
from predictflow.core.io import atomic_path
from predictflow.core.params import Params, load_params
from predictflow.lineage import evidence, stage, tracking, training
from predictflow.model import assemble

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def train(args: argparse.Namespace, params: Params, workspace: Path) -> None:
    import mlflow

    with open(args.featurizer, "rb") as handle:
        featurizer = pickle.load(handle)
    example = training.input_example(args.example)

    experiment_id = tracking.connect(tracking.store_root())
    if params.scale.engine == "local":  # a distributed fit logs its rounds itself (log_rounds)
        training.enable_autolog(params.model.type)
    tracking.reap_dead_runs(experiment_id)
    data_lineage = training.lineage_tags(workspace, args.raw)
    run_id = None
    try:
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=data_lineage.dvc_exp_name or None
        ) as run:
            run_id = run.info.run_id
            log_run(args, params, featurizer, example, data_lineage)
    except Exception as err:  # only a full or read-only store is turned into one line
        cause = machine_cause(err)
        if cause is None:
            raise  # a bug: its traceback stays
        raise training.abandon_run(run_id, experiment_id, cause) from None


def log_run(
    args: argparse.Namespace,
    params: Params,
    featurizer: object,
    example: pd.DataFrame,
    data_lineage: tracking.LineageTags,
) -> None:
    """Fit and log into the active run; copy the logged model's bytes to `args.model`."""
    import mlflow

    run = mlflow.active_run()
    mlflow.set_tags({**data_lineage.as_tags(), **tracking.process_tags(), **tracking.sweep_tags()})
    mlflow.log_params(training.flat_params(params))
    training.log_datasets(run.info.run_id, args.example, data_lineage)
    classifier = build_classifier(params.model, params.base.seed)
    stage.checkpoint("train:fit")
    if params.scale.engine == "dask":
        classifier, curves = fit_on_dask(classifier, args)
        training.log_rounds(run.info.run_id, curves)
    else:
        with training.lean_autolog():
            curves = fit_classifier_from_files(classifier, args.features_train, args.features_test)
    # sklearn autolog stamps the run id on the estimator; it would make the pickle (and so
    # dvc.lock) differ on every rerun of identical inputs.
    vars(classifier).pop("_mlflow_run_id", None)
    model = assemble(featurizer, classifier)
    training.log_curves(args.live_dir, curves)

    with training.pins_trusted():
        info = mlflow.sklearn.log_model(
            model,
            name=training.MODEL_ARTIFACT,
            serialization_format="cloudpickle",
            signature=training.serving_signature(example, model.predict_proba(example)),
            input_example=example,
            pip_requirements=training.pinned_requirements(),
            pyfunc_predict_fn="predict_proba",
        )
    stage.checkpoint("train:logged")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=tmp))
        with atomic_path(args.model) as model_tmp:
            shutil.copyfile(local / "model.pkl", model_tmp)
    model_md5 = evidence.file_md5(args.model)
    tags = replace(data_lineage, model_md5=model_md5).as_tags()
    mlflow.set_tags(tags)
    mlflow.set_logged_model_tags(info.model_id, tags)
    log.info("run %s logged model md5 %s", run.info.run_id, model_md5)


def fit_on_dask(
    classifier: object, args: argparse.Namespace
) -> tuple[object, dict[str, list[float]]]:
    """`DaskXGBClassifier` on the feature parts; the run records where it ran (the workers
    never log). Returns the plain `XGBClassifier` the served pipeline holds, and the curves."""
    import mlflow

    from predictflow.core import on_dask
    from predictflow.core.cluster import cluster

    with cluster() as on:
        mlflow.set_tags(on.tags())
        return on_dask.fit_classifier(
            on.client, classifier, args.features_train, args.features_test
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features-train", type=Path, default=paths.FEATURES_TRAIN)
    parser.add_argument("--features-test", type=Path, default=paths.FEATURES_TEST)
    parser.add_argument("--featurizer", type=Path, default=paths.FEATURIZER)
    parser.add_argument(
        "--example",
        type=Path,
        default=paths.PREPARED_TRAIN,
        help="clean rows whose head becomes the model's input example",
    )
    parser.add_argument(
        "--raw",
        type=Path,
        default=paths.RAW_DATA,
        help="the raw data path whose md5 dvc.lock records (tagged, not read)",
    )
    parser.add_argument("--model", type=Path, default=paths.MODEL)
    parser.add_argument("--live-dir", type=Path, default=paths.TRAIN_LIVE)
    parser.add_argument("--params", type=Path, default=paths.PARAMS)
    args = parser.parse_args()
    train(args, load_params(args.params), evidence.workspace_root())


if __name__ == "__main__":
    stage.run("train", main)
