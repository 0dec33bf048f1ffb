"""Loading a model only after its bytes are proven: the one door every command loads through.

Whatever names the model (`models:/name/3`, `@alias`, `/Stage`, `/latest`, `models:/m-<id>`,
`runs:/<run>/model`, a path to a logged model's folder, a version number), the artifacts are
downloaded once into a private folder, `model.pkl` there is hashed and compared with the md5 that
was recorded when the model was made: the registered version's `model_md5` tag for a registry
URI, the `model_md5` tag of the run that logged it (named by the folder's `MLmodel`) otherwise.
A model nothing recorded an md5 for is refused. The model is then loaded from that checked copy,
so a file swapped in the store between the check and the load is never served.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from predictflow.base.errors import StageError
from predictflow.lineage.evidence import file_md5
from predictflow.lineage.names import MODEL_NAME

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.pyfunc import PyFuncModel

    from predictflow.core.scoring import Model

MODEL_FILE = "model.pkl"  # inside a version's artifacts: the bytes dvc.lock hashes
RERUN = "register the model again with `dvc repro -f train`"


class ArtifactError(StageError):
    """A model's artifact is unreadable, or is not the model its recorded md5 names."""


@dataclass(frozen=True)
class Checked:
    """A downloaded model folder whose `model.pkl` matched the md5 `vouched_by` recorded."""

    folder: Path
    md5: str
    run_id: str | None
    vouched_by: str  # "version 3" or "run <id>"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _download(uri: str, dest: Path, what: str) -> Path:
    import mlflow
    from mlflow.exceptions import MlflowException

    # MLflow notes an empty download at INFO and returns; the missing file is reported below.
    logging.getLogger("mlflow.store.artifact.artifact_repo").setLevel(logging.WARNING)
    try:
        return Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(dest)))
    except (MlflowException, OSError) as err:
        raise ArtifactError(f"{what}: its artifacts cannot be read ({_first_line(err)})") from None


def _compare(local: Path, expected: str, what: str, recorded: str, hint: str) -> str:
    if not (local / MODEL_FILE).is_file():
        raise ArtifactError(
            f"{what}: its artifacts cannot be read (no {MODEL_FILE} in the store: the artifacts "
            f"folder was deleted or moved); {hint}"
        )
    actual = file_md5(local / MODEL_FILE)
    if actual != expected:
        raise ArtifactError(
            f"{what}: artifact {MODEL_FILE} has md5 {actual} but {recorded} is {expected}; the "
            "stored model was replaced, refusing to use it (`predictflow doctor` lists such "
            "versions)"
        )
    return actual


def download_verified(
    client: MlflowClient, version: ModelVersion, dest: Path, ledger: bool = True
) -> Path:
    """Download a registered version's model into `dest`, checked against its `model_md5` tag
    (and the release ledger, unless `ledger` is False: only for recording a first release)."""
    return _verified_version(client, version, dest, ledger).folder


def _verified_version(
    client: MlflowClient, version: ModelVersion, dest: Path, ledger: bool = True
) -> Checked:
    """A registered version's model, checked against its `model_md5` tag and, when it holds
    production on a team server, against the release ledger (which only releasers write: an
    experimenter can re-tag a version, not rewrite a release)."""
    from predictflow.lineage import releases

    number = str(version.version)
    expected = version.tags.get("model_md5")
    if not expected:
        raise ArtifactError(
            f"version {number} has no model_md5 tag, so its artifact cannot be verified; {RERUN}"
        )
    recorded = "the version's model_md5 tag"
    if ledger and releases.applies(client) and "production" in version.aliases:
        judged = releases.judge(client, version)
        if judged.problem or judged.release is None:
            raise ArtifactError(f"refusing to load production: {judged.problem}")
        released = judged.release.model_md5
        if released != expected:
            raise ArtifactError(
                f"version {number}: its model_md5 tag is {expected} but the release a releaser "
                f"recorded ({releases.LEDGER}) says {released}: the tag was changed after the "
                "release, refusing to use it"
            )
        recorded = f"the release record in {releases.LEDGER}"
    what = f"version {number}"
    local = _download(f"models:/{version.name}/{number}", dest, what)
    hint = f"{RERUN}, or restore the folder from a backup"
    md5 = _compare(local, expected, what, recorded, hint)
    return Checked(local, md5, version.run_id, what)


def logged_model_run(client: MlflowClient, model_id: str) -> str | None:
    """The run that logged `models:/m-<id>` (MLflow 3's logged model), or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_logged_model(model_id).source_run_id
    except MlflowException:
        return None


def registry_version(client: MlflowClient, uri: str) -> ModelVersion | None:
    """The registered version a `models:/NAME/...` URI names (number, alias, stage, latest), as
    MLflow resolves it; None for a logged model's `models:/m-<id>`."""
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    body = uri.removeprefix("models:/")
    if body.startswith("m-") and "/" not in body and "@" not in body:
        return None
    name, number = get_model_name_and_version(client, uri)
    return client.get_model_version(name, str(number))


def _recorded_by_run(client: MlflowClient, run_id: str | None, shown: str) -> tuple[str, str]:
    """The `model_md5` the run that logged a model recorded, and who vouches for it."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        raise ArtifactError(
            f"{shown}: no run is recorded as having logged this model, so nothing vouches for "
            "its bytes; load a registered version (models:/churn-predictor/N) instead"
        )
    try:
        tags = client.get_run(run_id).data.tags
    except MlflowException:
        raise ArtifactError(
            f"{shown}: the run {run_id} that logged it is not in this tracking store, so its "
            "bytes cannot be verified; load a registered version instead"
        ) from None
    expected = tags.get("model_md5")
    if not expected:
        raise ArtifactError(
            f"{shown}: run {run_id} recorded no model_md5, so the model's bytes cannot be "
            "verified; load a registered version instead"
        )
    return expected, f"run {run_id}"


def download_checked(client: MlflowClient, uri: str, dest: Path) -> Checked:
    """Download the model behind any MLflow model URI, path or version number into `dest` and
    prove its bytes against the md5 its version or its run recorded."""
    import yaml

    if uri.isdecimal():
        uri = f"models:/{MODEL_NAME}/{uri}"
    if uri.startswith("models:/"):
        version = registry_version(client, uri)
        if version is not None:
            return _verified_version(client, version, dest)
    local = _download(uri, dest, uri)
    try:
        meta = yaml.safe_load((local / "MLmodel").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        meta = {}
    run_id = meta.get("run_id") if isinstance(meta, dict) else None
    if uri.startswith("models:/m-") and not run_id:
        run_id = logged_model_run(client, uri.removeprefix("models:/"))
    if uri.startswith("runs:/"):  # the URI's own run, whatever the folder's MLmodel claims
        from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

        run_id = RunsArtifactRepository.parse_runs_uri(uri)[0]
    expected, vouched_by = _recorded_by_run(client, run_id, uri)
    recorded = f"the model_md5 tag of {vouched_by}, which logged it,"
    md5 = _compare(local, expected, uri, recorded, "load a registered version instead")
    return Checked(local, md5, run_id, vouched_by)


def load_verified(client: MlflowClient, uri: str, shown: str | None = None) -> Model:
    """The model behind `uri`, loaded from a copy whose md5 matched what was recorded for it."""
    return load_with_proof(client, uri, shown)[0]


def load_with_proof(
    client: MlflowClient, uri: str, shown: str | None = None
) -> tuple[Model, Checked]:
    """`load_verified`, with the proof (md5, run, who vouched). A URI that does not load (no
    such run or path, an unreadable store) is one user line naming `shown` (default: `uri`)."""
    from mlflow.exceptions import MlflowException

    try:
        with tempfile.TemporaryDirectory() as tmp:
            checked = download_checked(client, uri, Path(tmp))
            return load_local(checked.folder), checked
    except (MlflowException, OSError) as err:
        raise ArtifactError(f"cannot load model {shown or uri!r}: {_first_line(err)}") from None


def load_local(local: Path) -> Model:
    """The model in a downloaded (verified) model folder, as `scorer` serves it."""
    import mlflow

    return scorer(mlflow.pyfunc.load_model(str(local)))


@dataclass(frozen=True)
class ProbaModel:
    """A scikit-learn model whose pyfunc `predict` is its `predict_proba`, called directly."""

    estimator: Any

    def predict(self, data: object) -> object:
        return self.estimator.predict_proba(data)


def scorer(model: PyFuncModel) -> Model:
    """What scores a loaded model's rows: the same numbers as its pyfunc `predict`, faster.

    Every caller (`predict`, `drift`, the promotion duel) scores rows the data contract
    (`cleaning.clean`) has already typed. For a scikit-learn model logged with
    `pyfunc_predict_fn="predict_proba"` (what `train` logs), pyfunc would first check every
    value against the serving signature, whose numeric columns are `AnyType` (clients send
    numbers or text): one Python call per value. Its `predict_proba` is called directly instead,
    and when the pipeline starts with the contract's own cleaning step (`ContractCleaner`, for
    served clients' raw rows) that step is skipped: on typed rows it is the identity (a test
    holds the bytes equal to pyfunc's). With both, batch scoring at 1M rows went from 0.64x to
    0.79x of the bare script (one loaded machine, 2026-11-27; docs/benchmarks.md has the
    current figure). Any other flavour or predict function keeps pyfunc.
    """
    function = model.metadata.flavors.get("python_function", {})
    if model.loader_module != "mlflow.sklearn" or function.get("predict_fn") != "predict_proba":
        return model
    from predictflow.model import ContractCleaner

    estimator = model.get_raw_model()
    steps = getattr(estimator, "steps", None)
    if steps and len(steps) > 1 and isinstance(steps[0][1], ContractCleaner):
        estimator = estimator[1:]
    return ProbaModel(estimator)
