"""`make server`: the team's MLflow tracking server, PostgreSQL store, artifacts served by it.

Every setting comes from the environment (all optional):

  PORT                    port on 127.0.0.1 (default 5001)
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
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
DEFAULT_PORT = "5001"
DEFAULT_DB_URI = "postgresql://root@127.0.0.1:5432/predictflow"
S3_ARTIFACTS = "s3://predictflow-mlflow-artifacts"
LOCAL_ARTIFACTS = REPO / "mlflow_data" / "server-artifacts"


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


def command(env: dict[str, str]) -> list[str]:
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    return [
        mlflow,
        "server",
        "--host",
        HOST,
        "--port",
        env.get("PORT") or DEFAULT_PORT,
        "--backend-store-uri",
        sqlalchemy_uri(env.get("PREDICTFLOW_DB_URI") or DEFAULT_DB_URI),
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts_destination(env),
        "--workers",
        env.get("WORKERS") or "2",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--print", action="store_true", help="print the command, run nothing")
    args = parser.parse_args()
    env = dict(os.environ)
    cmd = command(env)
    if args.print:
        print(shlex.join(cmd))
        return
    uri, destination = cmd[cmd.index("--backend-store-uri") + 1], artifacts_destination(env)
    try:
        if ensure_database(uri):
            print(f"mlflow-server: created database {urlsplit(uri).path.lstrip('/')}", flush=True)
        check_bucket(destination, env)
    except ServerError as err:
        print(f"mlflow-server: error: {err}", file=sys.stderr)
        sys.exit(1)
    if "://" not in destination:
        Path(destination).mkdir(parents=True, exist_ok=True)
    # The job executor (GenAI scorers, trace roll-ups) starts ~10 worker processes and doubles
    # the start-up time; this registry does not use it.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    print(
        f"mlflow-server: http://{HOST}:{cmd[cmd.index('--port') + 1]} "
        f"(store {uri.split('@')[-1]}, artifacts {destination})",
        flush=True,
    )
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    main()
