"""Facts about where a model came from: git, `dvc.lock`, `.dvc` pins and content hashes.

Everything here reads files or asks git/DVC; nothing writes. Tracking and registry code turn these
facts into MLflow tags (see `tracking.LineageTags`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from predictflow.base.dvc_yaml import read_yaml, yaml_problem
from predictflow.base.errors import UserError

LOCK_FILE = "dvc.lock"
PIPELINE_FILE = "dvc.yaml"


class LineageError(UserError):
    """The repository is not in a state the requested lineage fact can be read from."""


def workspace_root(start: Path | None = None) -> Path:
    """The DVC workspace the process runs in: its `dvc.lock`, data and git state.

    Inside `dvc exp run --temp/--queue` this is the throw-away copy under `.dvc/tmp/exps/`;
    the shared MLflow store is elsewhere (`tracking.store_root`). Not `dvc.repo.Repo.find_root`:
    importing `dvc.repo` adds about 1 s to every command, and it raises outside a DVC repository.
    """
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / PIPELINE_FILE).exists() or (candidate / ".dvc").is_dir():
            return candidate
    return here


def file_md5(path: Path | str) -> str:
    """MD5 of a file's bytes, as DVC records it for a file out."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def path_md5(path: Path | str) -> str:
    """The md5 DVC records for an out: a file's bytes, or for a folder DVC's `.dir` md5."""
    folder = Path(path)
    if not folder.is_dir():
        return file_md5(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return dir_md5((f.relative_to(folder).parts, f.stat().st_size, file_md5(f)) for f in files)


def dir_md5(files: Iterable[tuple[tuple[str, ...], int, str]]) -> str:
    """DVC's `.dir` md5 of a folder from its files' (relative path parts, size, md5), computed
    by DVC's own `dvc_data` Tree, as `dvc.lock` records a folder out."""
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.meta import Meta
    from dvc_data.hashfile.tree import Tree

    tree = Tree()
    for key, size, md5 in files:
        tree.add(key, Meta(size=size), HashInfo("md5", md5))
    tree.digest()
    return tree.hash_info.value


def _git(root: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return None
    return result.stdout if result.returncode == 0 else None


def git_commit(root: Path) -> str | None:
    """HEAD's commit, or None outside git / before the first commit."""
    out = _git(root, "rev-parse", "--verify", "-q", "HEAD")
    return out.strip() if out else None


def read_pipeline(root: Path) -> dict[str, Any]:
    """`dvc.yaml` as DVC runs it: its `${paths.*}` rendered from its own inline `vars:`.

    DVC's own interpolation (`dvc.parsing.context.Context`), so `cmd`, `deps` and `outs` read
    here are the strings `dvc.lock` records. Only inline vars are loaded: the pipeline keeps its
    paths there (vars files and params.yaml values are not interpolated into paths). An empty
    dict when the workspace has no `dvc.yaml`.
    """
    from dvc.parsing.context import Context

    try:
        with open(root / PIPELINE_FILE, encoding="utf-8") as handle:
            spec = read_yaml(handle.read()) or {}
    except FileNotFoundError:
        return {}
    context: dict[str, Any] = {}
    for entry in spec.pop("vars", None) or []:
        if isinstance(entry, dict):
            context.update(entry)
    return Context(context).resolve(spec) if context else spec


def pipeline_outputs(root: Path) -> set[str]:
    """Every out, metric and plot path `dvc.yaml` declares (they change by design on a rerun)."""
    pipeline = read_pipeline(root)
    paths: set[str] = set()
    for stage in (pipeline.get("stages") or {}).values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind) or []:
                paths.add(next(iter(entry)) if isinstance(entry, dict) else str(entry))
    return paths


def git_dirty(root: Path) -> bool:
    """Whether the code or params differ from HEAD.

    `dvc.lock` and the pipeline's own outputs are left out: `dvc repro` rewrites them before any
    commit can hold them, so counting them would call every fresh model dirty.
    """
    out = _git(root, "status", "--porcelain", "--untracked-files=no")
    if out is None:
        return True
    generated = pipeline_outputs(root) | {LOCK_FILE}
    for line in out.splitlines():
        path = line[3:].split(" -> ")[-1].strip('"')
        if not any(path == g or path.startswith(g.rstrip("/") + "/") for g in generated):
            return True
    return False


def dvc_exp_name() -> str | None:
    """The experiment DVC is running, if any (`dvc exp run` sets it for every stage)."""
    return os.environ.get("DVC_EXP_NAME") or None


def pinned_md5(dvc_file: Path | str) -> str:
    """The md5 a `.dvc` file pins for its single out (the raw data version)."""
    try:
        with open(dvc_file, encoding="utf-8") as handle:
            pin = yaml.safe_load(handle)
    except FileNotFoundError:
        raise LineageError(
            f"{dvc_file}: not found; restore it with `git checkout {dvc_file}`, "
            "or track the data with `dvc add`"
        ) from None
    except OSError as err:
        raise LineageError(f"{dvc_file}: cannot read it ({err.strerror})") from None
    except (UnicodeDecodeError, yaml.YAMLError):
        raise LineageError(
            f"{dvc_file}: not a readable .dvc file; restore it with `git checkout {dvc_file}`"
        ) from None
    return pin_md5(pin, str(dvc_file))


def pin_md5(pin: object, source: str) -> str:
    """The md5 of a parsed `.dvc` file's single out (`source` names it in the error)."""
    outs = pin.get("outs") if isinstance(pin, dict) else None
    first = outs[0] if isinstance(outs, list) and outs else None
    if not isinstance(first, dict) or "md5" not in first:
        raise LineageError(f"{source}: no md5 recorded; run `dvc add` on its data")
    return str(first["md5"])


@dataclass(frozen=True)
class StageHashes:
    """What `dvc.lock` recorded for one stage: md5 of each dep and out, and its params."""

    deps: dict[str, str]
    outs: dict[str, str]
    params: dict[str, object]


def read_lock(text: str) -> dict[str, StageHashes]:
    """Parse `dvc.lock` content into per-stage hashes, with DVC's YAML semantics: PyYAML would
    read the `1e-05` DVC writes for a float param as a string, and `on` as True."""
    from ruamel.yaml import YAMLError

    try:
        lock = read_yaml(text) or {}
    except YAMLError as err:
        problem = yaml_problem(err)
        raise LineageError(f"{LOCK_FILE}: {problem}; restore it with `git checkout`") from None
    stages: dict[str, StageHashes] = {}
    for name, stage in (lock.get("stages") or {}).items():

        def hashes(entries: list[dict[str, object]] | None) -> dict[str, str]:
            return {str(e["path"]): str(e.get("md5", "")) for e in entries or []}

        params: dict[str, object] = {}
        for values in (stage.get("params") or {}).values():
            params.update(values)
        stages[name] = StageHashes(hashes(stage.get("deps")), hashes(stage.get("outs")), params)
    return stages


def load_lock(root: Path) -> dict[str, StageHashes]:
    path = root / LOCK_FILE
    if not path.exists():
        raise LineageError(f"{path}: not found; run `dvc repro` first")
    return read_lock(path.read_text(encoding="utf-8"))


def locked_out_md5(stages: dict[str, StageHashes], out: str) -> str | None:
    """The md5 `dvc.lock` records for an out path, whichever stage produces it."""
    for stage in stages.values():
        if out in stage.outs:
            return stage.outs[out]
    return None


def locked_dep_md5(stages: dict[str, StageHashes], dep: str) -> str | None:
    """The md5 `dvc.lock` records for a dep path (the raw data: `prepare`'s dep)."""
    for stage in stages.values():
        if dep in stage.deps:
            return stage.deps[dep]
    return None


def locked_data_md5(root: Path, data: Path) -> str:
    """The raw data's md5 as the pipeline used it: `dvc.lock`, the record `register` checks.

    Read from the lock rather than from the `.dvc` pin, so the run, the version and the lock
    cannot disagree. Inside `dvc repro` the lock already holds `prepare`'s entry when `train`
    runs (DVC writes each stage's entry as it finishes).
    """
    md5 = locked_dep_md5(load_lock(root), data.as_posix())
    if not md5:
        raise LineageError(
            f"{root / LOCK_FILE}: no stage records {data} as a dep; run `dvc repro` first"
        )
    return md5


def stale_stages(root: Path, target: str) -> dict[str, list[object]]:
    """`dvc status` of `target` and every stage upstream of it: empty when all match `dvc.lock`.

    Safe inside a running `dvc repro`: DVC releases its repository lock while a stage command runs.
    """
    from dvc.repo import Repo  # imported here: 1 s, only the register/doctor paths need it

    with Repo(str(root)) as repo:
        return repo.status(targets=[target], with_deps=True)


def sealed_commit(root: Path, model_path: str, model_md5: str) -> str | None:
    """The first commit whose `dvc.lock` pins this model md5: the version is then reproducible
    from git alone. None while the model only exists in an uncommitted lock."""
    out = _git(root, "log", "--reverse", "--format=%H", f"-S{model_md5}", "--", LOCK_FILE)
    for commit in (out or "").split():
        text = _git(root, "show", f"{commit}:{LOCK_FILE}")
        if text and locked_out_md5(read_lock(text), model_path) == model_md5:
            return commit
    return None


def describe_stale(stale: dict[str, list[object]]) -> str:
    """`train (changed outs: models/model.pkl)`-style summary of `dvc status` output."""
    parts = []
    for name, changes in stale.items():
        details = []
        for change in changes:
            if isinstance(change, dict):
                for kind, paths in change.items():
                    if isinstance(paths, dict):
                        details.append(f"{kind}: {', '.join(f'{p} {s}' for p, s in paths.items())}")
                    else:
                        details.append(str(kind))
            else:
                details.append(str(change))
        parts.append(f"{name.split(':')[-1]} ({'; '.join(details)})" if details else name)
    return ", ".join(parts)


def check_lock(root: Path, upstream: str, outs: dict[Path, str]) -> dict[Path, str]:
    """Refuse unless `upstream` and every stage before it match `dvc.lock`; return the md5 of
    each file in `outs` (path -> the stage to rerun when it differs from the lock).

    `dvc status` trusts its mtime cache, so a file rewritten with the same size and mtime
    passes it: the files a caller relies on are hashed again here.
    """
    stale = stale_stages(root, upstream)
    if stale:
        raise LineageError(
            f"dvc.lock is not clean, refusing to register: {describe_stale(stale)}; "
            "run `dvc repro` first"
        )
    lock = load_lock(root)
    hashes = {}
    for path, producer in outs.items():
        locked = locked_out_md5(lock, path.as_posix())
        hashes[path] = file_md5(path)
        if locked != hashes[path]:
            raise LineageError(
                f"{path}: md5 {hashes[path]} differs from dvc.lock ({locked}); refusing to "
                f"register (run `dvc repro -f {producer}`)"
            )
    return hashes


def lock_without(root: Path, stage: str, dest: Path) -> Path:
    """A copy of `dvc.lock` in `dest` without `stage`'s entry: while a stage runs, its entry is
    still the previous run's (another version's hashes), so it is left out, never shown."""
    lock = yaml.safe_load((root / LOCK_FILE).read_text(encoding="utf-8")) or {}
    (lock.get("stages") or {}).pop(stage, None)
    path = dest / LOCK_FILE
    path.write_text(yaml.safe_dump(lock, sort_keys=False), encoding="utf-8")
    return path


def _flat(values: dict[str, object], prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_trained_params(root: Path, stage: str, logged: dict[str, str]) -> None:
    """Refuse unless every param `dvc.lock` records for `stage` is the value its MLflow run
    logged: DVC hashes params.yaml when the stage ends, so a file changed while it trained (a
    second `dvc exp run` applying its own params) gives a lock that names params the model never
    saw. MLflow keeps params as strings, so values are compared as `str()` gives them."""
    locked = load_lock(root).get(stage)
    recorded = _flat(locked.params) if locked else {}
    differ = sorted(k for k, v in recorded.items() if logged.get(k) != str(v))
    if not recorded or differ:
        shown = ", ".join(f"{k} {recorded[k]} (run: {logged.get(k, 'absent')})" for k in differ)
        raise LineageError(
            f"{LOCK_FILE}: {stage} params differ from what its run trained with: "
            f"{shown or 'none recorded'}; refusing to register (params.yaml changed while it ran:"
            f" run experiments one at a time, or with `dvc exp run --queue`)"
        )
