"""Typed, frozen view of `params.yaml`: loaded once per process, validated in full at start.

A stage that starts with a wrong key, type or value must fail before it reads any data, with
one line that names the key (`params.yaml: model.max_depth: ...`).

The file is read with DVC's YAML semantics (`read_yaml`), so the value a model trains with is the
value `dvc.lock`, `dvc params diff` and `dvc exp show` record, and MLflow logs that same value.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError

from predictflow.base.dvc_yaml import read_yaml, yaml_problem
from predictflow.base.errors import UserError

# numpy's and XGBoost's seeds are unsigned 32-bit: a larger one fails deep inside a fit.
MAX_SEED = 2**32 - 1


class _Section(BaseModel):
    # No inf/nan anywhere: `reg_lambda: .inf` or `1.5e400` is never what a user means.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class BaseParams(_Section):
    seed: int = Field(ge=0, le=MAX_SEED)


class PrepareParams(_Section):
    test_size: float = Field(gt=0.0, lt=1.0)


class FeaturizeParams(_Section):
    min_category_share: float = Field(ge=0.0, lt=1.0)


class ModelParams(_Section):
    type: Literal["xgboost", "logistic_regression"]
    max_depth: int = Field(ge=1, le=32)
    n_estimators: int = Field(ge=1, le=100_000)
    learning_rate: float = Field(gt=0.0, le=1.0)
    subsample: float = Field(gt=0.0, le=1.0)
    colsample_bytree: float = Field(gt=0.0, le=1.0)
    min_child_weight: float = Field(ge=0.0)
    reg_lambda: float = Field(ge=0.0)
    C: float = Field(gt=0.0)


class EvaluateParams(_Section):
    threshold: float = Field(gt=0.0, lt=1.0)
    bootstrap_resamples: int = Field(ge=100, le=100_000)  # for the ROC/PR AUC intervals
    confidence: float = Field(gt=0.5, lt=1.0)  # level of those intervals
    calibration_bins: int = Field(ge=2, le=100)  # equal-width bins: ECE and reliability curve


class RegisterParams(_Section):
    min_roc_auc: float = Field(ge=0.0, le=1.0)
    min_test_rows: int = Field(ge=1)
    min_test_class_rows: int = Field(ge=1)


class PromoteParams(_Section):
    """The production gate: paired bootstrap of challenger minus champion ROC AUC."""

    margin: float = Field(ge=0.0, le=1.0)  # how much worse the challenger may be, at most
    confidence: float = Field(gt=0.5, lt=1.0)  # level of the interval whose low end is checked
    bootstrap_resamples: int = Field(ge=100, le=100_000)


def _grid_value(value: object) -> int | float | str:
    """One point of a grid, passed on as `-S key=value`: a finite number or a string. Whether it
    suits its key (`model.max_depth: 0`) is checked against the params schema by `tune`."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PydanticCustomError("grid_value", "Input should be a number or a string")
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("grid_value", "Input should be a finite number")
    return value


GridValue = Annotated[int | float | str, PlainValidator(_grid_value)]


class TuneParams(_Section):
    """`predictflow tune`'s grid: params.yaml keys (`model.max_depth`) to lists of values."""

    jobs: int = Field(ge=1, le=64)
    # ranked best-first by the highest value: a metric of metrics/eval.json where higher is better
    metric: Literal["roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1"]
    grid: dict[str, Annotated[list[GridValue], Field(min_length=1)]] = Field(min_length=1)


class DriftParams(_Section):
    """`predictflow drift`: when a shift between a batch and the training data counts."""

    psi_warn: float = Field(gt=0.0)  # PSI from which a feature is reported as shifting
    psi_drift: float = Field(gt=0.0)  # PSI from which a feature has drifted
    p_value: float = Field(gt=0.0, lt=1.0)  # KS / chi-square significance level
    max_unseen_share: float = Field(ge=0.0, le=1.0)  # share of never-seen categories allowed
    bins: int = Field(ge=2, le=100)  # numeric PSI bins, at the reference's quantiles
    sample_rows: int = Field(ge=100)  # batch rows kept (reservoir) for the KS test


class ScaleParams(_Section):
    """Where a stage's work runs: `local` (one process, the default) or `dask` (docs/scaling.md).

    Which cluster is not a param: `DASK_SCHEDULER_ADDRESS` when set, else a `LocalCluster` the
    stage starts and closes. Changing the engine or the partitions reruns the stages that read
    them, since the outs' layout changes with them.
    """

    engine: Literal["local", "dask"] = "local"
    partitions: int = Field(default=8, ge=1, le=100_000)  # parquet parts per prepared split


class Params(_Section):
    base: BaseParams
    prepare: PrepareParams
    featurize: FeaturizeParams
    model: ModelParams
    evaluate: EvaluateParams
    # `register` would shadow ABCMeta.register on the model class; the YAML key stays `register`.
    registry: RegisterParams = Field(alias="register")
    promote: PromoteParams
    tune: TuneParams
    drift: DriftParams
    scale: ScaleParams = ScaleParams()  # absent: `local`, as before the switch existed


class ParamsError(UserError):
    """`params.yaml` is missing, unreadable or invalid; the message is one line for the user."""


def _where(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in loc)


def describe(err: ValidationError, source: str, prefix: str = "") -> str:
    """One line for the first problem, typos first: `<source>: <prefix><key>: <what> (got ...)`."""
    first = min(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
    where = prefix + _where(first["loc"])
    if first["type"] == "missing":
        return f"{source}: {where}: missing key"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key (typo? every key must be one that params.yaml documents)"
    return f"{source}: {where}: {message} (got {first.get('input')!r})"


def parse_params(data: object, source: str = "params.yaml") -> Params:
    """Validate a params mapping; ints are accepted where floats are expected, not the reverse."""
    try:
        return Params.model_validate(_floats_from_ints(data))
    except ValidationError as err:
        raise ParamsError(describe(err, source)) from None


def _floats_from_ints(data: object, path: tuple[str, ...] = ()) -> object:
    """YAML writes `1` for 1.0; let an int stand for a float field, as a user would expect."""
    if isinstance(data, dict):
        return {key: _floats_from_ints(value, (*path, str(key))) for key, value in data.items()}
    if isinstance(data, int) and not isinstance(data, bool) and _is_float_field(path):
        try:
            return float(data)
        except OverflowError:  # 1 followed by 400 zeros: refused below as not finite
            return math.inf if data > 0 else -math.inf
    return data


def _is_float_field(path: tuple[str, ...]) -> bool:
    if len(path) != 2:
        return False
    section = next(
        (f for name, f in Params.model_fields.items() if path[0] in (name, f.alias)), None
    )
    if section is None or section.annotation is None:
        return False
    field = section.annotation.model_fields.get(path[1])  # type: ignore[union-attr]
    return field is not None and field.annotation is float


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate the whole params file."""
    return parse_params(load_params_data(path), str(path))


def load_params_data(path: Path | str = "params.yaml") -> dict:
    """The params file as the mapping DVC reads from it, before validation."""
    from ruamel.yaml import YAMLError

    source = str(path)
    try:
        with open(path, encoding="utf-8") as handle:
            data = read_yaml(handle.read())
    except FileNotFoundError:
        raise ParamsError(f"{source}: file not found") from None
    except IsADirectoryError:
        raise ParamsError(f"{source}: is a directory, expected the params YAML file") from None
    except UnicodeDecodeError as err:
        raise ParamsError(f"{source}: not UTF-8 text ({err.reason})") from None
    except OSError as err:
        raise ParamsError(f"{source}: cannot read ({err.strerror})") from None
    except YAMLError as err:
        raise ParamsError(f"{source}: {yaml_problem(err)}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: expected a mapping of sections (base, prepare, model, ...)")
    return data
