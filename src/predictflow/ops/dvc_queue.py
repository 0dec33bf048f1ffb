"""DVC's experiment queue as `predictflow tune` drives it: run `dvc`, read `dvc queue status`,
and keep the queue a sweep's own: refuse tasks it did not queue, notice dead workers, let their
orphaned executors end, and take its leftovers off the queue when it gives up.

Only DVC's own commands and record files (`.dvc/tmp/exps/run/<rev>/`: ExecutorInfo and
ProcessInfo, read with DVC's classes); no second scheduler.
"""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from predictflow.base.errors import StageError

log = logging.getLogger(__name__)


class TuneError(StageError):
    """The sweep spec is invalid or the queue failed; one line for the user."""


def run_dvc(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float | None = None
) -> str:
    """`dvc ARGS` to completion (at most `timeout` seconds); its stdout, or TuneError.

    Output goes to temp files, not pipes: the queue workers `dvc queue start` spawns inherit
    them, and reading a pipe to its end would wait for the last worker to exit (the whole
    sweep, past any timeout)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "dvc", *args],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=err,
                text=True,
                check=False,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise TuneError(
                f"`dvc {' '.join(args[:3])} ...` did not answer within {timeout:.0f} s"
            ) from None
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if done.returncode != 0:
        last = (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
        raise TuneError(f"`dvc {' '.join(args[:3])} ...` failed: {last[0]}")
    return stdout


@dataclass(frozen=True)
class QueueView:
    """One `dvc queue status`: each task's state by name (by rev when it has none) and how many
    workers answered, active or idle."""

    states: dict[str, str]
    workers: int


WORKERS_LINE = re.compile(r"Worker status: (\d+) active, (\d+) idle")
STATES = ("Queued", "Running", "Success", "Failed")
LIVE = ("Queued", "Running")


def queue_view(workspace: Path, timeout: float | None = None) -> QueueView:
    """Every task `dvc queue status` lists (Task, Name, Created, Status columns)."""
    text = run_dvc(["queue", "status"], workspace, timeout=timeout)
    states, workers = {}, 0
    for line in text.splitlines():
        if found := WORKERS_LINE.search(line):
            workers = int(found[1]) + int(found[2])
            continue
        parts = line.split()
        if len(parts) >= 3 and parts[-1] in STATES:
            named = not parts[1][:1].isdigit()  # an unnamed task's Created comes second
            states[parts[1] if named else parts[0]] = parts[-1]
    return QueueView(states, workers)


def refuse_foreign(view: QueueView) -> None:
    """Refuse to start while DVC's queue holds tasks this sweep did not queue: its workers would
    run them as this sweep's (a leftover of a sweep whose worker died was filed under the next
    sweep's parent run, and that sweep timed out with its own point still queued)."""
    foreign = sorted(name for name, state in view.states.items() if state in LIVE)
    if foreign:
        raise TuneError(
            f"DVC's queue already holds {len(foreign)} task(s) this sweep did not queue "
            f"({', '.join(foreign)}); its workers would run them as this sweep's: remove them "
            f"with `dvc queue remove {' '.join(foreign)}`, or run them first (`dvc queue start`)"
        )


class WorkerDied(TuneError):
    """No queue worker is left while points of the sweep are still queued or running."""


DEAD_POLLS = 3  # polls in a row with no worker answering before the workers count as dead
WORKER_GRACE = 60.0  # seconds a worker may take to answer at all after `dvc queue start`


def wait(workspace: Path, names: list[str], timeout: float, poll: float = 2.0) -> dict[str, str]:
    """The final state of every name, or TuneError once `timeout` seconds have passed (each
    `dvc queue status` is bounded too: a wedged queue cannot hold the sweep forever), or
    WorkerDied when no worker answers while points are left (after `kill -9` of a worker its
    task shows Running and the rest Queued for ever)."""
    started = time.monotonic()
    deadline, last, seen_worker, silent = started + timeout, "", False, 0
    while True:
        view = queue_view(workspace, max(deadline - time.monotonic(), 0) + STATUS_GRACE)
        states = {n: view.states[n] for n in names if n in view.states}
        done = [n for n in names if states.get(n) in ("Success", "Failed")]
        summary = f"{len(done)}/{len(names)} done"
        if summary != last:
            log.info("tune: %s", summary)
            last = summary
        if len(done) == len(names):
            return states
        seen_worker = seen_worker or view.workers > 0
        silent = silent + 1 if view.workers == 0 else 0
        if silent >= DEAD_POLLS and (seen_worker or time.monotonic() - started > WORKER_GRACE):
            raise WorkerDied("every DVC queue worker of the sweep died")
        if time.monotonic() > deadline:
            raise TuneError(
                f"sweep not finished after {timeout:.0f} s ({summary}); "
                "see `dvc queue status` and `dvc queue logs NAME`"
            )
        time.sleep(poll)


def remove_queued(workspace: Path, names: list[str]) -> list[str]:
    """Take this sweep's points still waiting off DVC's queue, so that no later
    `dvc queue start` (another sweep's) runs them; the names removed."""
    view = queue_view(workspace, timeout=STATUS_GRACE)
    left = [n for n in names if view.states.get(n) == "Queued"]
    if left:
        run_dvc(["queue", "remove", *left], workspace, timeout=STATUS_GRACE)
    return left


EXEC_RUN_DIR = Path(".dvc", "tmp", "exps", "run")  # DVC's record of each executor


def experiments_done(workspace: Path, names: list[str]) -> tuple[list[str], list[str]]:
    """The points that finished, whatever the queue says of their task: those DVC saved as
    experiments, and those whose executor recorded success but that no worker collected
    (after `kill -9` of its worker an executor runs on and ends its point, and its task shows
    Running for ever)."""
    import dvc.api
    from dvc.repo.experiments.executor.base import ExecutorInfo, TaskStatus

    saved = {
        row.get("Experiment")
        for row in dvc.api.exp_show(repo=str(workspace))
        if row.get("State") not in LIVE
    }
    ended = set()
    for info_file in (workspace / EXEC_RUN_DIR).glob("*/*.run"):
        with contextlib.suppress(OSError, ValueError, TypeError):
            info = ExecutorInfo.load_json(str(info_file))
            if info.status in (TaskStatus.SUCCESS, TaskStatus.FINISHED) and info.result_hash:
                ended.add(info.name)
    return [n for n in names if n in saved], [n for n in names if n in ended - saved]


def executors_alive(workspace: Path, names: list[str]) -> list[str]:
    """The points whose executor process (DVC's `exp exec-run`) is still running."""
    import psutil
    from dvc.repo.experiments.executor.base import ExecutorInfo
    from dvc_task.proc.process import ProcessInfo

    alive = []
    for info_file in (workspace / EXEC_RUN_DIR).glob("*/*.run"):
        with contextlib.suppress(OSError, ValueError, TypeError):
            info = ExecutorInfo.load_json(str(info_file))
            pid = ProcessInfo.load(str(info_file.with_suffix(".json"))).pid
            if info.name in names and psutil.pid_exists(pid):
                alive.append(info.name)
    return alive


def let_orphans_finish(workspace: Path, names: list[str], deadline: float) -> None:
    """Wait (until `deadline`) for the executors a dead worker left: each ends its own point,
    which then counts as done, instead of being killed with work nearly finished."""
    while executors_alive(workspace, names) and time.monotonic() < deadline:
        time.sleep(2.0)


def give_up(workspace: Path, names: list[str], err: TuneError, deadline: float) -> tuple[bool, str]:
    """End a sweep that cannot finish: its own points still queued are taken off the queue
    (no later `dvc queue start` may run them), executors a dead worker left may end their
    points, then every worker and task is stopped. Whether that settled the queue, and the
    one line: what finished, what was removed, and why."""
    removed: list[str] = []
    try:
        removed = remove_queued(workspace, names)
        if isinstance(err, WorkerDied):
            let_orphans_finish(workspace, names, deadline)
        saved, uncollected = experiments_done(workspace, names)
    except TuneError as cleanup:
        settled, stopped = stop_workers(workspace)
        return settled, f"{err}; {stopped}; cleaning the queue failed ({cleanup})"
    settled, stopped = stop_workers(workspace)
    done = saved + uncollected
    what = f"{err} ({len(done)}/{len(names)} done: {', '.join(done) or 'none'}"
    if uncollected:
        what += f"; {', '.join(uncollected)} not saved by DVC, its MLflow run holds the result"
    what += ")"
    if removed:
        what += f"; its queued point(s) {', '.join(removed)} were removed from the queue"
    return settled, f"{what}; {stopped}"


STATUS_GRACE = 30.0  # seconds one `dvc queue status` may take beyond the sweep's deadline


def stop_workers(workspace: Path) -> tuple[bool, str]:
    """Kill the running tasks and stop the queue workers (after a timeout: a worker that keeps
    a task would otherwise run, or hang, on after we return); whether they stopped, and what
    happened, for the message."""
    try:
        run_dvc(["queue", "stop", "--kill"], workspace, timeout=STATUS_GRACE)
    except TuneError as err:
        return False, f"stopping the workers failed too ({err}): run `dvc queue stop --kill`"
    return True, "its workers were stopped (`dvc queue stop --kill`)"
