"""Every other store through MLflow's own client (`ClientReader`): the fallback, and the reference
the other readers are compared with in tests."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from predictflow.lineage.reader import NotFound, RunFacts, Version

if TYPE_CHECKING:
    from mlflow import MlflowClient


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
