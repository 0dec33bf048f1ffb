"""Run one command and measure it: wall time, peak RSS of the whole tree, per-stage time and RSS.

Peak RSS comes from the kernel, not from sampling: `os.wait4` returns the child's rusage, whose
`ru_maxrss` is the largest resident set of any process in the tree that was waited for (DVC waits
for its stage processes). Per-stage figures come from polling the tree: a stage is the process
whose command line names `stages/<stage>.py`; its start is the kernel's creation time and its
peak RSS is its `VmHWM` (the kernel's high-water mark), read until the process is gone.
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
    peak_rss: int = 0  # bytes (VmHWM)

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


def _vm_hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class _Poller(threading.Thread):
    """Sample the process tree under `pid` for stage processes until stopped."""

    def __init__(self, pid: int, spawned: float) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.spawned = spawned  # time.time() right before the root process was started
        self.stop = threading.Event()
        self.stages: dict[str, StageSample] = {}
        self._known: dict[int, str | None] = {}

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
            for child in children:
                name = self._stage_of(child)
                if name is None:
                    continue
                sample = self.stages.get(name)
                if sample is None:
                    try:
                        created = child.create_time() + offset
                    except psutil.Error:
                        continue
                    sample = self.stages[name] = StageSample(start=created, last_seen=now)
                sample.last_seen = now
                sample.peak_rss = max(sample.peak_rss, _vm_hwm(child.pid))
            self.stop.wait(POLL_SECONDS)

    def _stage_of(self, child: psutil.Process) -> str | None:
        if child.pid in self._known:
            return self._known[child.pid]
        try:
            cmdline = child.cmdline()
        except psutil.Error:
            return None
        # DVC starts the command through a shell with the same command line, and the shell may
        # exec Python in the same pid: decide once the pid runs Python, look again until then
        if not cmdline or "python" not in Path(cmdline[0]).name:
            return None
        match = STAGE_RE.search(" ".join(cmdline))
        self._known[child.pid] = match.group(1) if match else None
        return self._known[child.pid]


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
