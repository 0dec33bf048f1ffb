"""`predictflow lineage / predict / promote / reproduce` against a real pipeline run.

The module gets its own copy of the session's built project (its registry is changed by
promotions): version 1 comes from `dvc repro` on a commit whose dvc.lock already pins it (sealed).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from predictflow.lineage import evidence

from .conftest import assert_one_line_error, copy_built_repo, dvc, git, predictflow

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def repo(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = copy_built_repo(built_repo, tmp_path_factory.mktemp("registry") / "repo")
    assert git(repo, "status", "--porcelain").stdout == ""  # the lock pinning v1 is committed
    return repo


def lineage_json(repo: Path, *uri: str) -> dict:
    return json.loads(predictflow(repo, "lineage", *uri, "--json").stdout)


def test_lineage_answers_both_questions(repo: Path) -> None:
    view = lineage_json(repo)
    head = git(repo, "rev-parse", "HEAD").stdout.strip()
    lock = evidence.load_lock(repo)
    assert view["version"] == 1
    assert view["aliases"] == ["staging"] and view["stage"] == "Staging"
    assert view["code"] == {"git_commit": head, "git_dirty": False, "sealed_commit": head}
    assert view["data"] == {
        "path": "data/customers.csv",
        "md5": evidence.pinned_md5(repo / "data/customers.csv.dvc"),
    }
    assert view["model_md5"] == lock["train"].outs["models/model.pkl"]
    assert view["params"]["model.max_depth"] == "4"
    assert view["metrics"]["roc_auc"] > 0.75
    assert view["run"]["id"] in view["run"]["link"]
    for stage in ("prepare", "featurize", "train", "evaluate"):
        assert view["stages"][stage]["outs"] == lock[stage].outs
    assert "register" not in view["stages"]  # its lock entry is the previous run's, never shown
    assert view["missing_lineage"] == []
    (staged,) = view["promotions"]  # `dvc repro` moved staging: that move has its audit record
    assert (staged["from"], staged["to"], staged["status"]) == ("none", "staging", "done")
    assert staged["who"].startswith("dvc repro") and "quality gate passed" in staged["reason"]
    assert lineage_json(repo, "models:/churn-predictor@staging") == view
    assert lineage_json(repo, "1") == view

    text = predictflow(repo, "lineage").stdout
    assert "Which experiment produced it" in text and "Which data and code" in text
    assert "register              not recorded: dvc.lock gets its entry only after" in text
    assert view["data"]["md5"] in text and view["run"]["id"] in text


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/churn-predictor@nope", "model 'models:/churn-predictor@nope' not found"),
        ("7", "model '7' not found"),
        (
            "models:/",
            "expected models:/NAME@ALIAS, models:/NAME/N, models:/NAME/latest or models:/m-<id>",
        ),
    ],
)
def test_lineage_of_an_unknown_model_is_one_line(repo: Path, uri: str, expected: str) -> None:
    assert expected in assert_one_line_error(predictflow(repo, "lineage", uri, check=False))


@pytest.fixture(scope="module")
def held_out_csv(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The held-out customers as the raw file has them (blank TotalCharges, Yes/No churn)."""
    test_ids = set(pd.read_parquet(repo / "data/prepared/test.parquet")["customerID"])
    raw = pd.read_csv(repo / "data/customers.csv", dtype=str, keep_default_na=False)
    path = tmp_path_factory.mktemp("scoring") / "held_out.csv"
    raw[raw["customerID"].isin(test_ids)].to_csv(path, index=False)
    return path


def test_predict_scores_equal_the_evaluate_stage(repo: Path, held_out_csv: Path, tmp_path) -> None:
    out = tmp_path / "scores.csv"
    facts = json.loads(
        predictflow(
            repo,
            "predict",
            "--model",
            "models:/churn-predictor@staging",
            "--input",
            held_out_csv,
            "--output",
            out,
            "--chunk-rows",
            "500",
            "--json",
        ).stdout
    )
    scores = pd.read_csv(out).set_index("customerID").sort_index()
    evaluated = pd.read_parquet(repo / "data/predictions/test.parquet").set_index("customerID")
    evaluated = evaluated.sort_index()
    assert facts["rows_scored"] == len(evaluated) == len(scores)
    assert list(scores.index) == list(evaluated.index)
    assert (scores["churn_probability"] == evaluated["churn_probability"]).all()
    assert (scores["churn_predicted"] == evaluated["churn_predicted"]).all()


def test_predict_in_chunks_equals_one_pass(repo: Path, held_out_csv: Path, tmp_path) -> None:
    outputs = []
    for rows in ("97", "100000"):
        out = tmp_path / f"scores-{rows}.csv"
        predictflow(
            repo,
            "predict",
            "--model",
            "models:/churn-predictor/1",
            "--input",
            held_out_csv,
            "--output",
            out,
            "--chunk-rows",
            rows,
        )
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_predict_missing_column_fails_clearly(repo: Path, held_out_csv: Path, tmp_path) -> None:
    bad = tmp_path / "no_tenure.csv"
    pd.read_csv(held_out_csv, dtype=str, keep_default_na=False).drop(columns=["tenure"]).to_csv(
        bad, index=False
    )
    out = tmp_path / "scores.csv"
    result = predictflow(
        repo,
        "predict",
        "--model",
        "models:/churn-predictor/1",
        "--input",
        bad,
        "--output",
        out,
        check=False,
    )
    assert assert_one_line_error(result) == (
        f"predictflow: error: {bad}: missing required column(s): tenure"
    )
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_predict_scores_unseen_categories_and_reports_them(
    repo: Path, held_out_csv: Path, tmp_path: Path
) -> None:
    rows = pd.read_csv(held_out_csv, dtype=str, keep_default_na=False).head(20)
    rows.loc[rows.index[3], "Contract"] = "Three year"
    rows = rows.drop(columns=["Churn"]).assign(segment="b2c")  # no target, an extra column
    source, out = tmp_path / "new.csv", tmp_path / "scores.csv"
    rows.to_csv(source, index=False)
    result = predictflow(
        repo,
        "predict",
        "--model",
        "models:/churn-predictor/1",
        "--input",
        source,
        "--output",
        out,
        "--json",
    )
    facts = json.loads(result.stdout)
    assert facts["rows_scored"] == 20
    assert facts["unseen_categories"] == {"Contract": 1}
    assert facts["extra_columns"] == ["segment"]
    assert "Contract (1)" in result.stderr
    assert len(pd.read_csv(out)) == 20


def test_predict_without_a_production_model_says_so(repo: Path, held_out_csv, tmp_path) -> None:
    result = predictflow(
        repo, "predict", "--input", held_out_csv, "--output", tmp_path / "s.csv", check=False
    )
    line = assert_one_line_error(result)
    assert "models:/churn-predictor@production" in line and "alias production not found" in line


@pytest.fixture(scope="module")
def experiment_version(repo: Path) -> int:
    """A weaker model from a DVC experiment: registered, tagged dirty, never in staging."""
    dvc(
        repo,
        "exp",
        "run",
        "-S",
        "model.n_estimators=3",
        "-S",
        "model.max_depth=2",
        "--name",
        "tiny",
    )
    version = lineage_json(repo)["version"]
    git(repo, "reset", "-q", "--hard")
    dvc(repo, "checkout", "-f", "-q")
    return version


def test_production_needs_staging_and_clean_sealed_lineage(repo, experiment_version) -> None:
    result = predictflow(
        repo, "promote", str(experiment_version), "--to", "production", check=False
    )
    line = assert_one_line_error(result)
    assert f"version {experiment_version} not promoted to production" in line
    assert "gate 'in staging' failed (promote it to staging first)" in line
    assert "gate 'clean code' failed" in line and "gate 'sealed' failed" in line
    assert lineage_json(repo, str(experiment_version))["aliases"] == []


def test_staging_needs_the_quality_gate(repo: Path, experiment_version: int) -> None:
    params = repo / "params.yaml"
    original = params.read_text()
    params.write_text(original.replace("min_roc_auc: 0.75", "min_roc_auc: 0.99"))
    try:
        result = predictflow(
            repo, "promote", str(experiment_version), "--to", "staging", check=False
        )
    finally:
        params.write_text(original)
    assert "gate 'quality' failed (roc_auc " in assert_one_line_error(result)
    assert ">= 0.9900" in result.stderr


def test_promote_to_production_moves_alias_and_stage_and_records_who(repo: Path) -> None:
    import mlflow

    result = predictflow(repo, "promote", "1", "--to", "production", "--reason", "first release")
    assert "version 1 -> production (was: none)" in result.stdout
    assert "ok  champion/challenger: no version holds production yet" in result.stdout
    view = lineage_json(repo, "models:/churn-predictor@production")
    assert view["version"] == 1 and "production" in view["aliases"]
    assert view["stage"] == "Production"
    staged, event = view["promotions"]
    assert staged["to"] == "staging" and event["from"] == "staging" and event["to"] == "production"
    assert event["holds"] == "production,staging" and event["status"] == "done"
    assert event["reason"] == "first release" and event["who"] and event["when"]

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow_data' / 'mlflow.db'}")
    for uri in ("models:/churn-predictor@production", "models:/churn-predictor/Production"):
        assert mlflow.pyfunc.load_model(uri).metadata.run_id == view["run"]["id"]
    again = predictflow(repo, "promote", "1", "--to", "production")
    assert "already holds production; nothing changed" in again.stdout


def test_a_worse_challenger_is_refused_with_the_comparison(repo, experiment_version) -> None:
    predictflow(repo, "promote", str(experiment_version), "--to", "staging", "--reason", "try")
    result = predictflow(
        repo, "promote", str(experiment_version), "--to", "production", "--allow-dirty", check=False
    )
    line = assert_one_line_error(result)
    assert "gate 'champion/challenger' failed (roc_auc " in line
    assert "vs production v1" in line
    assert lineage_json(repo, "models:/churn-predictor@production")["version"] == 1


def test_reproduce_rebuilds_the_version_byte_for_byte(repo: Path) -> None:
    facts = json.loads(predictflow(repo, "reproduce", "1", "--json").stdout)
    assert facts["matches"] is True
    assert set(facts["stages"]) == {"prepare", "featurize", "train"}
    assert all(stage["matches"] for stage in facts["stages"].values())
    assert git(repo, "status", "--porcelain").stdout == ""  # workspace untouched


def test_reproduce_names_missing_data(repo: Path, tmp_path: Path) -> None:
    md5 = evidence.pinned_md5(repo / "data/customers.csv.dvc")
    cached = repo / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
    moved = tmp_path / "object"
    shutil.move(cached, moved)
    try:
        line = assert_one_line_error(predictflow(repo, "reproduce", "1", check=False))
    finally:
        shutil.move(moved, cached)
    assert line == (
        f"predictflow: error: data md5 {md5} is in neither the cache nor remote 'local'; "
        "run `dvc push` from the machine that trained it"
    )


def test_reproduce_reports_a_nondeterministic_stage(repo: Path) -> None:
    """Commit code whose featurize output changes on every run, register its model, rebuild."""
    featurize = repo / "stages/featurize.py"
    original = featurize.read_text()
    line = "featurize_batches(featurizer, read_batches(args.train, BATCH_ROWS))"
    patched = original.replace(
        line,
        f"(b.assign(**{{b.columns[0]: b.iloc[:, 0] * (1 + __import__('random').random())}})"
        f" for b in {line})",
    )
    assert patched != original, "stages/featurize.py changed: patch another line"
    featurize.write_text(patched)
    try:
        git(repo, "commit", "-qam", "nondeterministic featurize")
        dvc(repo, "repro")
        view = lineage_json(repo)
        assert view["code"]["git_commit"] == git(repo, "rev-parse", "HEAD").stdout.strip()
        version = view["version"]
        result = predictflow(repo, "reproduce", str(version), check=False)
    finally:
        git(repo, "reset", "-q", "--hard", "HEAD~1")
        dvc(repo, "checkout", "-f", "-q")
    assert result.returncode == 1
    assert "DIFFERS featurize" in result.stdout
    assert "match   prepare" in result.stdout
    assert f"version {version} did NOT reproduce" in result.stdout
