"""One workspace experiment at a time (issue 23, cause 7): a second `dvc exp run` is refused up
front, a stage run by `dvc repro` meanwhile is refused, the first run completes with its own
params, and nothing is registered from a run whose params are not the ones it trained with.

The end-to-end test runs real `dvc exp run`s on one copy of the built pipeline; the claim rules
themselves are checked on DVC's own record files in a temp folder (seconds, not minutes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from predictflow.lineage import exp_claim

from .conftest import (
    Result,
    assert_one_line_error,
    child_env,
    copy_built_repo,
    dvc,
    repo_client,
    run,
    stage_error_line,
)

CLAIM = (
    "from pathlib import Path; from predictflow.lineage import stage; "
    "stage.run('prepare', lambda: print('ran'), uses_store=False)"
)


def _record(root: Path, pid: int, name: str) -> None:
    """DVC's record of a running workspace experiment, written with DVC's own classes."""
    from dvc.repo.experiments.executor.base import ExecutorInfo
    from dvc_task.proc.process import ProcessInfo

    (root / exp_claim.RUN_DIR).mkdir(parents=True, exist_ok=True)
    ProcessInfo(pid, None, None, None, None).dump(str(root / exp_claim.PROC_FILE))
    info = ExecutorInfo("", "", "workspace", str(root), ".dvc", name=name)
    info.dump_json(str(root / exp_claim.INFO_FILE))


def _stage(root: Path, **env: str) -> Result:
    """A stage's entry (`stage.run`) in `root`, as DVC would start it with `env`."""
    return run([sys.executable, "-c", CLAIM], root, check=False, **env)


def _rwlock_blocks(root: Path) -> str:
    """What DVC's own experiments rwlock says to a `dvc exp run` wanting the workspace."""
    from dvc.fs import localfs
    from dvc.lock import LockError
    from dvc.rwlock import rwlock

    try:
        with rwlock(
            str(root / exp_claim.EXEC_DIR), localfs, "dvc exp run", [], ["workspace"], False
        ):
            return ""
    except LockError as err:
        return str(err)


@pytest.fixture
def sleeper() -> subprocess.Popen:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_plain_stage_runs_when_no_experiment_is_recorded(tmp_path: Path) -> None:
    assert _stage(tmp_path).stdout.strip() == "ran"
    assert not (tmp_path / exp_claim.EXEC_DIR / "rwlock").exists()  # nothing written


def test_a_record_of_a_dead_experiment_is_ignored(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    _record(tmp_path, dead.pid, "gone-exp")
    assert _stage(tmp_path).stdout.strip() == "ran"


def test_a_stage_outside_the_experiment_is_refused(tmp_path: Path, sleeper) -> None:
    _record(tmp_path, sleeper.pid, "lyric-doss")
    line = assert_one_line_error(_stage(tmp_path), prefix="prepare")
    for fragment in ("lyric-doss", str(sleeper.pid), "`dvc repro`", "--queue", "--temp"):
        assert fragment in line


def test_a_stage_of_an_experiment_that_another_overtook_is_refused(tmp_path: Path, sleeper) -> None:
    """DVC's record names another live `dvc exp run` (it started while this one was starting)."""
    _record(tmp_path, sleeper.pid, "other-exp")
    result = _stage(tmp_path, DVC_EXP_NAME="mine", DVC_ROOT=str(tmp_path))
    line = assert_one_line_error(
        result, "other-exp", "'mine'", "nothing is registered", prefix="prepare"
    )
    assert "--queue" in line


def test_a_stage_of_an_experiment_whose_record_is_gone_is_refused(tmp_path: Path) -> None:
    """Another `dvc exp run` ended here and DVC's clean-up removed the record of this one."""
    result = _stage(tmp_path, DVC_EXP_NAME="mine", DVC_ROOT=str(tmp_path))
    assert_one_line_error(result, "'mine'", "is gone", "nothing is registered", prefix="prepare")


def test_a_queued_or_temp_experiment_in_its_copy_is_not_checked(tmp_path: Path) -> None:
    """`--queue`/`--temp` stages run in a copy; DVC_ROOT names the parent workspace."""
    result = _stage(tmp_path, DVC_EXP_NAME="queued", DVC_ROOT=str(tmp_path / "parent"))
    assert result.stdout.strip() == "ran"


def test_the_claim_makes_dvc_refuse_the_workspace_and_dies_with_its_process(
    tmp_path: Path,
) -> None:
    """Pins DVC's private `_edit_rwlock` as exp_claim uses it: the entry it writes blocks DVC's
    own `rwlock` on `workspace` with our sentence, and DVC drops it once its process is gone."""
    _record(tmp_path, os.getpid(), "mine")  # this test process: the stage's parent, as DVC is
    result = _stage(tmp_path, DVC_EXP_NAME="mine", DVC_ROOT=str(tmp_path))
    assert result.stdout.strip() == "ran", result.stderr
    blocked = _rwlock_blocks(tmp_path)
    assert exp_claim.REFUSAL in blocked and f"(PID {os.getpid()})" in blocked

    dead = subprocess.Popen(["true"])
    dead.wait()
    from dvc.fs import localfs
    from dvc.rwlock import _edit_rwlock

    with _edit_rwlock(str(tmp_path / exp_claim.EXEC_DIR), localfs, False) as lock:
        lock["write"]["workspace"]["pid"] = dead.pid
    assert _rwlock_blocks(tmp_path) == ""


# --- real dvc exp runs on one built repo -----------------------------------------------------


@pytest.fixture(scope="module")
def repo(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_built_repo(built_repo, tmp_path_factory.mktemp("wsexp") / "repo")


def _max_depth(repo: Path) -> int:
    return yaml.safe_load((repo / "params.yaml").read_text())["model"]["max_depth"]


def _wait_for_claim(repo: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    lock = repo / exp_claim.EXEC_DIR / "rwlock"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if lock.is_file() and "a workspace experiment" in lock.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"no claim; exp run exited {proc.poll()}: {proc.stdout.read()}")


def test_a_second_exp_run_is_refused_and_the_first_registers_its_own_params(repo: Path) -> None:
    client = repo_client(repo)
    before = {v.version for v in client.search_model_versions("name='churn-predictor'")}
    first = subprocess.Popen(
        [sys.executable, "-m", "dvc", "exp", "run", "-n", "first-7", "-S", "model.max_depth=7"],
        cwd=repo,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_claim(repo, first)
        for flags in ([], ["--temp"], ["--queue"]):
            second = dvc(repo, "exp", "run", *flags, "-S", "model.max_depth=8", check=False)
            assert second.returncode != 0, second.stdout
            assert exp_claim.REFUSAL in second.stderr, second.stderr
            assert "Traceback" not in second.stderr
            assert _max_depth(repo) == 7  # the first run's params, untouched
        # A stage started directly, as `dvc repro` starts it, is refused in one line.
        prepare = run([sys.executable, "stages/prepare.py"], repo, check=False)
        assert_one_line_error(prepare, "first-7", "`dvc repro`", "--queue", prefix="prepare")
        repro = dvc(repo, "repro", check=False)
        assert repro.returncode != 0 and "Traceback" not in repro.stderr
        out, _ = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, out
    # Its claim ends with it (a watcher drops it), so the next `dvc exp run` gets no warning
    # from DVC that the process "had been killed".
    lock = repo / exp_claim.EXEC_DIR / "rwlock"
    deadline = time.monotonic() + 20
    while exp_claim.REFUSAL in lock.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert exp_claim.REFUSAL not in lock.read_text()
    assert "first-7" in dvc(repo, "exp", "list", "--name-only").stdout
    assert _max_depth(repo) == 7
    new = [
        v for v in client.search_model_versions("name='churn-predictor'") if v.version not in before
    ]
    assert len(new) == 1, [v.version for v in new]
    assert new[0].tags.get("dvc_exp_name") == "first-7"
    assert client.get_run(new[0].run_id).data.params["model.max_depth"] == "7"
    assert dvc(repo, "queue", "status").stdout.count("Queued") == 0  # nothing was enqueued


def test_register_refuses_a_lock_whose_params_the_run_did_not_train_with(repo: Path) -> None:
    """params.yaml and dvc.lock both say 9 (as when a second run changed the file while
    `train` ran, and DVC hashed it afterwards), but the run trained with 7: refused."""
    client = repo_client(repo)
    before = len(client.search_model_versions("name='churn-predictor'"))
    for name in ("params.yaml", "dvc.lock"):
        path = repo / name
        path.write_text(path.read_text().replace("max_depth: 7", "max_depth: 9"))
    result = dvc(repo, "repro", "--single-item", "--force", "register", check=False)
    stage_error_line(result, "register", "model.max_depth 9 (run: 7)", "refusing to register")
    assert len(client.search_model_versions("name='churn-predictor'")) == before
