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
import warnings
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from predictflow import lineage, stage, tracking
from predictflow.io import atomic_path
from predictflow.model import assemble, build_classifier, fit_classifier
from predictflow.params import Params, load_params
from predictflow.schema import FEATURES, TARGET

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"
SERVING_PACKAGES = ("mlflow", "scikit-learn", "xgboost", "pandas", "numpy", "cloudpickle")


def flat_params(params: Params) -> dict[str, object]:
    """params.yaml as dotted keys (`model.max_depth`), the names `dvc exp show` uses."""
    return {
        f"{section}.{key}": value
        for section, values in params.model_dump(by_alias=True).items()
        for key, value in values.items()
    }


def pinned_requirements() -> list[str]:
    """Pin the serving environment instead of letting MLflow infer it (7-9 s a call)."""
    pins = []
    for package in SERVING_PACKAGES:
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            if package == "xgboost":  # Linux installs the same module as `xgboost-cpu`
                pins.append(f"xgboost=={version('xgboost-cpu')}")
    return pins


def input_example(split: Path, rows: int = 5) -> pd.DataFrame:
    """The first clean rows in the raw layout, without reading the whole split (4M rows at 5M)."""
    import pyarrow.parquet as pq

    batches = pq.ParquetFile(split).iter_batches(batch_size=rows, columns=list(FEATURES))
    return next(batches).to_pandas()


def enable_autolog(model_type: str) -> None:
    """Autolog the flavour that trains: params and per-round metrics.

    The model is logged once by `train` (pinned requirements) and feature importance is plotted
    once by `evaluate`, so autolog does neither; patching only the flavour in use saves the
    other one's set-up.
    """
    import mlflow

    options = {"log_models": False, "log_datasets": False, "silent": True}
    if model_type == "xgboost":
        mlflow.xgboost.autolog(importance_types=[], **options)
    else:
        mlflow.sklearn.autolog(**options)


def final_metrics(curves: dict[str, list[float]]) -> dict[str, float]:
    """Last value of each curve, named for MLflow (`train_logloss`, `test_logloss`)."""
    return {name.replace("/", "_"): values[-1] for name, values in curves.items() if values}


def log_curves(live_dir: Path, curves: dict[str, list[float]], has_commit: bool = True) -> None:
    """Per-iteration curves for `dvc plots` (DVCLive writes step/value TSVs, no timestamps).

    Before a repository's first commit DVCLive 3.49's git lookup raises (`scm.get_rev()`:
    "Empty git repo", as in treeverse/dvclive#522). Its DVC integration only names the
    experiment here (dvcyaml=False, nothing saved), so it is skipped then; the files written
    are the same.
    """
    from dvclive import Live

    class _Live(Live):
        def _init_dvc(self) -> None:
            if has_commit:
                super()._init_dvc()

    # The curves exist whole once the fit ends: set each step directly and write the summary
    # once at the end, instead of `next_step()` rewriting it after every round.
    with _Live(str(live_dir), dvcyaml=False, save_dvc_exp=False) as live:
        for name, values in curves.items():
            for step, value in enumerate(values):
                live.step = step
                live.log_metric(name, value)


def train(args: argparse.Namespace, params: Params, workspace: Path) -> None:
    import mlflow
    from mlflow.models import infer_signature

    train_set = pd.read_parquet(args.features_train)
    test_set = pd.read_parquet(args.features_test)
    with open(args.featurizer, "rb") as handle:
        featurizer = pickle.load(handle)
    example = input_example(args.example)
    x_train, y_train = train_set.drop(columns=[TARGET]), train_set[TARGET]
    x_test, y_test = test_set.drop(columns=[TARGET]), test_set[TARGET]

    experiment_id = tracking.connect(tracking.store_root())
    enable_autolog(params.model.type)
    tracking.reap_dead_runs(experiment_id)
    exp_name = lineage.dvc_exp_name()
    commit = lineage.git_commit(workspace)
    data_lineage = tracking.LineageTags(
        git_commit=commit or "",
        # before the first commit no code version exists to be clean against
        git_dirty=str(commit is None or lineage.git_dirty(workspace)).lower(),
        data_path=str(args.data_dvc.with_suffix("")),
        data_md5=lineage.pinned_md5(args.data_dvc),
        model_md5="",  # known once the model is logged
        dvc_exp_name=exp_name or "",
    )
    with mlflow.start_run(experiment_id=experiment_id, run_name=exp_name) as run:
        mlflow.set_tags(
            {**data_lineage.as_tags(), **tracking.process_tags(), **tracking.sweep_tags()}
        )
        mlflow.log_params(flat_params(params))
        classifier = build_classifier(params.model, params.base.seed)
        stage.checkpoint("train:fit")
        curves = fit_classifier(classifier, x_train, y_train, x_test, y_test)
        # sklearn autolog stamps the run id on the estimator; it would make the pickle (and so
        # dvc.lock) differ on every rerun of identical inputs.
        vars(classifier).pop("_mlflow_run_id", None)
        model = assemble(featurizer, classifier)
        if not curves:  # no boosting rounds: one point, so the plot is never empty
            from sklearn.metrics import log_loss

            curves = {
                "train/logloss": [log_loss(y_train, classifier.predict_proba(x_train)[:, 1])],
                "test/logloss": [log_loss(y_test, classifier.predict_proba(x_test)[:, 1])],
            }
        mlflow.log_metrics(final_metrics(curves))
        log_curves(args.live_dir, curves, has_commit=commit is not None)

        with warnings.catch_warnings():
            # MLflow hints that integer columns can't hold missing values; the data contract
            # rejects a row missing `tenure` or `SeniorCitizen` before any model sees it.
            warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer", UserWarning)
            info = mlflow.sklearn.log_model(
                model,
                name=MODEL_ARTIFACT,
                serialization_format="cloudpickle",
                signature=infer_signature(example, model.predict_proba(example)),
                input_example=example,
                pip_requirements=pinned_requirements(),
                pyfunc_predict_fn="predict_proba",
            )
        stage.checkpoint("train:logged")
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=tmp))
            with atomic_path(args.model) as model_tmp:
                shutil.copyfile(local / "model.pkl", model_tmp)
        model_md5 = lineage.file_md5(args.model)
        tags = replace(data_lineage, model_md5=model_md5).as_tags()
        mlflow.set_tags(tags)
        mlflow.set_logged_model_tags(info.model_id, tags)
        log.info("run %s logged model md5 %s", run.info.run_id, model_md5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features-train", type=Path, default=Path("data/features/train.parquet"))
    parser.add_argument("--features-test", type=Path, default=Path("data/features/test.parquet"))
    parser.add_argument("--featurizer", type=Path, default=Path("models/featurizer.pkl"))
    parser.add_argument(
        "--example",
        type=Path,
        default=Path("data/prepared/train.parquet"),
        help="clean rows whose head becomes the model's input example",
    )
    parser.add_argument("--data-dvc", type=Path, default=Path("data/customers.csv.dvc"))
    parser.add_argument("--model", type=Path, default=Path("models/model.pkl"))
    parser.add_argument("--live-dir", type=Path, default=Path("metrics/train"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    train(args, load_params(args.params), lineage.workspace_root())


if __name__ == "__main__":
    stage.run("train", main)
