"""What `dvc.yaml` claims about its stages, held against the code (no pipeline run needed).

1. Every path has one home: `dvc.yaml`'s `vars: paths:`, mirrored by `predictflow.core.paths`; no
   other module or stage script spells a pipeline path.
2. Every path a stage reads or writes is on its command line and declared: its cmd's paths are its
   deps and outs, and its deps name its script and every predictflow module the script imports
   (directly or through another module), as the header of `dvc.yaml` says.
"""

from __future__ import annotations

import ast
import itertools
import shlex
from pathlib import Path

import pytest

from predictflow.core import paths
from predictflow.lineage import evidence

from .conftest import REPO

PACKAGE = REPO / "src" / "predictflow"
# Imported by every stage but unable to change an out (the header of dvc.yaml says why), so their
# own imports (access, tracking: the 401/403 guard) are not followed either.
WRAPPERS = {"lineage/stage", "core/paths", "base/errors", "base/faults"}

PIPELINE = evidence.read_pipeline(REPO)
STAGES = PIPELINE["stages"]


def _declared(entries: list[object] | None) -> set[str]:
    return {next(iter(e)) if isinstance(e, dict) else str(e) for e in entries or []}


def _module_file(dotted: str) -> str | None:
    """`predictflow.core.io` -> "core/io" when that is a module file (not a package)."""
    relative = dotted.split(".", 1)[1].replace(".", "/") if "." in dotted else ""
    return relative if relative and (PACKAGE / f"{relative}.py").is_file() else None


def _predictflow_imports(source: Path) -> set[str]:
    """Module files of the package a file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("predictflow"):
            module = node.module or ""
            found |= {f"{module}.{alias.name}" for alias in node.names} | {module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("predictflow.")}
    return {name for name in map(_module_file, found) if name}


def _closure(script: Path) -> set[str]:
    seen: set[str] = set()
    todo = list(_predictflow_imports(script))
    while todo:
        name = todo.pop()
        if name in seen or name in WRAPPERS:
            continue
        seen.add(name)
        todo += _predictflow_imports(PACKAGE / f"{name}.py")
    return seen


def _cmd_paths(cmd: str) -> tuple[str, list[str]]:
    """The script a stage runs and the value of each `--option` on its command line."""
    argv = shlex.split(cmd)
    assert argv[0] == "python" and argv[1].startswith("stages/"), cmd
    return argv[1], [value for flag, value in itertools.pairwise(argv) if flag.startswith("--")]


# --- 1. one home per path -------------------------------------------------------------------------


def test_dvc_yaml_vars_and_the_paths_module_name_the_same_paths() -> None:
    raw = evidence.read_yaml((REPO / evidence.PIPELINE_FILE).read_text(encoding="utf-8"))
    (inline,) = [v for v in raw["vars"] if "paths" in v]
    assert dict(inline["paths"]) == {k: p.as_posix() for k, p in paths.DVC_VARS.items()}


def test_no_module_or_stage_script_spells_a_pipeline_path() -> None:
    spelled = {p.as_posix() for p in paths.DVC_VARS.values()} | {paths.RAW_DATA_PIN.as_posix()}
    offenders = []
    for source in [*PACKAGE.rglob("*.py"), *(REPO / "stages").glob("*.py")]:
        if source.name == "paths.py":
            continue
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in spelled:
                offenders.append(f"{source.relative_to(REPO)}:{node.lineno}: {node.value}")
    assert offenders == []


def test_the_rendered_pipeline_is_what_dvc_runs() -> None:
    """`lineage.read_pipeline` (what git_dirty and the report read) renders as DVC does."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        rendered = {stage.name: stage.cmd for stage in repo.index.stages if stage.cmd}
    assert rendered == {name: spec["cmd"] for name, spec in STAGES.items()}


# --- 2. every path a stage reads is declared ------------------------------------------------------


def _raw_path() -> str:
    return paths.RAW_DATA.as_posix()  # dvc.yaml's `paths.raw` (the test above keeps them equal)


@pytest.mark.parametrize("name", list(STAGES))
def test_command_line_paths_are_the_stage_deps_and_outs(name: str) -> None:
    spec = STAGES[name]
    script, cmd_paths = _cmd_paths(spec["cmd"])
    deps = _declared(spec.get("deps"))
    outs = set().union(*(_declared(spec.get(kind)) for kind in ("outs", "metrics", "plots")))
    data_deps = {d for d in deps if not d.startswith(("stages/", "src/"))}
    # outs under a directory the cmd names (DVCLive's plots/ and metrics.json) count as named
    named_outs = {o for o in outs if any(o == p or o.startswith(f"{p}/") for p in cmd_paths)}
    assert script in deps
    # `--raw` on train and register names the raw data whose md5 they read from dvc.lock (the
    # lineage tag), not a file they read: it is prepare's dep, so the lock holds its md5.
    raw = _raw_path()
    if raw in cmd_paths and raw not in deps:
        assert raw in _declared(STAGES["prepare"]["deps"])
        cmd_paths = [p for p in cmd_paths if p != raw]
    assert set(cmd_paths) <= deps | outs | {o.rsplit("/", 1)[0] for o in outs}, (
        "a path on the command line is neither a dep nor an out"
    )
    assert data_deps <= set(cmd_paths), "a data dep is not passed on the command line"
    assert named_outs == outs, "an out is not passed on the command line"


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_deps_name_every_module_the_script_imports(name: str) -> None:
    spec = STAGES[name]
    script, _ = _cmd_paths(spec["cmd"])
    declared = {d for d in _declared(spec.get("deps")) if d.startswith("src/predictflow/")}
    code_deps = {d for d in declared if d.endswith(".py")}
    assert all((REPO / d).is_file() for d in declared - code_deps)  # templates the code renders
    expected = {f"src/predictflow/{module}.py" for module in _closure(REPO / script)}
    if paths.MODEL.as_posix() in _declared(spec.get("deps")):
        # unpickling the model imports its first step's code (predictflow.model) and runs it
        expected |= {f"src/predictflow/{module}.py" for module in _closure(PACKAGE / "model.py")}
        expected.add("src/predictflow/model.py")
    assert code_deps == expected


# --- 3. lineage facts from dvc.lock ---------------------------------------------------------------


def test_the_data_md5_train_tags_is_the_one_dvc_lock_records_and_the_pin_agrees() -> None:
    locked = evidence.locked_data_md5(REPO, paths.RAW_DATA)
    assert locked == evidence.load_lock(REPO)["prepare"].deps[paths.RAW_DATA.as_posix()]
    assert locked == evidence.pinned_md5(REPO / paths.RAW_DATA_PIN)


def test_a_lock_without_the_raw_data_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / evidence.LOCK_FILE).write_text("schema: '2.0'\nstages: {}\n", encoding="utf-8")
    with pytest.raises(evidence.LineageError) as info:
        evidence.locked_data_md5(tmp_path, paths.RAW_DATA)
    assert str(info.value) == (
        f"{tmp_path / 'dvc.lock'}: no stage records data/customers.csv as a dep; "
        "run `dvc repro` first"
    )
