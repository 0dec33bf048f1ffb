"""The tracking store is never lost, duplicated or waited on forever (issue 11, store items).

Each table row is an attack; what must hold afterwards is checked for every row: exit status,
one `error:` line naming the store and no traceback, user files byte-identical, the registry
unchanged, no RUNNING run left behind. Real processes only: a real `dvc`, a real SQLite store
held locked by a real process, real sockets that refuse or never answer, a real `mv`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from predictflow.base.errors import StoreError
from predictflow.lineage import evidence, tracking
from predictflow.ops import migrate

from .conftest import (
    BIN,
    assert_one_line_error,
    child_env,
    dvc,
    predictflow,
    run,
    stage_error_line,
)

STORE = Path("mlflow_data/mlflow.db")
MODEL = "churn-predictor"


def client(repo: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{repo / STORE}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def store_state(repo: Path) -> tuple:
    """Versions with their aliases, and every run with its status: what no failure may change."""
    c = client(repo)
    versions = tuple(
        sorted(
            (int(v.version), tuple(sorted(c.get_model_version(MODEL, v.version).aliases)))
            for v in c.search_model_versions(f"name = '{MODEL}'")
        )
    )
    experiment = c.get_experiment_by_name("churn-prediction")
    runs = tuple(
        sorted((r.info.run_id, r.info.status) for r in c.search_runs([experiment.experiment_id]))
    )
    return versions, runs


def file_bytes(repo: Path, *names: str) -> dict[str, bytes]:
    return {name: (repo / name).read_bytes() for name in names}


USER_FILES = ("dvc.lock", "params.yaml", "models/model.pkl", "metrics/eval.json")


@pytest.fixture(scope="module")
def project(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the reproduced project, store included, made to point at itself."""
    repo = tmp_path_factory.mktemp("store") / "repo"
    shutil.copytree(built_repo, repo, symlinks=True)
    predictflow(repo, "doctor", "--fix", check=False)  # the copied store names built_repo
    return repo


def stage_cmd(name: str) -> list[str]:
    """A stage's command from dvc.yaml, run by hand (what `dvc repro` would run)."""
    from predictflow.lineage.evidence import read_pipeline

    spec = read_pipeline(Path(__file__).parents[1])
    return [sys.executable, *spec["stages"][name]["cmd"].split()[1:]]


# -- 4. bounded waits on an unreachable server ---------------------------------------------


@pytest.fixture(scope="module")
def refused_uri() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # closed again: connections are refused


@pytest.fixture(scope="module")
def silent_uri() -> Iterator[str]:
    """A socket that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


COMMANDS = {
    "lineage": ["lineage"],
    "promote": ["promote", "1", "--to", "staging", "--reason", "test"],
    "predict": ["predict", "--input", "data/customers.csv", "--output", "scores.csv"],
    "report": ["report", "--output", "report.html"],
    "reproduce": ["reproduce", f"models:/{MODEL}/1"],
    "migrate-to": ["store", "migrate", "--to", "{uri}"],
    "migrate-from": ["store", "migrate", "--from", "{uri}", "--to", "sqlite:///{tmp}/new.db"],
}
STAGES = ("train", "register")  # evaluate never opens the store (test_evaluate_register)


@pytest.mark.pipeline
@pytest.mark.parametrize("server", ["refused", "silent"])
@pytest.mark.parametrize("command", [*COMMANDS, "doctor", *STAGES])
def test_an_unreachable_server_is_given_up_on_within_seconds(
    project: Path, tmp_path: Path, request, server: str, command: str
) -> None:
    uri = request.getfixturevalue(f"{server}_uri")
    before, files = store_state(project), file_bytes(project, *USER_FILES)
    env = {"MLFLOW_TRACKING_URI": uri}
    started = time.monotonic()
    if command in STAGES:
        result = run(stage_cmd(command), project, check=False, **env)
    else:
        args = [a.format(uri=uri, tmp=tmp_path) for a in COMMANDS.get(command, [command])]
        result = run([BIN / "predictflow", *args], project, check=False, **env)
    elapsed = time.monotonic() - started

    assert elapsed < 30, f"{command} took {elapsed:.0f} s against a {server} server"
    if command == "doctor":  # a report, not an error line: the store finding names the URI
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert f"PROBLEM  tracking store       tracking server {uri}" in result.stdout
    elif command in STAGES:  # a stage logs progress lines (INFO) before it connects
        stage_error_line(result, command, uri)
    else:
        assert_one_line_error(result, uri)
    assert store_state(project) == before
    assert file_bytes(project, *USER_FILES) == files
    assert not (project / "scores.csv").exists() and not (project / "report.html").exists()


def test_user_set_http_limits_win_over_the_bounded_defaults(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    tracking.bound_http_waits()
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "60"
    assert (
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
        == tracking.HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    )


# -- 1 and 5. a store another process holds locked is busy, not corrupt --------------------

HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


class Holder:
    """A real process holding `BEGIN EXCLUSIVE` on the store for `seconds`."""

    def __init__(self, db: Path, seconds: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(db), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        assert self.proc.stdout.readline().strip() == "locked"

    def __enter__(self) -> Holder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


BUSY_CASES = {
    "lineage": (["predictflow", "lineage"], "predictflow"),
    "promote": (["predictflow", "promote", "1", "--to", "staging"], "predictflow"),
    "train": (stage_cmd("train"), "train"),
    "register": (stage_cmd("register"), "register"),
}


@pytest.mark.pipeline
@pytest.mark.parametrize("case", list(BUSY_CASES))
def test_a_store_locked_longer_than_the_wait_fails_with_one_line(project: Path, case: str):
    args, prefix = BUSY_CASES[case]
    args = [BIN / "predictflow", *args[1:]] if args[0] == "predictflow" else args
    before, files = store_state(project), file_bytes(project, *USER_FILES)
    with Holder(project / STORE, 120):
        started = time.monotonic()
        result = run(args, project, check=False, PREDICTFLOW_STORE_BUSY_TIMEOUT="2")
        elapsed = time.monotonic() - started
    fragments = (f"sqlite:///{project / STORE}", "is busy")
    if prefix == "predictflow":
        assert_one_line_error(result, *fragments)
    else:
        stage_error_line(result, prefix, *fragments)
    assert elapsed < 30
    assert store_state(project) == before  # no run started, none left RUNNING
    assert file_bytes(project, *USER_FILES) == files


def opened(pid: int, path: Path, timeout: float = 300) -> None:
    """Block until process `pid` has `path` open: it is now waiting for the lock."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(Path(f.path) == path for f in psutil.Process(pid).open_files()):
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} never opened {path}")


@pytest.mark.pipeline
def test_a_store_locked_shorter_than_the_wait_is_waited_for(project: Path) -> None:
    before = store_state(project)
    with Holder(project / STORE, 600):
        train = subprocess.Popen(
            stage_cmd("train"),
            cwd=project,
            env=child_env(PREDICTFLOW_STORE_BUSY_TIMEOUT="120"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        opened(train.pid, project / STORE)
        time.sleep(10)  # longer than MLflow's own 5 s busy timeout, then the holder lets go
    _, stderr = train.communicate(timeout=600)
    assert train.returncode == 0, stderr
    runs = store_state(project)[1]
    assert len(runs) == len(before[1]) + 1 and all(s == "FINISHED" for _, s in runs)
    assert "up to date" in dvc(project, "status").stdout
    assert evidence.file_md5(project / "models/model.pkl") == evidence.locked_out_md5(
        evidence.load_lock(project), "models/model.pkl"
    )


@pytest.mark.pipeline
@pytest.mark.parametrize("fix", [[], ["--fix"]])
def test_doctor_reports_a_locked_store_busy_and_moves_nothing(project: Path, fix) -> None:
    db = project / STORE
    before, files = db.read_bytes(), sorted(db.parent.iterdir())
    with Holder(db, 120):
        result = run(
            [BIN / "predictflow", "doctor", *fix],
            project,
            check=False,
            PREDICTFLOW_STORE_BUSY_TIMEOUT="2",
        )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"PROBLEM  tracking store       {db} is busy" in result.stdout
    assert "corrupt" not in result.stdout
    assert db.read_bytes() == before
    assert sorted(db.parent.iterdir()) == files  # no backup, nothing moved aside


@pytest.mark.parametrize("value", ["soon", "-1", "inf", "nan"])
def test_a_busy_wait_that_is_not_a_duration_is_refused(monkeypatch, value: str) -> None:
    monkeypatch.setenv(tracking.BUSY_ENV, value)
    with pytest.raises(StoreError, match=f"PREDICTFLOW_STORE_BUSY_TIMEOUT='{value}'"):
        tracking.busy_timeout()


@pytest.mark.pipeline  # runs the real stage or command as a process
@pytest.mark.parametrize("content", [b"not a database", b"SQLite format 3\0" + b"\xff" * 4000])
def test_a_damaged_store_is_one_line_pointing_at_doctor(tmp_path: Path, content: bytes) -> None:
    run(["git", "init", "-q"], tmp_path)
    (tmp_path / "mlflow_data").mkdir()
    (tmp_path / STORE).write_bytes(content)
    result = predictflow(tmp_path, "lineage", check=False)
    assert_one_line_error(result, f"sqlite:///{tmp_path / STORE}", "predictflow doctor")
    assert (tmp_path / STORE).read_bytes() == content


# -- 2. migrating a store onto itself, however it is spelled ------------------------------


def _spellings(repo: Path, tmp_path: Path) -> dict[str, str]:
    db = repo / STORE
    (tmp_path / "link").symlink_to(db.parent, target_is_directory=True)
    hard = tmp_path / "hard.db"
    hard.hardlink_to(db)
    return {
        "dot-dot": f"sqlite:///{db.parent}/../mlflow_data/mlflow.db",
        "symlinked dir": f"sqlite:///{tmp_path / 'link' / 'mlflow.db'}",
        "relative": "sqlite:///mlflow_data/mlflow.db",
        "hard link": f"sqlite:///{hard}",
        "double slash": f"sqlite:///{db.parent}//mlflow.db",
    }


@pytest.mark.pipeline
def test_migrating_the_store_onto_itself_is_refused_however_spelled(project, tmp_path) -> None:
    before = store_state(project)
    for name, target in _spellings(project, tmp_path).items():
        result = predictflow(project, "store", "migrate", "--to", target, check=False)
        assert_one_line_error(result, "same store", target), name
        assert store_state(project) == before, name


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("http://Example.org:80/", "http://example.org", True),
        ("https://h/mlflow/../x/", "https://h:443/x", True),
        ("http://h:5000", "http://h:5001", False),
        ("http://h/a", "https://h/a", False),
        ("postgresql://u@h/db", "postgresql://u@h/db/", True),
    ],
)
def test_server_uris_are_compared_by_identity(a: str, b: str, same: bool) -> None:
    assert (migrate.store_identity(a) == migrate.store_identity(b)) is same


# -- 3. a lost or swapped store, a moved project -----------------------------------------


def _findings(repo: Path) -> dict[str, dict]:
    result = predictflow(repo, "doctor", "--json", check=False)
    return {f["check"]: f for f in json.loads(result.stdout)["findings"]}


def _make_repro(repo: Path) -> None:
    """The README's `make repro` in a copy, sharing this venv (no second install)."""
    (repo / ".venv").unlink(missing_ok=True)
    (repo / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    # Older than the shared venv's `.installed`: else, after an edit of pyproject.toml, make
    # reinstalls this copy into the shared venv, whose predictflow then points at a temp dir.
    for name in ("pyproject.toml", "constraints.txt"):
        os.utime(repo / name, (0, 0))
    run(["make", "repro"], repo)


@pytest.mark.pipeline
@pytest.mark.parametrize("attack", ["deleted", "swapped"])
def test_a_lost_or_swapped_store_is_found_and_make_repro_registers_again(
    project: Path, tmp_path: Path, attack: str
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(project, repo, symlinks=True)
    predictflow(repo, "doctor", "--fix", check=False)  # the copy's store at home in the copy
    if attack == "deleted":
        shutil.rmtree(repo / "mlflow_data")
    else:  # a store with runs but without this model's version
        with sqlite3.connect(repo / STORE) as db:
            db.execute("DELETE FROM model_version_tags")
            db.execute("DELETE FROM registered_model_aliases")
            db.execute("DELETE FROM model_versions")
    lock = (repo / "dvc.lock").read_bytes()
    receipt = json.loads((repo / "models/registration.json").read_text())

    found = _findings(repo)["workspace model"]
    assert found["status"] == "problem" and receipt["model_md5"] in found["detail"]
    assert "lost or swapped" in found["detail"] and "make repro" in found["fix"]

    _make_repro(repo)
    assert _findings(repo)["workspace model"]["status"] == "ok"
    versions = client(repo).search_model_versions(f"tags.model_md5 = '{receipt['model_md5']}'")
    assert len(versions) == 1
    assert (repo / "dvc.lock").read_bytes() == lock
    state = store_state(repo)
    _make_repro(repo)  # nothing lost now: a second call changes nothing
    assert store_state(repo) == state


@pytest.mark.pipeline
def test_a_moved_project_is_repaired_by_doctor_fix(project: Path, tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "moved" / "repo"
    shutil.copytree(project, old, symlinks=True)
    predictflow(old, "doctor", "--fix", check=False)  # at home in `old` first
    assert _findings(old)["artifact locations"]["status"] == "ok"
    new.parent.mkdir()
    run(["mv", str(old), str(new)], tmp_path)
    before = store_state(new)

    found = _findings(new)["artifact locations"]
    assert found["status"] == "problem" and str(old) in found["detail"]
    train = run(stage_cmd("train"), new, check=False)
    stage_error_line(train, "train", "outside this project", "predictflow doctor --fix")
    assert store_state(new) == before

    fixed = predictflow(new, "doctor", "--fix", check=False)
    assert "FIXED    artifact locations" in fixed.stdout
    assert list((new / "mlflow_data").glob("mlflow.db.bak-*"))
    findings = _findings(new)
    assert findings["artifact locations"]["status"] == "ok"
    assert findings["registered versions"]["status"] == "ok"  # old versions load again
    run(stage_cmd("train"), new)
    c = client(new)
    experiment = c.get_experiment_by_name("churn-prediction")
    (latest,) = c.search_runs([experiment.experiment_id], max_results=1)
    assert latest.info.artifact_uri.startswith((new / "mlflow_data").as_uri())
