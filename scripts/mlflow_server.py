"""`make server`: the team's MLflow tracking server, PostgreSQL store, artifacts served by it.

Authentication is on: MLflow's basic-auth app (users, per-experiment and per-model
permissions; roles are granted with `predictflow access`). The admin's credentials come from the
environment or from the git-ignored file `.env` at the repository root, never from the repo:

  MLFLOW_AUTH_ADMIN_USERNAME  admin user (default admin)
  MLFLOW_AUTH_ADMIN_PASSWORD  admin password: required; MLflow creates the admin with it on
                              the first start (later starts ignore it; rotate it through MLflow)

The users and permissions live in their own database next to the store (`<store db>_auth`).
PREDICTFLOW_INSECURE_NO_AUTH=1 turns authentication off: one user, 127.0.0.1 only.

Other settings, from the environment (all optional):

  PREDICTFLOW_SERVER_HOST address to bind (default 127.0.0.1; only loopback without auth)
  PORT                    port (default 5001)
  PREDICTFLOW_DB_URI      backend store (default postgresql://root@127.0.0.1:5432/predictflow);
                          the database is created when it does not exist yet
  PREDICTFLOW_ARTIFACTS   where the server keeps artifacts. Default: s3://predictflow-mlflow-artifacts
                          when MLFLOW_S3_ENDPOINT_URL is set (an S3-compatible store, with
                          AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), else the local directory
                          mlflow_data/server-artifacts of this checkout (a fallback: one disk)
  WORKERS                 uvicorn worker processes (default 2)

Clients never touch the artifact store: the server proxies uploads and downloads
(`--serve-artifacts`), so `MLFLOW_TRACKING_URI=http://127.0.0.1:PORT` is all a client needs.
`--print` shows the resolved command instead of running it.

No secret is in any process's argv (`ps` shows argv to every user): the store URI reaches
`mlflow server` as MLFLOW_BACKEND_STORE_URI, and the auth config (its database URI) is a 0600
file in a 0700 folder of this start's own, removed when the server stops (normally, on SIGTERM
or SIGINT, or on an error; only a SIGKILL of this launcher leaves it).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from predictflow.base.redact import redact

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
DEFAULT_PORT = "5001"
DEFAULT_DB_URI = "postgresql://root@127.0.0.1:5432/predictflow"
S3_ARTIFACTS = "s3://predictflow-mlflow-artifacts"
LOCAL_ARTIFACTS = REPO / "mlflow_data" / "server-artifacts"
SECRETS_FILE = REPO / ".env"
INSECURE = "PREDICTFLOW_INSECURE_NO_AUTH"
ADMIN_USER, ADMIN_PASSWORD = "MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"
STOP_GRACE = 8.0  # seconds the server gets to stop on a signal (tests SIGKILL after 10)


class ServerError(RuntimeError):
    """One line for the user: what is wrong and what to do."""


def sqlalchemy_uri(uri: str) -> str:
    """`postgresql://` with the psycopg2 driver spelled out.

    SQLAlchemy 2.1 picks psycopg 3 for a bare `postgresql://`, and MLflow's registry then fails
    on PostgreSQL (`operator does not exist: integer <> character varying`, mlflow/mlflow#24592)
    when a stage transition archives the previous holder. psycopg2 binds parameters untyped.
    """
    scheme, _, rest = uri.partition("://")
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg2://{rest}"
    return uri


def artifacts_destination(env: dict[str, str]) -> str:
    if env.get("PREDICTFLOW_ARTIFACTS"):
        return env["PREDICTFLOW_ARTIFACTS"]
    if env.get("MLFLOW_S3_ENDPOINT_URL"):
        return S3_ARTIFACTS
    return str(LOCAL_ARTIFACTS)


def ensure_database(uri: str) -> bool:
    """Create the PostgreSQL database `uri` names if it is missing; return True if created."""
    import psycopg2
    from psycopg2 import sql

    parts = urlsplit(uri)
    if not parts.scheme.startswith("postgres"):
        return False
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ServerError(f"{uri}: no database name in the URI")
    server = {
        "host": parts.hostname or None,
        "port": parts.port or 5432,
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "connect_timeout": 5,
    }
    try:
        conn = psycopg2.connect(dbname="postgres", **server)
    except psycopg2.OperationalError as err:
        first = str(err).strip().splitlines()[0]
        raise ServerError(
            f"PostgreSQL at {parts.hostname}:{parts.port or 5432} is unreachable ({first}); "
            "start it (`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main "
            "start`) or set PREDICTFLOW_DB_URI"
        ) from None
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone():
                return False
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    finally:
        conn.close()


def check_bucket(destination: str, env: dict[str, str]) -> None:
    """An S3 destination's bucket must exist: MLflow would only fail at the first upload."""
    if not destination.startswith("s3://"):
        return
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = urlsplit(destination).netloc
    endpoint = env.get("MLFLOW_S3_ENDPOINT_URL")
    try:
        boto3.client("s3", endpoint_url=endpoint).head_bucket(Bucket=bucket)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        flag = f" --endpoint-url {endpoint}" if endpoint else ""
        hint = (
            f"create it: `aws s3 mb s3://{bucket}{flag}`"
            if code in ("404", "NoSuchBucket")
            else "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
        )
        raise ServerError(f"artifact bucket {bucket!r}: {code or err}; {hint}") from None
    except BotoCoreError as err:
        raise ServerError(f"artifact store {endpoint or 'S3'}: {err}") from None


def auth_enabled(env: dict[str, str]) -> bool:
    return env.get(INSECURE, "") not in ("1", "true", "yes")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def bind_host(env: dict[str, str]) -> str:
    """Without authentication the server is one person's: it never listens beyond loopback."""
    host = env.get("PREDICTFLOW_SERVER_HOST") or HOST
    if not auth_enabled(env) and not is_loopback(host):
        raise ServerError(
            f"PREDICTFLOW_SERVER_HOST={host} with {INSECURE}=1 would serve an open registry "
            f"to the network; unset PREDICTFLOW_SERVER_HOST or unset {INSECURE}"
        )
    return host


def admin_credentials(env: dict[str, str], secrets: Path = SECRETS_FILE) -> dict[str, str]:
    """The admin's user name and password: the environment first, then the git-ignored `.env`."""
    from dotenv import dotenv_values

    found = {}
    if secrets.is_file():
        if _tracked_by_git(secrets):
            raise ServerError(
                f"{secrets} is tracked by git: a password there is in the history; "
                f"`git rm --cached {secrets.name}`, rotate the password, keep the file local"
            )
        values = dotenv_values(secrets)
        found = {k: values[k] for k in (ADMIN_USER, ADMIN_PASSWORD) if values.get(k)}
    found.update({k: env[k] for k in (ADMIN_USER, ADMIN_PASSWORD) if env.get(k)})
    if not found.get(ADMIN_PASSWORD):
        raise ServerError(
            f"no admin password: set {ADMIN_PASSWORD} (and optionally {ADMIN_USER}, default "
            f"admin) in the environment or in {secrets} (git-ignored), or run "
            f"`{INSECURE}=1 make server` for a single user on 127.0.0.1"
        )
    found.setdefault(ADMIN_USER, "admin")
    return found


def _tracked_by_git(path: Path) -> bool:
    listed = subprocess.run(
        ["git", "ls-files", "--error-unmatch", path.name],
        cwd=path.parent,
        capture_output=True,
        check=False,
    )
    return listed.returncode == 0


def auth_database_uri(store_uri: str) -> str:
    """The users and grants live next to the store: `<db>_auth` on the same PostgreSQL."""
    parts = urlsplit(store_uri)
    if not parts.scheme.startswith("postgres"):
        raise ServerError(f"{store_uri}: authentication needs a PostgreSQL store")
    return parts._replace(path=parts.path.rstrip("/") + "_auth").geturl()


def write_auth_config(folder: Path, auth_db: str, admin_user: str) -> Path:
    """MLflow's basic_auth.ini for this server, in `folder` (private to this start). No admin
    password in it (MLflow reads MLFLOW_AUTH_ADMIN_PASSWORD), but the database URI may hold
    one. Unknown users get nothing until granted a role."""
    text = (
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = {auth_db}\n"
        f"admin_username = {admin_user}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    path = folder / "basic_auth.ini"
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "w") as out:
        out.write(text)
    return path


def store_uri(env: dict[str, str]) -> str:
    """The backend store. It reaches `mlflow server` as MLFLOW_BACKEND_STORE_URI (the option's
    own variable), never in argv: any user on the machine reads argv in `ps`."""
    return sqlalchemy_uri(env.get("PREDICTFLOW_DB_URI") or DEFAULT_DB_URI)


def command(env: dict[str, str]) -> list[str]:
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    auth = ["--app-name", "basic-auth"] if auth_enabled(env) else []
    return [
        mlflow,
        "server",
        *auth,
        "--host",
        bind_host(env),
        "--port",
        env.get("PORT") or DEFAULT_PORT,
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts_destination(env),
        "--workers",
        env.get("WORKERS") or "2",
    ]


class Stopped(Exception):
    """SIGTERM or SIGINT reached this launcher: stop the server, clean up, exit."""


def _stop(signum: int, _frame) -> None:
    raise Stopped(signum)


def serve(cmd: list[str], env: dict[str, str]) -> int:
    """Run `mlflow server` until it exits; return its status. When this launcher is stopped
    (`Stopped`), the server gets STOP_GRACE seconds to follow before a SIGKILL."""
    server = subprocess.Popen(cmd, env=env)
    try:
        return server.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):  # a second signal must not cut the cleanup
            signal.signal(sig, signal.SIG_IGN)
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def prepare(env: dict[str, str]) -> tuple[str, str]:
    """Check and create what the server needs; return the store URI and the artifacts place."""
    uri, destination = store_uri(env), artifacts_destination(env)
    if auth_enabled(env):
        env.update(admin_credentials(env))
    for database in [uri, auth_database_uri(uri)] if auth_enabled(env) else [uri]:
        if ensure_database(database):
            name = urlsplit(database).path.lstrip("/")
            print(f"mlflow-server: created database {name}", flush=True)
    check_bucket(destination, env)
    return uri, destination


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--print", action="store_true", help="print the command, run nothing")
    args = parser.parse_args()
    env = dict(os.environ)
    try:
        cmd = command(env)
        if args.print:
            print(
                f"MLFLOW_BACKEND_STORE_URI={shlex.quote(redact(store_uri(env)))} {shlex.join(cmd)}"
            )
            return
        uri, destination = prepare(env)
    except ServerError as err:
        print(f"mlflow-server: error: {redact(str(err))}", file=sys.stderr)
        sys.exit(1)
    env["MLFLOW_BACKEND_STORE_URI"] = uri
    # The job executor (GenAI scorers, trace roll-ups) starts ~10 worker processes and doubles
    # the start-up time; this registry does not use it.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if "://" not in destination:
        Path(destination).mkdir(parents=True, exist_ok=True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    try:
        code = run_in_private_folder(cmd, env, uri, destination)
    except Stopped as stopped:
        code = 128 + stopped.args[0]
    sys.exit(code)


def run_in_private_folder(cmd: list[str], env: dict[str, str], uri: str, destination: str) -> int:
    """Serve with the auth config in a 0700 folder of this start's own (mkdtemp), removed
    however the server ends (a SIGKILL of this launcher aside): no copy of the auth database
    URI outlives the server."""
    host, port = cmd[cmd.index("--host") + 1], cmd[cmd.index("--port") + 1]
    with tempfile.TemporaryDirectory(prefix="predictflow-server-") as private:
        if auth_enabled(env):
            config = write_auth_config(Path(private), auth_database_uri(uri), env[ADMIN_USER])
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(config)
            # The auth app's forms need a CSRF key shared by all workers; a fresh one per start
            # only logs browsers out on a restart.
            env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
        else:
            print(
                f"mlflow-server: WARNING: authentication OFF ({INSECURE}=1): anyone on this "
                "machine can change the registry; for one user on 127.0.0.1 only",
                file=sys.stderr,
                flush=True,
            )
        print(
            f"mlflow-server: http://{host}:{port} "
            f"(store {uri.split('@')[-1]}, artifacts {destination}, "
            f"auth {'on, admin ' + env[ADMIN_USER] if auth_enabled(env) else 'OFF'})",
            flush=True,
        )
        return serve(cmd, env)


if __name__ == "__main__":
    main()
