"""The team tracking server for tests: `mlflow server` over PostgreSQL, started the way `make
server` starts it (scripts/mlflow_server.py), each time on a fresh database dropped afterwards.

Used by tests/test_team_server.py and, through `conftest.migrated_server`, by every test that
needs a migrated, authenticated server. Without PostgreSQL on 127.0.0.1:5432 they skip (fail
under PREDICTFLOW_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .conftest import BIN, REPO, Result, child_env, free_port, run, stop_process_group
from .s3server import unavailable

POSTGRES = os.environ.get("PREDICTFLOW_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432")
HEALTH_TIMEOUT = 120.0
# Every password of this run contains it: grep for it where no credential may end up.
SENTINEL = f"sentinel-{uuid.uuid4().hex}"


def password(user: str) -> str:
    return f"{SENTINEL}-{user}"


def login(uri: str, user: str | None, secret: str | None = None) -> dict[str, str]:
    """Environment for a child that talks to `uri` as `user` (no user: no credentials)."""
    env = {"MLFLOW_TRACKING_URI": uri}
    if user:
        env |= {
            "MLFLOW_TRACKING_USERNAME": user,
            "MLFLOW_TRACKING_PASSWORD": secret or password(user),
        }
    return env


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


@dataclass
class Server:
    uri: str
    database: str
    setup_seconds: float
    log: Path
    process: subprocess.Popen | None = None  # the launcher, leader of the server's group


def with_password(uri: str, secret: str | None) -> str:
    """`uri` with `secret` as its password (the test PostgreSQL trusts 127.0.0.1 and ignores
    it: it is only there to be looked for)."""
    if not secret:
        return uri
    parts = urlsplit(uri)
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{parts.username}:{secret}@{parts.hostname}{port}").geturl()


@contextmanager
def team_server(workdir: Path, db_password: str | None = None, **env: str) -> Iterator[Server]:
    """scripts/mlflow_server.py on a free port over a new database; both gone afterwards."""
    database = f"predictflow_test_{uuid.uuid4().hex[:10]}"
    port = free_port()
    log = workdir / "mlflow-server.log"
    settings = {
        "PORT": str(port),
        "PREDICTFLOW_DB_URI": f"{with_password(POSTGRES, db_password)}/{database}",
        "WORKERS": "1",
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": password("admin"),
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
        server = Server(uri, database, setup, log, process)
        admin_user = settings["MLFLOW_AUTH_ADMIN_USERNAME"]
        if not settings.get("PREDICTFLOW_INSECURE_NO_AUTH") and settings.get(
            "MLFLOW_AUTH_ADMIN_PASSWORD"
        ) == password(admin_user):
            fast_logins(server, [admin_user])  # the admin the server created at its start
        yield server
    finally:
        stop_process_group(process)
        conn = admin()
        with conn.cursor() as cur:
            for name in (database, f"{database}_auth"):  # the store and its users
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


# A single-iteration PBKDF2: what `fast_logins` stores for the test users (see there).
FAST_HASH = "pbkdf2:sha256:1"


def fast_logins(server: Server, users: Iterable[str]) -> None:
    """Re-store `users`' password hashes (their `password(user)`) on `server` as FAST_HASH.

    Why: MLflow's basic auth checks the password hash (werkzeug's scrypt, ~0.1 s of CPU on
    purpose) on EVERY request (its credential cache is off), and the tests make hundreds of
    requests per file on 2 cores: that alone was minutes per file. werkzeug's check_password_hash
    reads the method from the stored hash, so the same password still logs in and a wrong one
    is still refused (401); only the cost of each check changes. Test logins only, written
    straight into the auth database (`<store db>_auth`, table `users`): nothing the tests assert
    is about how the server hashes passwords, and the hash holds no password either.
    """
    import psycopg2
    from werkzeug.security import generate_password_hash

    db = psycopg2.connect(f"{POSTGRES}/{server.database}_auth", connect_timeout=5)
    try:
        with db, db.cursor() as cur:
            for user in users:
                cur.execute(
                    "UPDATE users SET password_hash = %s WHERE username = %s",
                    (generate_password_hash(password(user), method=FAST_HASH), user),
                )
                assert cur.rowcount == 1, f"no user {user!r} on {server.uri} to re-hash"
    finally:
        db.close()


def add_users(server: Server, users: Mapping[str, str]) -> None:
    """Create each `user: role` on `server` with password(user), the way `predictflow access
    add USER --role ROLE` does (predictflow.lineage.access.add_user, the admin's REST client),
    but in this process: one loop instead of one CLI child per user, each of which paid
    predictflow's and MLflow's imports. Then `fast_logins` for them."""
    from predictflow.lineage import access

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        patch.setenv("MLFLOW_TRACKING_PASSWORD", password("admin"))
        for user, role in users.items():
            access.add_user(server.uri, user, password(user), role)
    fast_logins(server, users)


def user_exists(server: Server, user: str) -> bool:
    """Whether `server` has the login `user`, asked in this process as the admin (MLflow's
    AuthServiceClient.get_user, what `access grant` asks before granting). Any error counts as
    no such user, so a caller pairs it with a check on a user that exists."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        patch.setenv("MLFLOW_TRACKING_PASSWORD", password("admin"))
        try:
            AuthServiceClient(server.uri).get_user(user)
        except MlflowException:  # as the child this replaced: any refusal is "not there"
            return False
    return True


@dataclass
class Team:
    """A running server, a built repo whose stages log to it, and the folder holding both."""

    server: Server
    repo: Path
    workdir: Path

    @property
    def tmpdir(self) -> Path:
        """The TMPDIR the server's launcher was given (where its private auth folder lives)."""
        return self.workdir / "tmp"

    def predictflow(
        self, user: str | None, *args: str, secret: str | None = None, stdin: str | None = None
    ) -> Result:
        """`predictflow ARGS` in the repo, against the server, as `user` (None: no login)."""
        return run(
            [BIN / "predictflow", *args],
            self.repo,
            check=False,
            stdin=stdin,
            **login(self.server.uri, user, secret),
        )
