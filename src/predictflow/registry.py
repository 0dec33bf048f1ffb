"""The Model Registry side: register once per model md5, move aliases, mirror legacy stages.

Aliases (`staging`, `production`) are the truth; the deprecated stage field is mirrored so
`models:/churn-predictor/Production` keeps loading for older consumers.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from predictflow.tracking import MODEL_NAME, store_lock

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

ALIAS_STAGES = {"staging": "Staging", "production": "Production"}


def version_with_md5(client: MlflowClient, model_md5: str) -> ModelVersion | None:
    """The registered version whose model has this md5, if any (oldest first wins)."""
    versions = client.search_model_versions(
        f"name = '{MODEL_NAME}' and tags.model_md5 = '{model_md5}'"
    )
    return min(versions, key=lambda v: int(v.version)) if versions else None


def register(
    client: MlflowClient, root: Path, run: Run, model_md5: str, tags: dict[str, str]
) -> tuple[ModelVersion, bool]:
    """Register the run's model unless this md5 already has a version; return (version, created).

    The check and the creation happen under one lock, so two concurrent `register` stages for
    the same model make exactly one version.
    """
    import mlflow

    with store_lock(root, "register"):
        existing = version_with_md5(client, model_md5)
        if existing is not None:
            return existing, False
        outputs = run.outputs.model_outputs if run.outputs else []
        if not outputs:
            raise RuntimeError(f"run {run.info.run_id} logged no model")
        created = mlflow.register_model(
            f"models:/{outputs[-1].model_id}", MODEL_NAME, tags={**tags, "run_id": run.info.run_id}
        )
        return created, True


def set_alias(client: MlflowClient, alias: str, version: str) -> None:
    """Point `alias` at `version` and mirror the legacy stage, archiving the previous holder."""
    client.set_registered_model_alias(MODEL_NAME, alias, version)
    stage = ALIAS_STAGES.get(alias)
    if stage is None or not hasattr(client, "transition_model_version_stage"):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(
            MODEL_NAME, version, stage, archive_existing_versions=True
        )


class RegistryError(LookupError):
    """A model URI or version does not resolve; the message is one line for the user."""


def client_for(root: Path) -> MlflowClient:
    """A client on the project's store (or `MLFLOW_TRACKING_URI`) that creates nothing."""
    import mlflow

    from predictflow.tracking import tracking_uri

    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def resolve(client: MlflowClient, ref: str | None) -> ModelVersion:
    """A version from `models:/name@alias`, `models:/name/3`, `models:/name/Production`, `3`,
    or None for the newest registered version."""
    from mlflow.exceptions import MlflowException

    name, selector = MODEL_NAME, ref
    if ref and ref.startswith("models:/"):
        body = ref.removeprefix("models:/")
        name, sep, selector = body.partition("@") if "@" in body else body.partition("/")
        selector = f"@{selector}" if sep == "@" else selector
        if not name or not selector:
            raise RegistryError(f"model URI {ref!r}: expected models:/NAME@ALIAS or models:/NAME/N")
    try:
        if selector is None:
            versions = client.search_model_versions(f"name = '{name}'")
            if not versions:
                raise RegistryError(f"no registered version of {name!r} yet; run `make repro`")
            return client.get_model_version(name, str(max(int(v.version) for v in versions)))
        if selector.startswith("@"):
            return client.get_model_version_by_alias(name, selector[1:])
        if selector.isdigit():
            return client.get_model_version(name, selector)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            latest = client.get_latest_versions(name, [selector])
        if not latest:
            raise RegistryError(f"no version of {name!r} is in stage {selector!r}")
        return client.get_model_version(name, str(latest[0].version))
    except MlflowException as err:
        what = ref or name
        raise RegistryError(
            f"model {what!r} not found in the registry ({err.error_code})"
        ) from None


def holder(client: MlflowClient, alias: str) -> ModelVersion | None:
    """The version an alias points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(MODEL_NAME, alias)
    except MlflowException:
        return None


PROMOTION_TAG = "promotion."


def promotion_history(version: ModelVersion) -> list[dict[str, str]]:
    """Audit events recorded on a version, oldest first."""
    import json

    keys = sorted(k for k in version.tags if k.startswith(PROMOTION_TAG))
    return [json.loads(version.tags[k]) for k in keys]


def record_event(client: MlflowClient, version: ModelVersion, event: dict[str, str]) -> None:
    """Append one audit event (who, when, from, to, reason) as a numbered version tag."""
    import json

    number = len([k for k in version.tags if k.startswith(PROMOTION_TAG)]) + 1
    client.set_model_version_tag(
        MODEL_NAME, str(version.version), f"{PROMOTION_TAG}{number:04d}", json.dumps(event)
    )
