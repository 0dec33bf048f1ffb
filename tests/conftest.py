"""Shared fixtures: a real copy of this repository in a temp git repo, run with real DVC/MLflow.

The expensive part (a cold `dvc repro` of the whole pipeline) runs once per session; tests that
change the repository work on their own `git clone` of it or restore what they touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .teamserver import Server

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Variables that would point a child at another store or make it think it runs inside DVC.
LEAKY_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_BACKEND_STORE_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_EXPERIMENT_ID",
    "DVC_ROOT",
    "DVC_EXP_NAME",
    "DVC_STAGE",
    "VIRTUAL_ENV",
)


def child_env(**extra: str) -> dict[str, str]:
    """Environment for real `dvc`/`git` children: the venv first on PATH, a git identity."""
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENV}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        GIT_AUTHOR_NAME="PredictFlow Tests",
        GIT_AUTHOR_EMAIL="tests@predictflow.invalid",
        GIT_COMMITTER_NAME="PredictFlow Tests",
        GIT_COMMITTER_EMAIL="tests@predictflow.invalid",
        DVC_NO_ANALYTICS="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run(
    args: list[str], cwd: Path, check: bool = True, stdin: str | None = None, **env: str
) -> Result:
    """Run a command (fed `stdin` if given); on an unexpected failure show its output."""
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=child_env(**env),
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return result


def assert_one_line_error(result: Result, *fragments: str, prefix: str = "predictflow") -> str:
    """The promise for every user mistake: non-zero exit, exactly one `<prefix>: error: ...` line
    on stderr, no traceback, and the line names each fragment. Returns the line.

    `prefix` is `predictflow` for the command and the stage name (`prepare`, ...) for a stage;
    under `dvc repro` DVC adds its own lines, so pass `result` with only the stage's stderr or
    use `stage_error_line`.
    """
    assert result.returncode != 0, f"exit 0; stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith(f"{prefix}: error: "), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def stage_error_line(result: Result, stage: str, *fragments: str) -> str:
    """Like assert_one_line_error for a stage run by `dvc repro`: DVC prints its own summary
    around it, so exactly one `<stage>: error:` line among them, and no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith(f"{stage}: error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    return errors[0]


def committed_text(path: str) -> str:
    """A project file as HEAD has it. Tests that need the project's own params read this, not
    the working tree: after the README's tour (`dvc exp run -S model.max_depth=6`) the
    developer's params.yaml differs, and the suite must not depend on that."""
    return subprocess.run(
        ["git", "show", f"HEAD:{path}"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout


def dvc(repo: Path, *args: str, check: bool = True) -> Result:
    return run([sys.executable, "-m", "dvc", *args], repo, check=check)


def git(repo: Path, *args: str, check: bool = True) -> Result:
    return run(["git", *args], repo, check=check)


def predictflow(repo: Path, *args: str, check: bool = True) -> Result:
    return run([BIN / "predictflow", *args], repo, check=check)


def repo_client(repo: Path):
    """An MLflow client on a project's own SQLite store (`mlflow_data/` in `repo`)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{repo / 'mlflow_data' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def free_port() -> int:
    """A free TCP port on the loopback address (servers under test bind 127.0.0.1 only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """End a server started with start_new_session=True and every process it started:
    SIGTERM the group, then SIGKILL whatever outlived it (workers, a hung leader)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=timeout)


# What `make install` builds into the working tree beside .venv: DVC's offline plots page.
INSTALLED_FILES = (".dvc/plots.html",)


def cut_into_parts(whole: Path, folder: Path, parts: int) -> list[Path]:
    """`whole`'s rows cut into `parts` CSV files with a header each, like monthly exports
    (`2026-01.csv`, ...), in a new `folder`."""
    header, *lines = whole.read_text(encoding="utf-8").splitlines(keepends=True)
    folder.mkdir(parents=True)
    size = -(-len(lines) // parts)
    written = []
    for number in range(parts):
        part = folder / f"2026-{number + 1:02d}.csv"
        part.write_text(header + "".join(lines[number * size : (number + 1) * size]))
        written.append(part)
    return written


def copy_project(dest: Path) -> Path:
    """This working tree's project files (what git tracks or would track), as a new git repo."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for name in INSTALLED_FILES:  # git-ignored, made by `make install`
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, dest / name)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "copy of the project under test")
    return dest


MOVE_STORE = (
    "import sys; from pathlib import Path; from predictflow.ops import doctor_store; "
    "finding = doctor_store.check_locations(Path(sys.argv[1]), fix=True); "
    "sys.exit(0 if finding.status == 'ok' or finding.fixed else finding.detail)"
)


def copy_built_repo(source: Path, dest: Path) -> Path:
    """A copy of a built pipeline repo whose MLflow store moves along, as a user moves a project:
    `predictflow doctor --fix`'s repair points the store's artifact paths at the copy (without
    it, `train` refuses a store whose artifacts live in another project's folder)."""
    shutil.copytree(source, dest, symlinks=True)
    run([sys.executable, "-c", MOVE_STORE, dest], dest)
    return dest


@contextmanager
def migrated_server(
    repo: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Server, dict[str, Any]]]:
    """A fresh authenticated team server (artifacts under `workdir`) holding `repo`'s store as
    `predictflow store migrate --json` copied it, with that command's facts; this process and
    its children log in as the admin. Needs the `postgres` fixture (below; the server is
    tests/teamserver.py's)."""
    from .teamserver import password, team_server

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password("admin"))
    with team_server(workdir, PREDICTFLOW_ARTIFACTS=str(workdir / "artifacts")) as server:
        migrated = predictflow(repo, "store", "migrate", "--to", server.uri, "--json")
        yield server, json.loads(migrated.stdout)


MLFLOW_URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(scope="module", autouse=True)
def mlflow_uris_restored() -> Iterator[None]:
    """Each test module starts on the process-wide MLflow URIs the previous one found.

    `mlflow.set_tracking_uri` sets a module global and the environment, and code inside MLflow
    reads them even when the caller holds a client on another store (`create_model_version` from
    a `models:/m-...` source looks the logged model up through a default `MlflowClient()`). Under
    pytest-xdist the files a worker runs before a module differ from run to run, so a module that
    leaves its store as the default would make another fail in one run and pass in the next."""
    before_env = {name: os.environ.get(name) for name in MLFLOW_URI_ENV}
    before_uris = mlflow_default_uris()
    yield
    if "mlflow" in sys.modules:  # restored without importing MLflow into unit-test modules
        import mlflow

        mlflow.set_tracking_uri(before_uris[0])  # None: MLflow unsets it (and its variable)
        mlflow.set_registry_uri(before_uris[1])
    for name, value in before_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def mlflow_default_uris() -> tuple[str | None, str | None]:
    """MLflow's process-wide tracking and registry URIs (None before MLflow is imported or set)."""
    if "mlflow" not in sys.modules:
        return None, None
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return tracking_utils._tracking_uri, registry_utils._registry_uri


@pytest.fixture(scope="session")  # session: checked before the session-scoped pipeline_repo
def postgres() -> str:
    """The PostgreSQL the team-server tests use (tests/teamserver.py), or skip/fail saying why."""
    from .teamserver import POSTGRES, admin

    admin().close()
    return POSTGRES


@pytest.fixture(scope="session")
def built_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project after `predictflow data ensure` + the session's only cold `dvc repro`: version 1,
    sealed by the committed dvc.lock, holds `staging`. No test changes it: a module that needs a
    built pipeline takes `copy_built_repo(built_repo, ...)` (seconds, where a cold build is
    minutes), so it sees this state whatever ran before it."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return build_repo(tmp_path_factory.mktemp("built") / "repo")
    # `make test` runs pytest-xdist workers: the first to get here builds, the others wait for
    # it and share the result (each copies it, as above) instead of building their own.
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent / "built"
    with FileLock(shared.with_suffix(".lock")):
        if not (shared / "built").is_file():
            shutil.rmtree(shared, ignore_errors=True)
            build_repo(shared / "repo")
            (shared / "built").touch()
    return shared / "repo"


def build_repo(dest: Path) -> Path:
    """A copy of the project, its data ensured and its pipeline run once (cold)."""
    repo = copy_project(dest)
    predictflow(repo, "data", "ensure")
    dvc(repo, "repro")
    return repo


@pytest.fixture(scope="session")
def pipeline_repo(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built project shared by the session's tests that read it (test_pipeline changes and
    restores it; its store keeps their experiments). Copy `built_repo` for a state of your own."""
    return copy_built_repo(built_repo, tmp_path_factory.mktemp("first") / "repo")


# Markers by cost (registered in pyproject.toml). `make test-fast` runs `-m unit`; `make test` all.
COSTS = ("unit", "pipeline", "services", "browser")
# Fixtures that imply a cost, whoever asks for them (directly or through another fixture).
COST_OF_FIXTURE = {"built_repo": "pipeline", "browser": "browser"}


# Under `make test` (pytest-xdist, whole files per worker) the longest files are handed out
# first, so no worker is left running one of them alone at the end (24.4 min in one run, where
# test_readme.py, 3 of its 4 minutes alone, came last).
LONGEST_FILES = (
    "test_team_server.py",
    "test_shadow.py",
    "test_invariants_store.py",
    "test_reliability.py",
    "test_readme.py",
    "test_dask_pipeline.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every test exactly its cost markers: a module's `pytestmark`, else what its fixtures
    imply, else `pipeline` for a legacy `slow` mark, else `unit`. Every test that is not a unit
    test is also `slow`, so `-m "not slow"` keeps meaning `-m unit`."""
    for item in items:
        costs = {mark.name for mark in item.iter_markers() if mark.name in COSTS}
        costs |= {cost for name, cost in COST_OF_FIXTURE.items() if name in item.fixturenames}
        if len(costs) > 1:
            costs.discard("unit")  # a fixture's cost outranks a module-wide `unit`
        if not costs:
            costs = {"pipeline"} if item.get_closest_marker("slow") else {"unit"}
        for cost in sorted(costs):
            item.add_marker(cost)
        if costs != {"unit"} and not item.get_closest_marker("slow"):
            item.add_marker("slow")
    if os.environ.get("PYTEST_XDIST_WORKER") is not None:  # each worker collects the same
        first = {name: rank for rank, name in enumerate(LONGEST_FILES)}
        items.sort(key=lambda item: first.get(item.path.name, len(first)))
