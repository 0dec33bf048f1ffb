"""The read path without MLflow (`registry_read`): the same facts as `MlflowClient` gives, field by
field, from the project's SQLite store and from a real team server, and `predictflow lineage`
importing neither MLflow, pandas nor DVC."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import sqlite3
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from predictflow.base.errors import RegistryError
from predictflow.lineage import provenance, registry_read, store_rest, store_sql
from predictflow.lineage.store_client import ClientReader
from predictflow.lineage.store_rest import RestReader
from predictflow.lineage.store_sql import SqliteReader

from .conftest import (
    BIN,
    assert_one_line_error,
    copy_built_repo,
    migrated_server,
    predictflow,
    repo_client,
    run,
)

MODEL = "churn-predictor"
# Every way a user names a version, the ones that resolve and the ones that do not.
REFS = (
    None,
    "1",
    "2",
    "3",
    "9",
    "models:/churn-predictor@staging",
    "models:/churn-predictor@production",
    "models:/churn-predictor@latest",
    "models:/churn-predictor@nope",
    "models:/churn-predictor/Production",
    "models:/churn-predictor/staging",
    "models:/churn-predictor/Archived",
    "models:/churn-predictor/None",
    "models:/churn-predictor/Bogus",
    "models:/other-model/1",
    "models:/other-model@staging",
    "models:/other-model/Production",
)


def test_schema_revision_is_the_pinned_mlflow_migrations_head() -> None:
    """The SQL is written for one schema: a new MLflow must move the constant deliberately."""
    import os

    import mlflow.store.db_migrations as migrations
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", os.path.dirname(migrations.__file__))
    assert ScriptDirectory.from_config(config).get_heads() == [store_sql.SCHEMA_REVISION]


def populate(client) -> None:
    """Beside the built repo's version 1 (staging): version 2 (production and a second alias,
    an audit event, an extra tag) and version 3, archived, whose run is gone."""
    v1 = client.get_model_version(MODEL, "1")
    client.create_model_version(MODEL, v1.source, v1.run_id, tags={"model_md5": "0" * 32})
    client.create_model_version(MODEL, v1.source, "f" * 32)
    client.set_registered_model_alias(MODEL, "production", "2")
    client.set_registered_model_alias(MODEL, "extra", "2")
    client.set_model_version_tag(
        MODEL,
        "2",
        "promotion.0001",
        json.dumps(
            {
                "who": "ann",
                "when": "2026-01-01T00:00:00+00:00",
                "from": "none",
                "to": "production",
                "reason": "test",
                "status": "done",
            }
        ),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(MODEL, "2", "Production")
        client.transition_model_version_stage(MODEL, "3", "Archived")


def outcome(reader, ref: str | None, workspace: Path) -> object:
    """The facts `lineage` shows for `ref`, or the one line it would fail with."""
    try:
        return provenance.facts(reader, registry_read.resolve(reader, ref, MODEL), workspace)
    except RegistryError as err:
        return f"error: {err}"


def same(left: object, right: object) -> bool:
    """Equal, NaN included (a NaN metric equals a NaN metric here)."""
    if isinstance(left, float) and isinstance(right, float) and math.isnan(left):
        return math.isnan(right)
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    return left == right


def assert_same_facts(fast, reference, workspace: Path) -> None:
    for ref in REFS:
        expected, got = outcome(reference, ref, workspace), outcome(fast, ref, workspace)
        assert same(got, expected), f"{ref}: {got} != {expected}"
        if isinstance(expected, dict):  # field by field, so a failure names the field
            for key in expected:
                assert same(got[key], expected[key]), f"{ref}: {key}"


@pytest.fixture(scope="module")
def store_repo(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import mlflow

    repo = copy_built_repo(built_repo, tmp_path_factory.mktemp("read") / "repo")
    # The default store too: MLflow looks a `models:/m-...` source up through it (conftest's
    # mlflow_uris_restored puts the previous default back after this module).
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow_data' / 'mlflow.db'}")
    populate(repo_client(repo))
    return repo


def test_sqlite_reader_gives_the_client_facts(store_repo: Path) -> None:
    db = store_repo / "mlflow_data" / "mlflow.db"
    with sqlite3.connect(db) as conn:  # one NaN metric: MLflow stores it as a flag
        run_id = conn.execute("SELECT run_id FROM model_versions WHERE version = 1").fetchone()[0]
        conn.execute(
            "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
            " VALUES ('nan_metric', 0, 0, 0, 1, ?)",
            (run_id,),
        )
    conn.close()
    fast = SqliteReader.open(db, timeout=5)
    assert fast is not None
    assert_same_facts(fast, ClientReader(repo_client(store_repo)), store_repo)
    view = outcome(fast, "2", store_repo)
    assert view["aliases"] == ["extra", "production"] and view["stages"]
    assert view["promotions"][0]["who"] == "ann"
    assert outcome(fast, "3", store_repo)["run"]["status"] == "MISSING"


def test_registry_resolve_parses_and_fails_as_the_reader_does(store_repo: Path) -> None:
    """`registry.resolve` (commands that hold an MlflowClient) takes every ref the way
    `registry_read.resolve` does: the same version, or the same one line."""
    from predictflow.lineage import registry

    def found(resolve, source, ref: str | None) -> str:
        try:
            return f"version {resolve(source, ref).version}"
        except RegistryError as err:
            return f"error: {err}"

    client = repo_client(store_repo)
    for ref in (*REFS, "models:/", "models:/churn-predictor@", "models:/churn-predictor/"):
        expected = found(
            lambda reader, r: registry_read.resolve(reader, r, MODEL), ClientReader(client), ref
        )
        assert found(registry.resolve, client, ref) == expected, ref
    assert found(registry.resolve, client, "models:/") == (
        "error: model URI 'models:/': expected models:/NAME@ALIAS, models:/NAME/N, "
        "models:/NAME/latest or models:/m-<id>"
    )


@pytest.fixture
def altered_store(store_repo: Path, tmp_path: Path) -> Callable[[str], Path]:
    """`altered_store(sql)`: a copy of the store in `tmp_path` with `sql` run on it."""

    def alter(sql: str) -> Path:
        db = tmp_path / "mlflow.db"
        shutil.copyfile(store_repo / "mlflow_data" / "mlflow.db", db)
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:  # commit, then close
            conn.execute(sql)
        return db

    return alter


def test_another_schema_revision_falls_back_to_mlflow(altered_store: Callable[[str], Path]) -> None:
    db = altered_store("UPDATE alembic_version SET version_num = 'somewhere-else'")
    assert SqliteReader.open(db, timeout=5) is None


def test_a_store_missing_a_table_is_one_line(
    store_repo: Path, altered_store: Callable[[str], Path]
) -> None:
    """The right revision, yet a table gone (a hand-edited store): one line, no traceback."""
    db = altered_store("DROP TABLE model_version_tags")
    result = run(
        [BIN / "predictflow", "lineage"],
        store_repo,
        check=False,
        MLFLOW_TRACKING_URI=f"sqlite:///{db}",
    )
    assert_one_line_error(result, f"sqlite:///{db}", "model_version_tags", "predictflow doctor")


CHECK_IMPORTS = """
import json, sqlite3, sys
opened, connect = [], sqlite3.connect
def counted(database, *args, **kwargs):
    opened.append(str(database))
    return connect(database, *args, **kwargs)
sqlite3.connect = counted
from predictflow.cli import cli
try:
    cli.main(["lineage", "--json"], standalone_mode=False)
finally:
    heavy = ["mlflow", "pandas", "dvc", "dvc.repo", "sqlalchemy", "sklearn"]
    loaded = [m for m in heavy if m in sys.modules]
    print(json.dumps({"loaded": loaded, "opened": opened}), file=sys.stderr)
"""


def test_lineage_imports_no_mlflow_pandas_or_dvc_and_opens_the_store_once(
    store_repo: Path,
) -> None:
    result = run([sys.executable, "-c", CHECK_IMPORTS], store_repo)
    seen = json.loads(result.stderr.strip().splitlines()[-1])
    assert seen["loaded"] == []
    assert len(seen["opened"]) == 1 and seen["opened"][0].endswith("mlflow_data/mlflow.db?mode=ro")
    assert json.loads(result.stdout)["version"] == 3
    shown = json.loads(
        predictflow(store_repo, "lineage", "models:/churn-predictor@production", "--json").stdout
    )
    assert shown["version"] == 2 and shown["stage"] == "Production"


def test_a_missing_store_gives_one_line_and_creates_nothing(tmp_path: Path) -> None:
    store = tmp_path / "nowhere" / "mlflow.db"
    result = run(
        [BIN / "predictflow", "lineage"],
        tmp_path,
        check=False,
        MLFLOW_TRACKING_URI=f"sqlite:///{store}",
    )
    assert result.returncode == 1
    assert_one_line_error(result, f"no registered version of {MODEL!r} yet", "make repro")
    assert not store.parent.exists() and not (tmp_path / "mlflow_data").exists()


@pytest.mark.services
@pytest.mark.usefixtures("postgres")
def test_rest_reader_gives_the_client_facts_on_a_team_server(
    store_repo: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow import MlflowClient

    from predictflow.lineage import access

    workdir = tmp_path_factory.mktemp("read-server")
    with migrated_server(store_repo, workdir, monkeypatch) as (server, _):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        client = MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)
        # the migration copies versions 1 and 2's aliases; the server's own moves on top
        client.set_registered_model_alias(MODEL, "extra", "2")
        client.set_model_version_tag(MODEL, "1", "note", "on the server")
        fast = RestReader(server.uri, store_rest.session_for())
        fast.check_credentials()
        assert_same_facts(fast, ClientReader(client), store_repo)
        view = outcome(fast, "models:/churn-predictor@extra", store_repo)
        assert view["version"] == 2 and view["stages"]  # the lock, read through the server

        # a refused login: the same one line as the MLflow path gives
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
        with pytest.raises(access.AccessError) as by_mlflow:
            access.check_credentials(server.uri)
        with pytest.raises(access.AccessError) as by_rest:
            RestReader(server.uri, store_rest.session_for()).check_credentials()
        assert str(by_rest.value) == str(by_mlflow.value)
        refused = run(
            [BIN / "predictflow", "lineage"],
            store_repo,
            check=False,
            MLFLOW_TRACKING_URI=server.uri,
            MLFLOW_TRACKING_USERNAME="admin",
            MLFLOW_TRACKING_PASSWORD="wrong",
        )
        assert_one_line_error(refused, "HTTP 401", "refused")


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("models:/churn-predictor/3", ("churn-predictor", "3")),
        ("models:/churn-predictor@production", ("churn-predictor", "@production")),
        ("models:/churn-predictor/Production", ("churn-predictor", "Production")),
        ("models:/churn-predictor/latest", ("churn-predictor", None)),  # MLflow's newest
        ("models:/churn-predictor/LATEST", ("churn-predictor", None)),
        (f"models:/m-{'a1' * 16}", (None, f"m-{'a1' * 16}")),  # a logged model
        ("3", ("churn-predictor", "3")),
        (None, ("churn-predictor", None)),
    ],
)
def test_every_model_uri_form_the_readme_promises_parses(ref, expected) -> None:
    from predictflow.base.refs import parse_ref

    assert parse_ref(ref, "churn-predictor") == expected


@pytest.mark.parametrize("ref", ["models:/", "models:/churn-predictor", "models:/m-123"])
def test_a_model_uri_without_a_version_names_the_forms(ref) -> None:
    from predictflow.base.errors import RegistryError
    from predictflow.base.refs import parse_ref

    with pytest.raises(RegistryError, match="models:/NAME/latest or models:/m-<id>"):
        parse_ref(ref, "churn-predictor")
