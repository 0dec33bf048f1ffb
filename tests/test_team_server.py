"""The team tracking server, for real: `mlflow server` over PostgreSQL, started the way
`make server` starts it (scripts/mlflow_server.py), each time on a fresh database that the test
drops afterwards.

1. The unchanged pipeline (`dvc repro` with MLFLOW_TRACKING_URI) logs and registers there, the
   artifacts landing in the S3-compatible store (moto) through the server, nothing in the repo.
2. `predictflow store migrate` copies a SQLite history to a fresh server: runs, metric histories,
   tags, artifacts, logged models, versions, aliases; a second migration copies nothing; the
   migrated staging model loads from the server and predicts what the source's did.

Without PostgreSQL on 127.0.0.1:5432 these tests skip (fail under PREDICTFLOW_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from predictflow import lineage

from .conftest import (
    REPO,
    child_env,
    copy_project,
    free_port,
    git,
    predictflow,
    run,
    stop_process_group,
)
from .s3server import KEY, SECRET, moto_server, unavailable

pytestmark = pytest.mark.slow

POSTGRES = os.environ.get("PREDICTFLOW_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432")
ARTIFACT_BUCKET = "predictflow-mlflow-artifacts"
HEALTH_TIMEOUT = 120.0
MODEL = "churn-predictor"
MARKER, STATE = "predictflow.migrated_from", "predictflow.migration"


def admin():
    """A connection to the server's maintenance database, or skip/fail with the reason."""
    import psycopg2

    try:
        conn = psycopg2.connect(f"{POSTGRES}/postgres", connect_timeout=5)
    except psycopg2.OperationalError as err:
        first = str(err).strip().splitlines()[0]
        unavailable(f"PostgreSQL is not reachable at {POSTGRES} ({first}); `.ci/run` starts it")
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")  # session: checked before the session-scoped pipeline_repo
def postgres() -> str:
    admin().close()
    return POSTGRES


@dataclass
class Server:
    uri: str
    database: str
    setup_seconds: float
    log: Path


@contextmanager
def team_server(workdir: Path, **env: str) -> Iterator[Server]:
    """scripts/mlflow_server.py on a free port over a new database; both gone afterwards."""
    database = f"predictflow_test_{uuid.uuid4().hex[:10]}"
    port = free_port()
    log = workdir / "mlflow-server.log"
    settings = {
        "PORT": str(port),
        "PREDICTFLOW_DB_URI": f"{POSTGRES}/{database}",
        "WORKERS": "1",
        **env,
    }
    started = time.monotonic()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / "mlflow_server.py")],
            cwd=workdir,
            env=child_env(**settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        import requests

        deadline = started + HEALTH_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"mlflow server exited {process.returncode}:\n{log.read_text()[-3000:]}"
                )
            try:
                if requests.get(f"{uri}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"no 200 on {uri}/health in {HEALTH_TIMEOUT}s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.2)
        setup = time.monotonic() - started
        print(f"\nmlflow server on PostgreSQL ({database}): first 200 on /health in {setup:.1f} s")
        yield Server(uri, database, setup, log)
    finally:
        stop_process_group(process)
        conn = admin()
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.close()


def client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


SCORE = """
import json, sys
import mlflow, pandas as pd
rows = pd.read_parquet(sys.argv[1]).head(50).drop(columns=["Churn"])
out = {}
for uri in sys.argv[2:]:
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/churn-predictor@staging")
    out[uri] = pd.DataFrame(model.predict(rows)).to_numpy().tolist()
print(json.dumps(out))
"""


def staging_predictions(repo: Path, *uris: str) -> dict[str, list[list[float]]]:
    """What `models:/churn-predictor@staging` predicts, loaded the way a user does, per store.

    In a child process: MLFLOW_TRACKING_URI (the first store) is all it is given, and the test
    process's MLflow state stays untouched.
    """
    rows = repo / "data" / "prepared" / "test.parquet"
    result = run(
        [sys.executable, "-c", SCORE, rows, *uris],
        repo,
        MLFLOW_TRACKING_URI=uris[0],
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- 1. the pipeline against the server, artifacts in S3 -------------------------------------


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        server.create_bucket(ARTIFACT_BUCKET)
        yield server


def test_pipeline_logs_and_registers_on_the_team_server(
    postgres: str, s3, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import pickle

    import pandas as pd

    from predictflow.schema import FEATURES

    s3_env = {
        "MLFLOW_S3_ENDPOINT_URL": s3.endpoint,
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }
    with team_server(tmp_path_factory.mktemp("server-s3"), **s3_env) as server:
        assert server.setup_seconds < HEALTH_TIMEOUT
        assert f"artifacts s3://{ARTIFACT_BUCKET}" in server.log.read_text()
        repo = copy_project(tmp_path / "repo")
        predictflow(repo, "data", "ensure")
        # The pipeline as it is: only the environment points it at the server. The client gets
        # no S3 settings: the server proxies the artifacts.
        run([sys.executable, "-m", "dvc", "repro"], repo, MLFLOW_TRACKING_URI=server.uri)

        store = client(server.uri)
        experiment = store.get_experiment_by_name("churn-prediction")
        (train_run,) = store.search_runs([experiment.experiment_id])
        assert train_run.info.status == "FINISHED"
        model_md5 = lineage.file_md5(repo / "models" / "model.pkl")
        assert train_run.data.tags["model_md5"] == model_md5

        version = store.get_model_version(MODEL, "1")
        head = git(repo, "rev-parse", "HEAD").stdout.strip()
        assert version.tags["data_md5"] == lineage.pinned_md5(repo / "data/customers.csv.dvc")
        assert version.tags["model_md5"] == model_md5
        assert version.tags["git_commit"] == head
        assert version.run_id == train_run.info.run_id
        assert store.get_model_version_by_alias(MODEL, "staging").version in (1, "1")

        assert not list(repo.rglob("mlflow.db")) and not (repo / "mlflow_data").exists()
        assert not (repo / "mlruns").exists()
        stored = s3.keys(ARTIFACT_BUCKET)  # the server wrote the model to the S3 store
        assert any(key.endswith("/artifacts/model.pkl") for key in stored), stored
        assert any(key.endswith("lineage/dvc.lock") for key in stored), stored

        served = staging_predictions(repo, server.uri)[server.uri]
        test = pd.read_parquet(repo / "data/prepared/test.parquet").head(50)
        with open(repo / "models/model.pkl", "rb") as handle:
            expected = pickle.load(handle).predict_proba(test[list(FEATURES)])
        assert abs(pd.DataFrame(served).to_numpy() - expected).max() < 1e-6


# -- 2. migration from the SQLite store ------------------------------------------------------


def history(store, run_id: str, keys) -> dict[str, list[tuple[int, int, float]]]:
    return {
        key: [(m.step, m.timestamp, m.value) for m in store.get_metric_history(run_id, key)]
        for key in keys
    }


def artifact_tree(store, run_id: str, path: str | None = None) -> list[tuple[str, int]]:
    files = []
    for item in store.list_artifacts(run_id, path):
        files += (
            artifact_tree(store, run_id, item.path)
            if item.is_dir
            else [(item.path, item.file_size)]
        )
    return files


def without_markers(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if k not in (MARKER, STATE)}


def test_migrate_sqlite_history_to_a_fresh_server(
    postgres: str, pipeline_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from mlflow.entities import ViewType

    source_uri = f"sqlite:///{pipeline_repo / 'mlflow_data' / 'mlflow.db'}"
    source = client(source_uri)
    experiment = source.get_experiment_by_name("churn-prediction")
    source_runs = source.search_runs([experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY)
    source_versions = sorted(
        source.search_model_versions(f"name = '{MODEL}'"), key=lambda v: int(v.version)
    )
    assert source_runs and source_versions

    workdir = tmp_path_factory.mktemp("server-local")
    with team_server(workdir, PREDICTFLOW_ARTIFACTS=str(workdir / "artifacts")) as server:
        first = json.loads(
            predictflow(pipeline_repo, "store", "migrate", "--to", server.uri, "--json").stdout
        )
        assert first["source"] == source_uri  # the project's own store by default
        assert first["runs_copied"] == len(source_runs)
        assert first["versions_copied"] == len(source_versions)
        assert first["logged_models_copied"] >= len(source_versions)
        assert first["experiments_created"] >= 1 and first["aliases_set"] >= 1
        assert not first["copied_nothing"]

        target = client(server.uri)
        copied = {
            r.data.tags[MARKER]: r
            for r in target.search_runs(
                [target.get_experiment_by_name("churn-prediction").experiment_id]
            )
        }
        assert set(copied) == {r.info.run_id for r in source_runs}
        run_ids = {old: new.info.run_id for old, new in copied.items()}
        for run_ in source_runs:
            twin = copied[run_.info.run_id]
            assert twin.data.tags[STATE] == "complete"
            assert (twin.info.status, twin.info.start_time, twin.info.end_time) == (
                run_.info.status,
                run_.info.start_time,
                run_.info.end_time,
            )
            assert twin.info.run_name == run_.info.run_name
            assert twin.data.params == run_.data.params
            assert twin.data.metrics == run_.data.metrics
            expected_tags = dict(run_.data.tags)
            if "mlflow.parentRunId" in expected_tags:  # a nested run points at its parent's copy
                expected_tags["mlflow.parentRunId"] = run_ids[expected_tags["mlflow.parentRunId"]]
            assert without_markers(twin.data.tags) == expected_tags
            keys = list(run_.data.metrics)
            assert history(target, twin.info.run_id, keys) == history(
                source, run_.info.run_id, keys
            )
            assert artifact_tree(target, twin.info.run_id) == artifact_tree(
                source, run_.info.run_id
            )
            assert len(twin.outputs.model_outputs) == len(run_.outputs.model_outputs)

        versions = {v.tags[MARKER]: v for v in target.search_model_versions(f"name = '{MODEL}'")}
        numbers = {}
        for version in source_versions:
            twin = versions[f"{MODEL}/{version.version}@{version.run_id}"]
            numbers[str(version.version)] = str(twin.version)
            assert twin.run_id == run_ids[version.run_id]
            expected_tags = dict(version.tags)
            expected_tags["run_id"] = run_ids[version.run_id]
            assert without_markers(twin.tags) == expected_tags
            assert twin.current_stage == version.current_stage
            assert twin.source.startswith("models:/m-") and twin.source != version.source
        source_aliases = source.get_registered_model(MODEL).aliases
        target_aliases = target.get_registered_model(MODEL).aliases
        assert {a: str(v) for a, v in target_aliases.items()} == {
            a: numbers[str(v)] for a, v in source_aliases.items()
        }

        again = json.loads(
            predictflow(pipeline_repo, "store", "migrate", "--to", server.uri, "--json").stdout
        )
        assert again["copied_nothing"]
        assert again["runs_copied"] == 0 and again["versions_copied"] == 0
        assert again["runs_already_there"] == len(source_runs)
        assert again["versions_already_there"] == len(source_versions)
        assert len(target.search_model_versions(f"name = '{MODEL}'")) == len(source_versions)

        # the migrated staging version loads from the server and predicts what the source's did
        scores = staging_predictions(pipeline_repo, server.uri, source_uri)
        assert scores[server.uri] == scores[source_uri]


def test_an_interrupted_migration_is_resumed_without_duplicates(
    pipeline_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs a migration that dies half-way through a run, then again: the half-copied run is
    replaced, nothing is duplicated. Any tracking URI is a target: a SQLite file here."""
    from predictflow import migrate

    monkeypatch.chdir(tmp_path)  # a SQLite target keeps its artifacts in ./mlruns
    source_uri = f"sqlite:///{pipeline_repo / 'mlflow_data' / 'mlflow.db'}"
    target_uri = f"sqlite:///{tmp_path / 'target.db'}"
    source = client(source_uri)
    source_runs = source.search_runs(
        [source.get_experiment_by_name("churn-prediction").experiment_id]
    )
    source_versions = source.search_model_versions(f"name = '{MODEL}'")

    real_download = migrate._Migration._download
    calls = []

    def dies_on_second_download(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 2:  # the first run's logged model is copied, its artifacts are not
            raise KeyboardInterrupt("interrupted")
        return real_download(self, *args, **kwargs)

    monkeypatch.setattr(migrate._Migration, "_download", dies_on_second_download)
    with pytest.raises(KeyboardInterrupt):
        migrate.migrate(source_uri, target_uri)
    monkeypatch.setattr(migrate._Migration, "_download", real_download)

    resumed = migrate.migrate(source_uri, target_uri)
    assert resumed.runs_recopied == 1
    assert resumed.runs_copied == len(source_runs)
    assert resumed.versions_copied == len(source_versions)

    target = client(target_uri)
    experiment_id = target.get_experiment_by_name("churn-prediction").experiment_id
    copies = target.search_runs([experiment_id])
    assert sorted(r.data.tags[MARKER] for r in copies) == sorted(r.info.run_id for r in source_runs)
    assert {r.data.tags[STATE] for r in copies} == {"complete"}
    models = target.search_logged_models(experiment_ids=[experiment_id])
    assert len({m.tags[MARKER] for m in models}) == len(models)
    assert migrate.migrate(source_uri, target_uri).copied_nothing
