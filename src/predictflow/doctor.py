"""`predictflow doctor`: find what crashes, races and mistakes leave behind, and say how to fix it.

Each check returns findings (ok / warning / problem, a detail and a fix). `--fix` applies only
the safe repairs: it marks runs of dead processes KILLED, and backs the store up before it
upgrades an outdated schema or moves a corrupt database aside. Nothing is ever deleted.
"""

from __future__ import annotations

import configparser
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from predictflow import lineage, tracking

Status = Literal["ok", "warning", "problem"]
SECRET_KEYS = ("access_key_id", "secret_access_key", "session_token", "password", "token")


@dataclass
class Finding:
    check: str
    status: Status
    detail: str
    fix: str = ""
    fixed: bool = False

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def _backup(path: Path, suffix: str) -> Path:
    backup = path.with_name(f"{path.name}.{suffix}-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.copy2(path, backup)
    return backup


def check_store(store: Path, fix: bool) -> list[Finding]:
    """The tracking store answers; a SQLite store is intact and at the current schema."""
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
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
            revision = db.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    except sqlite3.DatabaseError as err:
        integrity, revision = f"unreadable ({err})", None
    if integrity != "ok":
        finding = Finding(
            "tracking store",
            "problem",
            f"{path} is corrupt: {integrity}",
            "predictflow doctor --fix moves it aside (kept as a backup) so the next run starts "
            "a fresh store; then `dvc repro -f train` logs the current model again",
        )
        if fix:
            backup = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            path.rename(backup)
            finding.fixed, finding.detail = True, f"{finding.detail}; moved to {backup}"
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
            backup = _backup(path, "bak")
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


def check_runs(client, fix: bool) -> Finding:
    """No run stays RUNNING after its process died."""
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    if experiment is None:
        return Finding("stuck runs", "ok", f"no experiment {tracking.EXPERIMENT!r} yet")
    running = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
    orphaned = [run for run in running if tracking.run_is_orphaned(run)]
    if not orphaned:
        return Finding("stuck runs", "ok", f"{len(running)} running, none orphaned")
    ids = ", ".join(run.info.run_id for run in orphaned)
    finding = Finding(
        "stuck runs",
        "problem",
        f"{len(orphaned)} run(s) RUNNING but their process is gone: {ids}",
        "predictflow doctor --fix marks them KILLED",
    )
    if fix:
        for run in orphaned:
            client.set_terminated(run.info.run_id, status="KILLED")
        finding.fixed = True
    return finding


def check_versions(client) -> Finding:
    """Every registered version has its lineage tags and an artifact matching its model md5."""
    from mlflow.exceptions import MlflowException

    versions = client.search_model_versions(f"name = '{tracking.MODEL_NAME}'")
    broken = []
    for version in sorted(versions, key=lambda v: int(v.version)):
        missing = [k for k in tracking.REQUIRED_LINEAGE if not version.tags.get(k)]
        if missing:
            broken.append(f"v{version.version} lacks {', '.join(missing)}")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = _download_model(version, tmp)
            except (MlflowException, OSError) as err:
                broken.append(f"v{version.version} artifact unreadable ({type(err).__name__})")
                continue
            if lineage.file_md5(local) != version.tags["model_md5"]:
                broken.append(f"v{version.version} artifact differs from its model_md5 tag")
    if broken:
        return Finding(
            "registered versions",
            "problem",
            "; ".join(broken),
            "do not promote these; `dvc repro -f train` registers a sound version",
        )
    return Finding(
        "registered versions",
        "ok",
        f"{len(versions)} version(s), lineage tags and artifacts intact",
    )


def _download_model(version, tmp: str) -> Path:
    import mlflow

    uri = f"models:/{tracking.MODEL_NAME}/{version.version}/model.pkl"
    return Path(mlflow.artifacts.download_artifacts(uri, dst_path=tmp))


def check_lock(workspace: Path) -> list[Finding]:
    """The pipeline matches dvc.lock, and the lock is committed (so new versions get sealed)."""
    try:
        stale = lineage.stale_stages(workspace, "register")
    except Exception as err:  # DVC raises many types: report it as a finding, not a traceback
        return [Finding("dvc.lock", "problem", f"dvc status failed: {err}", "run `dvc doctor`")]
    findings = []
    if stale:
        findings.append(
            Finding(
                "dvc.lock",
                "warning",
                f"stages not matching dvc.lock: {', '.join(stale)}",
                "run `dvc repro`",
            )
        )
    else:
        findings.append(Finding("dvc.lock", "ok", "every stage matches dvc.lock"))
    diff = subprocess.run(
        ["git", "diff", "--quiet", "HEAD", "--", lineage.LOCK_FILE], cwd=workspace, check=False
    )
    if diff.returncode == 1:
        findings.append(
            Finding(
                "dvc.lock committed",
                "warning",
                "dvc.lock has uncommitted changes: its models are not sealed",
                "git commit dvc.lock metrics/ (production takes sealed versions)",
            )
        )
    return findings


def check_secrets(workspace: Path) -> Finding:
    """Credentials belong in .dvc/config.local or the environment, never in git."""
    leaks = []
    tracked = subprocess.run(
        ["git", "ls-files", ".dvc/config", ".dvc/config.local"],
        cwd=workspace,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    if ".dvc/config.local" in tracked.split():
        leaks.append(".dvc/config.local is tracked by git")
    config = configparser.ConfigParser()
    try:
        config.read(workspace / ".dvc" / "config", encoding="utf-8")
    except configparser.Error:
        return Finding("secrets", "warning", ".dvc/config is not parseable", "run `dvc doctor`")
    for section in config.sections():
        leaks += [f"{section} {key}" for key in config[section] if key in SECRET_KEYS]
    if leaks:
        return Finding(
            "secrets",
            "problem",
            f"credentials in git-tracked config: {'; '.join(leaks)}",
            "move them: `dvc remote modify --local REMOTE KEY VALUE`, remove them from "
            ".dvc/config, and rotate the leaked keys",
        )
    return Finding("secrets", "ok", "no credentials in .dvc/config")


def check_remote(workspace: Path, remote: str | None) -> Finding:
    """The DVC remote answers with working credentials (a 403 is caught before a push)."""
    from predictflow.remote_check import check_remote as probe

    result = probe(workspace, remote)
    if result.ok:
        return Finding("dvc remote", "ok", f"{result.remote} ({result.url}): list/write/read ok")
    return Finding(
        "dvc remote",
        "problem",
        f"{result.remote} ({result.url}): {result.operation} failed: {result.problem}",
        result.fix,
    )


def check_server_auth(uri: str) -> Finding:
    """A team server without authentication lets anyone who reaches it move production."""
    import requests

    from predictflow.access import CURRENT_USER, server_of

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

    from predictflow.access import is_server

    if not is_server(uri):
        return []
    return [check_server_auth(uri), check_credentials_transport(uri, dict(os.environ))]


def run_checks(
    workspace: Path, store: Path, fix: bool = False, remote: str | None = None
) -> list[Finding]:
    findings = check_store(store, fix)
    if all(f.status == "ok" for f in findings):  # a just-repaired store is checked next time
        from predictflow.registry import client_for

        client = client_for(store)
        findings += [check_runs(client, fix), check_versions(client)]
    findings += check_server_access(tracking.tracking_uri(store))
    findings += check_lock(workspace)
    findings.append(check_secrets(workspace))
    findings.append(check_remote(workspace, remote))
    return findings


def render(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        label = {"ok": "OK", "warning": "WARN", "problem": "PROBLEM"}[f.status]
        label = "FIXED" if f.fixed else label
        lines.append(f"{label:<8} {f.check:<20} {f.detail}")
        if f.fix and f.status != "ok" and not f.fixed:
            lines.append(f"{'':<8} {'':<20} fix: {f.fix}")
    return "\n".join(lines)
