"""`predictflow data diff A B`: two data versions compared row by row, end to end on a copy of the
session's pipeline run (its DVC cache and MLflow store), plus unit tests on tiny frames."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from predictflow.core.params import DriftParams
from predictflow.lineage import evidence
from predictflow.monitoring import datadiff
from tests.conftest import assert_one_line_error, copy_built_repo, dvc, git, predictflow

DATA = "data/customers.csv"
PIN = f"{DATA}.dvc"
ELSEWHERE = "deadbeef" * 4  # an md5 that no cache or remote holds
PARAMS = DriftParams(
    psi_warn=0.1, psi_drift=0.25, p_value=0.01, max_unseen_share=0.01, bins=10, sample_rows=10_000
)

# What the second version does to the first, so the test knows the exact answer.
REMOVED = 3  # the first three customers leave
NEW_IDS = ["NEW-0001", "NEW-0002", "NEW-0003", "NEW-0004"]
CHARGES_EDITED = 5  # rows 10..14: MonthlyCharges + 1
CONTRACT_EDITED = 4  # rows 13..16: Contract rotated, so rows 13 and 14 change in both columns
CHANGED = 7  # rows 10..16


def read(repo: Path) -> pd.DataFrame:
    return pd.read_csv(repo / DATA, dtype=str, keep_default_na=False)


def commit_version(repo: Path, frame: pd.DataFrame, message: str) -> str:
    """Write the frame as the raw data, `dvc add` it, commit the pin; return the pinned md5."""
    frame.to_csv(repo / DATA, index=False)
    dvc(repo, "add", "-q", DATA)
    git(repo, "add", PIN)
    git(repo, "commit", "-q", "-m", message)
    return evidence.pinned_md5(repo / PIN)


def second_version(first: pd.DataFrame) -> pd.DataFrame:
    frame = first.copy()
    rows = frame.index[10 : 10 + CHARGES_EDITED]
    frame.loc[rows, "MonthlyCharges"] = (frame.loc[rows, "MonthlyCharges"].astype(float) + 1).map(
        "{:.2f}".format
    )
    rotate = {"Month-to-month": "One year", "One year": "Two year", "Two year": "Month-to-month"}
    rows = frame.index[13 : 13 + CONTRACT_EDITED]
    frame.loc[rows, "Contract"] = frame.loc[rows, "Contract"].map(rotate)
    added = frame.iloc[100 : 100 + len(NEW_IDS)].copy()
    added["customerID"] = NEW_IDS
    return pd.concat([frame.iloc[REMOVED:], added], ignore_index=True)


def third_version(second: pd.DataFrame) -> pd.DataFrame:
    """Schema changes and a shift: `gender` dropped, `Region` added, one tenure made
    fractional (int64 -> double), every MonthlyCharges raised 40%."""
    frame = second.drop(columns=["gender"]).assign(Region="north")
    frame.loc[frame.index[0], "tenure"] = "1.5"
    frame["MonthlyCharges"] = (frame["MonthlyCharges"].astype(float) * 1.4).map("{:.2f}".format)
    return frame


@pytest.fixture(scope="module")
def versions(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copy of the pipeline run with two more data commits: HEAD~2 (the trained data), HEAD~1
    (rows removed, added and edited), HEAD (schema changes and a shift)."""
    repo = copy_built_repo(built_repo, tmp_path_factory.mktemp("datadiff") / "repo")
    first = read(repo)
    second = second_version(first)
    md5s = [
        evidence.pinned_md5(repo / PIN),
        commit_version(repo, second, "data: second version"),
        commit_version(repo, third_version(second), "data: third version"),
    ]
    return {"repo": repo, "md5": md5s, "rows": [len(first), len(second)]}


def diff_json(repo: Path, a: str, b: str) -> dict:
    result = predictflow(repo, "data", "diff", a, b, "--json")
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def test_two_revisions_give_the_rows_added_removed_and_changed_by_key(versions: dict) -> None:
    facts = diff_json(versions["repo"], "HEAD~2", "HEAD~1")
    assert facts["rows"] == {
        "added": len(NEW_IDS),
        "removed": REMOVED,
        "changed": CHANGED,
        "unchanged": versions["rows"][0] - REMOVED - CHANGED,
        "changed_columns": {"MonthlyCharges": CHARGES_EDITED, "Contract": CONTRACT_EDITED},
        "examples": facts["rows"]["examples"],
    }
    assert facts["rows"]["examples"]["added"] == NEW_IDS
    assert (facts["a"]["md5"], facts["b"]["md5"]) == tuple(versions["md5"][:2])
    assert (facts["a"]["rows"], facts["b"]["rows"]) == tuple(versions["rows"])
    assert facts["a"]["kind"] == "git" and len(facts["a"]["commit"]) == 40
    assert facts["schema"] == {"added": [], "removed": [], "dtype_changed": {}}
    assert facts["shifted"] == []  # a handful of rows moves no distribution


def test_the_table_is_readable_and_a_diff_exits_0(versions: dict) -> None:
    result = predictflow(versions["repo"], "data", "diff", "HEAD~2", "HEAD~1")
    assert result.returncode == 0 and result.stderr == ""
    assert f"{len(NEW_IDS)} added, {REMOVED} removed, {CHANGED} changed" in result.stdout
    assert f"changed most often: MonthlyCharges {CHARGES_EDITED}, Contract" in result.stdout
    assert "schema: unchanged" in result.stdout


def test_schema_changes_and_shifts_are_reported(versions: dict) -> None:
    facts = diff_json(versions["repo"], "HEAD~1", "HEAD")
    assert facts["schema"] == {
        "added": ["Region"],
        "removed": ["gender"],
        "dtype_changed": {"tenure": {"a": "int64", "b": "double"}},
    }
    rows = versions["rows"][1]
    assert facts["rows"]["changed_columns"] == {"MonthlyCharges": rows, "tenure": 1}
    assert facts["rows"]["added"] == facts["rows"]["removed"] == 0
    assert "MonthlyCharges" in facts["shifted"]
    assert not {"tenure", "Contract", "Churn"} & set(facts["shifted"])
    assert "gender" not in facts["columns"] and "Region" not in facts["columns"]


def test_md5s_name_the_same_versions_as_revisions(versions: dict) -> None:
    by_md5 = diff_json(versions["repo"], *versions["md5"][:2])
    by_rev = diff_json(versions["repo"], "HEAD~2", "HEAD~1")
    assert by_md5["rows"] == by_rev["rows"]
    assert by_md5["a"]["kind"] == "md5"


def test_a_registered_version_stands_for_the_data_it_learned_from(versions: dict) -> None:
    repo = versions["repo"]
    facts = diff_json(repo, "models:/churn-predictor@staging", "HEAD~1")
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow_data' / 'mlflow.db'}")
    staging = client.get_model_version_by_alias("churn-predictor", "staging")
    assert facts["a"]["kind"] == "model" and facts["a"]["version"] == int(staging.version)
    assert facts["a"]["md5"] == versions["md5"][0] == staging.tags["data_md5"]
    assert facts["rows"]["changed"] == CHANGED
    by_number = diff_json(repo, f"models:/churn-predictor/{staging.version}", "HEAD~1")
    assert by_number["rows"] == facts["rows"]


def test_the_workspace_file_is_never_read(versions: dict) -> None:
    repo = versions["repo"]
    (repo / DATA).unlink()  # dvc add made it a copy of the cache entry: nothing is lost
    try:
        assert diff_json(repo, "HEAD~2", "HEAD~1")["rows"]["changed"] == CHANGED
    finally:
        dvc(repo, "checkout", "-q", PIN)


def test_a_version_only_in_the_default_remote_is_read_from_there(
    versions: dict, tmp_path: Path
) -> None:
    """Its own copy: the default remote is a directory beside the repo. The cache stays as it
    was (the remote's copy is read from a temp dir)."""
    repo = tmp_path / "repo"
    shutil.copytree(versions["repo"], repo, symlinks=True)
    md5 = versions["md5"][2]
    cached = repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    dvc(repo, "push", "-q", PIN)
    cached.unlink()
    facts = diff_json(repo, "HEAD~1", "HEAD")
    assert not cached.exists()
    assert facts["b"]["md5"] == md5 and facts["schema"]["added"] == ["Region"]


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ("no-such-rev", ("'no-such-rev'", "not a git revision")),
        (ELSEWHERE, (ELSEWHERE, "neither the DVC cache nor the default remote")),
        ("models:/churn-predictor/99", ("churn-predictor/99", "not found")),
    ],
)
def test_an_unknown_version_is_one_line(versions: dict, spec: str, fragments: tuple) -> None:
    result = predictflow(versions["repo"], "data", "diff", "HEAD", spec, check=False)
    assert result.stdout == ""
    assert_one_line_error(result, *fragments)


def test_a_revision_without_the_pin_is_one_line(versions: dict) -> None:
    repo = versions["repo"]
    empty_tree = git(repo, "hash-object", "-t", "tree", "/dev/null").stdout.strip()
    commit = git(repo, "commit-tree", empty_tree, "-m", "no data here").stdout.strip()
    result = predictflow(repo, "data", "diff", commit, "HEAD", check=False)
    assert_one_line_error(result, commit, f"has no {PIN}")


def test_duplicated_keys_are_one_line_naming_the_column_and_value(versions: dict) -> None:
    repo = versions["repo"]
    frame = read(repo)
    dups = repo / "data" / "dups.csv"
    pd.concat([frame, frame.iloc[[5]]]).to_csv(dups, index=False)
    dvc(repo, "add", "-q", "data/dups.csv")
    md5 = evidence.pinned_md5(repo / "data" / "dups.csv.dvc")
    result = predictflow(repo, "data", "diff", "HEAD", md5, check=False)
    assert_one_line_error(result, "customerID", repr(frame["customerID"].iloc[5]), "1 value(s)")


def test_a_version_without_data_lineage_is_one_line(
    versions: dict, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No data_md5 tag and no logged dvc.lock (e.g. a version registered by hand)."""
    repo = copy_built_repo(versions["repo"], tmp_path_factory.mktemp("nolineage") / "repo")
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow_data' / 'mlflow.db'}")
    version = client.get_model_version_by_alias("churn-predictor", "staging")
    client.delete_model_version_tag("churn-predictor", version.version, "data_md5")
    logged = list((repo / "mlflow_data").rglob("lineage/dvc.lock"))  # artifacts: plain files
    assert logged
    for path in logged:
        path.unlink()
    result = predictflow(
        repo, "data", "diff", "models:/churn-predictor@staging", "HEAD", check=False
    )
    assert_one_line_error(result, "churn-predictor@staging", "no data lineage")


def test_row_changes_on_tiny_frames() -> None:
    a = pd.DataFrame({"customerID": ["a", "b", "c"], "x": [1.0, None, 3.0], "y": ["p", "q", "r"]})
    b = pd.DataFrame({"customerID": ["b", "c", "d"], "x": [None, 4.0, 5.0], "y": ["q", "r", "s"]})
    rows = datadiff.row_changes(a, b)
    assert (rows["added"], rows["removed"], rows["changed"], rows["unchanged"]) == (1, 1, 1, 1)
    assert rows["changed_columns"] == {"x": 1}  # two missing values are equal
    assert rows["examples"] == {"added": ["d"], "removed": ["a"], "changed": ["c"]}


def test_a_numeric_type_change_alone_changes_no_row() -> None:
    a = pd.DataFrame({"customerID": ["a", "b"], "n": [1, 2]})
    b = pd.DataFrame({"customerID": ["a", "b"], "n": [1.0, 2.5]})
    assert datadiff.row_changes(a, b)["changed_columns"] == {"n": 1}


def test_column_shifts_use_drifts_statistics() -> None:
    a = pd.DataFrame(
        {"customerID": [str(i) for i in range(400)], "n": range(400), "c": ["x", "y"] * 200}
    )
    b = a.assign(n=a["n"] + 300, c=["x", "y", "z", "z"] * 100)
    shifts = datadiff.column_shifts(a, b, PARAMS, seed=0)
    assert shifts["n"]["kind"] == "numeric" and shifts["n"]["status"] == "drift"
    assert shifts["c"]["unseen"] == ["z"] and shifts["c"]["status"] == "drift"
    assert datadiff.column_shifts(a, a, PARAMS, seed=0)["n"]["psi"] == pytest.approx(0.0)


def test_path_names_the_file_a_registered_version_recorded(versions: dict) -> None:
    """--path picks the file in the version's logged dvc.lock; a binary one is one readable
    line (no bytes of it echoed), a path the version never recorded is named."""
    repo, data_md5 = versions["repo"], versions["md5"][0]
    staging = "models:/churn-predictor@staging"
    args = ("data", "diff", staging, data_md5, "--path")
    result = predictflow(repo, *args, "models/model.pkl", check=False)
    line = assert_one_line_error(result, staging, "not a well-formed CSV (binary content")
    assert line.isprintable() and result.stdout == ""
    result = predictflow(repo, *args, "data/other.csv", check=False)
    assert_one_line_error(result, staging, "records no data/other.csv", "--path")
    assert diff_json(repo, staging, data_md5)["rows"]["changed"] == 0  # the default path


def test_two_versions_of_a_folder_of_parquet_parts_diff_as_their_tables(
    versions: dict, tmp_path: Path
) -> None:
    """`--path` a DVC-tracked folder of typed parquet parts (DVC's `.dir` md5): the parts are
    one table, and the diff is the one the same rows give as one CSV."""
    from tests.conftest import copy_project

    repo = copy_project(tmp_path / "repo")
    trained = versions["md5"][0]  # the workspace file is the third version by now
    cached = versions["repo"] / ".dvc" / "cache" / "files" / "md5" / trained[:2] / trained[2:]
    first = pd.read_csv(cached, dtype=str, keep_default_na=False)
    folder = repo / "data" / "parts"

    def commit_parts(frame: pd.DataFrame, message: str) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        numeric = ["SeniorCitizen", "tenure", "MonthlyCharges", "TotalCharges"]
        typed = frame.assign(**{c: pd.to_numeric(frame[c], errors="coerce") for c in numeric})
        half = len(typed) // 2
        typed.iloc[:half].to_parquet(folder / "2026-01.parquet", index=False)
        typed.iloc[half:].to_parquet(folder / "2026-02.parquet", index=False)
        dvc(repo, "add", "-q", "data/parts")
        git(repo, "add", "data/parts.dvc", "data/.gitignore")
        git(repo, "commit", "-q", "-m", message)

    commit_parts(first, "parts: first version")
    commit_parts(second_version(first), "parts: second version")
    result = predictflow(repo, "data", "diff", "--path", "data/parts", "HEAD~1", "HEAD", "--json")
    facts = json.loads(result.stdout)
    assert facts["a"]["md5"].endswith(".dir")
    rows = facts["rows"]
    assert (rows["removed"], rows["added"], rows["changed"]) == (REMOVED, len(NEW_IDS), CHANGED)
    assert rows["changed_columns"] == {
        "MonthlyCharges": CHARGES_EDITED,
        "Contract": CONTRACT_EDITED,
    }
