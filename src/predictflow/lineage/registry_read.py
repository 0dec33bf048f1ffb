"""Read-only registry access for commands that only look (`lineage`), without importing MLflow.

Importing MLflow costs 2-3 s per process, more than the facts a read-only command shows. So:
- a team server (`http(s)://`) is asked through MLflow's documented REST API, with the
  credentials MLflow itself would send (`MLFLOW_TRACKING_TOKEN`, or username and password from
  the environment or `~/.mlflow/credentials`);
- the project's SQLite store is read with stdlib `sqlite3`, opened read-only (it can neither be
  locked for writing nor created), and only when its schema is the pinned MLflow's
  (`SCHEMA_REVISION`, the alembic head a test holds equal to the installed migrations);
- anything else (another schema revision, `file:`, `postgresql:`, workspaces, other auth
  plugins) goes through `MlflowClient` (`ClientReader`), as before.

All three answer the same `Reader` questions with the same plain values, so the facts shown do
not depend on the path taken (tests compare them field by field).
"""

from __future__ import annotations

import configparser
import contextlib
import os
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit
from urllib.request import url2pathname

from predictflow.base.errors import RegistryError
from predictflow.base.refs import parse_ref

if TYPE_CHECKING:
    import requests
    from mlflow import MlflowClient

# alembic revision of the MLflow schema these queries were written for (mlflow 3.17.2's head).
SCHEMA_REVISION = "dc11669786a5"
DEFAULT_WORKSPACE = "default"  # the only workspace while MLFLOW_ENABLE_WORKSPACES is off
DELETED_STAGE = "Deleted_Internal"  # MLflow keeps a deleted version's row under this stage
STAGES = ("None", "Staging", "Production", "Archived")
LATEST_ALIAS = "latest"  # MLflow's reserved alias: the newest version
# Settings under which MLflow authenticates or scopes requests in ways not reproduced here.
CLIENT_ONLY_SETTINGS = (
    "MLFLOW_TRACKING_AWS_SIGV4",
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_ENABLE_WORKSPACES",
)
HTTP_REFUSALS = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}  # when the body has no code
REQUEST_TIMEOUT = 5.0  # seconds per request, as tracking.HTTP_DEFAULTS bounds MLflow's own


class NotFound(Exception):
    """The store has no such object; `error_code` is MLflow's name for why."""

    def __init__(self, error_code: str) -> None:
        super().__init__(error_code)
        self.error_code = error_code


class Refused(Exception):
    """A 401/403 as `access.refusal` reads MLflow's exception: its code and `endpoint PATH`."""

    def __init__(self, error_code: str, path: str) -> None:
        super().__init__(f"API request to endpoint {path} was refused")
        self.error_code = error_code


@dataclass(frozen=True)
class Version:
    """What the registry records for one model version."""

    name: str
    version: str
    run_id: str
    current_stage: str
    tags: dict[str, str]
    aliases: list[str]


@dataclass(frozen=True)
class RunFacts:
    """What a read-only command shows of a run (metrics: each key's latest value)."""

    run_id: str
    run_name: str | None
    experiment_id: str
    status: str
    artifact_uri: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


class Reader(Protocol):
    def newest(self, name: str) -> str | None:
        """The highest live version number, None when the model has none (or does not exist)."""

    def version(self, name: str, number: str) -> Version: ...

    def by_alias(self, name: str, alias: str) -> Version: ...

    def in_stage(self, name: str, stage: str) -> Version | None:
        """The newest version in a (canonical) legacy stage."""

    def run(self, run_id: str) -> RunFacts | None:
        """None when the run is gone (e.g. `mlflow gc`)."""

    def artifact_text(self, run_id: str, path: str) -> str | None:
        """A run artifact's text, None when it cannot be read."""


def canonical_stage(stage: str) -> str:
    """MLflow's spelling of a legacy stage (`production` -> `Production`)."""
    for known in STAGES:
        if known.lower() == stage.lower():
            return known
    raise NotFound("INVALID_PARAMETER_VALUE")


def resolve(reader: Reader, ref: str | None, default_name: str) -> Version:
    """The version `ref` names, as `registry.resolve` finds it through `MlflowClient`."""
    name, selector = parse_ref(ref, default_name)
    if name is None:
        raise RegistryError(
            f"{ref!r} names a logged model, not a registered version; name the version "
            f"(models:/{default_name}/N): `predictflow lineage` lists them by number"
        )
    try:
        if selector is None:
            newest = reader.newest(name)
            if newest is None:
                raise RegistryError(f"no registered version of {name!r} yet; run `make repro`")
            return reader.version(name, newest)
        if selector.startswith("@"):
            return reader.by_alias(name, selector[1:])
        if selector.isdigit():
            return reader.version(name, selector)
        found = reader.in_stage(name, selector)
        if found is None:
            raise RegistryError(f"no version of {name!r} is in stage {selector!r}")
        return found
    except NotFound as err:
        raise RegistryError(
            f"model {ref or name!r} not found in the registry ({err.error_code})"
        ) from None


# -- the local SQLite store -----------------------------------------------------------------


class SqliteReader:
    """MLflow's tables, read with plain SQL over one read-only connection."""

    def __init__(self, db: sqlite3.Connection | None, path: Path) -> None:
        self.db = db  # None: the store does not exist yet, so nothing is registered
        self.uri = f"sqlite:///{path}"

    @classmethod
    def open(cls, path: Path, timeout: float) -> SqliteReader | None:
        """A reader on `path`, or None when its schema is not `SCHEMA_REVISION` (use MLflow).

        The store's one connection: it waits out another process's lock (`tracking.check_free`,
        at most `timeout` s, then the busy line) before anything is read.
        """
        from predictflow.lineage.tracking import StoreError, check_free

        if not path.is_file():
            return cls(None, path)
        db = sqlite3.connect(
            f"file:{quote(str(path))}?mode=ro", uri=True, timeout=timeout, isolation_level=None
        )
        try:
            check_free(db, path, write=False)
        except StoreError:
            db.close()
            raise
        try:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.DatabaseError:
            row = None
        if row is None or row[0] != SCHEMA_REVISION:
            db.close()
            return None
        return cls(db, path)

    def _rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        """Rows of one query; a store that turns unreadable midway is one line, as in `open`."""
        from predictflow.lineage.tracking import StoreError

        if self.db is None:
            return []
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as err:
            raise StoreError(
                f"tracking store {self.uri} cannot be read: {err}; run `predictflow doctor`"
            ) from None

    def _model_exists(self, name: str) -> bool:
        return bool(
            self._rows(
                "SELECT 1 FROM registered_models WHERE workspace = ? AND name = ?",
                DEFAULT_WORKSPACE,
                name,
            )
        )

    def _live_versions(self, name: str) -> list[tuple[int, str]]:
        return self._rows(
            "SELECT version, current_stage FROM model_versions WHERE workspace = ? AND name = ?"
            " AND current_stage != ? ORDER BY version",
            DEFAULT_WORKSPACE,
            name,
            DELETED_STAGE,
        )

    def newest(self, name: str) -> str | None:
        versions = self._live_versions(name)
        return str(versions[-1][0]) if versions else None

    def version(self, name: str, number: str) -> Version:
        rows = self._rows(
            "SELECT version, run_id, current_stage FROM model_versions"
            " WHERE workspace = ? AND name = ? AND version = ? AND current_stage != ?",
            DEFAULT_WORKSPACE,
            name,
            int(number),
            DELETED_STAGE,
        )
        if not rows:
            raise NotFound("RESOURCE_DOES_NOT_EXIST")
        version, run_id, stage = rows[0]
        tags = self._rows(
            "SELECT key, value FROM model_version_tags WHERE workspace = ? AND name = ?"
            " AND version = ?",
            DEFAULT_WORKSPACE,
            name,
            version,
        )
        aliases = self._rows(
            "SELECT alias FROM registered_model_aliases WHERE workspace = ? AND name = ?"
            " AND version = ?",
            DEFAULT_WORKSPACE,
            name,
            version,
        )
        return Version(
            name, str(version), run_id, stage, dict(tags), [alias for (alias,) in aliases]
        )

    def by_alias(self, name: str, alias: str) -> Version:
        if alias.lower() == LATEST_ALIAS:
            newest = self.newest(name)
            if newest is None:
                raise NotFound("RESOURCE_DOES_NOT_EXIST")
            return self.version(name, newest)
        if not self._model_exists(name):
            raise NotFound("RESOURCE_DOES_NOT_EXIST")
        rows = self._rows(
            "SELECT version FROM registered_model_aliases WHERE workspace = ? AND name = ?"
            " AND alias = ?",
            DEFAULT_WORKSPACE,
            name,
            alias,
        )
        if not rows:
            raise NotFound("INVALID_PARAMETER_VALUE")
        return self.version(name, str(rows[0][0]))

    def in_stage(self, name: str, stage: str) -> Version | None:
        if not self._model_exists(name):
            raise NotFound("RESOURCE_DOES_NOT_EXIST")
        wanted = canonical_stage(stage)
        numbers = [v for v, s in self._live_versions(name) if s == wanted]
        return self.version(name, str(numbers[-1])) if numbers else None

    def run(self, run_id: str) -> RunFacts | None:
        rows = self._rows(
            "SELECT run_uuid, name, experiment_id, status, artifact_uri FROM runs"
            " WHERE run_uuid = ?",
            run_id,
        )
        if not rows:
            return None
        uuid, name, experiment_id, status, artifact_uri = rows[0]
        params = self._rows("SELECT key, value FROM params WHERE run_uuid = ?", uuid)
        metrics = self._rows(
            "SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = ?", uuid
        )
        return RunFacts(
            uuid,
            name,
            str(experiment_id),
            status,
            artifact_uri,
            dict(params),
            {k: float("nan") if nan else float(v) for k, v, nan in metrics},
        )

    def artifact_text(self, run_id: str, path: str) -> str | None:
        run = self.run(run_id)
        return local_artifact(run.artifact_uri, path) if run is not None else None


def local_artifact(artifact_uri: str, path: str) -> str | None:
    """An artifact under a local (`file:` or plain path) artifact root; None if unreadable."""
    parts = urlsplit(artifact_uri)
    if parts.scheme not in ("", "file"):
        return None
    root = Path(url2pathname(parts.path)) if parts.scheme else Path(artifact_uri)
    try:
        return (root / path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


# -- a team server over REST ----------------------------------------------------------------


def _credentials() -> tuple[str | None, str | None]:
    """Username and password as MLflow finds them: the environment first, then the file."""
    user, secret = (
        os.environ.get("MLFLOW_TRACKING_USERNAME"),
        os.environ.get("MLFLOW_TRACKING_PASSWORD"),
    )
    path = Path("~/.mlflow/credentials").expanduser()
    if path.is_file() and not (user and secret):
        config = configparser.ConfigParser()
        config.read(path)
        section = config["mlflow"] if config.has_section("mlflow") else {}
        user = user or section.get("mlflow_tracking_username")
        secret = secret or section.get("mlflow_tracking_password")
    return user or None, secret or None


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("true", "1")


def session_for() -> requests.Session:
    """A `requests` session carrying what MLflow's `get_default_host_creds` would send."""
    import requests

    session = requests.Session()
    user, secret = _credentials()
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if user and secret:
        session.auth = (user, secret)
    elif token:
        session.headers["Authorization"] = f"Bearer {token}"
    if _truthy("MLFLOW_TRACKING_INSECURE_TLS"):
        session.verify = False
    elif os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        session.verify = os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    if os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH"):
        session.cert = os.environ["MLFLOW_TRACKING_CLIENT_CERT_PATH"]
    return session


def _version(payload: dict[str, Any]) -> Version:
    return Version(
        payload["name"],
        str(payload["version"]),
        payload.get("run_id", ""),
        payload.get("current_stage", "None"),
        {t["key"]: t.get("value", "") for t in payload.get("tags", [])},
        list(payload.get("aliases", [])),
    )


class RestReader:
    """MLflow's REST API (`/api/2.0/mlflow/...`), one HTTP session for the whole command."""

    def __init__(self, uri: str, session: requests.Session) -> None:
        self.uri, self.session = uri.rstrip("/"), session
        self._runs: dict[str, RunFacts | None] = {}

    def get(self, path: str, **params: str) -> dict[str, Any]:
        """GET a route; NotFound with MLflow's error code on a 4xx, one line on 401/403."""
        import requests

        from predictflow.lineage import access
        from predictflow.lineage.tracking import StoreError

        try:
            response = self.session.get(
                f"{self.uri}{path}", params=params or None, timeout=REQUEST_TIMEOUT
            )
        except requests.RequestException as err:
            raise StoreError(
                f"tracking server {self.uri} does not answer ({type(err).__name__}): start it "
                "(`make server`) or fix MLFLOW_TRACKING_URI"
            ) from None
        if response.status_code == 200:
            return response.json()
        try:
            code = str(response.json().get("error_code", ""))
        except ValueError:
            code = ""
        code = code or HTTP_REFUSALS.get(response.status_code, "")
        refused = access.refusal(Refused(code, path), self.uri)  # type: ignore[arg-type]
        if refused is not None:
            raise refused
        if 400 <= response.status_code < 500 and code:
            raise NotFound(code)
        raise RegistryError(
            f"tracking server {access.server_of(self.uri)} answered HTTP "
            f"{response.status_code} on {path}; run `predictflow doctor`"
        )

    def check_credentials(self) -> None:
        """A refused login fails here, before any work (`/users/current` 404s without auth)."""
        from predictflow.lineage.access import CURRENT_USER

        with contextlib.suppress(NotFound):
            self.get(CURRENT_USER)

    def _registered(self, name: str) -> dict[str, Any]:
        return self.get("/api/2.0/mlflow/registered-models/get", name=name)["registered_model"]

    def newest(self, name: str) -> str | None:
        try:
            latest = self._registered(name).get("latest_versions", [])
        except NotFound:
            return None
        # the newest version of each stage: the newest of those is the newest of all
        return str(max(int(v["version"]) for v in latest)) if latest else None

    def version(self, name: str, number: str) -> Version:
        answer = self.get("/api/2.0/mlflow/model-versions/get", name=name, version=number)
        return _version(answer["model_version"])

    def by_alias(self, name: str, alias: str) -> Version:
        answer = self.get("/api/2.0/mlflow/registered-models/alias", name=name, alias=alias)
        return _version(answer["model_version"])

    def in_stage(self, name: str, stage: str) -> Version | None:
        latest = self._registered(name).get("latest_versions", [])
        wanted = canonical_stage(stage)
        numbers = [int(v["version"]) for v in latest if v.get("current_stage") == wanted]
        return self.version(name, str(max(numbers))) if numbers else None

    def run(self, run_id: str) -> RunFacts | None:
        if run_id not in self._runs:
            try:
                answer = self.get("/api/2.0/mlflow/runs/get", run_id=run_id)["run"]
            except NotFound:
                self._runs[run_id] = None
            else:
                info, data = answer["info"], answer.get("data", {})
                self._runs[run_id] = RunFacts(
                    info["run_id"],
                    info.get("run_name"),
                    str(info["experiment_id"]),
                    info["status"],
                    info.get("artifact_uri", ""),
                    {p["key"]: p.get("value", "") for p in data.get("params", [])},
                    {m["key"]: float(m["value"]) for m in data.get("metrics", [])},
                )
        return self._runs[run_id]

    def artifact_text(self, run_id: str, path: str) -> str | None:
        run = self.run(run_id)
        if run is None:
            return None
        parts = urlsplit(run.artifact_uri)
        if parts.scheme != "mlflow-artifacts":  # a root the client reads itself
            return local_artifact(run.artifact_uri, path)
        route = f"/api/2.0/mlflow-artifacts/artifacts/{parts.path.strip('/')}/{path}"
        import requests

        try:
            response = self.session.get(f"{self.uri}{route}", timeout=REQUEST_TIMEOUT)
        except requests.RequestException:
            return None  # shown as "no stages recorded", as the MLflow path shows it
        return response.text if response.status_code == 200 else None


# -- MLflow's own client (every other store) ------------------------------------------------


class ClientReader:
    """The same questions through `MlflowClient`: the fallback, and the reference in tests."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client

    def _call(self, method: str, *args: object) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return getattr(self.client, method)(*args)
        except MlflowException as err:
            raise NotFound(str(err.error_code)) from None

    @staticmethod
    def _plain(version: Any) -> Version:
        return Version(
            version.name,
            str(version.version),
            version.run_id,
            version.current_stage,
            dict(version.tags),
            list(version.aliases),
        )

    def newest(self, name: str) -> str | None:
        versions = self.client.search_model_versions(f"name = '{name}'")
        return str(max(int(v.version) for v in versions)) if versions else None

    def version(self, name: str, number: str) -> Version:
        return self._plain(self._call("get_model_version", name, number))

    def by_alias(self, name: str, alias: str) -> Version:
        return self._plain(self._call("get_model_version_by_alias", name, alias))

    def in_stage(self, name: str, stage: str) -> Version | None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            latest = self._call("get_latest_versions", name, [stage])
        return self.version(name, str(latest[0].version)) if latest else None

    def run(self, run_id: str) -> RunFacts | None:
        try:
            run = self._call("get_run", run_id)
        except NotFound:
            return None
        info = run.info
        return RunFacts(
            info.run_id,
            info.run_name,
            str(info.experiment_id),
            info.status,
            info.artifact_uri,
            dict(run.data.params),
            dict(run.data.metrics),
        )

    def artifact_text(self, run_id: str, path: str) -> str | None:
        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = self.client.download_artifacts(run_id, path, tmp)
                return Path(local).read_text(encoding="utf-8")
            except (MlflowException, OSError, UnicodeDecodeError):
                return None


def as_reader(source: Reader | MlflowClient) -> Reader:
    """A reader as given, or an MlflowClient wrapped as one (callers that hold a client)."""
    readers = (SqliteReader, RestReader, ClientReader)
    return source if isinstance(source, readers) else ClientReader(source)


def open_reader() -> Reader:
    """The cheapest reader for the project's store (see the module docstring for which)."""
    from predictflow.lineage import tracking

    root = tracking.store_root()
    uri = tracking.tracking_uri(root)
    if not any(os.environ.get(name) for name in CLIENT_ONLY_SETTINGS):
        path = tracking.sqlite_path(uri)
        if uri.startswith(("http://", "https://")):
            tracking.reach(uri, write=False)
            reader = RestReader(uri, session_for())
            reader.check_credentials()
            return reader
        if path is not None:
            local = SqliteReader.open(path, tracking.busy_timeout())
            if local is not None:
                return local
    from predictflow.lineage import registry

    return ClientReader(registry.open_client())
