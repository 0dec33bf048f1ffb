"""Rebuild a registered version from what it recorded, away from the user's workspace.

In a temporary `git clone --shared` at the recorded commit, with the recorded params and the
recorded data md5 restored from the DVC cache or remote, the pipeline runs up to `train` with a
throw-away MLflow store; each stage's outputs are then compared with the hashes the version
recorded in its `dvc.lock`. The user's workspace, cache contents and registry are not changed.

A version trained on `scale.engine: dask` is verified as far as a distributed fit allows: the
prepared splits and features byte for byte (the hash split and the Dask reductions are
deterministic), the model by its held-out ROC AUC within `DASK_AUC_TOLERANCE` of the recorded
one, since XGBoost's distributed fit depends on which worker holds which partition. The rebuild
then runs through `evaluate` to score it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from predictflow.base.errors import UserError
from predictflow.core import paths
from predictflow.lineage import evidence

if TYPE_CHECKING:
    from mlflow import MlflowClient

REBUILT_STAGES = ("prepare", "featurize", "train")
DASK_AUC_TOLERANCE = 0.005  # the bound tests/test_dask_pipeline holds against the local engine


class ReproduceError(UserError):
    """The version cannot be rebuilt here; the message says what is missing and what to do."""


@dataclass
class StageCheck:
    stage: str
    matches: bool
    differing: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    compared: str = "bytes"  # or "roc_auc": a dask fit, checked by its held-out score
    roc_auc: tuple[float, float | None] | None = None  # (recorded, rebuilt)


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _child_env(store: Path, clone: Path) -> dict[str, str]:
    """Run like `dvc repro` would, but log to a throw-away store, never the user's, and import
    the library (`src/predictflow`) of the recorded commit, not the installed one."""
    env = {k: v for k, v in os.environ.items() if k not in ("DVC_ROOT", "DVC_EXP_NAME")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(clone / "src"), env.get("PYTHONPATH")]))
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    return env


def recorded_params(stages: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """params.yaml sections as the recorded `dvc.lock` saw them (`model`, `base.seed`, ...)."""
    sections: dict[str, dict[str, Any]] = {}
    for stage in stages.values():
        for key, value in stage["params"].items():
            if isinstance(value, dict):  # a whole section tracked (`params: [model]`)
                sections.setdefault(key, {}).update(value)
            else:
                section, _, name = key.partition(".")
                sections.setdefault(section, {})[name] = value
    return sections


def _apply_params(params_file: Path, recorded: dict[str, dict[str, Any]]) -> None:
    params = yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}
    for section, values in recorded.items():
        params.setdefault(section, {}).update(values)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def recorded_engine(stages: dict[str, Any]) -> str:
    """`scale.engine` as the recorded `prepare` ran (`local` before the switch existed)."""
    return recorded_params(stages).get("scale", {}).get("engine", "local")


def _pin_data(dvc_file: Path, data_md5: str) -> None:
    pin = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))
    out = pin["outs"][0]
    if out.get("md5") != data_md5:
        out["md5"] = data_md5
        out.pop("size", None)
        out.pop("nfiles", None)
        dvc_file.write_text(yaml.safe_dump(pin, sort_keys=False), encoding="utf-8")


def _workspace_remotes(workspace: Path) -> tuple[dict[str, str], str | None]:
    """The workspace's remotes with resolved URLs (DVC makes relative local paths absolute)."""
    from dvc.repo import Repo

    with Repo(str(workspace)) as repo:
        config = repo.config
        remotes = {name: str(remote["url"]) for name, remote in config["remote"].items()}
        return remotes, config["core"].get("remote")


def _restore_data(
    workspace: Path, clone: Path, env: dict[str, str], data_md5: str, pin: str
) -> None:
    """Get the recorded data (`pin`, its .dvc file) into the clone: from the workspace's cache
    (read as a remote, so nothing is written to it), else from the workspace's default remote."""
    dvc = [sys.executable, "-m", "dvc"]
    cache = workspace / ".dvc" / "cache"
    _run([*dvc, "remote", "add", "--local", "workspace-cache", str(cache)], clone, env)
    if _run([*dvc, "pull", "-q", "-r", "workspace-cache", pin], clone, env).returncode == 0:
        return
    remotes, default = _workspace_remotes(workspace)
    if (workspace / ".dvc" / "config.local").exists():  # credentials live there
        shutil.copy(workspace / ".dvc" / "config.local", clone / ".dvc" / "config.local")
        _run([*dvc, "remote", "add", "--local", "-f", "workspace-cache", str(cache)], clone, env)
    if default:
        _run([*dvc, "remote", "modify", "--local", default, "url", remotes[default]], clone, env)
        if _run([*dvc, "pull", "-q", "-r", default, pin], clone, env).returncode == 0:
            return
    raise ReproduceError(
        f"data md5 {data_md5} is in neither the cache nor remote '{default or '(none)'}'; "
        "run `dvc push` from the machine that trained it"
    )


def compare(recorded: dict[str, Any], rebuilt: dict[str, evidence.StageHashes]) -> list[StageCheck]:
    checks = []
    for stage in REBUILT_STAGES:
        expected = recorded.get(stage, {}).get("outs", {})
        actual = rebuilt[stage].outs if stage in rebuilt else {}
        differing = {
            path: (md5, actual.get(path))
            for path, md5 in expected.items()
            if actual.get(path) != md5
        }
        checks.append(StageCheck(stage, bool(expected) and not differing, differing))
    return checks


def compare_dask_fit(check: StageCheck, recorded_auc: float | None, clone: Path) -> StageCheck:
    """`train` of a dask version: its outputs need not match byte for byte; the rebuilt model
    matches when its held-out ROC AUC (the rebuilt `evaluate`) is within the tolerance. When
    they do match byte for byte, that stronger check stands."""
    import json

    if check.matches:
        return check
    scores = clone / paths.EVAL_METRICS
    rebuilt = json.loads(scores.read_text())["roc_auc"] if scores.is_file() else None
    close = (
        recorded_auc is not None
        and rebuilt is not None
        and abs(rebuilt - recorded_auc) <= DASK_AUC_TOLERANCE
    )
    return StageCheck(check.stage, close, check.differing, "roc_auc", (recorded_auc, rebuilt))


def reproduce(view: dict[str, Any], workspace: Path, keep: bool = False) -> list[StageCheck]:
    """Rebuild the version `view` (from `provenance.facts`) and compare per stage."""
    commit, data_md5 = view["code"]["git_commit"], view["data"]["md5"]
    recorded = view["stages"]
    if not commit or not data_md5:
        raise ReproduceError(f"version {view['version']} lacks git_commit/data_md5 lineage tags")
    if not recorded:
        raise ReproduceError(
            f"version {view['version']} has no recorded dvc.lock (artifact lineage/dvc.lock)"
        )
    if (
        subprocess.run(
            ["git", "cat-file", "-e", f"{commit}^{{commit}}"],
            cwd=workspace,
            capture_output=True,
            check=False,
        ).returncode
        != 0
    ):
        raise ReproduceError(
            f"commit {commit} is not in this repository; `git fetch` the branch it was trained on"
        )
    tmp = Path(tempfile.mkdtemp(prefix="predictflow-reproduce-"))
    clone, store = tmp / "repo", tmp / "mlflow"
    env = _child_env(store, clone)
    try:
        for args in (
            ["git", "clone", "-q", "--shared", "--no-checkout", str(workspace), str(clone)],
            ["git", "-C", str(clone), "checkout", "-q", "--detach", commit],
        ):
            done = _run(args, tmp, env)
            if done.returncode != 0:
                raise ReproduceError(f"cannot check out {commit}: {done.stderr.strip()}")
        pin = f"{view['data'].get('path') or paths.RAW_DATA.as_posix()}.dvc"
        if not (clone / pin).resolve().is_relative_to(clone.resolve()):
            raise ReproduceError(
                f"version {view['version']}: its data_path {pin[:-4]} is outside the repository"
            )
        missing = [f for f in ("dvc.yaml", "params.yaml", pin) if not (clone / f).exists()]
        if missing:
            raise ReproduceError(
                f"commit {commit[:12]} has no {', '.join(missing)}: it predates the pipeline"
            )
        _apply_params(clone / "params.yaml", recorded_params(recorded))
        _pin_data(clone / pin, data_md5)
        _restore_data(workspace, clone, env, data_md5, pin)
        on_dask = recorded_engine(recorded) == "dask"
        last = "evaluate" if on_dask else REBUILT_STAGES[-1]
        dvc = [sys.executable, "-m", "dvc"]
        built = _run([*dvc, "repro", "--force", "--no-run-cache", last], clone, env)
        if built.returncode != 0:
            tail = (built.stderr or built.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ReproduceError(f"the rebuild failed at commit {commit[:12]}: {tail[0]}")
        checks = compare(recorded, evidence.load_lock(clone))
        if on_dask:
            checks[-1] = compare_dask_fit(checks[-1], view["metrics"].get("roc_auc"), clone)
        return checks
    finally:
        if keep:
            print(f"kept the rebuild in {clone}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def check_version(
    client: MlflowClient, ref: str | None, workspace: Path, keep: bool = False
) -> dict[str, Any]:
    """`predictflow reproduce`: rebuild the version `ref` names and compare; return the facts
    (`matches` is true only when every stage's outputs have the recorded hashes)."""
    import logging
    import time

    from predictflow.lineage import provenance, registry

    view = provenance.facts(client, registry.resolve(client, ref), workspace)
    logging.getLogger(__name__).info(
        "rebuilding version %s from commit %s and data md5 %s ...",
        view["version"],
        (view["code"]["git_commit"] or "?")[:12],
        view["data"]["md5"],
    )
    started = time.monotonic()
    checks = reproduce(view, workspace, keep=keep)
    return {
        "version": view["version"],
        "git_commit": view["code"]["git_commit"],
        "data_md5": view["data"]["md5"],
        "matches": all(check.matches for check in checks),
        "seconds": round(time.monotonic() - started, 1),
        "stages": {
            c.stage: {
                "matches": c.matches,
                "compared": c.compared,
                "differing": {
                    path: {"recorded": rec, "rebuilt": new}
                    for path, (rec, new) in c.differing.items()
                },
                **(
                    {
                        "roc_auc": {"recorded": c.roc_auc[0], "rebuilt": c.roc_auc[1]},
                        "tolerance": DASK_AUC_TOLERANCE,
                    }
                    if c.roc_auc
                    else {}
                ),
            }
            for c in checks
        },
    }


def render_check(facts: dict[str, Any]) -> str:
    """Per stage match or DIFFERS (with the differing hashes), then the verdict."""
    lines = []
    for stage, check in facts["stages"].items():
        lines.append(f"  {'match' if check['matches'] else 'DIFFERS':<8}{stage}")
        if check.get("compared") == "roc_auc":
            auc = check["roc_auc"]
            rebuilt = "none" if auc["rebuilt"] is None else f"{auc['rebuilt']:.4f}"
            recorded = "none" if auc["recorded"] is None else f"{auc['recorded']:.4f}"
            lines.append(
                f"          a dask fit, compared by held-out roc_auc: recorded {recorded}, "
                f"rebuilt {rebuilt} (tolerance {check['tolerance']})"
            )
            continue
        lines += [
            f"          {path}: recorded {pair['recorded']}, rebuilt {pair['rebuilt']}"
            for path, pair in check["differing"].items()
        ]
    version = facts["version"]
    by_auc = any(c.get("compared") == "roc_auc" for c in facts["stages"].values())
    lines.append(
        f"version {version} did NOT reproduce"
        if not facts["matches"]
        else f"version {version} reproduced: data and features byte for byte, the model by "
        "held-out roc_auc"
        if by_auc
        else f"version {version} reproduced byte for byte"
    )
    return "\n".join(lines)
