"""What a user sees in the MLflow UI, in real headless Chromium against `make ui` on the store
a cold `dvc repro` filled: the experiment as training runs, and which data each run and model used.

Screenshots for the docs: `PREDICTFLOW_UPDATE_SCREENSHOT=1 pytest tests/test_mlflow_ui.py`
rewrites docs/mlflow-runs-landing.png, docs/mlflow-runs-datasets.png and
docs/mlflow-model-version.png.
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
from mlflow.entities import Run

from predictflow.lineage import evidence, names, provenance

from .conftest import BIN, REPO, copy_built_repo, run
from .test_report import browser, chromium, mlflow_ui  # noqa: F401 (`browser` is a fixture)

pytestmark = pytest.mark.pipeline

DOCS = REPO / "docs"
# MLflow 3.17's UI picks the page kind from the `workflowType` query parameter (else the browser's
# last choice, GenAI by default); the experiment tag is what other MLflow versions and tools read.
TRAINING = provenance.TRAINING_VIEW
WINDOW = "--window-size=1400,900"
# What only the GenAI overview and the open MLflow Assistant panel put on the page
GENAI_POPUP = "Detect Issues"
ASSISTANT_PANEL = 'placeholder="Ask a question'


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


def newest_run(client: MlflowClient, experiment_id: str) -> Run:
    (newest,) = client.search_runs(
        [experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )
    return newest


def test_a_fresh_profile_lands_on_the_training_runs(
    browser: str,  # noqa: F811
    repo: Path,
    ui: str,
    tmp_path: Path,
) -> None:
    """The experiment's address as the Experiments list links it (no `workflowType`), in a
    browser that has never seen the UI: the runs list with its Dataset column, nothing over it."""
    client = store(repo)
    experiment = client.get_experiment_by_name(names.EXPERIMENT)
    newest = newest_run(client, experiment.experiment_id)
    raw_md5 = evidence.pinned_md5(repo / "data" / "customers.csv.dvc")
    shot = tmp_path / "landing.png"
    dom = page(browser, tmp_path, f"{ui}/#/experiments/{experiment.experiment_id}", shot)
    assert newest.info.run_name in dom and "matching run" in dom, dom[-3000:]
    assert f'title="data/customers.csv ({raw_md5})"' in dom, dom[-3000:]
    assert GENAI_POPUP not in dom
    assert ASSISTANT_PANEL not in dom
    keep_screenshot(shot, "mlflow-runs-landing.png")


def test_the_link_lineage_prints_opens_the_run_as_model_training(
    browser: str,  # noqa: F811
    repo: Path,
    ui: str,
    tmp_path: Path,
) -> None:
    facts = json.loads(
        run([BIN / "predictflow", "lineage", "--json"], repo, PREDICTFLOW_UI_URL=ui).stdout
    )
    link = facts["run"]["link"]
    assert link.startswith(f"{ui}/#/experiments/") and link.endswith(f"?{TRAINING}"), link
    raw_md5 = evidence.pinned_md5(repo / "data" / "customers.csv.dvc")
    dom = page(browser, tmp_path, link)
    assert facts["run"]["name"] in dom, dom[-3000:]
    assert f"data/customers.csv ({raw_md5})" in dom, dom[-3000:]
    assert GENAI_POPUP not in dom
    assert ASSISTANT_PANEL not in dom


def test_plain_mlflow_ui_opens_genai_and_the_printed_link_still_opens_training(
    browser: str,  # noqa: F811
    repo: Path,
    tmp_path: Path,
) -> None:
    """Why `make ui` serves the `predictflow-ui` app: MLflow 3.17 by itself (a team server, a bare
    `mlflow ui`) opens a fresh profile on the GenAI overview with the assistant panel open, the
    `mlflow.experimentKind` tag notwithstanding. The printed links' parameter alone picks the
    training view there (the assistant is MLflow's to show)."""
    client = store(repo)
    experiment = client.get_experiment_by_name(names.EXPERIMENT)
    newest = newest_run(client, experiment.experiment_id)
    with mlflow_ui(repo, tmp_path / "plain-ui.log", plain=True) as base:
        dom = page(browser, tmp_path / "bare", f"{base}/#/experiments/{experiment.experiment_id}")
        assert GENAI_POPUP in dom and ASSISTANT_PANEL in dom, dom[-3000:]
        assert newest.info.run_name not in dom

        link = provenance.run_link(experiment.experiment_id, newest.info.run_id, base)
        dom = page(browser, tmp_path / "link", link)
        assert newest.info.run_name in dom and GENAI_POPUP not in dom, dom[-3000:]


def test_the_experiment_is_tagged_as_model_training(repo: Path) -> None:
    experiment = store(repo).get_experiment_by_name(names.EXPERIMENT)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_runs_list_opens_on_training_runs_with_their_datasets(
    browser: str,  # noqa: F811
    repo: Path,
    ui: str,
    tmp_path: Path,
) -> None:
    experiment = store(repo).get_experiment_by_name(names.EXPERIMENT)
    raw_md5 = evidence.pinned_md5(repo / "data" / "customers.csv.dvc")
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
    version = client.get_model_version_by_alias(names.MODEL_NAME, "staging")
    run = client.get_run(version.run_id)
    digests = {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs}
    raw_md5 = evidence.pinned_md5(repo / "data" / "customers.csv.dvc")
    test_md5 = evidence.file_md5(repo / "data" / "prepared" / "test.parquet")
    assert digests == {
        "data/customers.csv": raw_md5,
        "data/prepared/train.parquet": evidence.file_md5(
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
    url = f"{ui}/#/models/{names.MODEL_NAME}/versions/{version.version}?{TRAINING}"
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
    experiment = client.get_experiment_by_name(names.EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    params = yaml.safe_load((repo / "params.yaml").read_text())
    read_by_train = {"base.seed": str(params["base"]["seed"])} | {
        f"{section}.{key}": str(value)
        for section in ("model", "scale")
        for key, value in params[section].items()
    }
    assert run.data.params == read_by_train
    held_out = set(json.loads((repo / "metrics" / "eval.json").read_text()))
    curves = {"validation_0-logloss", "validation_1-logloss"}
    assert set(run.data.metrics) == held_out | curves
