"""Invariant: the params a model trains with, the params MLflow records and the params `dvc.lock`
hashes are the same values, or the stage refuses with one line before anything runs.

End to end, with the real `dvc repro`, a real MLflow store and the trained estimator itself.
DVC's own YAML reader (`dvc.utils.serialize.parse_yaml`) is the oracle for what DVC recorded.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest
from dvc.utils.serialize import dumps_yaml
from dvc.utils.serialize import parse_yaml as dvc_parse_yaml

from predictflow.lineage import evidence

from .conftest import committed_text, copy_built_repo, dvc, repo_client, stage_error_line

pytestmark = pytest.mark.pipeline

# Spellings PyYAML (YAML 1.1) and DVC (YAML 1.2) read differently: 010 is 8 for one and 10 for
# the other, 5e-2 a string or 0.05; 0x20 keeps the training short.
SPELLED = {"max_depth": ("010", 10), "learning_rate": ("5e-2", 0.05), "n_estimators": ("0x20", 32)}
# The names XGBoost's autolog would give each: the run records every fact once, under its
# params.yaml name only, so none of these may appear with another value.
AUTOLOGGED = {
    "max_depth": "max_depth",
    "learning_rate": "learning_rate",
    "n_estimators": "num_boost_round",
}


def _spell(text: str, key: str, spelling: str) -> str:
    """params.yaml text with the `model:` section's `key` written as `spelling`."""
    pattern = re.compile(rf"^  {re.escape(key)}:[^\n]*", re.MULTILINE)
    match = pattern.search(text, text.index("\nmodel:\n"))
    assert match is not None, key
    return f"{text[: match.start()]}  {key}: {spelling}{text[match.end() :]}"


def _runs(repo: Path) -> list:
    client = repo_client(repo)
    experiment = client.get_experiment_by_name("churn-prediction")
    return client.search_runs([experiment.experiment_id], run_view_type=3)


@pytest.fixture(scope="module")
def spelled_repo(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built project after `dvc repro` of a params.yaml with the SPELLED values (all in
    `model:`, so DVC reruns train, evaluate and register on the built project's splits)."""
    repo = copy_built_repo(built_repo, tmp_path_factory.mktemp("spelled") / "repo")
    text = committed_text("params.yaml")
    for key, (spelling, _) in SPELLED.items():
        text = _spell(text, key, spelling)
    (repo / "params.yaml").write_text(text, encoding="utf-8")
    assert "Running stage 'train'" in dvc(repo, "repro").stdout
    return repo


def test_model_mlflow_and_dvc_lock_hold_the_same_params(spelled_repo: Path) -> None:
    repo = spelled_repo
    lock_text = (repo / "dvc.lock").read_text(encoding="utf-8")
    locked = dvc_parse_yaml(lock_text, "dvc.lock")["stages"]["train"]["params"]["params.yaml"]
    model_md5 = evidence.file_md5(repo / "models" / "model.pkl")
    (run,) = [r for r in _runs(repo) if r.data.tags.get("model_md5") == model_md5]
    with open(repo / "models" / "model.pkl", "rb") as handle:
        classifier = pickle.load(handle).named_steps["classifier"]
    booster = json.loads(classifier.get_booster().save_config())
    trained = booster["learner"]["gradient_booster"]["tree_train_param"]
    read_back = evidence.load_lock(repo)["train"].params["model"]

    for key, (_, value) in SPELLED.items():
        assert locked["model"][key] == value, key  # what DVC hashed
        assert read_back[key] == value, key  # what `predictflow lineage` shows from the lock
        assert run.data.params[f"model.{key}"] == str(value), key  # what MLflow recorded
        autologged = run.data.params.get(AUTOLOGGED[key])  # never a second, differing name
        assert autologged in (None, str(value)), (key, run.data.params)
        assert classifier.get_params()[key] == value, key  # what the estimator was built with
    assert float(trained["max_depth"]) == 10  # what the booster actually trained with
    assert float(trained["eta"]) == pytest.approx(0.05)
    assert int(booster["learner"]["gradient_booster"]["gbtree_model_param"]["num_trees"]) == 32


REFUSALS = [
    pytest.param("train", "model", "reg_lambda", ".inf", "finite number (got inf)", id="inf"),
    pytest.param("train", "model", "subsample", ".nan", "finite number (got nan)", id="nan"),
    pytest.param(
        "prepare",
        "base",
        "seed",
        "4294967296",
        "less than or equal to 4294967295 (got 4294967296)",
        id="seed-2**32",
    ),
]


@pytest.mark.parametrize(("stage", "section", "key", "spelling", "fragment"), REFUSALS)
def test_values_no_user_means_stop_the_pipeline_with_one_line(
    spelled_repo: Path, stage: str, section: str, key: str, spelling: str, fragment: str
) -> None:
    """Refused before any run starts: no new MLflow run, no RUNNING run, `dvc.lock` untouched.
    DVC itself removes a stage's outs before it runs the stage; the locked model stays in the
    cache, so `dvc checkout` brings it back."""
    repo = spelled_repo
    params = repo / "params.yaml"
    original = params.read_text(encoding="utf-8")
    pattern = re.compile(rf"^  {re.escape(key)}:[^\n]*", re.MULTILINE)
    match = pattern.search(original, original.index(f"\n{section}:\n"))
    assert match is not None
    params.write_text(
        f"{original[: match.start()]}  {key}: {spelling}{original[match.end() :]}",
        encoding="utf-8",
    )
    runs_before = {r.info.run_id for r in _runs(repo)}
    lock_before = (repo / "dvc.lock").read_bytes()
    try:
        result = dvc(repo, "repro", check=False)
    finally:
        params.write_text(original, encoding="utf-8")

    stage_error_line(result, stage, f"params.yaml: {section}.{key}: ", fragment)
    runs = _runs(repo)
    assert {r.info.run_id for r in runs} == runs_before
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    assert (repo / "dvc.lock").read_bytes() == lock_before
    model_md5 = evidence.locked_out_md5(evidence.load_lock(repo), "models/model.pkl")
    assert model_md5 and (repo / ".dvc/cache/files/md5" / model_md5[:2] / model_md5[2:]).is_file()


def test_read_lock_reads_params_as_dvc_wrote_them() -> None:
    """DVC writes a float param as `1e-05` and a string param as `on`: PyYAML would read back
    the string '1e-05' and True, so lineage would show values that never ran."""
    params = {"model": {"learning_rate": 1e-05, "type": "on", "max_depth": 10}, "base.seed": 42}
    train = {"cmd": "python stages/train.py", "params": {"params.yaml": params}}
    text = dumps_yaml({"schema": "2.0", "stages": {"train": train}})
    assert "learning_rate: 1e-05" in text and "type: on" in text  # as DVC spells them

    assert evidence.read_lock(text)["train"].params == params
