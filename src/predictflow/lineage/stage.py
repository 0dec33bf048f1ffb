"""What every stage entry point shares: logging set-up and turning user mistakes into one line."""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from predictflow.base.errors import StageError, UserError, machine_errors_unlogged
from predictflow.base.faults import checkpoint
from predictflow.base.redact import redact
from predictflow.lineage import exp_claim

__all__ = ["StageError", "checkpoint", "configure_logging", "quiet_libraries", "run"]


NOISY_LOGGERS = ("mlflow", "alembic", "urllib3", "matplotlib", "dvc")
VERBOSE_ENV = "PREDICTFLOW_VERBOSE"

# Library notices about choices the project made on purpose, so nothing for the user to act on.
KNOWN_NOTICES = {
    # train logs with cloudpickle because skops refuses XGBoost types (docs: FINDINGS).
    "mlflow.sklearn": "Saving scikit-learn models in the pickle or cloudpickle format",
}


class _DropNotice(logging.Filter):
    """Drop one library message that starts with a known prefix; let the rest through."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_libraries(verbose: bool) -> None:
    """Libraries speak only for warnings a user must act on (their notes too with `verbose`).

    MLflow sets its own logger levels and handlers when it is first imported, which may happen
    after this runs, so its level is also set through `MLFLOW_LOGGING_LEVEL`, which it reads then.
    Its progress bar for artifact downloads is off unless asked for.
    """
    level = logging.INFO if verbose else logging.WARNING
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", logging.getLevelName(level))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", str(verbose).lower())
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(level)
    for logger, prefix in KNOWN_NOTICES.items():
        if not verbose:
            logging.getLogger(logger).addFilter(_DropNotice(prefix))


def configure_logging(name: str, level: int) -> None:
    """`<name>: message` lines on stderr; libraries only speak up for warnings."""
    logging.basicConfig(level=level, format=f"{name}: %(message)s")
    quiet_libraries(verbose=level <= logging.DEBUG)


def skip_final_collection() -> None:
    """Leave the objects alive now out of the interpreter's last garbage collections.

    After MLflow, scikit-learn and XGBoost a stage holds 200,000-340,000 objects, and walking
    them at exit took 0.5-1.2 s per stage between its last line and DVC moving on. Frozen
    objects are skipped; atexit handlers and `weakref.finalize` callbacks still run, and every
    output is already written and closed, so DVC hashes the same files.
    """
    gc.freeze()


def _store_refusals() -> AbstractContextManager[None]:
    """A 401/403 from the team server as one user error (see `access.refusals`)."""
    from predictflow.lineage import access, tracking

    return access.refusals(tracking.tracking_uri(tracking.store_root()))


def run(name: str, main: Callable[[], None], uses_store: bool = True) -> None:
    """Run a stage's main(): exit 1 with `<stage>: <message>` on a user error, no traceback.

    First it claims the workspace for the experiment it belongs to, or refuses when another
    one runs there (`exp_claim`: DVC runs every stage in the repository root).
    A stage says what it did in a line or two; `PREDICTFLOW_VERBOSE=1 dvc repro` shows more.
    A team server refusing the credentials or the role (401/403) is such an error. A stage
    that never opens the store (`uses_store=False`) skips that guard and so never imports
    MLflow (3.5 s).
    """
    verbose = os.environ.get(VERBOSE_ENV, "") not in ("", "0")
    configure_logging(name, logging.DEBUG if verbose else logging.INFO)
    try:
        exp_claim.claim(Path.cwd())
        with machine_errors_unlogged(), _store_refusals() if uses_store else nullcontext():
            main()
    except UserError as err:  # anything else is a bug: its traceback stays
        print(f"{name}: error: {redact(str(err))}", file=sys.stderr)
        sys.exit(err.exit_code)
    finally:
        skip_final_collection()
