"""One experiment at a time in the workspace: a running `dvc exp run` claims it from DVC.

A workspace experiment runs in the user's own files, and DVC does not stop a second `dvc exp run`
from stashing and applying its params into them meanwhile: two runs one second apart trained one
model with the other's params, registered it, lost both experiments and left the second's params
in params.yaml. DVC records the running workspace experiment itself (its process in
`.dvc/tmp/exps/run/workspace/workspace.json`, its name and state in `workspace.run`), and every
`dvc exp run` (workspace, `--temp` and `--queue` alike, since each stashes the workspace) takes
the `workspace` path of the experiments' rwlock (`.dvc/tmp/exps/rwlock`) before touching a file.

So each stage of a workspace experiment writes that experiment's process into the rwlock as the
writer of `workspace`: DVC itself then refuses the next `dvc exp run` up front, giving
`REFUSAL` as the blocker's command, and drops the entry once that process has ended. A stage
that finds another live experiment in DVC's record (a plain `dvc repro`, or a run that another
one overtook before its first stage) refuses in one line.

The rwlock has no public call that outlives the calling process (`dvc.rwlock.rwlock` releases on
exit, and a stage ends long before its experiment), so the entry is written with DVC's private
`dvc.rwlock._edit_rwlock`; tests/test_workspace_experiments.py pins its behaviour.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from predictflow.base.errors import UserError

EXEC_DIR = Path(".dvc", "tmp", "exps")  # dvc.repo.experiments.utils.EXEC_TMP_DIR
RUN_DIR = EXEC_DIR / "run" / "workspace"  # WorkspaceQueue's pid dir for its one executor
PROC_FILE = RUN_DIR / "workspace.json"  # dvc_task ProcessInfo of the `dvc exp run` process
INFO_FILE = RUN_DIR / "workspace.run"  # ExecutorInfo: the experiment's name and status
CLAIMED = "workspace"  # the rwlock path every experiment queue's put() writes
REFUSAL = (
    "a workspace experiment is running here and another `dvc exp run` would change its files "
    "mid-run: wait for it to end; to run several at once use `dvc exp run --queue` "
    "(then `dvc queue start`) or `--temp`"
)


class WorkspaceBusy(UserError):
    """Another experiment owns the workspace; the message names it and what to run instead."""


@dataclass(frozen=True)
class Running:
    """A workspace experiment DVC records as running: its name and its `dvc exp run` process."""

    name: str | None
    pid: int


def running_experiment(root: Path) -> Running | None:
    """The workspace experiment DVC records, if its process is alive (DVC's own reading of its
    files, as `WorkspaceQueue.get_running_exp` does, without opening the repository: 1 s)."""
    if not (root / PROC_FILE).is_file():  # the common case: nothing to import or read
        return None
    import json

    import psutil
    from dvc_task.proc.process import ProcessInfo

    try:
        pid = ProcessInfo.load(str(root / PROC_FILE)).pid
    except (OSError, ValueError, TypeError):  # removed or half-written as we read it
        return None
    if not psutil.pid_exists(pid):
        return None
    try:
        name = json.loads((root / INFO_FILE).read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError):
        name = None
    return Running(name, pid)


def _ancestors() -> set[int]:
    import psutil

    return {parent.pid for parent in psutil.Process().parents()}


def _describe(running: Running) -> str:
    return f"experiment '{running.name or '?'}' (dvc exp run, PID {running.pid})"


def in_workspace_experiment(root: Path) -> str | None:
    """The experiment this stage runs for when it runs in the workspace itself (`DVC_ROOT`, set
    by DVC for every experiment, names the workspace; `--temp`/`--queue` run in a copy)."""
    name = os.environ.get("DVC_EXP_NAME") or None
    workspace = os.environ.get("DVC_ROOT")
    if name is None or workspace is None or Path(workspace).resolve() != root.resolve():
        return None
    return name


def claim(root: Path) -> None:
    """Refuse unless this stage belongs to the workspace experiment DVC records (or to a plain
    `dvc repro` while none runs); in that experiment, record it as the workspace's writer."""
    exp_name = in_workspace_experiment(root)
    running = running_experiment(root)
    if running is None:
        if exp_name is not None:  # another `dvc exp run` ended here and removed the record
            raise WorkspaceBusy(
                f"DVC's record of experiment '{exp_name}' ({PROC_FILE}) is gone: another "
                "`dvc exp run` ran in this workspace meanwhile and changed its files (see "
                "`git diff params.yaml`); nothing is registered from this run: rerun it alone, "
                "or with `dvc exp run --queue` or `--temp`"
            )
        return
    if exp_name is None:
        raise WorkspaceBusy(
            f"{_describe(running)} is running in this workspace; `dvc repro` now would "
            "change its files mid-run: wait for it to end, or run yours with "
            "`dvc exp run --queue` or `--temp`"
        )
    if running.pid not in _ancestors() or running.name != exp_name:
        raise WorkspaceBusy(
            f"{_describe(running)} started in this workspace while experiment '{exp_name}' "
            "was starting, and changed its files (see `git diff params.yaml`): nothing is "
            "registered from this run; rerun them one at a time, or with `dvc exp run --queue` "
            "or `--temp`"
        )
    _write_claim(root, running)


def _write_claim(root: Path, running: Running) -> None:
    """The experiment's process becomes the rwlock's writer of `workspace` (or already is)."""
    import psutil
    from dvc.fs import localfs
    from dvc.rwlock import _edit_rwlock  # private: see the module docstring

    with _edit_rwlock(str(root / EXEC_DIR), localfs, False) as lock:
        holder = lock["write"].get(CLAIMED)
        if holder == {"pid": running.pid, "cmd": REFUSAL}:
            return  # an earlier stage of this experiment claimed it
        if holder and holder["pid"] != running.pid and psutil.pid_exists(holder["pid"]):
            raise WorkspaceBusy(
                f"the workspace is held by PID {holder['pid']} ({holder['cmd']}); experiment "
                f"'{running.name}' cannot run beside it: rerun it alone, or with "
                "`dvc exp run --queue` or `--temp`"
            )
        lock["write"][CLAIMED] = {"pid": running.pid, "cmd": REFUSAL}
    _release_when_done(root, running.pid)


def _release_when_done(root: Path, pid: int) -> None:
    """Start a detached watcher that drops the claim once the experiment's process has ended:
    DVC would drop it too, but warn on the next `dvc exp run` that the process "had been
    killed" after every experiment that ended well."""
    import subprocess
    import sys

    subprocess.Popen(
        [sys.executable, "-m", "predictflow.lineage.exp_claim", str(root), str(pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # not part of the stage: DVC waits for the stage alone
    )


def release_after(root: Path, pid: int) -> None:
    """Wait for `pid` to end, then remove its claim (only if the claim is still its own)."""
    import psutil
    from dvc.fs import localfs
    from dvc.rwlock import _edit_rwlock  # private: see the module docstring

    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(pid).wait()
    with _edit_rwlock(str(root / EXEC_DIR), localfs, False) as lock:
        if lock["write"].get(CLAIMED) == {"pid": pid, "cmd": REFUSAL}:
            del lock["write"][CLAIMED]


if __name__ == "__main__":  # the watcher `_release_when_done` starts
    import sys

    release_after(Path(sys.argv[1]), int(sys.argv[2]))
