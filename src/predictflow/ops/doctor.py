"""`predictflow doctor`: find what crashes, races and mistakes leave behind, and say how to fix it.

Each check returns findings (ok / warning / problem, a detail and a fix). `--fix` applies only
the safe repairs, each after a verified backup: it marks runs of dead processes KILLED, upgrades
an outdated schema, rewrites artifact locations left pointing at a folder the project moved
from, and moves aside a database that fails `PRAGMA integrity_check`. A store another process
holds locked is busy, not corrupt: it is reported and never touched. Nothing is ever deleted.
"""

from __future__ import annotations

import configparser
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from predictflow.base.errors import UserError
from predictflow.core import paths
from predictflow.lineage import evidence, names, tracking

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
    return tracking.sqlite_path(uri)


SIDE_FILES = ("-journal", "-wal", "-shm")  # a hot journal belongs with its database


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def _verified_backup(path: Path, suffix: str) -> Path:
    """A consistent copy through SQLite's backup API, refused unless it passes integrity_check."""
    backup = path.with_name(f"{path.name}.{suffix}-{_stamp()}")
    with (
        closing(sqlite3.connect(path, timeout=tracking.busy_timeout())) as source,
        closing(sqlite3.connect(backup)) as copy,
    ):
        source.backup(copy)
        verdict = copy.execute("PRAGMA integrity_check").fetchone()[0]
    if verdict != "ok":
        raise StoreRepairError(f"backup {backup} failed integrity_check ({verdict})")
    return backup


def _move_aside(path: Path) -> Path:
    """Move a corrupt database (and its journal) aside, each copy verified byte for byte first.

    A corrupt file cannot pass integrity_check, so the backup is verified by its md5; the
    original is removed only once its copy matches.
    """
    stamp = _stamp()
    pairs = [
        (path.with_name(path.name + side), path.with_name(f"{path.name}{side}.corrupt-{stamp}"))
        for side in ("", *SIDE_FILES)
    ]
    pairs = [(src, dst) for src, dst in pairs if src.exists()]
    for src, dst in pairs:
        shutil.copy2(src, dst)
        if evidence.file_md5(dst) != evidence.file_md5(src):
            dst.unlink()
            raise StoreRepairError(f"copy of {src} does not match it; nothing moved")
    for src, _ in pairs:
        src.unlink()
    return pairs[0][1]


class StoreRepairError(UserError):
    """A repair refused because its backup could not be verified; the store is unchanged."""


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
                moved = _move_aside(path)
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
                backup = _verified_backup(path, "bak")
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
    except tracking.StoreError as err:
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


def check_runs(client, fix: bool) -> Finding:
    """No run stays RUNNING after its process died."""
    experiment = client.get_experiment_by_name(names.EXPERIMENT)
    if experiment is None:
        return Finding("stuck runs", "ok", f"no experiment {names.EXPERIMENT!r} yet")
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

    versions = client.search_model_versions(f"name = '{names.MODEL_NAME}'")
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
            if evidence.file_md5(local) != version.tags["model_md5"]:
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


def check_alias_audit(client) -> Finding:
    """Each alias has an audit record for the move that put it where it is, and the legacy
    stage mirrors the aliases (a promotion killed half-way breaks both)."""
    from predictflow.lineage.registry import audit_gaps

    gaps = audit_gaps(client)
    if gaps:
        return Finding(
            "alias audit",
            "problem",
            "; ".join(gaps),
            "`predictflow promote N --to ALIAS --reason '...'` for the version that holds the "
            "alias completes its audit record and stage without moving it",
        )
    return Finding("alias audit", "ok", "every alias move has its audit record; stages mirror")


def check_release(client) -> Finding | None:
    """On a team server: production is the last release a releaser recorded, and its stored
    model still has the md5 recorded then (an experimenter can re-tag a version and replace its
    artifact, not rewrite the ledger). None on a local store."""
    from predictflow.lineage import artifacts, releases
    from predictflow.lineage.registry import holder

    if not releases.applies(client):
        return None
    current = holder(client, "production")
    problem = releases.judge(client, current).problem
    if problem is None and current is not None:
        with tempfile.TemporaryDirectory() as tmp:
            try:  # the same check every load of production makes: bytes = tag = release
                artifacts.download_verified(client, current, Path(tmp))
            except artifacts.ArtifactError as err:
                problem = str(err)
    if problem:
        return Finding(
            "release ledger",
            "problem",
            problem,
            "do not serve production; a releaser moves it back to the last release with "
            "`predictflow promote N --to production`",
        )
    detail = (
        "production is the last recorded release, bytes intact"
        if current
        else ("nothing released yet")
    )
    return Finding("release ledger", "ok", detail)


def check_cache(workspace: Path) -> Finding:
    """Each cached file that dvc.lock or a `.dvc` pin names still hashes to its name. DVC
    trusts a present object (neither `status` nor `fetch` re-hashes it), so a corrupted one is
    served to `checkout`, `drift` and `data diff` as if it were the data."""
    try:
        stages = evidence.load_lock(workspace)
    except (OSError, UserError):
        stages = {}
    md5s = {m for s in stages.values() for m in (*s.deps.values(), *s.outs.values())}
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", "*.dvc"], cwd=workspace, capture_output=True, check=False
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        try:
            md5s.add(evidence.pinned_md5(workspace / name))
        except (OSError, UserError):
            continue  # a broken pin is `data ensure`'s to report
    cache = workspace / ".dvc" / "cache" / "files" / "md5"
    corrupt = []
    for md5 in sorted(m for m in md5s if m and not m.endswith(".dir")):
        obj = cache / md5[:2] / md5[2:]
        if obj.is_file() and evidence.file_md5(obj) != md5:
            corrupt.append(f"{obj.relative_to(workspace)} (should hash to {md5})")
    if corrupt:
        return Finding(
            "DVC cache",
            "problem",
            f"{len(corrupt)} corrupt cache object(s): {'; '.join(corrupt)}",
            "delete each, then `dvc fetch` (a pushed copy) or `dvc repro` (a pipeline out) "
            "restores it: DVC skips a present object, corrupt or not",
        )
    return Finding(
        "DVC cache", "ok", f"{len(md5s)} pinned object(s) checked: each hashes to its name"
    )


def _download_model(version, tmp: str) -> Path:
    import mlflow

    uri = f"models:/{names.MODEL_NAME}/{version.version}/model.pkl"
    return Path(mlflow.artifacts.download_artifacts(uri, dst_path=tmp))


def check_lock(workspace: Path) -> list[Finding]:
    """The pipeline matches dvc.lock, and the lock is committed (so new versions get sealed)."""
    try:
        stale = evidence.stale_stages(workspace, "register")
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
        ["git", "diff", "--quiet", "HEAD", "--", evidence.LOCK_FILE], cwd=workspace, check=False
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
    from predictflow.ops.remote_check import check_remote as probe

    result = probe(workspace, remote)
    if result.ok:
        return Finding("dvc remote", "ok", f"{result.remote} ({result.url}): list/write/read ok")
    return Finding(
        "dvc remote",
        "problem",
        f"{result.remote} ({result.url}): {result.operation} failed: {result.problem}",
        result.fix,
    )


RECEIPT = paths.RECEIPT


def receipt_md5(workspace: Path) -> str | None:
    """The model md5 the last `register` stage recorded in this workspace, if any."""
    try:
        return str(json.loads((workspace / RECEIPT).read_text(encoding="utf-8"))["model_md5"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_receipt(workspace: Path, store: Path, client) -> Finding:
    """The store has the version the workspace's receipt names: a lost or swapped store has not.

    DVC sees nothing change when the store is deleted or replaced, so `dvc repro` would not
    register the workspace's model again by itself.
    """
    from predictflow.lineage.registry import version_with_md5

    model_md5 = receipt_md5(workspace)
    if model_md5 is None:
        return Finding("workspace model", "ok", f"no {RECEIPT} yet: nothing to match")
    found = version_with_md5(client, model_md5) if client is not None else None
    if found is not None:
        return Finding(
            "workspace model",
            "ok",
            f"{RECEIPT}: model md5 {model_md5} is version {found.version}",
        )
    return Finding(
        "workspace model",
        "problem",
        f"{RECEIPT} names model md5 {model_md5}, but {tracking.tracking_uri(store)} has no "
        "registered version of it: the store was lost or swapped",
        "`make repro` logs and registers the workspace's model again",
    )


LOCATIONS = (  # (table, column) of every absolute artifact URI a SQLite store keeps
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
)


def _foreign_stores(db: sqlite3.Connection, store: Path) -> dict[str, int]:
    """`file:` URI prefixes of another `mlflow_data/` this store points into, with row counts."""
    found: dict[str, int] = {}
    for table, column in LOCATIONS:
        for (value,) in db.execute(f"SELECT {column} FROM {table} WHERE {column} LIKE 'file:%'"):
            if not tracking.outside_store(value, store):
                continue
            head, sep, _ = value.partition(f"/{tracking.STORE_DIR}/")
            prefix = head + sep if sep else value
            found[prefix] = found.get(prefix, 0) + 1
    return found


def _relocate(db: sqlite3.Connection, old: str, new: str) -> None:
    for table, column in LOCATIONS:
        db.execute(
            f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
            f"WHERE substr({column}, 1, ?) = ?",
            (new, len(old) + 1, len(old), old),
        )


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
        foreign = _foreign_stores(db, store)
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
    backup = _verified_backup(path, "bak")
    new = here.as_uri() + "/"
    with closing(sqlite3.connect(path, timeout=tracking.busy_timeout())) as db, db:
        for old in foreign:
            _relocate(db, old, new)
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


def run_checks(
    workspace: Path, store: Path, fix: bool = False, remote: str | None = None
) -> list[Finding]:
    """Every check in order; a check added here needs only a Finding (or a list of them)."""
    findings = check_store(store, fix)
    store_ok = all(f.status == "ok" for f in findings)  # a just-repaired store: next time
    exists = findings[0].status != "warning"
    if store_ok:
        from predictflow.lineage.registry import client_for

        client = client_for(store)
        findings += [check_locations(store, fix), check_runs(client, fix), check_versions(client)]
        findings.append(check_alias_audit(client))
        release = check_release(client)
        findings += [release] if release else []
        findings.append(check_receipt(workspace, store, client))
    elif not exists:  # no store at all: lost, if this workspace registered a model
        findings.append(check_receipt(workspace, store, None))
    findings += check_server_access(tracking.tracking_uri(store))
    findings.append(check_cache(workspace))  # before `dvc status`, which deletes what it finds
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


def receipt_registered(workspace: Path, store: Path) -> bool:
    """True unless the workspace's receipt names a model the store has not registered."""
    from predictflow.lineage.registry import client_for, version_with_md5

    model_md5 = receipt_md5(workspace)
    if model_md5 is None:
        return True
    uri = tracking.reach(tracking.tracking_uri(store))
    path = tracking.sqlite_path(uri)
    if path is not None and not path.exists():
        return False
    return version_with_md5(client_for(store), model_md5) is not None


NOT_REGISTERED = 10


def main() -> None:
    """`python -m predictflow.ops.doctor`: exit 10 when the store lacks the receipt's model.

    `make repro` runs it after `dvc repro` and, on 10, logs and registers the model again.
    """
    if not receipt_registered(evidence.workspace_root(), tracking.store_root()):
        print(f"doctor: {RECEIPT}'s model is not in the tracking store", file=sys.stderr)
        sys.exit(NOT_REGISTERED)


if __name__ == "__main__":
    from predictflow.lineage import stage

    stage.run("doctor", main)
