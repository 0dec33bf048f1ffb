"""The one place that knows where runs go: tracking URI, experiment, lineage tag names.

Default store: `sqlite:///<repo root>/mlflow_data/mlflow.db`, artifacts in `mlflow_data/artifacts`,
unless `MLFLOW_TRACKING_URI` is set (a team server). The repo root comes from `DVC_ROOT` inside
DVC's temp experiment workspaces, so queued runs land in the same store as `dvc repro` runs.

Every wait on the store is bounded: a server that refuses or never answers is given up on within
about 15 s (`HTTP_DEFAULTS`, unless the user set those variables), and a SQLite store another
process holds locked is waited for `PREDICTFLOW_STORE_BUSY_TIMEOUT` seconds (default 30), then
reported busy. Either way the command stops with one line naming the store, before it writes.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit
from urllib.request import url2pathname

from predictflow.base.errors import StoreError
from predictflow.lineage.evidence import path_md5, workspace_root
from predictflow.lineage.names import EXPERIMENT, EXPERIMENT_KIND

if TYPE_CHECKING:
    from mlflow.entities import Dataset as DatasetEntity
    from mlflow.entities import Run
    from mlflow.types import Schema

STORE_DIR = "mlflow_data"


@dataclass(frozen=True)
class LineageTags:
    """Tags on every train run and every registered version: which data, which code."""

    git_commit: str
    git_dirty: str  # "true" / "false": MLflow tags are strings
    data_path: str
    data_md5: str
    model_md5: str
    dvc_exp_name: str

    def as_tags(self) -> dict[str, str]:
        return {key: value for key, value in asdict(self).items() if value != ""}


REQUIRED_LINEAGE = ("git_commit", "git_dirty", "data_md5", "model_md5")
# Held-out metrics `evaluate` writes and `register` attaches to the run (the contract's set).
METRIC_KEYS = ("roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1", "log_loss")


def store_root() -> Path:
    """The repository whose `mlflow_data/` holds the store.

    `dvc exp run --temp/--queue` runs stages in a throw-away copy under `.dvc/tmp/exps/`; DVC
    sets `DVC_ROOT` to the real repository there, and the store must resolve against it or its
    runs are deleted with the copy.
    """
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    return workspace_root()


def store_dir(root: Path) -> Path:
    return root / STORE_DIR


def default_uri(root: Path) -> str:
    """The project's own SQLite store, by absolute path (valid from any working directory)."""
    return f"sqlite:///{store_dir(root) / 'mlflow.db'}"


def tracking_uri(root: Path) -> str:
    """`MLFLOW_TRACKING_URI` if set (one of the forms `checked_uri` takes), else the project's."""
    given = os.environ.get("MLFLOW_TRACKING_URI")
    return checked_uri(given, root) if given else default_uri(root)


DATABASE_SCHEMES = ("postgresql", "postgres", "mysql", "mssql", "oracle")


def shown_uri(uri: str) -> str:
    """`uri` as safe to print: scheme, host, port and path, never user:password or a query."""
    parts = urlsplit(uri)
    if not parts.netloc:  # sqlite:////abs/path: no user:password to hide
        return uri.split("?", 1)[0]
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a number: shown as no port rather than raising here
        port = ""
    return urlunsplit((parts.scheme, f"{parts.hostname or ''}{port}", parts.path, "", ""))


def checked_uri(uri: str, root: Path) -> str:
    """`uri` if predictflow can use it, else one line saying which forms it takes and why.

    MLflow would take a plain path or `file:` (its retired file store, refused by MLflow 3
    with a long traceback) or a database URI (a driver this project does not install, and no
    server between users and the registry); neither is a store this project's commands keep.
    """
    parts = urlsplit(uri)
    if uri.startswith("sqlite:///") or (parts.scheme in ("http", "https") and parts.hostname):
        return uri
    scheme = parts.scheme if len(parts.scheme) > 1 else ""  # `C:\\x` is a path, not a scheme
    what = {"": "a plain path", "file": "a file store URI"}.get(scheme, f"a {scheme}: URI")
    if scheme.split("+")[0] in DATABASE_SCHEMES:
        what = "a database URI (a team reaches its database through the MLflow server)"
    raise StoreError(
        f"MLFLOW_TRACKING_URI={shown_uri(uri) if scheme else uri} is {what}; predictflow takes "
        f"sqlite:///PATH for a local store (the project's: {default_uri(root)}) or "
        "http(s)://HOST:PORT for a team server (`make server`), or unset it"
    )


def uses_local_store(root: Path) -> bool:
    # Compared by value: mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI itself.
    return tracking_uri(root) == default_uri(root)


@contextmanager
def store_lock(root: Path, name: str = "store") -> Iterator[None]:
    """Serialise a critical section across processes sharing the local store.

    Two processes creating a fresh SQLite store at once crash on `table already exists`, and two
    `register` calls for one model must not create two versions. A team server serialises by
    itself, so the lock only guards the local store.
    """
    if not uses_local_store(root):
        yield
        return
    from filelock import FileLock  # imported here: only the paths that write need it

    store_dir(root).mkdir(parents=True, exist_ok=True)
    with FileLock(store_dir(root) / f".{name}.lock"):  # flock: freed if the process dies
        yield


# MLflow retries a failed request 7 times with a 120 s timeout each (minutes against a dead
# server). Two attempts of at most 5 s, 1 s apart, keep every call under about 15 s.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}
PROBE_TIMEOUT = 5.0
BUSY_ENV = "PREDICTFLOW_STORE_BUSY_TIMEOUT"
BUSY_DEFAULT = 30.0


def bound_http_waits() -> None:
    """Bounded retries and timeouts for MLflow's HTTP client; a value the user set wins."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def busy_timeout() -> float:
    """Seconds to wait for a SQLite store another process holds locked."""
    raw = os.environ.get(BUSY_ENV, "")
    try:
        seconds = float(raw) if raw else BUSY_DEFAULT
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise StoreError(f"{BUSY_ENV}={raw!r}: expected a number of seconds >= 0")
    return seconds


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (relative paths against the working directory)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0]).absolute()


def is_busy(err: sqlite3.Error) -> bool:
    return getattr(err, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _unusable(path: Path, err: sqlite3.DatabaseError, started: float) -> StoreError:
    """The one line for a store that failed a lock check: busy (with the wait), or damaged."""
    if not is_busy(err):
        return StoreError(
            f"tracking store sqlite:///{path} cannot be used: {err}; run `predictflow doctor`"
        )
    waited = time.monotonic() - started
    return StoreError(
        f"tracking store sqlite:///{path} is busy: another process held it locked for "
        f"{waited:.0f} s; retry when it is done (wait longer: {BUSY_ENV}=SECONDS)"
    )


def check_free(db: sqlite3.Connection, path: Path, write: bool = True) -> None:
    """Block (at most `db`'s busy timeout) while another process holds the store at `path` locked.

    MLflow's own SQLite connections give up after 5 s with a long traceback, possibly halfway
    through a run; waiting here first, before anything is written, leaves nothing half-done.
    `write` waits for the write lock, else only for a lock that blocks readers. A read-only
    command passes the connection it reads with, so it opens the store once.
    """
    started = time.monotonic()
    try:
        db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        db.execute("ROLLBACK")
    except sqlite3.DatabaseError as err:
        raise _unusable(path, err, started) from None


def wait_until_free(path: Path, timeout: float, write: bool = True) -> None:
    """`check_free` on a connection of its own (for writers, before MLflow opens the store)."""
    started = time.monotonic()
    try:
        db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    except sqlite3.DatabaseError as err:
        raise _unusable(path, err, started) from None
    try:
        check_free(db, path, write=write)
    finally:
        db.close()


def probe_server(uri: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Any HTTP answer from the server, within `timeout`; else one line naming the URI."""
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout)
    except requests.RequestException as err:
        why = (
            f"no answer within {timeout:.0f} s"
            if isinstance(err, requests.Timeout)
            else (f"cannot connect: {type(err).__name__}")
        )
        raise StoreError(
            f"tracking server {shown_uri(uri)} does not answer ({why}): start it (`make server`) "
            "or fix MLFLOW_TRACKING_URI"
        ) from None


def reach(uri: str, write: bool = True) -> str:
    """Make sure the store at `uri` can be used now, within a bounded wait; return the URI."""
    bound_http_waits()
    path = sqlite_path(uri)
    if uri.startswith(("http://", "https://")):
        probe_server(uri)
    elif path is not None and path.is_file():
        wait_until_free(path, busy_timeout(), write=write)
    return uri


def location_path(location: str) -> Path | None:
    """The local folder of a `file:` artifact URI, else None."""
    if not location.startswith("file:"):
        return None
    return Path(url2pathname(urlsplit(location).path))


def outside_store(location: str, root: Path) -> bool:
    """A local artifact location that is not inside this project's `mlflow_data/`.

    An experiment's artifact_location is an absolute URI fixed at creation: after the project
    folder moves, new runs would write their artifacts back into the old path.
    """
    path = location_path(location)
    return path is not None and not path.resolve().is_relative_to(store_dir(root).resolve())


def connect(root: Path) -> str:
    """Point MLflow at the project's store, create it and the experiment once; return its id."""
    import mlflow

    uri = reach(tracking_uri(root))
    mlflow.set_tracking_uri(uri)
    with store_lock(root):
        client = mlflow.MlflowClient(uri)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            experiment_id = experiment.experiment_id
            if uses_local_store(root) and outside_store(experiment.artifact_location, root):
                raise StoreError(
                    f"experiment {EXPERIMENT!r} keeps artifacts in "
                    f"{experiment.artifact_location}, outside this project's {store_dir(root)} "
                    "(the project was moved or its store copied): run `predictflow doctor --fix`"
                )
            for key, value in EXPERIMENT_KIND.items():  # stores made before the tag was set
                if experiment.tags.get(key) != value:
                    client.set_experiment_tag(experiment_id, key, value)
        else:
            location = (store_dir(root) / "artifacts").as_uri() if uses_local_store(root) else None
            experiment_id = client.create_experiment(
                EXPERIMENT, artifact_location=location, tags=EXPERIMENT_KIND
            )
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


SWEEP_RUN_ENV = "PREDICTFLOW_SWEEP_RUN"
SWEEP_NAME_ENV = "PREDICTFLOW_SWEEP"


def sweep_tags() -> dict[str, str]:
    """Nest a run under its sweep's parent run (set by `predictflow tune` for DVC's workers)."""
    parent = os.environ.get(SWEEP_RUN_ENV)
    if not parent:
        return {}
    return {"mlflow.parentRunId": parent, "predictflow.sweep": os.environ.get(SWEEP_NAME_ENV, "")}


def process_tags() -> dict[str, str]:
    """Which process owns a run, so a run left RUNNING by a killed process can be told apart."""
    return {"predictflow.host": socket.gethostname(), "predictflow.pid": str(os.getpid())}


def run_is_orphaned(run: Run) -> bool:
    """A RUNNING run whose owning process on this host is gone (killed, crashed)."""
    import psutil

    tags = run.data.tags
    if run.info.status != "RUNNING" or tags.get("predictflow.host") != socket.gethostname():
        return False
    pid = int(tags.get("predictflow.pid", "0"))
    try:
        started = psutil.Process(pid).create_time() * 1000
    except (psutil.NoSuchProcess, ValueError):
        return True
    return started > run.info.start_time + 1000  # the pid was reused by a later process


def reap_dead_runs(experiment_id: str) -> list[str]:
    """Mark runs of dead processes KILLED, so nothing stays RUNNING forever after a crash."""
    import mlflow

    running = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string="attributes.status = 'RUNNING'",
        output_format="list",
    )
    reaped = [run.info.run_id for run in running if run_is_orphaned(run)]
    for run_id in reaped:
        mlflow.MlflowClient().set_terminated(run_id, status="KILLED")
    return reaped


def runs_with_model(experiment_id: str, model_md5: str) -> list[Run]:
    """Finished train runs that logged a model with this md5, newest first."""
    import mlflow

    return mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=f"tags.model_md5 = '{model_md5}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )


DATASET_SOURCE_TYPE = "local"  # MLflow's UI shows a local source's `uri` as "Path: ..."


def repository(root: Path) -> str:
    """How a reader finds the code: git's `origin` remote when there is one, else the path."""
    out = subprocess.run(
        ["git", "remote", "get-url", "origin"], cwd=root, capture_output=True, text=True
    )
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else str(root)


def dataset(
    path: Path, md5: str, schema: Schema, repo: str, commit: str, rows: int | None = None
) -> DatasetEntity:
    """A DVC-tracked file as an MLflow dataset, without reading its rows.

    The digest is DVC's md5 of the whole file (MLflow's own hashes only the first 10,000 rows),
    and the source names repository, commit and path (`repo@commit:path`, git's `rev:path`), so
    the runs list and the model version answer "which data" with what `dvc get` needs.
    """
    from mlflow.entities import Dataset

    where = path.as_posix()
    source = {"uri": f"{repo}@{commit}:{where}", "repo": repo, "commit": commit, "path": where}
    return Dataset(
        name=where,
        digest=md5,
        source_type=DATASET_SOURCE_TYPE,
        source=json.dumps(source),
        schema=json.dumps({"mlflow_colspec": schema.to_dict()}),
        profile=json.dumps({"num_rows": rows}) if rows is not None else None,
    )


def parquet_dataset(path: Path, repo: str, commit: str) -> DatasetEntity:
    """A parquet split as a dataset: schema and row count from its footer, md5 streamed. A
    folder of parts (the dask engine's splits) has DVC's `.dir` md5 and its parts' rows."""
    import pyarrow.dataset as ds
    from mlflow.models import infer_signature

    parquet = ds.dataset(path, format="parquet")
    with warnings.catch_warnings():
        # a hint about integer columns and missing values: this schema describes a file only
        warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer", UserWarning)
        schema = infer_signature(parquet.schema.empty_table().to_pandas()).inputs
    return dataset(path, path_md5(path), schema, repo, commit, parquet.count_rows())


def log_dataset(run_id: str, dataset: DatasetEntity, context: str) -> None:
    """Attach `dataset` to the run in `context` (training / evaluation / source)."""
    import mlflow
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    tags = [InputTag(MLFLOW_DATASET_CONTEXT, context)]
    mlflow.MlflowClient().log_inputs(run_id, [DatasetInput(dataset, tags)])


def attach_evaluation(
    run: Run, scores: dict[str, float], test: Path, figures_dir: Path, plots_dir: Path
) -> None:
    """Attach `evaluate`'s files to the train run, as `evaluate` itself once did.

    The metrics name the held-out split as their dataset (DVC's md5 as digest) and the logged
    model as theirs, so the model's page shows which data it was scored on.
    """
    import mlflow

    run_id = run.info.run_id
    split = parquet_dataset(test, repository(store_root()), run.data.tags.get("git_commit", ""))
    log_dataset(run_id, split, "evaluation")
    model_id = run.outputs.model_outputs[-1].model_id if run.outputs.model_outputs else None
    mlflow.log_metrics(scores, run_id=run_id, model_id=model_id, dataset=split)
    mlflow.log_artifacts(str(figures_dir), "evaluation", run_id=run_id)
    mlflow.log_artifacts(str(plots_dir), "evaluation/data", run_id=run_id)
