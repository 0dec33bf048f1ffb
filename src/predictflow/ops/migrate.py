"""Move the project's MLflow history from its SQLite store to a team tracking server.

`predictflow store migrate --to http://server:5001` copies, from the source store (default: the
project's `mlflow_data/mlflow.db`) to the target:

- experiments, matched by name (created when missing, with their tags);
- every active run: params, every metric point (step, timestamp, value), tags, status, start
  and end time, dataset inputs, artifacts;
- the MLflow 3 *logged models* each run produced (`models:/m-...`: the model files live with the
  logged model, not under the run), with their tags, params, metrics and files, so a migrated
  registered version loads on the server;
- every registered model: its versions in order (tags, description, legacy stage), then the
  aliases.

It is idempotent. A copied run carries the tag `predictflow.migrated_from` (the source run id)
and `predictflow.migration = complete` once everything of it is there; a second migration skips
it. A run left `incomplete` by an interrupted migration is deleted on the target and copied again.
Logged models and model versions carry the same marker. An alias the target already gives to
another version is left alone and reported (someone moved it on the server since).

New ids are the target's: a run, a logged model and a version number may differ from the source
(version numbers match when the target's model is new); a version's `run_id` lineage tag and a
nested run's parent are rewritten to the ids on the target. Creation times of registered versions
are the target's; run times are the source's. Deleted runs and experiments are not copied.
"""

from __future__ import annotations

import logging
import os
import posixpath
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from predictflow.lineage import access, tracking
from predictflow.ops.migrate_copy import Migration, MigrationError, Summary

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


def client(uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


DEFAULT_PORTS = {"http": 80, "https": 443}


def store_identity(uri: str) -> tuple[object, ...]:
    """What makes two URIs the same store, whatever their spelling.

    A SQLite file is its device and inode (so `/../`, symlinks, relative paths and hard links
    all match); a server is its scheme, host, port and normalised path. Anything else is
    compared as written, minus a trailing slash.
    """
    path = tracking.sqlite_path(uri)
    if path is not None:
        resolved = path.resolve()
        if resolved.exists():
            info = resolved.stat()
            return ("sqlite", info.st_dev, info.st_ino)
        return ("sqlite", str(resolved))
    parts = urlsplit(uri)
    if parts.scheme in DEFAULT_PORTS:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
        path_part = posixpath.normpath(unquote(parts.path) or "/").rstrip("/")
        return (parts.scheme, (parts.hostname or "").lower(), port, path_part)
    return ("uri", uri.rstrip("/"))


def check_source(uri: str) -> None:
    """A SQLite source must exist: opening a missing one would create an empty store."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        path = path if path.is_absolute() else Path.cwd() / path
        if not path.is_file():
            raise MigrationError(
                f"no MLflow store at {path}: run the pipeline first (`make repro`) or pass --from"
            )


def check_target(uri: str, timeout: float = 5.0) -> None:
    """A server target must answer /health: MLflow's client would retry for minutes."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    health = uri.rstrip("/") + "/health"
    try:
        answer = requests.get(health, timeout=timeout)
    except requests.RequestException as err:
        raise MigrationError(
            f"no MLflow server answers at {uri} ({type(err).__name__}); start it (`make server`) "
            "or check --to"
        ) from None
    if answer.status_code != 200:
        raise MigrationError(f"{health} answered HTTP {answer.status_code}: not an MLflow server?")


def migrate(
    source_uri: str, target_uri: str, on_progress: Callable[[str], None] | None = None
) -> Summary:
    """Copy everything new from `source_uri` to `target_uri`; see the module docstring."""
    from mlflow.exceptions import MlflowException

    if store_identity(source_uri) == store_identity(target_uri):
        raise MigrationError(
            f"source {source_uri} and target {target_uri} are the same store: "
            "migrating it onto itself would duplicate every run; pass another --to"
        )
    check_source(source_uri)
    for uri in (source_uri, target_uri):
        tracking.reach(uri)
    check_target(target_uri)
    for uri in (source_uri, target_uri):  # an authenticating server refuses bad credentials
        access.check_credentials(uri)
    started = time.monotonic()
    summary = Summary(source=source_uri, target=target_uri)
    say = on_progress or log.info
    try:
        job = Migration(client(source_uri), client(target_uri), summary, say, source_uri)
        with (
            tempfile.TemporaryDirectory(prefix="predictflow-migrate-") as tmp,
            _quiet_client(),
            _registry_resolves_in(target_uri),
        ):
            job.tmp = Path(tmp)
            job.run()
    except MlflowException as err:
        refused = access.refusal(err, target_uri)  # a 401/403: the target's own refusal
        if refused is not None:
            raise refused from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MigrationError(f"{first} (nothing already copied is lost: rerun to resume)") from None
    summary.seconds = round(time.monotonic() - started, 1)
    return summary


@contextmanager
def _quiet_client() -> Iterator[None]:
    """No "View run ... at" line on stdout per copied run: `--json` output stays JSON."""
    name = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
    before = os.environ.get(name)
    os.environ[name] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@contextmanager
def _registry_resolves_in(uri: str) -> Iterator[None]:
    """A database registry resolves `models:/m-...` through MLflow's global tracking URI.

    A server does that against its own store; when the target is a database URI, the global
    URI must point at it while versions are created. Restored afterwards.
    """
    if uri.startswith(("http://", "https://")):
        yield
        return
    import mlflow
    from mlflow.tracking._tracking_service import utils

    before, env = getattr(utils, "_tracking_uri", None), os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)
        if env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env
