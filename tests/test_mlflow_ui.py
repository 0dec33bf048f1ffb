"""What a user sees in the MLflow UI, in real headless Chromium against `mlflow ui` on the store
a cold `dvc repro` filled: the experiment as training runs, and which data each run and model used.

Screenshots for the docs: `PREDICTFLOW_UPDATE_SCREENSHOT=1 pytest tests/test_mlflow_ui.py`
rewrites docs/mlflow-runs-datasets.png and docs/mlflow-model-version.png.
"""

from __future__ import annotations

import html
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from predictflow import lineage, tracking

from .conftest import REPO, copy_built_repo
from .test_report import browser, chromium, mlflow_ui  # noqa: F401 (`browser` is a fixture)

pytestmark = pytest.mark.pipeline

DOCS = REPO / "docs"
# MLflow 3.17's UI picks the page kind from the `workflowType` query parameter (else the browser's
# last choice, GenAI by default); the experiment tag is what other MLflow versions and tools read.
TRAINING = "workflowType=machine_learning"
WINDOW = "--window-size=1400,900"


def store(repo: Path) -> MlflowClient:
    uri = f"sqlite:///{repo / 'mlflow_data' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def page(browser: str, profile: Path, url: str, shot: Path | None = None) -> str:  # noqa: F811
    """The DOM once the single-page app has loaded its data (and a screenshot, if asked)."""
    args = ["--virtual-time-budget=20000", WINDOW]
    if shot is not None:
        code, _, stderr = chromium(browser, profile / "shot", *args, f"--screenshot={shot}", url)
        assert code == 0, stderr[-4000:]
    code, dom, stderr = chromium(browser, profile / "dom", *args, "--dump-dom", url)
    assert code == 0, stderr[-4000:]
    return html.unescape(dom)


def keep_screenshot(shot: Path, name: str) -> None:
    if os.environ.get("PREDICTFLOW_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, DOCS / name)


@pytest.fixture(scope="module")
def repo(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store exactly as the cold `dvc repro` left it: one training run, version 1."""
    return copy_built_repo(built_repo, tmp_path_factory.mktemp("ui") / "repo")


@pytest.fixture(scope="module")
def ui(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("mlflow-ui") / "ui.log"
    with mlflow_ui(repo, log) as base:
        yield base


def test_the_experiment_is_tagged_as_model_training(repo: Path) -> None:
    experiment = store(repo).get_experiment_by_name(tracking.EXPERIMENT)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_runs_list_opens_on_training_runs_with_their_datasets(
    browser: str,  # noqa: F811
    repo: Path,
    ui: str,
    tmp_path: Path,
) -> None:
    experiment = store(repo).get_experiment_by_name(tracking.EXPERIMENT)
    raw_md5 = lineage.pinned_md5(repo / "data" / "customers.csv.dvc")
    shot = tmp_path / "runs.png"
    dom = page(browser, tmp_path, f"{ui}/#/experiments/{experiment.experiment_id}?{TRAINING}", shot)
    assert "Detect Issues" not in dom and "Traces" in dom  # not the GenAI overview
    assert "matching run" in dom, dom[-3000:]
    # the Dataset column: name and DVC's md5 of the raw file
    assert f'title="data/customers.csv ({raw_md5})"' in dom, dom[-3000:]
    keep_screenshot(shot, "mlflow-runs-datasets.png")


def test_run_and_model_pages_show_the_dataset_digests(
    browser: str,  # noqa: F811
    repo: Path,
    ui: str,
    tmp_path: Path,
) -> None:
    client = store(repo)
    version = client.get_model_version_by_alias(tracking.MODEL_NAME, "staging")
    run = client.get_run(version.run_id)
    digests = {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs}
    raw_md5 = lineage.pinned_md5(repo / "data" / "customers.csv.dvc")
    test_md5 = lineage.file_md5(repo / "data" / "prepared" / "test.parquet")
    assert digests == {
        "data/customers.csv": raw_md5,
        "data/prepared/train.parquet": lineage.file_md5(
            repo / "data" / "prepared" / "train.parquet"
        ),
        "data/prepared/test.parquet": test_md5,
    }
    experiment_id = run.info.experiment_id

    dom = page(
        browser,
        tmp_path / "run",
        f"{ui}/#/experiments/{experiment_id}/runs/{run.info.run_id}?{TRAINING}",
    )
    assert f"data/customers.csv ({raw_md5})" in dom, dom[-3000:]

    # the registry keeps no model id on a version in this store: the version shows the data md5
    # and links its logged model, whose held-out metrics name the test split they were scored on
    shot = tmp_path / "version.png"
    url = f"{ui}/#/models/{tracking.MODEL_NAME}/versions/{version.version}?{TRAINING}"
    dom = page(browser, tmp_path / "version", url, shot)
    assert raw_md5 in dom and "Source Model" in dom, dom[-3000:]
    keep_screenshot(shot, "mlflow-model-version.png")

    model_id = version.source.removeprefix("models:/")
    url = f"{ui}/#/experiments/{experiment_id}/models/{model_id}?{TRAINING}"
    dom = page(browser, tmp_path / "model", url)
    assert f"data/prepared/test.parquet (#{test_md5})" in dom, dom[-3000:]


def test_compare_view_shows_each_fact_once(repo: Path) -> None:
    """Params are what `train` reads, under params.yaml names; each number has one name."""
    import yaml

    client = store(repo)
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    params = yaml.safe_load((repo / "params.yaml").read_text())
    read_by_train = {"base.seed": str(params["base"]["seed"])} | {
        f"model.{key}": str(value) for key, value in params["model"].items()
    }
    assert run.data.params == read_by_train
    held_out = set(json.loads((repo / "metrics" / "eval.json").read_text()))
    curves = {"validation_0-logloss", "validation_1-logloss"}
    assert set(run.data.metrics) == held_out | curves
