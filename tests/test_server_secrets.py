"""Secrets and refusals on the real team server (scripts/mlflow_server.py over PostgreSQL).

1. `make server` puts no password in any process's argv (the database URI given with one), and
   its auth config is a 0600 file in a 0700 folder that is gone after every way it stops.
2. A password in MLFLOW_TRACKING_URI or MLFLOW_TRACKING_PASSWORD is in no output of the
   commands that talk to the server, whether it refuses them or does not answer.
3. `access add` with a blank user or password and `access grant` of an unknown user: one line
   each, nothing created.
4. `evaluate-batch` refused for a reader records nothing; `--json` on `evaluate-batch` and
   `drift` against the server is JSON and nothing else.

Without PostgreSQL on 127.0.0.1:5432 these tests skip (fail under PREDICTFLOW_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .conftest import BIN, REPO, assert_one_line_error, child_env, free_port, run
from .teamserver import (
    SENTINEL,
    Team,
    add_users,
    admin,
    login,
    password,
    team_server,
    user_exists,
)

pytestmark = pytest.mark.services

MODEL = "churn-predictor"
STAGING = f"models:/{MODEL}@staging"
USERS = {"rita": "reader", "ed": "experimenter"}


def group_cmdlines(leader: int) -> dict[int, str]:
    """argv of every live process in the process group `leader` leads (what `ps` shows)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != leader:
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue
    return found


def private_folders(tmpdir: Path) -> list[Path]:
    return sorted(tmpdir.glob("predictflow-server-*"))


def assert_private_config(tmpdir: Path) -> Path:
    """One folder of the launcher's, 0700, holding the auth config, 0600; returns the config."""
    (folder,) = private_folders(tmpdir)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    (config,) = folder.iterdir()
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "database_uri" in config.read_text()
    return config


@pytest.fixture(scope="module")
def team(
    postgres: str, built_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Team]:
    """One server whose database URI holds a password; a reader and an experimenter; the
    pipeline's MLflow stages run as the experimenter (version 1 holds staging)."""
    workdir = tmp_path_factory.mktemp("server-secrets")
    tmpdir = workdir / "tmp"
    tmpdir.mkdir()
    with team_server(
        workdir,
        db_password=password("db"),
        TMPDIR=str(tmpdir),
        PREDICTFLOW_ARTIFACTS=str(workdir / "artifacts"),
    ) as server:
        repo = Path(shutil.copytree(built_repo, workdir / "repo", symlinks=True))
        shutil.rmtree(repo / "mlflow_data")
        add_users(server, USERS)  # what `access add` does, in this process (test_team_server
        # runs the command itself)
        run(
            [sys.executable, "-m", "dvc", "repro", "-f", "-s", "train", "evaluate", "register"],
            repo,
            **login(server.uri, "ed"),
        )
        yield Team(server, repo, workdir)
    assert private_folders(tmpdir) == []  # stopped by SIGTERM to its group


# -- 1. make server --------------------------------------------------------------------------


def test_no_password_in_any_argv_and_the_auth_config_is_private(team: Team) -> None:
    leader = team.server.process.pid
    cmdlines = group_cmdlines(leader)
    assert leader in cmdlines and len(cmdlines) >= 3, cmdlines  # launcher, mlflow, a worker
    assert any("uvicorn" in c or "mlflow" in c for p, c in cmdlines.items() if p != leader)
    for pid, cmdline in cmdlines.items():
        assert SENTINEL not in cmdline, (pid, cmdline)
        assert "postgresql" not in cmdline, (pid, cmdline)
    assert SENTINEL not in team.server.log.read_text()
    assert password("db") in assert_private_config(team.tmpdir).read_text()


def _taken_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.mark.parametrize("how", ["sigint", "server-fails"])
def test_the_auth_config_is_gone_however_the_server_stops(
    postgres: str, tmp_path: Path, how: str
) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    if how == "sigint":  # Ctrl-C in `make server`
        with team_server(tmp_path, db_password=password("db"), TMPDIR=str(tmpdir)) as server:
            assert_private_config(tmpdir)
            os.kill(server.process.pid, signal.SIGINT)
            assert server.process.wait(timeout=20) != 0
    else:  # mlflow exits by itself: its port is taken
        database = f"predictflow_test_{uuid.uuid4().hex[:10]}"
        try:
            with _taken_port() as sock:
                env = child_env(
                    PORT=str(sock.getsockname()[1]),
                    TMPDIR=str(tmpdir),
                    PREDICTFLOW_DB_URI=f"{postgres}/{database}",
                    MLFLOW_AUTH_ADMIN_PASSWORD=password("admin"),
                    PREDICTFLOW_ARTIFACTS=str(tmp_path / "artifacts"),
                    WORKERS="1",
                )
                failed = subprocess.run(
                    [sys.executable, REPO / "scripts" / "mlflow_server.py"],
                    cwd=tmp_path,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
        finally:
            conn = admin()
            with conn.cursor() as cur:
                for name in (database, f"{database}_auth"):
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.close()
        # It got as far as starting mlflow, which gave up on the port (and exits 0 for that).
        assert "mlflow-server: http://" in failed.stdout, failed.stderr
        assert "address already in use" in failed.stderr, failed.stderr
    assert private_folders(tmpdir) == []


# -- 2. no password in what the commands print ------------------------------------------------


def _with_userinfo(uri: str, user: str, secret: str) -> str:
    return uri.replace("://", f"://{user}:{secret}@", 1)


COMMANDS = [
    ("lineage",),
    ("promote", "1", "--to", "production"),
    ("predict", "--model", STAGING, "--input", "batch.csv", "--output", "out.csv"),
    ("drift", "--input", "batch.csv", "--model", STAGING, "--json"),
    ("doctor",),
    ("access", "whoami"),
]


@pytest.mark.parametrize("where", ["refusing", "unreachable"])
def test_no_password_in_what_commands_print(team: Team, where: str) -> None:
    """The password rides in the URI and in MLFLOW_TRACKING_PASSWORD, and it is wrong: the
    server refuses every request (401), or nothing listens on the port."""
    secret = f"{SENTINEL}-wrong"
    base = team.server.uri if where == "refusing" else f"http://127.0.0.1:{free_port()}"
    uri = _with_userinfo(base, "ed", secret)
    shutil.copy(team.repo / "data" / "customers.csv", team.repo / "batch.csv")
    failed = 0
    for args in COMMANDS:
        result = run(
            [BIN / "predictflow", *args],
            team.repo,
            check=False,
            MLFLOW_TRACKING_URI=uri,
            MLFLOW_TRACKING_USERNAME="ed",
            MLFLOW_TRACKING_PASSWORD=secret,
        )
        shown = result.stdout + result.stderr
        assert SENTINEL not in shown, (args, shown)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        failed += result.returncode != 0
    assert failed == len(COMMANDS)  # each was refused or found nobody: none quietly passed


# -- 3. access add / grant --------------------------------------------------------------------


def _user_exists(team: Team, user: str) -> bool:
    """Asked in this process (the admin's AuthServiceClient), not by a python child per check."""
    return user_exists(team.server, user)


@pytest.mark.parametrize(
    ("args", "stdin", "fragments"),
    [
        (("add", "", "--role", "reader"), "pw-long-enough\n", ("user name ''",)),
        (("add", "  ", "--role", "reader"), "pw-long-enough\n", ("user name '  '",)),
        (("add", "ann:x", "--role", "reader"), "pw-long-enough\n", ("no colon",)),
        (("add", "ann", "--role", "reader"), "\n", ("password", "empty", "'ann'")),
        (("add", "ann", "--role", "reader"), "", ("password", "empty")),
        (("grant", "nobody", "--role", "releaser"), None, ("no user 'nobody'", "access add")),
    ],
    ids=["empty-user", "blank-user", "colon-user", "empty-password", "no-stdin", "unknown-user"],
)
def test_access_mistakes_are_one_line_and_create_nothing(
    team: Team, args: tuple[str, ...], stdin: str | None, fragments: tuple[str, ...]
) -> None:
    extra = ("--password-stdin",) if args[0] == "add" else ()
    result = team.predictflow("admin", "access", *args, *extra, stdin=stdin)
    assert_one_line_error(result, *fragments)
    assert not _user_exists(team, args[1])
    assert _user_exists(team, "rita")  # the check itself can see a user


# -- 4. evaluate-batch and --json -------------------------------------------------------------


@contextmanager
def as_admin(team: Team) -> Iterator[object]:
    """This process's MLflow clients on the server, logged in as the admin."""
    from mlflow import MlflowClient

    with pytest.MonkeyPatch.context() as patch:
        for key, value in login(team.server.uri, "admin").items():
            patch.setenv(key, value)
        yield MlflowClient(tracking_uri=team.server.uri, registry_uri=team.server.uri)


def _monitoring(team: Team) -> tuple[list[str], dict[str, str]]:
    """Run ids in churn-monitoring and version 1's tags, as the admin sees them."""
    with as_admin(team) as client:
        experiment = client.get_experiment_by_name("churn-monitoring")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        return sorted(r.info.run_id for r in runs), client.get_model_version(MODEL, "1").tags


def test_evaluate_batch_refused_records_nothing_and_json_is_pure(team: Team) -> None:
    from predictflow.lineage import access

    batch = team.repo / "batch200.csv"
    lines = (team.repo / "data" / "customers.csv").read_text().splitlines(keepends=True)
    batch.write_text("".join(lines[:201]))
    scored = team.repo / "scores.csv"
    team_scored = team.predictflow(
        "ed", "predict", "--model", STAGING, "--input", batch.name, "--output", scored.name
    )
    assert team_scored.returncode == 0, team_scored.stderr
    before = _monitoring(team)

    refused = team.predictflow("rita", "evaluate-batch", "--input", scored.name, "--json")
    assert_one_line_error(refused, "'rita'", "403")
    assert refused.stdout == "" and _monitoring(team) == before
    # A reader who may log runs in churn-monitoring (it created the experiment before set-up
    # did, or was granted EDIT there) but not tag the model: the run would be logged, then the
    # version tag refused. Asked first, nothing is recorded.
    with as_admin(team) as client:
        monitoring = client.get_experiment_by_name("churn-monitoring").experiment_id
        admin_api = access._admin_client(team.server.uri)
        access._set_permission(admin_api, "rita", "experiment", monitoring, "EDIT")
    refused = team.predictflow("rita", "evaluate-batch", "--input", scored.name, "--json")
    assert_one_line_error(refused, "'rita'", "403", f"registered model '{MODEL}'", "nothing")
    assert refused.stdout == "" and _monitoring(team) == before

    done = team.predictflow("ed", "evaluate-batch", "--input", scored.name, "--json")
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)  # the whole of stdout: no "View run" line before it
    runs, tags = _monitoring(team)
    assert set(facts["run_ids"].values()) <= set(runs) and len(runs) == len(before[0]) + 1
    assert f"realized.{facts['cohort']}" in tags

    drift = team.predictflow("ed", "drift", "--input", batch.name, "--model", STAGING, "--json")
    assert drift.returncode in (0, 3), drift.stderr
    assert "run_id" in json.loads(drift.stdout)
