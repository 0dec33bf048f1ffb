"""`predictflow doctor`'s checks of what the store holds: no orphaned RUNNING runs (marked
KILLED with `--fix`), registered versions intact, alias moves audited, production the last
release, and the workspace's registered model (its receipt) present."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from predictflow.core import paths
from predictflow.lineage import evidence, names, tracking
from predictflow.ops.doctor_finding import Finding


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


def _download_model(version, tmp: str) -> Path:
    import mlflow

    uri = f"models:/{names.MODEL_NAME}/{version.version}/model.pkl"
    return Path(mlflow.artifacts.download_artifacts(uri, dst_path=tmp))


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
