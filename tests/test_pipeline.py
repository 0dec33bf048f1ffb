"""End to end: the real `dvc repro` of this project in a temp git repo, a real MLflow store.

Answers the two questions for the model the pipeline registers: which run produced it (params,
metrics, model, version, alias) and which data (the md5 DVC pins), and checks that a fresh copy
reproduces the committed `dvc.lock` byte for byte.
"""

from __future__ import annotations

import itertools
import json
import pickle
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from predictflow.core.schema import FEATURES
from predictflow.lineage import evidence
from predictflow.lineage.tracking import METRIC_KEYS

from .conftest import REPO, dvc, git, predictflow, repo_client, run

pytestmark = pytest.mark.pipeline

STAGES = ["prepare", "featurize", "train", "evaluate", "register"]


def versions(repo: Path) -> list:
    return repo_client(repo).search_model_versions("name = 'churn-predictor'")


def train_runs(repo: Path) -> list:
    client = repo_client(repo)
    experiment = client.get_experiment_by_name("churn-prediction")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def locked_md5s(text: str) -> dict[str, str]:
    stages = evidence.read_lock(text)
    return {
        f"{name}:{path}": md5
        for name, stage in stages.items()
        for path, md5 in {**stage.deps, **stage.outs}.items()
    }


def test_fresh_copy_reproduces_the_committed_lock_byte_for_byte(pipeline_repo: Path) -> None:
    committed = (REPO / "dvc.lock").read_text()
    rebuilt = (pipeline_repo / "dvc.lock").read_text()
    expected, actual = locked_md5s(committed), locked_md5s(rebuilt)
    differing = {
        key: (expected.get(key), actual.get(key))
        for key in expected.keys() | actual.keys()
        if expected.get(key) != actual.get(key)
    }
    assert not differing, (
        f"md5s differ from the committed dvc.lock (rerun `dvc repro`): {differing}"
    )
    assert rebuilt == committed
    # metrics and the registration receipt are committed too, and came out identical
    assert git(pipeline_repo, "status", "--porcelain").stdout == ""


def test_data_was_bootstrapped_to_the_pinned_md5(pipeline_repo: Path) -> None:
    pinned = evidence.pinned_md5(pipeline_repo / "data/customers.csv.dvc")
    assert evidence.file_md5(pipeline_repo / "data/customers.csv") == pinned
    assert predictflow(pipeline_repo, "data", "ensure").stdout.strip() == (
        "data/customers.csv: present"
    )


def test_dvc_dag_is_the_five_stage_chain(pipeline_repo: Path) -> None:
    dot = dvc(pipeline_repo, "dag", "--dot").stdout
    edges = set(re.findall(r'"([^"]+)" -> "([^"]+)"', dot))
    nodes = {node for edge in edges for node in edge}
    assert nodes == {"data/customers.csv.dvc", *STAGES}
    chain = ["data/customers.csv.dvc", *STAGES]
    for upstream, downstream in itertools.pairwise(chain):
        assert (upstream, downstream) in edges
    # nothing flows backwards: every edge goes down the chain
    assert all(chain.index(a) < chain.index(b) for a, b in edges)


def test_held_out_metrics_follow_the_contract(pipeline_repo: Path) -> None:
    scores = json.loads((pipeline_repo / "metrics/eval.json").read_text())
    assert set(METRIC_KEYS) <= set(scores)
    assert all(isinstance(scores[key], float) for key in METRIC_KEYS)
    assert 0.75 < scores["roc_auc"] < 0.95  # realistic data: neither trivial nor separable
    shown = json.loads(dvc(pipeline_repo, "metrics", "show", "--json").stdout)
    workspace = shown[""]["data"]["metrics/eval.json"]["data"]  # "" is the workspace
    assert workspace["roc_auc"] == scores["roc_auc"]


def test_dvc_plots_render_every_declared_plot(pipeline_repo: Path, tmp_path: Path) -> None:
    dvc(pipeline_repo, "plots", "show", "-o", str(tmp_path / "plots"))
    page = (tmp_path / "plots" / "index.html").read_text()
    for title in (
        "Training curve",
        "ROC",
        "Precision-recall",
        "Confusion matrix",
        "Reliability (calibration)",
        "Feature importance",
    ):
        assert title in page
    curve = (pipeline_repo / "metrics/train/plots/metrics/test/logloss.tsv").read_text()
    params = yaml.safe_load((pipeline_repo / "params.yaml").read_text())
    assert len(curve.strip().splitlines()) == params["model"]["n_estimators"] + 1  # + header


def test_train_run_records_params_curves_model_and_lineage(pipeline_repo: Path) -> None:
    import mlflow

    runs = train_runs(pipeline_repo)
    assert len(runs) == 1
    run_ = runs[0]
    assert run_.info.status == "FINISHED"
    params = yaml.safe_load((pipeline_repo / "params.yaml").read_text())
    assert run_.data.params["model.max_depth"] == str(params["model"]["max_depth"])
    assert run_.data.params["base.seed"] == str(params["base"]["seed"])
    client = repo_client(pipeline_repo)
    history = client.get_metric_history(run_.info.run_id, "validation_1-logloss")
    assert len(history) == params["model"]["n_estimators"]
    for key in METRIC_KEYS:  # register attached the held-out metrics to the same run
        assert key in run_.data.metrics

    tags = run_.data.tags
    head = git(pipeline_repo, "rev-list", "--max-parents=0", "HEAD").stdout.strip()
    assert tags["git_commit"] == head
    assert tags["git_dirty"] == "false"
    assert tags["data_md5"] == evidence.pinned_md5(pipeline_repo / "data/customers.csv.dvc")
    assert tags["model_md5"] == evidence.file_md5(pipeline_repo / "models/model.pkl")

    model_id = run_.outputs.model_outputs[0].model_id
    mlflow.set_tracking_uri(repo_client(pipeline_repo).tracking_uri)
    info = mlflow.models.get_model_info(f"models:/{model_id}")
    assert set(info.signature.inputs.input_names()) == set(FEATURES)
    assert info.saved_input_example_info is not None


def test_registered_version_is_the_model_dvc_lock_pins(pipeline_repo: Path, tmp_path) -> None:
    import mlflow

    client = repo_client(pipeline_repo)
    (version,) = versions(pipeline_repo)
    locked = evidence.locked_out_md5(evidence.load_lock(pipeline_repo), "models/model.pkl")
    assert version.tags["model_md5"] == locked
    assert version.tags["data_md5"] == evidence.pinned_md5(pipeline_repo / "data/customers.csv.dvc")
    assert version.tags["git_commit"] and version.tags["git_dirty"] == "false"
    assert int(client.get_model_version_by_alias("churn-predictor", "staging").version) == 1

    mlflow.set_tracking_uri(client.tracking_uri)
    local = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/churn-predictor/{version.version}", dst_path=str(tmp_path)
        )
    )
    assert evidence.file_md5(local / "model.pkl") == locked

    receipt = json.loads((pipeline_repo / "models/registration.json").read_text())
    assert receipt["model_md5"] == locked and receipt["quality_gate"]["passed"] is True


def test_served_model_scores_clean_raw_layout_rows_like_evaluate(pipeline_repo: Path) -> None:
    import mlflow

    mlflow.set_tracking_uri(repo_client(pipeline_repo).tracking_uri)
    served = mlflow.pyfunc.load_model("models:/churn-predictor@staging")
    test = pd.read_parquet(pipeline_repo / "data/prepared/test.parquet").head(50)
    scores = pd.DataFrame(served.predict(test.drop(columns=["Churn"])))
    with open(pipeline_repo / "models/model.pkl", "rb") as handle:
        expected = pickle.load(handle).predict_proba(test[list(FEATURES)])
    assert scores.shape == (50, 2)
    assert (scores.to_numpy() - expected).__abs__().max() < 1e-6


def test_noop_repro_changes_nothing(pipeline_repo: Path) -> None:
    assert "up to date" in dvc(pipeline_repo, "status").stdout
    out = dvc(pipeline_repo, "repro").stdout
    assert "Running stage" not in out
    assert len(versions(pipeline_repo)) == 1


def test_register_is_idempotent_by_model_md5(pipeline_repo: Path) -> None:
    out = dvc(pipeline_repo, "repro", "-f", "--single-item", "register")
    assert "already registered as version 1" in out.stdout + out.stderr
    assert len(versions(pipeline_repo)) == 1


@pytest.fixture
def restore(pipeline_repo: Path):
    """Put the shared repo back to its committed state after a test that changes it."""
    yield pipeline_repo
    git(pipeline_repo, "reset", "-q", "--hard")
    dvc(pipeline_repo, "checkout", "-f", "-q")
    assert "up to date" in dvc(pipeline_repo, "status").stdout


REGISTER = [sys.executable, "stages/register.py"]


@pytest.mark.parametrize(
    ("tampered", "stale_stage"),
    [("data/features/train.parquet", "featurize"), ("models/model.pkl", "train")],
)
def test_register_refuses_when_the_lock_is_not_clean(restore, tampered, stale_stage) -> None:
    repo = restore
    path = repo / tampered
    path.unlink()  # a cached out is a link into the cache: replace it, never write through it
    path.write_bytes(b"tampered")
    before = len(versions(repo))
    result = run(REGISTER, repo, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("register: error: dvc.lock is not clean, refusing to register")
    assert stale_stage in lines[0]
    assert len(versions(repo)) == before


def test_experiment_is_tracked_registered_and_leaves_staging_alone(restore) -> None:
    repo = restore
    dvc(repo, "exp", "run", "-S", "model.max_depth=6", "--name", "deeper")
    shown = json.loads(dvc(repo, "exp", "show", "--json").stdout)
    experiments = [exp for rev in shown for exp in (rev.get("experiments") or [])]
    names = {exp.get("name") for exp in experiments}
    assert "deeper" in names

    run_ = train_runs(repo)[-1]
    assert run_.data.params["model.max_depth"] == "6"
    assert run_.data.tags["dvc_exp_name"] == "deeper"
    assert run_.data.tags["git_dirty"] == "true"  # params.yaml differs from the commit
    newest = max(versions(repo), key=lambda v: int(v.version))
    assert newest.tags["dvc_exp_name"] == "deeper"
    assert newest.tags["model_md5"] == run_.data.tags["model_md5"]
    staging = repo_client(repo).get_model_version_by_alias("churn-predictor", "staging")
    assert int(staging.version) == 1


def test_queued_experiment_lands_in_the_main_store(restore) -> None:
    import time

    repo = restore
    before = len(train_runs(repo))
    dvc(repo, "exp", "run", "--queue", "-S", "model.max_depth=3", "--name", "queued")
    dvc(repo, "queue", "start", "-j", "1")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = dvc(repo, "queue", "status").stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        time.sleep(2)
    assert "Success" in status, status
    runs = train_runs(repo)
    assert len(runs) == before + 1
    assert runs[-1].data.params["model.max_depth"] == "3"
    assert runs[-1].data.tags["dvc_exp_name"] == "queued"
    assert set(METRIC_KEYS) <= set(runs[-1].data.metrics)  # register, in the temp copy, found it
    assert "evaluation/roc.png" in {
        a.path for a in repo_client(repo).list_artifacts(runs[-1].info.run_id, "evaluation")
    }
    assert not list((repo / ".dvc" / "tmp").rglob("mlflow.db"))


def test_clone_pulls_data_from_the_default_remote(pipeline_repo: Path) -> None:
    dvc(pipeline_repo, "push", "-q", "data/customers.csv.dvc")
    clone = pipeline_repo.parent / "clone"
    git(pipeline_repo.parent, "clone", "-q", str(pipeline_repo), str(clone))
    assert predictflow(clone, "data", "ensure").stdout.strip() == "data/customers.csv: pulled"
    assert evidence.file_md5(clone / "data/customers.csv") == evidence.pinned_md5(
        clone / "data/customers.csv.dvc"
    )
