"""The team tracking server, for real: `mlflow server` over PostgreSQL, started the way
`make server` starts it (scripts/mlflow_server.py), each time on a fresh database that the test
drops afterwards.

1. The unchanged pipeline (`dvc repro` with MLFLOW_TRACKING_URI) logs and registers there, the
   artifacts landing in the S3-compatible store (moto) through the server, nothing in the repo.
   That server runs with the loud opt-out (no authentication), and `doctor` calls it a problem.
2. `predictflow store migrate` copies a SQLite history to a fresh, authenticated server: runs,
   metric histories, tags, artifacts, logged models, versions, aliases; a second migration
   copies nothing; the migrated staging model loads from the server and predicts what the
   source's did.
3. Who may do what (one basic-auth server for the module): the pipeline with an experimenter's
   login logs and registers; no or wrong credentials get a 401, a reader who registers, tags or
   promotes and an experimenter who moves production get a 403, each as one line with the
   registry unchanged; a releaser promotes and the audit names the login, whatever git says; a
   sentinel password is in no table, artifact, log, report or file.

Without PostgreSQL on 127.0.0.1:5432 these tests skip (fail under PREDICTFLOW_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from predictflow.lineage import evidence

from .conftest import (
    BIN,
    REPO,
    Result,
    assert_one_line_error,
    child_env,
    free_port,
    git,
    migrated_server,
    predictflow,
    run,
    stage_error_line,
)
from .s3server import KEY, SECRET, moto_server
from .teamserver import (
    HEALTH_TIMEOUT,
    POSTGRES,
    SENTINEL,
    Team,
    add_users,
    admin,
    fast_logins,
    login,
    password,
    team_server,
)

pytestmark = pytest.mark.services

ARTIFACT_BUCKET = "predictflow-mlflow-artifacts"
MODEL, EXPERIMENT = "churn-predictor", "churn-prediction"
MARKER, STATE = "predictflow.migrated_from", "predictflow.migration"
USERS = {"rita": "reader", "ed": "experimenter", "rel": "releaser"}


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
    postgres: str,
    s3,
    built_repo: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    import pickle

    import pandas as pd

    from predictflow.core.schema import FEATURES

    s3_env = {
        "MLFLOW_S3_ENDPOINT_URL": s3.endpoint,
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "PREDICTFLOW_INSECURE_NO_AUTH": "1",  # the single-user opt-out: no login needed
    }
    with team_server(tmp_path_factory.mktemp("server-s3"), **s3_env) as server:
        assert server.setup_seconds < HEALTH_TIMEOUT
        assert f"artifacts s3://{ARTIFACT_BUCKET}" in server.log.read_text()
        assert "authentication OFF" in server.log.read_text()
        repo = built_project_without_store(built_repo, tmp_path / "repo")
        # The pipeline as it is: only the environment points it at the server. The client gets
        # no S3 settings: the server proxies the artifacts.
        run(
            [sys.executable, "-m", "dvc", "repro", *TRACKED_STAGES],
            repo,
            MLFLOW_TRACKING_URI=server.uri,
        )

        store = client(server.uri)
        experiment = store.get_experiment_by_name("churn-prediction")
        (train_run,) = store.search_runs([experiment.experiment_id])
        assert train_run.info.status == "FINISHED"
        model_md5 = evidence.file_md5(repo / "models" / "model.pkl")
        assert train_run.data.tags["model_md5"] == model_md5

        version = store.get_model_version(MODEL, "1")
        head = git(repo, "rev-parse", "HEAD").stdout.strip()
        assert version.tags["data_md5"] == evidence.pinned_md5(repo / "data/customers.csv.dvc")
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

        doctor = run(
            [BIN / "predictflow", "doctor", "--json"], repo, check=False, **login(server.uri, None)
        )
        findings = {f["check"]: f for f in json.loads(doctor.stdout)["findings"]}
        assert doctor.returncode == 1
        assert findings["server auth"]["status"] == "problem"
        assert "without authentication" in findings["server auth"]["detail"]
        assert "make server" in findings["server auth"]["fix"]
        refused = run(
            [BIN / "predictflow", "access", "whoami"], repo, check=False, **login(server.uri, None)
        )
        assert_one_line_error(refused, server.uri, "without authentication", "make server")


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
    postgres: str,
    pipeline_repo: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
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

    # The server authenticates: the admin migrates (this process's clients and the children).
    workdir = tmp_path_factory.mktemp("server-local")
    with migrated_server(pipeline_repo, workdir, monkeypatch) as (server, first):
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
    from predictflow.ops import migrate, migrate_copy

    monkeypatch.chdir(tmp_path)  # a SQLite target keeps its artifacts in ./mlruns
    source_uri = f"sqlite:///{pipeline_repo / 'mlflow_data' / 'mlflow.db'}"
    target_uri = f"sqlite:///{tmp_path / 'target.db'}"
    source = client(source_uri)
    source_runs = source.search_runs(
        [source.get_experiment_by_name("churn-prediction").experiment_id]
    )
    source_versions = source.search_model_versions(f"name = '{MODEL}'")

    real_download = migrate_copy.Migration._download
    calls = []

    def dies_on_second_download(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 2:  # the first run's logged model is copied, its artifacts are not
            raise KeyboardInterrupt("interrupted")
        return real_download(self, *args, **kwargs)

    monkeypatch.setattr(migrate_copy.Migration, "_download", dies_on_second_download)
    with pytest.raises(KeyboardInterrupt):
        migrate.migrate(source_uri, target_uri)
    monkeypatch.setattr(migrate_copy.Migration, "_download", real_download)

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


# -- 3. who may do what: roles on a basic-auth server ------------------------------------------


# The pipeline's MLflow steps, forced: prepare and featurize never talk to MLflow, so they stay
# the built project's (a cold build here cost each server a minute more on 2 cores).
TRACKED_STAGES = ("-f", "-s", "train", "evaluate", "register")


def built_project_without_store(built_repo: Path, dest: Path) -> Path:
    """A copy of the session's built project with no tracking store of its own: what runs
    against a server is only the MLflow part of the pipeline (TRACKED_STAGES)."""
    repo = Path(shutil.copytree(built_repo, dest, symlinks=True))
    shutil.rmtree(repo / "mlflow_data")
    return repo


@contextmanager
def logged_in(user: str) -> Iterator[None]:
    """This process's MLflow clients send `user`'s credentials (MLflow reads the environment)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", user)
        patch.setenv("MLFLOW_TRACKING_PASSWORD", password(user))
        yield


@pytest.fixture(scope="module")
def team(
    postgres: str, built_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Team]:
    """One authenticated server for the module: three users, the first made with `predictflow
    access add` (the command, for real), the others by the same code in this process
    (teamserver.add_users), then the pipeline run with the experimenter's login."""
    workdir = tmp_path_factory.mktemp("server-auth")
    with team_server(workdir, PREDICTFLOW_ARTIFACTS=str(workdir / "artifacts")) as server:
        repo = built_project_without_store(built_repo, workdir / "repo")
        (first, role), *others = USERS.items()
        run(
            [BIN / "predictflow", "access", "add", first, "--role", role, "--password-stdin"],
            repo,
            stdin=password(first) + "\n",
            **login(server.uri, "admin"),
        )
        fast_logins(server, [first])
        add_users(server, dict(others))
        run(
            [sys.executable, "-m", "dvc", "repro", *TRACKED_STAGES], repo, **login(server.uri, "ed")
        )
        yield Team(server, repo, workdir)


def registry_state(uri: str) -> dict:
    """Everything a refused request must leave as it was: versions, their tags, stages, aliases."""
    with logged_in("admin"):
        store = client(uri)
        model = store.get_registered_model(MODEL)
        versions = store.search_model_versions(f"name = '{MODEL}'")
        return {
            "aliases": dict(model.aliases),
            "tags": dict(model.tags),
            "versions": sorted(
                (int(v.version), v.current_stage, sorted(v.tags.items())) for v in versions
            ),
        }


def test_an_experimenter_runs_the_pipeline_as_before(team: Team) -> None:
    with logged_in("admin"):
        store = client(team.server.uri)
        (train_run,) = store.search_runs(
            [store.get_experiment_by_name("churn-prediction").experiment_id]
        )
        version = store.get_model_version(MODEL, "1")
        staging = store.get_model_version_by_alias(MODEL, "staging")
    assert train_run.info.status == "FINISHED"
    assert version.tags["model_md5"] == evidence.file_md5(team.repo / "models" / "model.pkl")
    assert version.run_id == train_run.info.run_id
    assert str(staging.version) == "1"
    whoami = json.loads(team.predictflow("ed", "access", "whoami", "--json").stdout)
    assert whoami == {
        "server": team.server.uri,
        "user": "ed",
        "verified": True,
        "role": "experimenter",
    }


@pytest.fixture(scope="module")
def candidate(team: Team) -> str:
    """A second version (the admin registers v1's model again) that holds no alias. Its tags are
    v1's lineage, not v1's audit records: a copied record of a move it never made would tie with
    v1's own, and which one is "the latest" would depend on the order tests ran in."""
    with logged_in("admin"):
        store = client(team.server.uri)
        first = store.get_model_version(MODEL, "1")
        second = store.create_model_version(
            MODEL,
            first.source,
            first.run_id,
            tags={k: v for k, v in first.tags.items() if not k.startswith("promotion.")},
            await_creation_for=60,
            model_id=first.source.removeprefix("models:/"),
        )
    return str(second.version)


@pytest.mark.parametrize(
    ("user", "secret", "args", "fragments"),
    [
        (None, None, ("lineage",), ("HTTP 401", "without credentials", "MLFLOW_TRACKING_USERNAME")),
        ("ed", "not-the-password", ("promote", "{v}", "--to", "staging"), ("HTTP 401", "'ed'")),
        # The audit record is written before the alias moves, so that is the first refused write.
        ("rita", None, ("promote", "{v}", "--to", "staging"), ("HTTP 403", "'rita'", "set-tag")),
        ("rita", None, ("promote", "{v}", "--to", "production"), ("HTTP 403", "'rita'")),
        ("ed", None, ("promote", "{v}", "--to", "production"), ("HTTP 403", "'ed'", "releaser")),
        ("ed", None, ("access", "grant", "ed", "--role", "releaser"), ("HTTP 403", "'ed'")),
    ],
    ids=[
        "no-credentials",
        "wrong-password",
        "reader-promotes-staging",
        "reader-promotes-production",
        "experimenter-moves-production",
        "experimenter-grants-itself",
    ],
)
def test_a_refused_command_is_one_line_and_changes_nothing(
    team: Team,
    candidate: str,
    user: str | None,
    secret: str | None,
    args: tuple[str, ...],
    fragments: tuple[str, ...],
) -> None:
    before = registry_state(team.server.uri)
    argv = [a.replace("{v}", candidate) for a in args]
    result = team.predictflow(user, *argv, secret=secret)
    assert_one_line_error(result, team.server.uri, *fragments)
    assert registry_state(team.server.uri) == before
    if user:
        assert whoami_role(team, "admin", user) == USERS[user]  # nobody's role moved either


def whoami_role(team: Team, admin_user: str, user: str) -> str:
    from predictflow.lineage import access

    with logged_in(admin_user):
        return access.role_of(team.server.uri, user)


@pytest.mark.parametrize("action", ["register", "tag"])
def test_a_reader_cannot_register_or_tag(team: Team, candidate: str, action: str) -> None:
    from mlflow.exceptions import MlflowException

    before = registry_state(team.server.uri)
    with logged_in("rita"):
        store = client(team.server.uri)
        version = store.get_model_version(MODEL, candidate)  # reading is allowed
        with pytest.raises(MlflowException) as refused:
            if action == "register":
                store.create_model_version(
                    MODEL,
                    version.source,
                    version.run_id,
                    model_id=version.source.removeprefix("models:/"),
                )
            else:
                store.set_model_version_tag(MODEL, candidate, "model_md5", "forged")
    assert refused.value.get_http_status_code() == 403
    assert registry_state(team.server.uri) == before


def test_a_releaser_promotes_and_the_audit_names_the_login(team: Team) -> None:
    # The git identity is the caller's to type: it must not become the audit's `who`.
    git(team.repo, "config", "user.email", "somebody-else@example.com")
    result = team.predictflow("rel", "promote", "1", "--to", "production", "--reason", "go")
    assert result.returncode == 0, result.stderr
    with logged_in("admin"):
        version = client(team.server.uri).get_model_version(MODEL, "1")
    assert "production" in version.aliases
    events = [json.loads(v) for k, v in sorted(version.tags.items()) if k.startswith("promotion.")]
    (event,) = [e for e in events if e["to"] == "production"]
    assert (event["who"], event["who_verified"], event["to"]) == ("rel", "true", "production")
    assert event["status"] == "done"
    # `dvc repro`'s own staging move is audited too, under the login the server verified.
    assert [e["who_verified"] for e in events] == ["true"] * len(events)


LEDGER, MONITORING = "churn-predictor-releases", "churn-monitoring"


def _write(action: str, uri: str) -> None:
    """One write a role may or may not be allowed, done straight through MLflow's client (what
    a user with those credentials can do without predictflow), and undone when it is allowed."""
    store = client(uri)
    if action == "ledger-tag":
        store.set_registered_model_tag(LEDGER, "probe", "x")
        store.delete_registered_model_tag(LEDGER, "probe")
    elif action == "monitoring-run":
        experiment = store.get_experiment_by_name(MONITORING)
        run_ = store.create_run(experiment.experiment_id)
        with logged_in("admin"):  # deleting takes MANAGE, which no role has there
            client(uri).delete_run(run_.info.run_id)
    elif action == "create-monitoring":
        store.create_experiment(MONITORING)


@pytest.mark.parametrize(
    ("user", "action", "allowed"),
    [
        ("rita", "ledger-tag", False),
        ("rita", "monitoring-run", False),
        ("rita", "create-monitoring", False),  # it exists, made by the admin at set-up
        ("ed", "ledger-tag", False),
        ("ed", "monitoring-run", True),
        ("rel", "ledger-tag", True),
        ("rel", "monitoring-run", True),
    ],
)
def test_the_roles_on_the_ledger_and_the_monitoring_experiment(
    team: Team, user: str, action: str, allowed: bool
) -> None:
    """The server itself enforces who writes the release ledger and the monitoring runs: both
    were created by the admin when the users were added, so no reader or experimenter owns
    them (MLflow gives MANAGE to a resource's creator)."""
    from mlflow.exceptions import MlflowException

    with logged_in("admin"):
        owner = client(team.server.uri).get_experiment_by_name(MONITORING)
    assert owner is not None, "access add did not create the monitoring experiment"
    with logged_in(user):
        if allowed:
            _write(action, team.server.uri)
            return
        with pytest.raises(MlflowException) as refused:
            _write(action, team.server.uri)
    assert refused.value.get_http_status_code() in (400, 403)  # 400: it already exists


def _forge_production(team: Team, candidate: str) -> None:
    """What an experimenter can do with MLflow's own client: a promotion tag claiming a
    verified releaser, then production moved to the candidate."""
    forged = {
        "who": "rob",
        "who_verified": "true",
        "when": "2026-12-01T00:00:00.000000+00:00",
        "from": "staging",
        "to": "production",
        "holds": "production",
        "reason": "forged",
        "status": "done",
    }
    with logged_in("ed"):
        store = client(team.server.uri)
        store.set_model_version_tag(MODEL, candidate, "promotion.0099", json.dumps(forged))
        store.set_registered_model_alias(MODEL, "production", candidate)


def _swap_production_artifact(team: Team) -> tuple[str, bytes]:
    """An experimenter replaces production's model.pkl through the server's artifact proxy and
    re-tags the version's md5 to match; returns the version and the original bytes."""
    import hashlib
    import tempfile

    import mlflow
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    mlflow.set_tracking_uri(team.server.uri)  # mlflow-artifacts:/ URIs resolve against it
    with logged_in("ed"):
        store = client(team.server.uri)
        production = store.get_model_version_by_alias(MODEL, "production")
        logged = store.get_logged_model(production.source.removeprefix("models:/"))
        repo = get_artifact_repository(logged.artifact_location)
        with tempfile.TemporaryDirectory() as tmp:
            original = Path(repo.download_artifacts("model.pkl", tmp)).read_bytes()
            forged = Path(tmp) / "model.pkl"
            forged.write_bytes(b"not the model a releaser released")
            repo.log_artifact(str(forged))
        md5 = hashlib.md5(b"not the model a releaser released").hexdigest()
        store.set_model_version_tag(MODEL, production.version, "model_md5", md5)
    return str(production.version), original


def _release_finding(team: Team, user: str) -> dict:
    doctor = json.loads(team.predictflow(user, "doctor", "--json").stdout)["findings"]
    (found,) = [f for f in doctor if f["check"] == "release ledger"]
    return found


def test_an_experimenter_cannot_fake_a_release_or_swap_production(
    team: Team, candidate: str
) -> None:
    """Production was released by `rel` (the test above). An experimenter forges an audit tag and
    moves production through the REST API: doctor says so, no door loads it, and the releaser
    moves it back without a gate re-run. Then the experimenter replaces production's stored
    model and re-tags its md5: doctor and predict judge it against the ledger, not the tag."""
    batch = team.repo / "batch.csv"
    batch.write_text("".join((team.repo / "data/customers.csv").open().readlines()[:40]))
    scores = ("predict", "--model", f"models:/{MODEL}@production", "--input", str(batch))
    assert _release_finding(team, "ed")["status"] == "ok"

    _forge_production(team, candidate)
    found = _release_finding(team, "ed")
    assert found["status"] == "problem"
    assert f"production -> version {candidate}, but the last release" in found["detail"]
    refused = team.predictflow("ed", *scores, "--output", str(team.workdir / "a.csv"))
    assert_one_line_error(refused, "refusing to load production", "outside `predictflow promote`")
    again = team.predictflow("rel", "promote", candidate, "--to", "production")
    assert_one_line_error(again, "would ratify a move that passed no gate", "promote 1")
    back = team.predictflow("rel", "promote", "1", "--to", "production", "--reason", "restore")
    assert back.returncode == 0, back.stderr
    assert "last release a releaser recorded" in back.stdout
    assert _release_finding(team, "ed")["status"] == "ok"

    version, original = _swap_production_artifact(team)
    try:
        found = _release_finding(team, "rita")
        assert found["status"] == "problem"
        assert "its model_md5 tag" in found["detail"] or "artifact was replaced" in found["detail"]
        refused = team.predictflow("ed", *scores, "--output", str(team.workdir / "b.csv"))
        assert_one_line_error(refused, f"version {version}: its model_md5 tag is", "release")
        assert not (team.workdir / "b.csv").exists()
    finally:  # put the released bytes and tag back for the tests after this one
        import tempfile

        import mlflow
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        mlflow.set_tracking_uri(team.server.uri)
        with logged_in("admin"), tempfile.TemporaryDirectory() as tmp:
            store = client(team.server.uri)
            production = store.get_model_version_by_alias(MODEL, "production")
            logged = store.get_logged_model(production.source.removeprefix("models:/"))
            (Path(tmp) / "model.pkl").write_bytes(original)
            get_artifact_repository(logged.artifact_location).log_artifact(
                str(Path(tmp) / "model.pkl")
            )
            store.set_model_version_tag(
                MODEL, version, "model_md5", evidence.file_md5(Path(tmp) / "model.pkl")
            )
    assert _release_finding(team, "ed")["status"] == "ok"


def test_two_promotions_at_once_one_wins_and_the_trail_agrees(team: Team, candidate: str) -> None:
    """Two logins promote two versions to staging at the same moment: the
    server's lock lets exactly one move the alias (or both, one after the other, if the second
    read staging after the first moved it), the other says why in one line, and the audit
    trail always names the version staging holds (twice: a race is not decided once)."""
    import subprocess

    from predictflow.lineage import registry
    from predictflow.lineage.names import MODEL_NAME

    with logged_in("admin"):
        store = client(team.server.uri)
        first = store.get_model_version(MODEL, "1")
        lineage_tags = {k: v for k, v in first.tags.items() if not k.startswith("promotion.")}
        other = store.create_model_version(
            MODEL, first.source, first.run_id, tags=lineage_tags, await_creation_for=60,
            model_id=first.source.removeprefix("models:/"),
        ).version  # fmt: skip
    for _ in range(2):
        racers = [
            subprocess.Popen(
                [str(BIN / "predictflow"), "promote", str(number), "--to", "staging"],
                cwd=team.repo,
                env=child_env(**login(team.server.uri, user)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for user, number in (("rel", candidate), ("ed", other))
        ]
        results = [Result(p.wait(timeout=300), *p.communicate()) for p in racers]
        won = [r for r in results if r.returncode == 0]
        assert won, [r.stderr for r in results]
        for lost in (r for r in results if r.returncode != 0):
            assert_one_line_error(lost, "staging moved to version", "run the promotion again")
        with logged_in("admin"):
            store = client(team.server.uri)
            holder = str(store.get_model_version_by_alias(MODEL, "staging").version)
            assert registry.audit_gaps(store) == []
            latest = registry.latest_move(store, "staging", holder)
            assert latest is not None and latest.version == holder and latest.status == "done"
            names = [m.name for m in store.search_registered_models()]
            assert not [n for n in names if n.startswith(f"{MODEL_NAME}-lock-")]
        # next round: staging back on version 1, so both candidates are challengers again
        assert team.predictflow("rel", "promote", "1", "--to", "staging").returncode == 0


def test_no_password_is_stored_anywhere(team: Team) -> None:
    import tempfile

    # Exercise what writes: a report as the releaser, a doctor run, then look everywhere.
    report = team.workdir / "report.html"
    assert team.predictflow("rel", "report", "--output", str(report)).returncode == 0
    team.predictflow("rel", "doctor")
    conn = admin()
    leaks = []
    try:
        for database in (team.server.database, f"{team.server.database}_auth"):
            import psycopg2

            with psycopg2.connect(f"{POSTGRES}/{database}") as db, db.cursor() as cur:
                cur.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                )
                for (table,) in cur.fetchall():
                    cur.execute(f'SELECT t::text FROM "{table}" t')
                    leaks += [f"{database}.{table}" for (row,) in cur.fetchall() if SENTINEL in row]
    finally:
        conn.close()
    files = [p for p in team.workdir.rglob("*") if p.is_file()]
    files += list(Path(tempfile.gettempdir()).glob("predictflow-server-*/*"))  # the auth config
    assert report in files and team.server.log in files
    assert any("artifacts" in p.parts for p in files)
    leaks += [str(p) for p in files if SENTINEL.encode() in p.read_bytes()]
    assert not leaks


# -- 4. starting it: auth on by default, the opt-out stays on loopback ------------------------

SERVER_SCRIPT = REPO / "scripts" / "mlflow_server.py"


def test_make_server_without_an_admin_password_says_how_to_set_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    assert not (REPO / ".env").exists()  # the git-ignored file would supply it
    result = run([sys.executable, SERVER_SCRIPT], tmp_path, check=False, PORT=str(free_port()))
    assert_one_line_error(
        result,
        "no admin password",
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        ".env",
        "PREDICTFLOW_INSECURE_NO_AUTH=1",
        prefix="mlflow-server",
    )


def test_the_opt_out_serves_loopback_only(tmp_path: Path) -> None:
    insecure = {"PREDICTFLOW_INSECURE_NO_AUTH": "1"}
    shown = run([sys.executable, SERVER_SCRIPT, "--print"], tmp_path, **insecure).stdout
    assert "--app-name" not in shown and "--host 127.0.0.1" in shown
    secure = run(
        [sys.executable, SERVER_SCRIPT, "--print"], tmp_path, MLFLOW_AUTH_ADMIN_PASSWORD="x" * 12
    ).stdout
    assert "--app-name basic-auth" in secure
    result = run(
        [sys.executable, SERVER_SCRIPT],
        tmp_path,
        check=False,
        PREDICTFLOW_SERVER_HOST="0.0.0.0",
        **insecure,
    )
    assert_one_line_error(
        result, "PREDICTFLOW_SERVER_HOST=0.0.0.0", "open registry", prefix="mlflow-server"
    )


@pytest.mark.parametrize(
    ("uri", "env", "status"),
    [
        ("http://10.1.2.3:5001", {"MLFLOW_TRACKING_PASSWORD": "p"}, "problem"),
        ("http://mlflow.example.com", {"MLFLOW_TRACKING_TOKEN": "t"}, "problem"),
        ("https://mlflow.example.com", {"MLFLOW_TRACKING_PASSWORD": "p"}, "ok"),
        ("http://127.0.0.1:5001", {"MLFLOW_TRACKING_PASSWORD": "p"}, "ok"),
        ("http://10.1.2.3:5001", {}, "ok"),
    ],
)
def test_doctor_flags_credentials_over_plain_http(uri: str, env: dict, status: str) -> None:
    from predictflow.ops.doctor_store import check_credentials_transport

    finding = check_credentials_transport(uri, env)
    assert finding.status == status
    if status == "problem":
        assert "clear text" in finding.detail and "https://" in finding.fix


@pytest.mark.parametrize(
    ("user", "secret", "fragments"),
    [
        ("rita", None, ("HTTP 403", "'rita'", "runs/create")),
        ("ed", "not-the-password", ("HTTP 401", "'ed'")),
    ],
    ids=["reader-logs-a-run", "wrong-password"],
)
def test_a_stage_refused_by_the_server_is_one_line(
    team: Team, user: str, secret: str | None, fragments: tuple[str, ...]
) -> None:
    def runs() -> int:
        with logged_in("admin"):
            store = client(team.server.uri)
            return len(store.search_runs([store.get_experiment_by_name(EXPERIMENT).experiment_id]))

    before = runs()
    result = run(
        [sys.executable, "stages/train.py"],
        team.repo,
        check=False,
        **login(team.server.uri, user, secret),
    )
    stage_error_line(result, "train", team.server.uri, *fragments)
    assert runs() == before


def test_access_on_the_local_store_says_where_roles_live(tmp_path: Path) -> None:
    result = run([BIN / "predictflow", "access", "whoami"], tmp_path, check=False)
    assert_one_line_error(result, "is a local store", "MLFLOW_TRACKING_URI")
