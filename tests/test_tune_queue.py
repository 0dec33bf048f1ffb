"""A dead queue worker must not poison the next sweep (issue 23, cause 8), and a killed sweep's
MLflow run is recognised as dead (issue 23 defect): `kill -9` of DVC's queue worker mid-sweep,
a next sweep that finds another sweep's task in the queue, `doctor --fix` on a killed sweep.

One copy of the built pipeline serves the module; its queue is left empty by each test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from .conftest import (
    BIN,
    Result,
    assert_one_line_error,
    child_env,
    copy_built_repo,
    dvc,
    predictflow,
    repo_client,
)

SPEC = "tune:\n  jobs: 1\n  metric: roc_auc\n  grid:\n    model.max_depth: [2, 3]\n"
SPEC += "    model.n_estimators: [10]\n"


@pytest.fixture(scope="module")
def repo(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_built_repo(built_repo, tmp_path_factory.mktemp("tunequeue") / "repo")


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    return path


def _start_tune(repo: Path, spec: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [BIN / "predictflow", "tune", "--spec", spec, "--name", name],
        cwd=repo,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _sweep_runs(repo: Path, sweep: str) -> list:
    client = repo_client(repo)
    experiment = client.get_experiment_by_name("churn-prediction")
    return client.search_runs([experiment.experiment_id], f"tags.`predictflow.sweep` = '{sweep}'")


def _wait_for(what, proc: subprocess.Popen, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        if proc.poll() is not None:
            raise AssertionError(f"tune exited {proc.returncode}: {proc.communicate()}")
        time.sleep(0.3)
    raise AssertionError("timed out")


def _workers(repo: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        if "queue-worker" in " ".join(proc.info["cmdline"] or []) and proc.info["cwd"] == str(repo):
            found.append(proc)
    return found


def _queue(repo: Path) -> str:
    return dvc(repo, "queue", "status").stdout


def test_a_killed_worker_is_noticed_its_finished_point_counted_and_leftover_removed(
    repo: Path, spec: Path
) -> None:
    tune = _start_tune(repo, spec, "dead")
    # The first point's train run exists: the worker is busy with it; kill -9 the worker.
    _wait_for(
        lambda: [r for r in _sweep_runs(repo, "dead") if r.data.tags.get("dvc_exp_name")], tune
    )
    workers = _workers(repo)
    assert workers
    for worker in workers:
        worker.kill()
    out, err = tune.communicate(timeout=600)
    line = assert_one_line_error(
        Result(tune.returncode, out, err),
        "every DVC queue worker of the sweep died",
        "(1/2 done: dead-01",  # its executor ended the point after its worker died
        "dead-02 were removed from the queue",
    )
    assert "Traceback" not in err, line
    status = _queue(repo)
    assert "Queued" not in status and "Running" not in status, status
    runs = _sweep_runs(repo, "dead")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FAILED"
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert {r.data.tags.get("dvc_exp_name") for r in runs} == {None, "dead-01"}  # 02 never ran


def test_a_sweep_refuses_a_task_it_did_not_queue_before_making_anything(
    repo: Path, spec: Path
) -> None:
    """A leftover of another sweep (or a user's `dvc exp run --queue`) would run under this
    sweep's parent run; refused in one line naming it and how to clear it."""
    dvc(repo, "exp", "run", "--queue", "-n", "leftover", "-S", "model.max_depth=4")
    try:
        result = predictflow(repo, "tune", "--spec", spec, "--name", "next", check=False)
        assert_one_line_error(result, "leftover", "`dvc queue remove leftover`")
        assert _sweep_runs(repo, "next") == []  # no parent run made
        status = _queue(repo)
        assert "next-" not in status and "leftover" in status  # nothing queued, nothing adopted
    finally:
        dvc(repo, "queue", "remove", "leftover")


def test_doctor_fix_marks_a_killed_sweep_and_keeps_a_live_one(repo: Path, spec: Path) -> None:
    client = repo_client(repo)
    experiment = client.get_experiment_by_name("churn-prediction").experiment_id
    live = client.create_run(  # a sweep whose process (this one) is alive
        experiment,
        tags={
            "predictflow.sweep": "alive",
            "predictflow.host": socket.gethostname(),
            "predictflow.pid": str(os.getpid()),
        },
    )
    tune = _start_tune(repo, spec, "killed")
    (parent,) = _wait_for(lambda: _sweep_runs(repo, "killed"), tune)
    assert parent.data.tags["predictflow.pid"] == str(tune.pid)
    os.kill(tune.pid, signal.SIGKILL)
    tune.communicate()
    dvc(repo, "queue", "stop", "--kill", check=False)
    dvc(repo, "queue", "remove", "--queued", check=False)
    assert client.get_run(parent.info.run_id).info.status == "RUNNING"  # what kill -9 leaves

    predictflow(repo, "doctor", "--fix", check=False)
    assert client.get_run(parent.info.run_id).info.status == "KILLED"
    assert client.get_run(live.info.run_id).info.status == "RUNNING"
    client.set_terminated(live.info.run_id)
