"""Crash-test seam: tests kill a process at an exact step to check nothing is left half-done."""

from __future__ import annotations

import os
import signal

FAULT_ENV = "PREDICTFLOW_FAULT"


def checkpoint(name: str) -> None:
    """SIGKILL this process here when `PREDICTFLOW_FAULT` names this point.

    Lets tests kill a stage at an exact step (during fit, after logging the model, after
    registering) and check that nothing is left half-done. Does nothing otherwise.
    """
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
