"""The copy job of `predictflow store migrate`: experiments, runs, logged models and registered
versions from the source store to the target, each marked `predictflow.migrated_from` so a
rerun copies only what is new; and the Summary of what it did."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from predictflow.base.errors import UserError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModel, Run
    from mlflow.entities.model_registry import ModelVersion


log = logging.getLogger(__name__)


MARKER = "predictflow.migrated_from"
STATE = "predictflow.migration"
COMPLETE = "complete"
INCOMPLETE = "incomplete"
# Lists a logged model's registered versions; the target writes it when a version is created.
MODEL_VERSIONS_TAG = "mlflow.modelVersions"
PARENT_TAG = "mlflow.parentRunId"  # nested runs (a `predictflow tune` sweep) point at the copy
BATCH_PARAMS_TAGS = 100
BATCH_METRICS = 1000


class MigrationError(UserError):
    """The migration cannot go on; the message is one line for the user."""


@dataclass
class Summary:
    """What one migration did; `copied_nothing` is true on a repeated migration."""

    source: str
    target: str
    experiments_created: int = 0
    runs_copied: int = 0
    runs_already_there: int = 0
    runs_recopied: int = 0  # left incomplete by an interrupted migration
    params: int = 0
    metric_points: int = 0
    artifact_files: int = 0
    logged_models_copied: int = 0
    registered_models_created: int = 0
    versions_copied: int = 0
    versions_already_there: int = 0
    aliases_set: int = 0
    alias_conflicts: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def copied_nothing(self) -> bool:
        return not (
            self.experiments_created
            or self.runs_copied
            or self.logged_models_copied
            or self.registered_models_created
            or self.versions_copied
            or self.aliases_set
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "copied_nothing": self.copied_nothing}

    def render(self) -> str:
        lines = [
            f"migrated {self.source} -> {self.target} in {self.seconds:.1f} s",
            f"  experiments created   {self.experiments_created}",
            f"  runs copied           {self.runs_copied} ({self.params} params, "
            f"{self.metric_points} metric points, {self.artifact_files} artifact files)",
            f"  runs already there    {self.runs_already_there}",
            f"  logged models copied  {self.logged_models_copied}",
            f"  versions copied       {self.versions_copied} "
            f"({self.versions_already_there} already there)",
            f"  aliases set           {self.aliases_set}",
        ]
        if self.runs_recopied:
            lines.append(
                f"  incomplete runs from an interrupted migration redone: {self.runs_recopied}"
            )
        lines += [f"  alias left unchanged: {conflict}" for conflict in self.alias_conflicts]
        if self.copied_nothing:
            lines.append("nothing new to copy: the target already has everything")
        return "\n".join(lines)


def _pages(fetch: Callable[..., Any], **kwargs: Any) -> Iterator[Any]:
    token = None
    while True:
        page = fetch(**kwargs, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


class Migration:
    def __init__(
        self,
        src: MlflowClient,
        dst: MlflowClient,
        summary: Summary,
        say: Callable[[str], None],
        source_uri: str,
    ) -> None:
        self.src, self.dst, self.summary, self.say = src, dst, summary, say
        self.source_uri = source_uri
        self.tmp = Path(tempfile.gettempdir())
        self.experiments: dict[str, str] = {}  # source experiment id -> target id
        self.runs: dict[str, str] = {}  # source run id -> target run id
        self.models: dict[str, str] = {}  # source logged model id -> target model id

    def run(self) -> None:
        from mlflow.entities import ViewType

        for experiment in _pages(self.src.search_experiments, view_type=ViewType.ACTIVE_ONLY):
            self.experiments[experiment.experiment_id] = self._experiment(experiment)
        self._index_target()
        for source_id, target_id in self.experiments.items():
            models_by_run: dict[str | None, list[LoggedModel]] = defaultdict(list)
            for model in _pages(self.src.search_logged_models, experiment_ids=[source_id]):
                models_by_run[model.source_run_id].append(model)
            runs = _pages(
                self.src.search_runs,
                experiment_ids=[source_id],
                run_view_type=ViewType.ACTIVE_ONLY,
                order_by=["attributes.start_time ASC"],
            )
            for run in runs:
                if run.info.run_id in self.runs:
                    self.summary.runs_already_there += 1
                    continue
                self._run(run, target_id, models_by_run.pop(run.info.run_id, []))
            for models in models_by_run.values():  # no (active) source run: copied on their own
                for model in models:
                    if model.model_id not in self.models:
                        self._logged_model(model, target_id, None)
        for registered in _pages(self.src.search_registered_models):
            self._registered_model(registered)

    # -- experiments ------------------------------------------------------------------------

    def _experiment(self, experiment: Any) -> str:
        existing = self.dst.get_experiment_by_name(experiment.name)
        if existing is None:
            self.say(f"experiment {experiment.name}: creating")
            self.summary.experiments_created += 1
            return self.dst.create_experiment(experiment.name, tags=dict(experiment.tags))
        for key, value in experiment.tags.items():
            if key not in existing.tags:
                self.dst.set_experiment_tag(existing.experiment_id, key, value)
        return existing.experiment_id

    def _index_target(self) -> None:
        """What earlier migrations copied; runs they left incomplete are deleted, to redo."""
        from mlflow.entities import ViewType

        targets = sorted(set(self.experiments.values()))
        if not targets:
            return
        incomplete: set[str] = set()
        for run in _pages(
            self.dst.search_runs, experiment_ids=targets, run_view_type=ViewType.ACTIVE_ONLY
        ):
            origin = run.data.tags.get(MARKER)
            if origin is None:
                continue
            if run.data.tags.get(STATE) == COMPLETE:
                self.runs[origin] = run.info.run_id
            else:
                incomplete.add(run.info.run_id)
        for model in _pages(self.dst.search_logged_models, experiment_ids=targets):
            origin = model.tags.get(MARKER)
            if origin is None:
                continue
            if model.source_run_id in incomplete:
                self.dst.delete_logged_model(model.model_id)
            else:
                self.models[origin] = model.model_id
        for run_id in incomplete:
            self.dst.delete_run(run_id)
        self.summary.runs_recopied = len(incomplete)

    # -- runs and their logged models --------------------------------------------------------

    def _run(self, run: Run, experiment_id: str, models: list[LoggedModel]) -> None:
        from mlflow.entities import LoggedModelOutput, Metric, Param

        info = run.info
        self.say(f"run {info.run_id} ({info.run_name}): copying")
        tags = {**run.data.tags, MARKER: info.run_id, STATE: INCOMPLETE}
        parent = tags.get(PARENT_TAG)
        if parent in self.runs:  # a parent starts before its children: it is copied first
            tags[PARENT_TAG] = self.runs[parent]
        created = self.dst.create_run(
            experiment_id, start_time=info.start_time, tags=tags, run_name=info.run_name
        )
        new_id = created.info.run_id

        steps = {
            out.model_id: out.step for out in (run.outputs.model_outputs if run.outputs else [])
        }
        # A metric point the source also recorded against a logged model keeps that link.
        model_points: dict[tuple[str, int, int, float], tuple[str, Metric]] = {}
        for model in models:
            new_model = self._logged_model(model, experiment_id, new_id)
            for point in model.metrics or []:
                model_points[(point.key, point.step, point.timestamp, point.value)] = (
                    new_model,
                    point,
                )
        outputs = [
            LoggedModelOutput(self.models[model_id], step)
            for model_id, step in steps.items()
            if model_id in self.models
        ]
        if outputs:
            self.dst.log_outputs(new_id, outputs)

        params = [Param(key, value) for key, value in run.data.params.items()]
        for batch in _batches(params, BATCH_PARAMS_TAGS):
            self.dst.log_batch(new_id, params=batch)
        points = []
        for key in run.data.metrics:
            for point in self.src.get_metric_history(info.run_id, key):
                linked = model_points.get((point.key, point.step, point.timestamp, point.value))
                model_id, origin = linked if linked else (None, point)
                points.append(
                    Metric(
                        point.key,
                        point.value,
                        point.timestamp,
                        point.step,
                        model_id=model_id,
                        dataset_name=origin.dataset_name,
                        dataset_digest=origin.dataset_digest,
                    )
                )
        for batch in _batches(points, BATCH_METRICS):
            self.dst.log_batch(new_id, metrics=batch)
        if run.inputs and run.inputs.dataset_inputs:
            self.dst.log_inputs(new_id, datasets=list(run.inputs.dataset_inputs))

        if self.src.list_artifacts(info.run_id):
            local = self.tmp / "runs" / info.run_id
            local.mkdir(parents=True)
            self._download(local, run_id=info.run_id)
            self.dst.log_artifacts(new_id, str(local))
            self.summary.artifact_files += _count_files(local)

        if info.status != "RUNNING":
            self.dst.set_terminated(new_id, status=info.status, end_time=info.end_time)
        self.dst.set_tag(new_id, STATE, COMPLETE)
        self.runs[info.run_id] = new_id
        self.summary.runs_copied += 1
        self.summary.params += len(params)
        self.summary.metric_points += len(points)

    def _download(self, dst_path: Path, **where: str) -> Path:
        import mlflow

        return Path(
            mlflow.artifacts.download_artifacts(
                **where, dst_path=str(dst_path), tracking_uri=self.source_uri
            )
        )

    def _logged_model(self, model: LoggedModel, experiment_id: str, run_id: str | None) -> str:
        """Copy a logged model (tags, params, files); return its id on the target."""
        from mlflow.entities import LoggedModelStatus

        tags = {k: v for k, v in model.tags.items() if k != MODEL_VERSIONS_TAG}
        created = self.dst.create_logged_model(
            experiment_id,
            name=model.name,
            source_run_id=run_id,
            tags={**tags, MARKER: model.model_id},
            params=dict(model.params or {}),
            model_type=model.model_type,
        )
        local = self.tmp / "models" / model.model_id
        local.mkdir(parents=True)
        files = self._download(local, artifact_uri=model.artifact_location)
        # Written by MLflow when a models:/NAME/N URI was loaded: names the source's version.
        (files / "registered_model_meta").unlink(missing_ok=True)
        mlmodel = files / "MLmodel"
        if mlmodel.is_file():  # point the metadata at the copy; model files stay byte-identical
            text = mlmodel.read_text(encoding="utf-8")
            text = text.replace(model.artifact_location, created.artifact_location)
            text = text.replace(model.model_id, created.model_id)
            if run_id and model.source_run_id:
                text = text.replace(model.source_run_id, run_id)
            mlmodel.write_text(text, encoding="utf-8")
        self.dst.log_model_artifacts(created.model_id, str(files))
        status = model.status if isinstance(model.status, LoggedModelStatus) else None
        if status in (LoggedModelStatus.READY, LoggedModelStatus.FAILED):
            self.dst.finalize_logged_model(created.model_id, status)
        self.models[model.model_id] = created.model_id
        self.summary.logged_models_copied += 1
        self.summary.artifact_files += _count_files(files)
        return created.model_id

    # -- registry ----------------------------------------------------------------------------

    def _registered_model(self, registered: Any) -> None:
        from mlflow.exceptions import MlflowException

        name = registered.name
        try:
            existing = self.dst.get_registered_model(name)
        except MlflowException:
            existing = None
        if existing is None:
            self.say(f"registered model {name}: creating")
            self.dst.create_registered_model(
                name, tags=dict(registered.tags), description=registered.description
            )
            self.summary.registered_models_created += 1
            existing = self.dst.get_registered_model(name)
        else:
            for key, value in registered.tags.items():
                if key not in existing.tags:
                    self.dst.set_registered_model_tag(name, key, value)

        copied: dict[str, str] = {}  # marker -> target version
        for version in _pages(self.dst.search_model_versions, filter_string=f"name = '{name}'"):
            if MARKER in version.tags:
                copied[version.tags[MARKER]] = str(version.version)
        numbers: dict[str, str] = {}  # source version -> target version
        source_versions = sorted(
            _pages(self.src.search_model_versions, filter_string=f"name = '{name}'"),
            key=lambda v: int(v.version),
        )
        for version in source_versions:
            marker = f"{name}/{version.version}@{version.run_id or '-'}"
            if marker in copied:
                numbers[str(version.version)] = copied[marker]
                self.summary.versions_already_there += 1
                continue
            numbers[str(version.version)] = self._version(version, marker)

        holders = dict(existing.aliases or {})
        for alias, source_version in (registered.aliases or {}).items():
            target_version = numbers.get(str(source_version))
            if target_version is None:
                continue
            held = holders.get(alias)
            if held is None:
                self.dst.set_registered_model_alias(name, alias, target_version)
                self.summary.aliases_set += 1
            elif str(held) != target_version:
                self.summary.alias_conflicts.append(
                    f"{name}@{alias} is version {held} on the target; the source's version "
                    f"{source_version} was copied as version {target_version}"
                )

    def _version(self, version: ModelVersion, marker: str) -> str:
        name, source = version.name, version.source
        model_id = version.model_id
        if not model_id and source.startswith("models:/m-"):
            model_id = source.removeprefix("models:/").split("/", 1)[0]
        run_id = self.runs.get(version.run_id) if version.run_id else None
        new_model_id = None
        if model_id:
            new_model_id = self.models.get(model_id)
            if new_model_id is None:
                raise MigrationError(
                    f"version {version.version} of {name}: its logged model {model_id} was not "
                    "migrated (its run is deleted?); restore the run or delete the version"
                )
            new_source = f"models:/{new_model_id}"
        elif source.startswith("runs:/") and run_id:
            _, _, rest = source.removeprefix("runs:/").partition("/")
            new_source = f"runs:/{run_id}/{rest}"
        else:
            raise MigrationError(
                f"version {version.version} of {name}: source {source} is neither a logged "
                "model nor a runs:/ URI of a migrated run"
            )
        tags = dict(version.tags)
        if run_id and tags.get("run_id") == version.run_id:  # the lineage tag names the run
            tags["run_id"] = run_id
        self.say(f"model version {name}/{version.version}: copying")
        created = self.dst.create_model_version(
            name,
            new_source,
            run_id=run_id,
            tags={**tags, MARKER: marker},
            description=version.description,
            model_id=new_model_id,
        )
        number = str(created.version)
        stage = version.current_stage
        if stage and stage != "None":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                self.dst.transition_model_version_stage(
                    name, number, stage, archive_existing_versions=False
                )
        self.summary.versions_copied += 1
        return number
