"""What the `train` stage records: its MLflow run (params, datasets, signature, requirements,
autolog's per-round curves) and its DVCLive curves. The stage script only orders these calls.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from predictflow.base.errors import StageError, machine_state
from predictflow.core.params import Params
from predictflow.core.schema import FEATURES, NUMERIC_FEATURES, RAW_COLUMNS
from predictflow.lineage import evidence, tracking

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

MODEL_ARTIFACT = "model"
SERVING_PACKAGES = ("mlflow", "scikit-learn", "xgboost", "pandas", "numpy", "cloudpickle")


def flat_params(params: Params) -> dict[str, object]:
    """The params `train` reads (dvc.yaml `train: params:`) under their params.yaml names.

    Only these: a section the run never used (`tune.grid`) would show up in MLflow's compare view
    as a difference between runs that trained the same model.
    """
    dumped = params.model_dump(by_alias=True)
    return (
        {"base.seed": params.base.seed}
        | {f"model.{key}": value for key, value in dumped["model"].items()}
        | {f"scale.{key}": value for key, value in dumped["scale"].items()}
    )


def lineage_tags(workspace: Path, data: Path) -> tracking.LineageTags:
    """Which code and which data: git facts, and the raw data's md5 as `dvc.lock` records it.

    `model_md5` stays empty: it is known once the model is logged.
    """
    commit = evidence.git_commit(workspace)
    return tracking.LineageTags(
        git_commit=commit or "",
        # before the first commit no code version exists to be clean against
        git_dirty=str(commit is None or evidence.git_dirty(workspace)).lower(),
        data_path=data.as_posix(),
        data_md5=evidence.locked_data_md5(workspace, data),
        model_md5="",
        dvc_exp_name=evidence.dvc_exp_name() or "",
    )


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


@contextmanager
def pins_trusted() -> Iterator[None]:
    """`log_model` without MLflow checking `pinned_requirements` against this environment.

    The pins were just read from this environment's own package metadata, so the check cannot
    find a mismatch; it still maps every installed file to its package first
    (`packages_distributions()`, 0.3-1.7 s a `train`). The requirements logged are the same.
    """
    from mlflow.utils import environment

    check = environment.warn_dependency_requirement_mismatches
    environment.warn_dependency_requirement_mismatches = lambda requirements: None
    try:
        yield
    finally:
        environment.warn_dependency_requirement_mismatches = check


def input_example(split: Path, rows: int = 5) -> pd.DataFrame:
    """The first rows in the raw layout as a CSV reader with `dtype=str` gives them.

    Read without the whole split (4M rows at 5M); text, because that is what clients send and
    what the served pipeline's cleaning step accepts.
    """
    import pyarrow.dataset as ds

    head = ds.dataset(split, format="parquet").head(rows, columns=list(FEATURES))
    return head.to_pandas().astype(str)


def serving_signature(example: pd.DataFrame, output: object) -> ModelSignature:
    """What clients really send: categories as text, numbers as numbers or text (blank allowed).

    Every feature is required, so a missing column is refused naming it; `customerID` and
    `Churn` are not in the schema, so rows straight from the raw file are accepted as they are.
    """
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    inputs = Schema(
        [ColSpec(AnyType() if c in NUMERIC_FEATURES else "string", c) for c in FEATURES]
    )
    return ModelSignature(inputs=inputs, outputs=infer_signature(example, output).outputs)


def enable_autolog(model_type: str) -> None:
    """Autolog the flavour that trains: its per-round curves (`validation_0-logloss` on the
    train split, `validation_1-logloss` on the test split).

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


@contextmanager
def lean_autolog() -> Iterator[None]:
    """While the model fits, autolog logs its per-round curves in one write and no params.

    Params: autolog would add ~37 estimator and booster params (`max_depth` again next to
    `model.max_depth`, `num_boost_round` next to `model.n_estimators`, many "None"), and
    `flat_params` logs each fact once instead. Neither autolog offers a switch for params, so
    its queueing client drops them here.

    Curves: autolog's `BatchMetricsLogger` writes a batch whenever fitting has taken 10x the
    time its writes took so far, which on a slow fit is close to one SQLite write per boosting
    round (a share of the fit that grows with it). Here it keeps every round and writes them
    all when the fit ends, in as few `log_batch` calls as MLflow's batch limit allows: the
    same metrics, steps and timestamps.
    """
    from mlflow.utils.autologging_utils import BatchMetricsLogger
    from mlflow.utils.autologging_utils.client import MlflowAutologgingQueueingClient

    log_params = MlflowAutologgingQueueingClient.log_params
    should_flush = BatchMetricsLogger._should_flush
    MlflowAutologgingQueueingClient.log_params = lambda self, run_id, params: None
    BatchMetricsLogger._should_flush = lambda self: False
    try:
        yield
    finally:
        MlflowAutologgingQueueingClient.log_params = log_params
        BatchMetricsLogger._should_flush = should_flush


def log_datasets(run_id: str, example: Path, lineage_tags: tracking.LineageTags) -> None:
    """The raw file and the train split as the run's datasets, digests as DVC records them."""
    from mlflow.types import ColSpec, Schema

    repo = tracking.repository(tracking.store_root())
    commit = lineage_tags.git_commit
    raw_schema = Schema([ColSpec("string", column) for column in RAW_COLUMNS])
    raw = tracking.dataset(
        Path(lineage_tags.data_path), lineage_tags.data_md5, raw_schema, repo, commit
    )
    tracking.log_dataset(run_id, raw, "source")
    tracking.log_dataset(run_id, tracking.parquet_dataset(example, repo, commit), "training")


def log_rounds(run_id: str, curves: dict[str, list[float]]) -> None:
    """The per-round curves under the names autolog gives them (`validation_0-logloss` on the
    train split, `validation_1-logloss` on the test split), for a fit autolog does not see (the
    dask engine's): one `log_batch` per MLflow batch limit, steps from 0."""
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    names = {"train": "validation_0", "test": "validation_1"}
    metrics = [
        Metric(f"{names[split]}-{metric}", value, now, step)
        for key, values in curves.items()
        for split, metric in [key.split("/", 1)]
        for step, value in enumerate(values)
    ]
    client = MlflowClient()
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


def log_curves(live_dir: Path, curves: dict[str, list[float]]) -> None:
    """Per-iteration curves for `dvc plots` (DVCLive writes step/value TSVs, no timestamps).

    DVCLive's DVC integration is left out: it opens DVC's `Repo` (1-2 s of imports and index
    reading per `train`) to name the experiment and, inside `dvc exp run`, to `git add` files
    under `live_dir` that no stage declares. Here every file it writes is a declared out
    (`dvcyaml=False`, nothing saved as an experiment), so that integration changes no file;
    it also raised before a repository's first commit (treeverse/dvclive#522). DVC itself
    records the experiment.
    """
    from dvclive import Live, env

    class _Live(Live):
        def _init_dvc(self) -> None:  # what it sets without the Repo (Studio reads them)
            self._inside_dvc_pipeline = env.DVC_ROOT in os.environ
            self._inside_dvc_exp = env.DVC_EXP_BASELINE_REV in os.environ
            self._save_dvc_exp = False

    # The curves exist whole once the fit ends: set each step directly and write the summary
    # once at the end, instead of `next_step()` rewriting it after every round.
    with _Live(str(live_dir), dvcyaml=False, save_dvc_exp=False) as live:
        for name, values in curves.items():
            for step, value in enumerate(values):
                live.step = step
                live.log_metric(name, value)


def abandon_run(run_id: str | None, experiment_id: str, cause: str) -> StageError:
    """The one line for a store that filled up or turned read-only during `train`, after putting
    the store right as far as it still can be.

    The unfinished logged model's files are removed first (the space they took is often what the
    database then needs), the model is marked FAILED, not left PENDING, and the run FAILED.
    Whatever cannot be written now is said, and what will set it right later.
    """
    import mlflow
    from mlflow.entities import LoggedModelStatus
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    store = tracking.shown_uri(mlflow.get_tracking_uri())
    if run_id is None:
        return StageError(f"tracking store {store} cannot be written ({cause}); no run was begun")
    client = mlflow.MlflowClient()
    try:
        models = client.search_logged_models(
            [experiment_id], filter_string=f"source_run_id = '{run_id}'"
        )
        for model in (m for m in models if m.status != LoggedModelStatus.READY):
            with suppress(OSError):  # a read-only folder frees nothing; the rest still matters
                get_artifact_repository(model.artifact_location).delete_artifacts()
            client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        mlflow.end_run(status="FAILED")  # also takes it off MLflow's stack of active runs
        client.set_terminated(run_id, status="FAILED")  # when end_run had already failed
        done = f"run {run_id} and its unfinished model marked FAILED"
    except MlflowException:
        done = (
            f"run {run_id} could not be marked FAILED now: the next `train` marks it KILLED "
            "(its process is gone)"
        )
    return StageError(
        f"tracking store {store} is {machine_state(cause)} ({cause}); {done}; free space or "
        "make it writable, then run `dvc repro` again"
    )
