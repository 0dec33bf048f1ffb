"""`predictflow doctor`'s checks of the workspace: the DVC cache hashes to its names, the
pipeline matches a committed dvc.lock, no credentials in git, the DVC remote answers."""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

from predictflow.base.errors import UserError
from predictflow.lineage import evidence
from predictflow.ops.doctor_finding import Finding

SECRET_KEYS = ("access_key_id", "secret_access_key", "session_token", "password", "token")


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
