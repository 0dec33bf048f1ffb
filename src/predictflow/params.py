"""Typed, frozen view of `params.yaml`: loaded once per process, validated in full at start.

A stage that starts with a wrong key, type or value must fail before it reads any data, with
one line that names the key (`params.yaml: model.max_depth: ...`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class BaseParams(_Section):
    seed: int = Field(ge=0)


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


class RegisterParams(_Section):
    min_roc_auc: float = Field(ge=0.0, le=1.0)


class PromoteParams(_Section):
    max_roc_auc_drop: float = Field(ge=0.0, le=1.0)


class TuneParams(_Section):
    """`predictflow tune`'s grid: params.yaml keys (`model.max_depth`) to lists of values."""

    jobs: int = Field(ge=1, le=64)
    metric: str
    grid: dict[str, list[int | float | str]] = Field(min_length=1)


class DriftParams(_Section):
    """`predictflow drift`: when a shift between a batch and the training data counts."""

    psi_warn: float = Field(gt=0.0)  # PSI from which a feature is reported as shifting
    psi_drift: float = Field(gt=0.0)  # PSI from which a feature has drifted
    p_value: float = Field(gt=0.0, lt=1.0)  # KS / chi-square significance level
    max_unseen_share: float = Field(ge=0.0, le=1.0)  # share of never-seen categories allowed
    bins: int = Field(ge=2, le=100)  # numeric PSI bins, at the reference's quantiles
    sample_rows: int = Field(ge=100)  # batch rows kept (reservoir) for the KS test


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


class ParamsError(ValueError):
    """`params.yaml` is missing, unreadable or invalid; the message is one line for the user."""


def _where(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in loc)


def parse_params(data: object, source: str = "params.yaml") -> Params:
    """Validate a params mapping; ints are accepted where floats are expected, not the reverse."""
    try:
        return Params.model_validate(_floats_from_ints(data))
    except ValidationError as err:
        first = min(err.errors(), key=lambda e: e["type"] != "extra_forbidden")  # typo first
        value = first.get("input")
        message = first["msg"]
        if first["type"] == "missing":
            raise ParamsError(f"{source}: {_where(first['loc'])}: missing key") from None
        if first["type"] == "extra_forbidden":
            message = "unknown key (typo? every key must be one that params.yaml documents)"
        raise ParamsError(f"{source}: {_where(first['loc'])}: {message} (got {value!r})") from None


def _floats_from_ints(data: object, path: tuple[str, ...] = ()) -> object:
    """YAML writes `1` for 1.0; let an int stand for a float field, as a user would expect."""
    if isinstance(data, dict):
        return {key: _floats_from_ints(value, (*path, str(key))) for key, value in data.items()}
    if isinstance(data, int) and not isinstance(data, bool) and _is_float_field(path):
        return float(data)
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
    source = str(path)
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ParamsError(f"{source}: file not found") from None
    except IsADirectoryError:
        raise ParamsError(f"{source}: is a directory, expected the params YAML file") from None
    except UnicodeDecodeError as err:
        raise ParamsError(f"{source}: not UTF-8 text ({err.reason})") from None
    except OSError as err:
        raise ParamsError(f"{source}: cannot read ({err.strerror})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ParamsError(f"{source}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: expected a mapping of sections (base, prepare, model, ...)")
    return parse_params(data, source)
