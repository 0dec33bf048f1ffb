"""A team server (`http(s)://`) asked through MLflow's documented REST API (`RestReader`).

With the credentials MLflow itself would send (`MLFLOW_TRACKING_TOKEN`, or username and password
from the environment or `~/.mlflow/credentials`), without importing MLflow.
"""

from __future__ import annotations

import configparser
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from predictflow.base.errors import RegistryError, StoreError
from predictflow.lineage.reader import NotFound, RunFacts, Version, canonical_stage, local_artifact

if TYPE_CHECKING:
    import requests

HTTP_REFUSALS = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}  # when the body has no code
REQUEST_TIMEOUT = 5.0  # seconds per request, as tracking.HTTP_DEFAULTS bounds MLflow's own


class Refused(Exception):
    """A 401/403 as `access.refusal` reads MLflow's exception: its code and `endpoint PATH`."""

    def __init__(self, error_code: str, path: str) -> None:
        super().__init__(f"API request to endpoint {path} was refused")
        self.error_code = error_code


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
