"""What every stage entry point shares: logging set-up and turning user mistakes into one line."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable

from predictflow.lineage import LineageError
from predictflow.params import ParamsError
from predictflow.schema import DataContractError


class StageError(RuntimeError):
    """A stage refuses to go on; the message says why and what to do."""


USER_ERRORS: tuple[type[Exception], ...] = (
    DataContractError,
    ParamsError,
    LineageError,
    StageError,
)


FAULT_ENV = "PREDICTFLOW_FAULT"


def checkpoint(name: str) -> None:
    """Crash-test seam: SIGKILL this process here when `PREDICTFLOW_FAULT` names this point.

    Lets tests kill a stage at an exact step (during fit, after logging the model, after
    registering) and check that nothing is left half-done. Does nothing otherwise.
    """
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


NOISY_LOGGERS = ("mlflow", "alembic", "urllib3", "matplotlib", "dvc")


def configure_logging(name: str, level: int) -> None:
    """`<name>: message` lines on stderr; libraries only speak up for warnings."""
    logging.basicConfig(level=level, format=f"{name}: %(message)s")
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(name: str, main: Callable[[], None]) -> None:
    """Run a stage's main(): exit 1 with `<stage>: <message>` on a user error, no traceback.

    A team server refusing the credentials or the role (401/403) is such an error.
    """
    from predictflow import access, tracking  # access builds on this module

    configure_logging(name, logging.INFO)
    try:
        with access.refusals(tracking.tracking_uri(tracking.store_root())):
            main()
    except USER_ERRORS as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        sys.exit(1)
