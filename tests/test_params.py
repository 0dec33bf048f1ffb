"""`params.yaml` is validated in full: every mistake is one `ParamsError` line naming the key.

The project's params come from HEAD (`committed_text`), never from the developer's working tree,
and are parsed with DVC's own YAML reader, the one whose values `dvc.lock` records.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import pydantic
import pytest
from dvc.utils.serialize import parse_yaml as dvc_parse_yaml

from predictflow.core.params import MAX_SEED, Params, ParamsError, load_params, parse_params

from .conftest import committed_text

COMMITTED = committed_text("params.yaml")
UNKNOWN = "unknown key (typo? every key must be one that params.yaml documents)"
DELETE = object()


@pytest.fixture(scope="module")
def real_data() -> dict:
    return dvc_parse_yaml(COMMITTED, "params.yaml")


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    """The committed params.yaml, as a file of its own."""
    path = tmp_path / "params.yaml"
    path.write_text(COMMITTED, encoding="utf-8")
    return path


def _mutated(data: dict, changes: dict[str, object]) -> dict:
    """A deep copy of `data` with dotted keys set to a value, or removed with DELETE."""
    data = copy.deepcopy(data)
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = data
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[key]
        else:
            node[key] = value
    return data


def test_the_repository_params_file_loads(
    monkeypatch: pytest.MonkeyPatch, real_data: dict, params_file: Path
) -> None:
    monkeypatch.chdir(params_file.parent)

    params = load_params("params.yaml")

    assert params == load_params()
    assert params.base.seed == real_data["base"]["seed"]
    assert params.prepare.test_size == real_data["prepare"]["test_size"]
    assert params.model.type in ("xgboost", "logistic_regression")
    for key, value in real_data["model"].items():
        assert getattr(params.model, key) == value, key
    assert params.registry.min_roc_auc == real_data["register"]["min_roc_auc"]
    assert isinstance(params.model.max_depth, int)
    assert isinstance(params.model.C, float)


def test_parse_params_of_the_real_data_equals_load_params(
    real_data: dict, params_file: Path
) -> None:
    assert parse_params(real_data) == load_params(params_file)


BAD_PARAMS = [
    pytest.param({"model.maxdepth": 6}, f"model.maxdepth: {UNKNOWN} (got 6)", id="unknown-key"),
    pytest.param(
        {"model.maxdepth": 6, "model.max_depth": DELETE},
        f"model.maxdepth: {UNKNOWN} (got 6)",
        id="misspelt-key-reported-before-missing-key",
    ),
    pytest.param({"train": {}}, f"train: {UNKNOWN} (got {{}})", id="unknown-section"),
    pytest.param({"register.x": 1}, f"register.x: {UNKNOWN} (got 1)", id="unknown-key-alias"),
    pytest.param(
        {"model.max_depth": "6"},
        "model.max_depth: Input should be a valid integer (got '6')",
        id="int-given-str",
    ),
    pytest.param(
        {"model.max_depth": 6.5},
        "model.max_depth: Input should be a valid integer (got 6.5)",
        id="int-given-float",
    ),
    pytest.param(
        {"model.max_depth": 6.0},
        "model.max_depth: Input should be a valid integer (got 6.0)",
        id="int-given-whole-float",
    ),
    pytest.param(
        {"model.max_depth": True},
        "model.max_depth: Input should be a valid integer (got True)",
        id="int-given-bool",
    ),
    pytest.param(
        {"model.max_depth": 0},
        "model.max_depth: Input should be greater than or equal to 1 (got 0)",
        id="max-depth-0",
    ),
    pytest.param(
        {"model.max_depth": 33},
        "model.max_depth: Input should be less than or equal to 32 (got 33)",
        id="max-depth-33",
    ),
    pytest.param(
        {"model.type": "random_forest"},
        "model.type: Input should be 'xgboost' or 'logistic_regression' (got 'random_forest')",
        id="unknown-model-type",
    ),
    pytest.param({"prepare": DELETE}, "prepare: missing key", id="missing-section"),
    pytest.param({"register": DELETE}, "register: missing key", id="missing-section-alias"),
    pytest.param({"model.max_depth": DELETE}, "model.max_depth: missing key", id="missing-key"),
    pytest.param(
        {"model": None},
        "model: Input should be a valid dictionary or instance of ModelParams (got None)",
        id="empty-section",
    ),
    pytest.param(
        {"prepare.test_size": 1.5},
        "prepare.test_size: Input should be less than 1 (got 1.5)",
        id="test-size-1.5",
    ),
    pytest.param(
        {"prepare.test_size": 0},
        "prepare.test_size: Input should be greater than 0 (got 0.0)",
        id="test-size-0",
    ),
    pytest.param(
        {"register.min_roc_auc": "0.7"},
        "register.min_roc_auc: Input should be a valid number (got '0.7')",
        id="float-given-str",
    ),
    pytest.param(
        {"register.min_roc_auc": True},
        "register.min_roc_auc: Input should be a valid number (got True)",
        id="float-given-bool",
    ),
    pytest.param(
        {"base.seed": -1},
        "base.seed: Input should be greater than or equal to 0 (got -1)",
        id="negative-seed",
    ),
]


@pytest.mark.parametrize(("changes", "expected"), BAD_PARAMS)
def test_invalid_params_name_the_key(real_data: dict, changes: dict, expected: str) -> None:
    with pytest.raises(ParamsError) as info:
        parse_params(_mutated(real_data, changes))

    assert str(info.value) == f"params.yaml: {expected}"
    assert "\n" not in str(info.value)


def test_parse_params_messages_name_the_given_source(real_data: dict) -> None:
    with pytest.raises(ParamsError) as info:
        parse_params(_mutated(real_data, {"model.max_depth": 0}), source="exp/params.yaml")

    assert str(info.value) == (
        "exp/params.yaml: model.max_depth: Input should be greater than or equal to 1 (got 0)"
    )


@pytest.mark.parametrize(
    ("key", "section", "field", "value"),
    [
        ("register.min_roc_auc", "registry", "min_roc_auc", 1),
        ("model.C", "model", "C", 2),
        ("model.min_child_weight", "model", "min_child_weight", 0),
    ],
    ids=["register.min_roc_auc-1", "model.C-2", "model.min_child_weight-0"],
)
def test_an_int_is_accepted_for_a_float_field(
    real_data: dict, key: str, section: str, field: str, value: int
) -> None:
    params = parse_params(_mutated(real_data, {key: value}))

    result = getattr(getattr(params, section), field)
    assert result == float(value)
    assert type(result) is float


def test_load_params_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"

    with pytest.raises(ParamsError) as info:
        load_params(path)

    assert str(info.value) == f"{path}: file not found"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("base:\n\tseed: 42\n", 2),
        ("base:\n  seed: 42\nprepare:\n  test_size: [0.2\nmodel:\n  type: xgboost\n", 5),
        ("base:\n  seed: 42\n bad: : x\n", 3),
    ],
    ids=["tab-indent", "unclosed-bracket", "bad-indent"],
)
def test_load_params_invalid_yaml_names_the_line(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ParamsError) as info:
        load_params(path)

    message = str(info.value)
    assert message.startswith(f"{path}: not valid YAML at line {line}: "), message
    assert "\n" not in message


@pytest.mark.parametrize(
    "text",
    ["- base\n- model\n", "", "just a string\n", "42\n"],
    ids=["list", "empty", "str", "int"],
)
def test_load_params_requires_a_mapping(tmp_path: Path, text: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ParamsError) as info:
        load_params(path)

    assert str(info.value) == (
        f"{path}: expected a mapping of sections (base, prepare, model, ...)"
    )


def test_load_params_validates_the_file_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(_with_line(COMMITTED, "model.max_depth", "0"), encoding="utf-8")

    with pytest.raises(ParamsError) as info:
        load_params(path)

    assert str(info.value) == (
        f"{path}: model.max_depth: Input should be greater than or equal to 1 (got 0)"
    )


def test_params_are_frozen(params_file: Path) -> None:
    params = load_params(params_file)

    # pydantic's frozen models: only that every section is configured frozen is ours to check
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        params.model.max_depth = 8  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        params.model = None  # type: ignore[misc,assignment]
    assert params == load_params(params_file)


# --- a file that is not a params file at all ----------------------------------------------------


def test_load_params_non_utf8_file_is_a_params_error(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_bytes("base:\n  seed: 42  # café\n".encode("latin-1"))

    with pytest.raises(ParamsError):
        load_params(path)


def test_load_params_on_a_directory_is_a_params_error(tmp_path: Path) -> None:
    with pytest.raises(ParamsError):
        load_params(tmp_path)


# --- params read as DVC reads them --------------------------------------------------------------


def _with_line(text: str, dotted: str, spelling: str) -> str:
    """params.yaml text with `section.key: spelling`, exactly as a user would type it."""
    section, key = dotted.split(".")
    start = text.index(f"\n{section}:\n")
    pattern = re.compile(rf"^  {re.escape(key)}:[^\n]*", re.MULTILINE)
    match = pattern.search(text, start)
    assert match is not None, dotted
    return f"{text[: match.start()]}  {key}: {spelling}{text[match.end() :]}"


def _field(params: Params, dotted: str) -> object:
    section, key = dotted.split(".")
    return getattr(getattr(params, "registry" if section == "register" else section), key)


REFUSED = object()

# Spellings YAML 1.1 (PyYAML) and YAML 1.2 (DVC's ruamel) may read differently, or values no user
# means. Each row: the value every reader must then agree on, or REFUSED with the line's tail.
SPELLINGS = [
    pytest.param("model.max_depth", "010", 10, id="octal-looking-010"),
    pytest.param("model.max_depth", "0o10", 8, id="yaml12-octal-0o10"),
    pytest.param("model.max_depth", "0x10", 16, id="hex-0x10"),
    pytest.param("model.max_depth", "+5", 5, id="plus-sign"),
    pytest.param("model.n_estimators", "1_000", 1000, id="underscore-1_000"),
    pytest.param("model.learning_rate", "5e-2", 0.05, id="exponent-no-dot-5e-2"),
    pytest.param("model.learning_rate", "1e-05", 1e-05, id="exponent-1e-05"),
    pytest.param("model.reg_lambda", "1e3", 1000.0, id="float-1e3"),
    pytest.param("model.reg_lambda", "5", 5.0, id="int-for-float"),
    pytest.param("base.seed", "0o777", 511, id="seed-octal"),
    pytest.param(
        "model.n_estimators", "1e3", "Input should be a valid integer (got 1000.0)", id="int-1e3"
    ),
    pytest.param(
        "model.n_estimators", "1:30", "Input should be a valid integer (got '1:30')", id="1:30"
    ),
    pytest.param("model.max_depth", "yes", "valid integer (got 'yes')", id="yes"),
    pytest.param("model.max_depth", "no", "valid integer (got 'no')", id="no"),
    pytest.param("model.type", "on", "'xgboost' or 'logistic_regression' (got 'on')", id="on"),
    pytest.param("model.type", "off", "'xgboost' or 'logistic_regression' (got 'off')", id="off"),
    pytest.param("model.max_depth", '"5"', "valid integer (got '5')", id="quoted-number"),
    pytest.param("model.max_depth", "~", "valid integer (got None)", id="null-tilde"),
    pytest.param("model.max_depth", "", "valid integer (got None)", id="empty-value"),
    pytest.param("model.reg_lambda", ".inf", "finite number (got inf)", id="inf"),
    pytest.param("model.reg_lambda", "-.inf", "finite number (got -inf)", id="minus-inf"),
    pytest.param("model.learning_rate", ".nan", "finite number (got nan)", id="nan"),
    pytest.param("model.C", "1.5e400", "finite number (got inf)", id="overflow-1.5e400"),
    pytest.param("model.C", "1" + "0" * 400, "finite number (got inf)", id="overflow-int"),
]


@pytest.mark.parametrize(("dotted", "spelling", "expected"), SPELLINGS)
def test_params_are_read_as_dvc_reads_them(
    tmp_path: Path, dotted: str, spelling: str, expected: object
) -> None:
    """The value the stages train with is the value DVC records in dvc.lock, or a one-line
    refusal that names the key and the value as DVC reads it."""
    text = _with_line(COMMITTED, dotted, spelling)
    section, key = dotted.split(".")
    as_dvc_reads = dvc_parse_yaml(text, "params.yaml")[section][key]
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")

    if isinstance(expected, str):
        with pytest.raises(ParamsError) as info:
            load_params(path)
        message = str(info.value)
        assert message == f"{path}: {dotted}: {message.split(': ', 2)[2]}"
        assert message.endswith(expected), message
        assert "\n" not in message
    else:
        value = _field(load_params(path), dotted)
        assert value == as_dvc_reads == expected
        assert type(value) is type(expected)


def test_a_duplicate_key_is_refused_as_dvc_refuses_it(tmp_path: Path) -> None:
    """PyYAML keeps the last of two `max_depth:` lines; DVC stops. So do we, naming the key."""
    text = _with_line(COMMITTED, "model.max_depth", "4\n  max_depth: 7")
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    line = text[: text.index("max_depth: 7")].count("\n") + 1
    with pytest.raises(Exception, match="YAML file structure is corrupted"):
        dvc_parse_yaml(text, "params.yaml")

    with pytest.raises(ParamsError) as info:
        load_params(path)

    assert str(info.value) == (
        f'{path}: not valid YAML at line {line}: found duplicate key "max_depth" with value "7" '
        '(original value: "4")'
    )


def _float_fields() -> list[str]:
    return [
        f"{section.alias or name}.{key}"
        for name, section in Params.model_fields.items()
        for key, field in section.annotation.model_fields.items()  # type: ignore[union-attr]
        if field.annotation is float
    ]


@pytest.mark.parametrize("dotted", _float_fields())
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan], ids=["inf", "-inf", "nan"])
def test_every_float_param_refuses_non_finite_values(
    real_data: dict, dotted: str, value: float
) -> None:
    with pytest.raises(ParamsError) as info:
        parse_params(_mutated(real_data, {dotted: value}))

    assert (
        str(info.value) == f"params.yaml: {dotted}: Input should be a finite number (got {value})"
    )


def test_seed_must_fit_numpy_and_xgboost(real_data: dict) -> None:
    largest = parse_params(_mutated(real_data, {"base.seed": MAX_SEED}))
    assert largest.base.seed == 2**32 - 1

    with pytest.raises(ParamsError) as info:
        parse_params(_mutated(real_data, {"base.seed": 2**32}))

    assert str(info.value) == (
        "params.yaml: base.seed: Input should be less than or equal to 4294967295 (got 4294967296)"
    )


MEANINGLESS = [
    ("model.n_estimators", 0, "greater than or equal to 1"),
    ("model.learning_rate", 0.0, "greater than 0"),
    ("model.subsample", 0.0, "greater than 0"),
    ("model.colsample_bytree", -0.5, "greater than 0"),
    ("model.min_child_weight", -1.0, "greater than or equal to 0"),
    ("model.reg_lambda", -1.0, "greater than or equal to 0"),
    ("model.C", 0.0, "greater than 0"),
    ("evaluate.threshold", 0.0, "greater than 0"),
    ("evaluate.bootstrap_resamples", 0, "greater than or equal to 100"),
    ("evaluate.confidence", 0.5, "greater than 0.5"),
    ("promote.margin", -0.01, "greater than or equal to 0"),
    ("featurize.min_category_share", -0.1, "greater than or equal to 0"),
    ("tune.jobs", 0, "greater than or equal to 1"),
]


@pytest.mark.parametrize(("dotted", "value", "rule"), MEANINGLESS, ids=[m[0] for m in MEANINGLESS])
def test_zero_or_negative_where_meaningless_is_refused(
    real_data: dict, dotted: str, value: float, rule: str
) -> None:
    with pytest.raises(ParamsError) as info:
        parse_params(_mutated(real_data, {dotted: value}))

    assert str(info.value) == f"params.yaml: {dotted}: Input should be {rule} (got {value!r})"
