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
