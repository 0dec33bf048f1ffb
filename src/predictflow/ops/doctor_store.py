"""`predictflow doctor`'s checks of the tracking store: a SQLite store free, intact, at the
current schema and at home in this project (repaired with `--fix`); a server that answers,
requires a login and gets credentials only over TLS or loopback."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from predictflow.base.errors import StoreError
from predictflow.lineage import tracking
from predictflow.ops.doctor_finding import Finding
from predictflow.ops.doctor_repair import (
    StoreRepairError,
    foreign_stores,
    move_aside,
    relocate,
    verified_backup,
)


def _sqlite_path(uri: str) -> Path | None:
    return tracking.sqlite_path(uri)


def _open_error(path: Path, err: sqlite3.Error) -> Finding:
    """Busy and unreadable are not corrupt: neither is moved aside."""
    if tracking.is_busy(err):
        return Finding(
            "tracking store",
            "problem",
            f"{path} is busy: another process held it locked for "
            f"{tracking.busy_timeout():.0f} s ({err}); nothing was changed",
            f"let that process finish (`fuser {path}` names it), then rerun doctor; "
            f"wait longer with {tracking.BUSY_ENV}=SECONDS",
        )
    return Finding(
        "tracking store",
        "problem",
        f"{path} cannot be read: {err}",
        "check the file's permissions and the disk; nothing was changed",
    )


CORRUPT_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _integrity(path: Path) -> tuple[str, str | None]:
    """(integrity_check verdict, schema revision); raises sqlite3.Error unless corrupt."""
    try:
        uri = f"file:{path}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=tracking.busy_timeout())) as db:
            verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                return verdict, None
            revision = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as err:
        if getattr(err, "sqlite_errorcode", None) in CORRUPT_CODES:
            return f"unreadable ({err})", None
        raise
    return verdict, revision[0] if revision else None


def check_store(store: Path, fix: bool) -> list[Finding]:
    """The tracking store answers; a SQLite store is free, intact and at the current schema."""
    uri = tracking.tracking_uri(store)
    path = _sqlite_path(uri)
    if path is None:
        return [_check_server(uri)]
    if not path.exists():
        return [
            Finding(
                "tracking store",
                "warning",
                f"{uri} does not exist yet",
                "run `make repro` (the first train run creates it)",
            )
        ]
    try:
        integrity, revision = _integrity(path)
    except sqlite3.Error as err:
        return [_open_error(path, err)]
    if integrity != "ok":
        finding = Finding(
            "tracking store",
            "problem",
            f"{path} is corrupt: {integrity}",
            "predictflow doctor --fix moves it aside (kept as a backup) so the next run starts "
            "a fresh store; then `make repro` logs and registers the current model again",
        )
        if fix:
            try:
                moved = move_aside(path)
            except (StoreRepairError, OSError) as err:
                finding.detail += f"; not moved: {err}"
            else:
                finding.fixed, finding.detail = True, f"{finding.detail}; moved to {moved}"
        return [finding]
    from mlflow.store.db.utils import _get_latest_schema_revision

    latest = _get_latest_schema_revision()
    if revision != latest:
        finding = Finding(
            "store schema",
            "problem",
            f"{path} has schema {revision}, this MLflow expects {latest}",
            f"predictflow doctor --fix (backs it up, then `mlflow db upgrade {uri}`)",
        )
        if fix:
            try:
                backup = verified_backup(path, "bak")
            except (StoreRepairError, sqlite3.Error) as err:
                finding.detail += f"; not upgraded: {err}"
                return [Finding("tracking store", "ok", f"{uri}: integrity_check ok"), finding]
            upgrade = subprocess.run(
                [sys.executable, "-m", "mlflow", "db", "upgrade", uri],
                capture_output=True,
                text=True,
                check=False,
            )
            finding.fixed = upgrade.returncode == 0
            finding.detail += f"; backup {backup}; upgrade " + (
                "done" if finding.fixed else f"failed: {upgrade.stderr.strip()[-200:]}"
            )
        return [Finding("tracking store", "ok", f"{uri}: integrity_check ok"), finding]
    return [Finding("tracking store", "ok", f"{uri}: integrity_check ok, schema {revision}")]


def _check_server(uri: str) -> Finding:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        tracking.reach(uri)
    except StoreError as err:
        return Finding("tracking store", "problem", str(err), "start the server or fix the URI")
    try:
        mlflow.MlflowClient(uri).search_experiments(max_results=1)
    except (MlflowException, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        return Finding(
            "tracking store",
            "problem",
            f"{uri} does not answer: {first}",
            "start the server (`make server`) or fix MLFLOW_TRACKING_URI",
        )
    return Finding("tracking store", "ok", f"{uri} answers")


def check_locations(store: Path, fix: bool) -> Finding:
    """Artifact locations point inside this project: after the folder moves they point back.

    New runs would write into the old folder and old versions would not load. `--fix` rewrites
    them under this project's `mlflow_data/` (after a verified backup) when the artifacts are
    there.
    """
    path = tracking.sqlite_path(tracking.tracking_uri(store))
    if path is None or not tracking.uses_local_store(store):
        return Finding("artifact locations", "ok", "a server keeps its own artifacts")
    here = tracking.store_dir(store)
    with closing(sqlite3.connect(path, timeout=tracking.busy_timeout())) as db:
        foreign = foreign_stores(db, store)
    if not foreign:
        return Finding("artifact locations", "ok", f"every artifact location is under {here}")
    finding = Finding(
        "artifact locations",
        "problem",
        "the store points outside this project (moved or copied?): "
        + "; ".join(f"{n} location(s) under {prefix}" for prefix, n in foreign.items()),
        f"predictflow doctor --fix rewrites them under {here} (after a verified backup)",
    )
    if not fix:
        return finding
    if not (here / "artifacts").is_dir():
        finding.detail += f"; not fixed: {here / 'artifacts'} is missing, copy it there first"
        return finding
    backup = verified_backup(path, "bak")
    new = here.as_uri() + "/"
    with closing(sqlite3.connect(path, timeout=tracking.busy_timeout())) as db, db:
        for old in foreign:
            relocate(db, old, new)
    finding.fixed = True
    finding.detail += f"; rewritten under {here} (backup {backup})"
    return finding


def check_server_auth(uri: str) -> Finding:
    """A team server without authentication lets anyone who reaches it move production."""
    import requests

    from predictflow.lineage.access import CURRENT_USER, server_of

    server = server_of(uri)
    try:
        answer = requests.get(f"{server}{CURRENT_USER}", timeout=15)  # no credentials on purpose
    except requests.RequestException as err:
        return Finding("server auth", "warning", f"{server}: not checked ({type(err).__name__})")
    if answer.status_code == 401:
        return Finding("server auth", "ok", f"{server} requires a login (401 without one)")
    return Finding(
        "server auth",
        "problem",
        f"{server} answers without authentication (HTTP {answer.status_code}): anyone who "
        "reaches it can log, register and move production, and the audit's `who` is unverified",
        "restart it with `make server` (basic-auth on by default, not "
        "PREDICTFLOW_INSECURE_NO_AUTH=1), then create users: `predictflow access add USER "
        "--role ROLE`",
    )


def check_credentials_transport(uri: str, env: dict[str, str]) -> Finding:
    """Basic auth sends the password with every request: over plain HTTP only to loopback."""
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(uri).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    sends = [k for k in ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN") if env.get(k)]
    if uri.startswith("https://") or loopback or not sends:
        return Finding("credentials transport", "ok", f"{uri.split('://')[0]} to {host}")
    return Finding(
        "credentials transport",
        "problem",
        f"{' and '.join(sends)} go in clear text over http:// to {host}: anyone on the path "
        "can read and replay them",
        f"use https://{host} (TLS in front of the server), or an SSH tunnel "
        f"(`ssh -L 5001:127.0.0.1:5001 {host}`, then MLFLOW_TRACKING_URI=http://127.0.0.1:5001)",
    )


def check_server_access(uri: str) -> list[Finding]:
    """The team server's access checks; none for a local store."""
    import os

    from predictflow.lineage.access import is_server

    if not is_server(uri):
        return []
    return [check_server_auth(uri), check_credentials_transport(uri, dict(os.environ))]
