"""`predictflow doctor`: find what crashes, races and mistakes leave behind, and say how to fix it.

Each check returns findings (ok / warning / problem, a detail and a fix). `--fix` applies only
the safe repairs, each after a verified backup: it marks runs of dead processes KILLED, upgrades
an outdated schema, rewrites artifact locations left pointing at a folder the project moved
from, and moves aside a database that fails `PRAGMA integrity_check`. A store another process
holds locked is busy, not corrupt: it is reported and never touched. Nothing is ever deleted.
"""

from __future__ import annotations

import sys
from pathlib import Path

from predictflow.lineage import evidence, tracking
from predictflow.ops.doctor_finding import Finding
from predictflow.ops.doctor_registry import (
    RECEIPT,
    check_alias_audit,
    check_receipt,
    check_release,
    check_runs,
    check_versions,
    receipt_md5,
)
from predictflow.ops.doctor_store import check_locations, check_server_access, check_store
from predictflow.ops.doctor_workspace import check_cache, check_lock, check_remote, check_secrets


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
