"""Run one command and measure it: wall time, peak RSS of the whole tree, per-stage time and RSS.

Peak RSS comes from the kernel, not from sampling: `os.wait4` returns the child's rusage, whose
`ru_maxrss` is the largest resident set of any process in the tree that was waited for (DVC waits
for its stage processes). Per-stage figures come from polling the tree: a stage is the process
whose command line names `stages/<stage>.py`; its start is the kernel's creation time and its
peak RSS is its `VmHWM` (the kernel's high-water mark), read until the process is gone.

A process is known by (pid, creation time), never by pid alone: pids recycle within seconds on a
busy machine (pid_max 32768), and a pid first seen as DVC's shell or a git child must not hide the
stage that later gets it; nor may a fork of DVC seen before it execs the stage's shell (only a
stage's command line is remembered). A stage's own children (the Dask engine's nanny and worker
processes) count towards it: `peak_rss` is the largest single process of the stage (its own or a
worker's `VmHWM`), `tree_rss` the largest sum of the resident sets of the stage and its
descendants seen at one poll ("stage + workers"; sampled, so a lower bound on the true peak).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

POLL_SECONDS = 0.1
STAGE_RE = re.compile(r"stages/(\w+)\.py")


@dataclass
class StageSample:
    """What polling saw of one stage process."""

    start: float  # time.time() of the process's creation (anchored on the root's spawn)
    last_seen: float
    peak_rss: int = 0  # bytes: largest single process of the stage, workers included (VmHWM)
    tree_rss: int = 0  # bytes: largest summed RSS of the stage + its descendants at one poll
    own_rss: int = 0  # bytes: the stage process alone (VmHWM)
    workers: int = 0  # descendants of the stage ever seen (Dask nannies, workers, helpers)

    @property
    def seconds(self) -> float:
        return max(self.last_seen - self.start, 0.0)


@dataclass
class Measurement:
    argv: list[str]
    seconds: float
    peak_rss: int  # bytes: largest process of the tree (kernel rusage)
    returncode: int
    stdout: str = ""
    stderr: str = ""
    stages: dict[str, StageSample] = field(default_factory=dict)

    @property
    def tree_rss(self) -> int:
        """Bytes: the largest "stage + workers" resident set of any stage (0 without polling)."""
        return max((s.tree_rss for s in self.stages.values()), default=0)


def _memory(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) of `pid` in bytes; zeros once it is gone."""
    hwm = rss = 0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
                elif line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return hwm, rss


def _vm_hwm(pid: int) -> int:
    return _memory(pid)[0]


Key = tuple[int, float]  # (pid, creation time): a pid alone is reused within seconds


class _Poller(threading.Thread):
    """Sample the process tree under `pid` for stage processes until stopped."""

    def __init__(self, pid: int, spawned: float) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.spawned = spawned  # time.time() right before the root process was started
        self.stop = threading.Event()
        self.stages: dict[str, StageSample] = {}
        self._known: dict[Key, str] = {}  # stage processes seen
        self._workers: dict[str, set[Key]] = {}

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
            # creation times are exact relative to each other but share an offset of up to 1 s
            # (boot time is whole seconds): anchor them on the root's spawn instead
            offset = self.spawned - root.create_time()
        except psutil.Error:
            return
        while not self.stop.is_set():
            try:
                children = root.children(recursive=True)
            except psutil.Error:
                break
            now = time.time()
            keyed: dict[int, tuple[Key, psutil.Process]] = {}
            for child in children:
                try:
                    keyed[child.pid] = ((child.pid, child.create_time()), child)
                except psutil.Error:
                    continue
            parents = {}
            for pid, (_, child) in keyed.items():
                try:
                    parents[pid] = child.ppid()
                except psutil.Error:
                    continue
            stage_of_pid: dict[int, str] = {}
            for pid, (key, child) in keyed.items():
                name = self._stage_of(key, child)
                if name is not None:
                    stage_of_pid[pid] = name
            trees: dict[str, int] = {}
            for pid, (key, _) in keyed.items():
                owner = self._owner(pid, parents, stage_of_pid)
                if owner is None:
                    continue
                stage_pid, name = owner
                sample = self.stages.get(name)
                if sample is None:
                    sample = self.stages[name] = StageSample(
                        start=keyed[stage_pid][0][1] + offset, last_seen=now
                    )
                sample.last_seen = now
                hwm, rss = _memory(pid)
                sample.peak_rss = max(sample.peak_rss, hwm)
                if pid == stage_pid:
                    sample.own_rss = max(sample.own_rss, hwm)
                else:
                    self._workers.setdefault(name, set()).add(key)
                    sample.workers = len(self._workers[name])
                trees[name] = trees.get(name, 0) + rss
            for name, total in trees.items():
                self.stages[name].tree_rss = max(self.stages[name].tree_rss, total)
            self.stop.wait(POLL_SECONDS)

    @staticmethod
    def _owner(
        pid: int, parents: dict[int, int], stage_of_pid: dict[int, str]
    ) -> tuple[int, str] | None:
        """The topmost stage process at or above `pid` in the tree, if any: a forked worker
        inherits its stage's command line, so it must count as the stage's, not as a stage."""
        owner = None
        seen = set()
        while pid is not None and pid not in seen:
            if pid in stage_of_pid:
                owner = pid, stage_of_pid[pid]
            seen.add(pid)
            pid = parents.get(pid)
        return owner

    def _stage_of(self, key: Key, child: psutil.Process) -> str | None:
        if key in self._known:
            return self._known[key]
        try:
            cmdline = child.cmdline()
        except psutil.Error:
            return None
        # DVC forks itself (a Python command line), then execs a shell, which may exec Python in
        # the same pid with the same creation time: only a stage's command line is final, so
        # only that is remembered, and any other process is looked at again at the next poll
        if not cmdline or "python" not in Path(cmdline[0]).name:
            return None
        match = STAGE_RE.search(" ".join(cmdline))
        if match is None:
            return None
        self._known[key] = match.group(1)
        return self._known[key]


def run(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    *,
    poll: bool = False,
    check: bool = True,
    timeout: float = 3600.0,
) -> Measurement:
    """Run `argv` to completion; raise with its output if it fails and `check` is set."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        spawned = time.time()
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err)
        poller = _Poller(proc.pid, spawned) if poll else None
        if poller:
            poller.start()
        killer = threading.Timer(timeout, proc.kill)
        killer.daemon = True  # an interrupted run must not wait for it
        killer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if poller:
            poller.stop.set()
            poller.join()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    result = Measurement(
        argv=[str(a) for a in argv],
        seconds=seconds,
        peak_rss=usage.ru_maxrss * 1024,
        returncode=proc.returncode,
        stdout=stdout,
        stderr=stderr,
        stages=poller.stages if poller else {},
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(result.argv)} exited {proc.returncode} in {cwd}\n"
            f"--- stdout\n{stdout[-3000:]}\n--- stderr\n{stderr[-3000:]}"
        )
    return result
