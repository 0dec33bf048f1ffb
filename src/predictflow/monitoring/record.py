"""The scoring record: what `predict` writes beside its scores, `<output>.json`, and
`evaluate-batch` reads back.

Which versions scored a file is written in this record rather than in extra columns: the
champion's CSV must stay byte-identical to what predict wrote before shadowing existed, the
versions and threshold are one fact per batch rather than one per row, and the record also carries
the batch md5, the threshold and which columns hold which model (`--record` finds it when the
labelled file was renamed).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from predictflow.base.errors import StageError
from predictflow.core import io
from predictflow.lineage import evidence, names, tracking

if TYPE_CHECKING:
    from mlflow import MlflowClient

RECORD_SUFFIX = ".json"
RECORD_KIND = "predictflow.scoring"
ROLES = ("champion", "shadow")
SHADOW_PREFIX = "shadow_"


# --- which model is which ---------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """A model URI as given, pinned to the registered version it resolved to (None otherwise)."""

    uri: str
    name: str | None = None
    version: str | None = None
    model_md5: str | None = None
    run_id: str | None = None  # the run that logged the model, when known

    @property
    def pinned_uri(self) -> str:
        """The URI to load: the resolved version, so an alias moving mid-run changes nothing."""
        return f"models:/{self.name}/{self.version}" if self.version else self.uri

    def describe(self) -> str:
        return f"{self.uri} (version {self.version})" if self.version else self.uri


def resolve_model(client: MlflowClient, uri: str) -> ModelRef:
    """Pin a `models:/` URI (alias, number, stage, latest) or a bare version number of the
    churn model to its version, as MLflow resolves it; other URIs keep their run, if any."""
    from predictflow.base.errors import RegistryError

    if uri.isdecimal():
        uri = f"models:/{names.MODEL_NAME}/{uri}"
    if uri.startswith("runs:/"):
        from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

        return ModelRef(uri, run_id=RunsArtifactRepository.parse_runs_uri(uri)[0])
    if uri.startswith("models:/m-") and "/" not in uri.removeprefix("models:/"):
        from predictflow.lineage.artifacts import logged_model_run

        return ModelRef(uri, run_id=logged_model_run(client, uri.removeprefix("models:/")))
    if not uri.startswith("models:/"):
        return ModelRef(uri)
    name, at, selector = uri.removeprefix("models:/").partition("@")
    if not at:
        name, _, selector = name.partition("/")
    if not name or not selector:
        raise RegistryError(
            f"model URI {uri!r}: expected models:/NAME/VERSION, models:/NAME@ALIAS or a "
            "version number"
        )
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    name, number = get_model_name_and_version(client, uri)
    version = client.get_model_version(name, str(number))
    run_id = version.tags.get("run_id") or version.run_id
    return ModelRef(uri, name, str(number), version.tags.get("model_md5"), run_id)


def check_distinct(champion: ModelRef, shadow: ModelRef) -> None:
    """Shadowing a model with itself measures nothing; refuse before scoring. The same model
    however named: the same verified bytes (a path to the champion's folder), the same
    registered version, or a `runs:/` URI of the run that logged it (a run logs one model)."""
    if champion.model_md5 and champion.model_md5 == shadow.model_md5:
        same = True
    elif champion.version and shadow.version:
        same = (champion.name, champion.version) == (shadow.name, shadow.version)
    else:
        same = champion.uri == shadow.uri or (
            champion.run_id is not None and champion.run_id == shadow.run_id
        )
    if same:
        raise StageError(
            f"--shadow {shadow.describe()} is the champion {champion.describe()} itself; "
            "shadow a different version"
        )


def columns(role: str) -> dict[str, str]:
    """The output columns holding a role's scores."""
    prefix = SHADOW_PREFIX if role == "shadow" else ""
    return {"probability": f"{prefix}churn_probability", "predicted": f"{prefix}churn_predicted"}


# --- the scoring record -------------------------------------------------------------------------


def record_path(output: Path) -> Path:
    return output.with_name(output.name + RECORD_SUFFIX)


def scoring_record(
    models: dict[str, ModelRef],
    source: Path,
    output: Path,
    threshold: float,
    rows_scored: int,
    agreement: dict[str, Any] | None,
    scores_md5: str,
) -> dict[str, Any]:
    """What `evaluate-batch` needs to know about a scored file, and what a person auditing it
    would ask: which versions, which threshold, which input."""
    return {
        "kind": RECORD_KIND,
        "input": str(source),
        "batch_md5": evidence.file_md5(source),
        "output": str(output),
        "output_md5": evidence.file_md5(output),  # the file predict may replace without --force
        "threshold": threshold,
        "rows_scored": rows_scored,
        "scores_md5": scores_md5,  # of the score columns (scoring.score_text)
        "models": {
            role: {
                "uri": ref.uri,
                "name": ref.name,
                "version": ref.version,
                "model_md5": ref.model_md5,
                "columns": columns(role),
            }
            for role, ref in models.items()
        },
        "agreement": agreement,
    }


def read_record(path: Path, scored: Path) -> dict[str, Any]:
    if not scored.is_file():
        raise StageError(f"{scored}: scored file not found")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StageError(
            f"{path}: no scoring record; `predictflow predict` writes it beside its output as "
            f"<output>{RECORD_SUFFIX}: pass it with --record if {scored} was renamed"
        ) from None
    except (OSError, ValueError) as err:
        raise StageError(f"{path}: not a readable scoring record ({err})") from None
    if not isinstance(record, dict) or record.get("kind") != RECORD_KIND:
        raise StageError(f"{path}: not a scoring record written by `predictflow predict`")
    missing = _missing_key(record)
    if missing:
        raise StageError(
            f"{path}: scoring record has no valid {missing!r} (edited or incomplete); score the "
            "batch again with `predictflow predict`"
        )
    return record


# What evaluate-batch reads from a record: key -> the type its value must have.
RECORD_KEYS: dict[str, type | tuple[type, ...]] = {
    "input": str,
    "batch_md5": str,
    "threshold": (int, float),
    "models": dict,
}
MODEL_KEYS: dict[str, type | tuple[type, ...]] = {
    "uri": str,
    "name": (str, type(None)),
    "version": (str, type(None)),
    "columns": dict,
}


def _missing_key(record: dict[str, Any]) -> str | None:
    """The first key (dotted) that a record lacks or holds with the wrong type, or None."""
    for key, kind in RECORD_KEYS.items():
        if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
            return key
    if not 0.0 <= record["threshold"] <= 1.0:
        return "threshold"
    if "scores_md5" in record and not isinstance(record["scores_md5"], str):
        return "scores_md5"  # absent in records written before it existed
    models = record["models"]
    if "champion" not in models or not set(models) <= set(ROLES):
        return "models.champion"
    for role, model in models.items():
        if not isinstance(model, dict):
            return f"models.{role}"
        for key, kind in MODEL_KEYS.items():
            if not isinstance(model.get(key), kind):
                return f"models.{role}.{key}"
        for key in ("probability", "predicted"):
            if not isinstance(model["columns"].get(key), str):
                return f"models.{role}.columns.{key}"
    return None


def check_outputs(output: Path, source: Path, force: bool = False) -> Path:
    """Refuse, before any scoring, scores or a record beside them that would replace the input,
    a DVC-tracked file (one DVC lookup for both) or a file of the user's: the record may
    replace only an earlier record, the scores only scores that record says predict wrote,
    unchanged since (its `output_md5`), unless `force`. Return the record's path."""
    io.check_output(output, source)
    path = record_path(output)  # a file name, now that `output` is known not to be a folder
    io.check_output(path, source)
    io.check_untracked({output: "the scores", path: "the scoring record"}, "give another --output")
    if path.exists():
        try:
            kind = json.loads(path.read_text(encoding="utf-8")).get("kind")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            kind = None
        if kind != RECORD_KIND:
            raise StageError(
                f"{path}: exists and is not a predictflow scoring record; predict writes its "
                "record there: move that file away or give another --output"
            )
    if not force and (output.exists() or output.is_symlink()) and not wrote_scores(output, path):
        raise StageError(
            f"{output}: exists and is not scores `predictflow predict` wrote (or was edited "
            "since): give another --output, or pass --force to replace it"
        )
    return path


def wrote_scores(output: Path, record: Path) -> bool:
    """Whether `output` is, byte for byte, the scores file the record beside it says predict
    wrote: the only file predict replaces without --force."""
    try:
        written = json.loads(record.read_text(encoding="utf-8"))
        return (
            written.get("kind") == RECORD_KIND
            and output.is_file()
            and written.get("output_md5") == evidence.file_md5(output)
        )
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False


def write_record(output: Path, record: dict[str, Any]) -> Path:
    path = record_path(output)
    io.write_json(path, record)
    return path


def finish_run(
    client: MlflowClient,
    run_id: str,
    metrics: dict[str, float | None],
    facts: dict,
    artifact: str = "facts.json",
) -> None:
    """Finish a monitoring run: its metrics (None left out), the facts behind them as JSON."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    values = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None]
    client.log_batch(run_id, metrics=values)
    client.log_dict(run_id, facts, artifact)
    client.set_terminated(run_id)


def monitoring_experiment(root: Path) -> str:
    """The `churn-monitoring` experiment's id, created once (artifacts beside the store's)."""
    import mlflow

    client = mlflow.MlflowClient(tracking.tracking_uri(root))
    with tracking.store_lock(root):
        experiment = client.get_experiment_by_name(names.MONITORING_EXPERIMENT)
        if experiment is not None:
            return experiment.experiment_id
        location = (
            (tracking.store_dir(root) / "artifacts").as_uri()
            if tracking.uses_local_store(root)
            else None
        )
        return client.create_experiment(names.MONITORING_EXPERIMENT, artifact_location=location)
