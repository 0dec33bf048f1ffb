"""Shadow scoring and realized metrics, end to end: a copy of the session's pipeline run (version 1,
alias staging) plus a challenger from `dvc exp run` (version 2, no alias), real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics

from predictflow.lineage import evidence
from predictflow.monitoring.shadow import Agreement
from predictflow.ops import synth
from tests.conftest import (
    Result,
    assert_one_line_error,
    copy_built_repo,
    dvc,
    predictflow,
    repo_client,
)

CHAMPION = "models:/churn-predictor@staging"
CHALLENGER = "models:/churn-predictor/2"
SHADOW_COLUMNS = [
    "customerID",
    "churn_probability",
    "churn_predicted",
    "shadow_churn_probability",
    "shadow_churn_predicted",
]


@pytest.fixture(scope="module")
def repo(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = copy_built_repo(built_repo, tmp_path_factory.mktemp("shadow") / "repo")
    dvc(repo, "exp", "run", "-S", "model.n_estimators=20", "-S", "model.max_depth=2", "-n", "small")
    return repo


@pytest.fixture(scope="module")
def batches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A labelled synth batch and the same customers without `Churn`."""
    folder = tmp_path_factory.mktemp("batches")
    labelled = folder / "labelled.csv"
    synth.write_csv(labelled, rows=1500, seed=11)
    frame = pd.read_csv(labelled, dtype=str, keep_default_na=False)
    frame.drop(columns=["Churn"]).to_csv(folder / "unlabelled.csv", index=False)
    frame[["customerID", "Churn"]].to_csv(folder / "labels.csv", index=False)
    return {
        "labelled": labelled,
        "unlabelled": folder / "unlabelled.csv",
        "labels": folder / "labels.csv",
    }


def realized_run_count(repo: Path) -> int:
    client = repo_client(repo)
    experiment = client.get_experiment_by_name("churn-monitoring")
    if experiment is None:
        return 0
    return len(client.search_runs([experiment.experiment_id], "tags.kind = 'realized'"))


def shadow_score(
    repo: Path, batch: Path, out: Path, shadow: str = CHALLENGER, check: bool = True
) -> Result:
    """`predict` of the champion with `shadow` beside it (`--json`: the facts on stdout)."""
    return predictflow(
        repo,
        "predict",
        "--model",
        CHAMPION,
        "--shadow",
        shadow,
        "--input",
        batch,
        "--output",
        out,
        "--chunk-rows",
        "400",
        "--json",
        check=check,
    )


def test_agreement_streamed_equals_one_pass() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(1000), rng.random(1000)
    whole, chunked = Agreement(), Agreement()
    whole.add(a, b, (a >= 0.5).astype(int), (b >= 0.5).astype(int))
    for start in range(0, 1000, 137):
        part = slice(start, start + 137)
        chunked.add(a[part], b[part], (a[part] >= 0.5).astype(int), (b[part] >= 0.5).astype(int))
    assert chunked.as_dict() == pytest.approx(whole.as_dict())
    assert whole.as_dict()["pearson"] == pytest.approx(stats.pearsonr(a, b).statistic)


def test_shadow_scores_both_models_and_logs_agreement(
    repo: Path, batches: dict[str, Path], tmp_path: Path
) -> None:
    plain, shadowed = tmp_path / "plain.csv", tmp_path / "shadow.csv"
    predictflow(
        repo,
        "predict",
        "--model",
        CHAMPION,
        "--input",
        batches["unlabelled"],
        "--output",
        plain,
        "--chunk-rows",
        "400",
    )
    facts = json.loads(shadow_score(repo, batches["unlabelled"], shadowed).stdout)

    scores = pd.read_csv(shadowed)
    assert list(scores.columns) == SHADOW_COLUMNS
    assert len(scores) == 1500 == facts["rows_scored"]
    # the champion's columns are exactly what predict writes without --shadow
    champion = pd.read_csv(plain)
    pd.testing.assert_frame_equal(scores[list(champion.columns)], champion)
    assert (scores["churn_probability"] != scores["shadow_churn_probability"]).any()

    flips = (scores["churn_predicted"] != scores["shadow_churn_predicted"]).mean()
    agreement = facts["agreement"]
    assert agreement["flip_share"] == pytest.approx(flips)
    assert 0 < flips < 0.5
    pearson = stats.pearsonr(scores["churn_probability"], scores["shadow_churn_probability"])
    spearman = stats.spearmanr(scores["churn_probability"], scores["shadow_churn_probability"])
    assert agreement["pearson"] == pytest.approx(pearson.statistic)
    assert agreement["spearman"] == pytest.approx(spearman.statistic)

    record = json.loads(Path(facts["record"]).read_text())
    assert Path(facts["record"]) == tmp_path / "shadow.csv.json"
    assert {r: m["version"] for r, m in record["models"].items()} == {
        "champion": "1",
        "shadow": "2",
    }

    run = repo_client(repo).get_run(facts["run_id"])
    assert run.data.tags["champion_version"] == "1"
    assert run.data.tags["shadow_version"] == "2"
    assert run.data.tags["batch_md5"] == evidence.file_md5(batches["unlabelled"])
    assert run.data.metrics["flip_share"] == pytest.approx(flips)
    assert run.data.metrics["pearson"] == pytest.approx(pearson.statistic)


def test_scikit_learn_versions_score_through_predict_proba_with_pyfuncs_bytes(
    repo: Path, batches: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`artifacts.scorer` skips pyfunc's per-value input check and the pipeline's cleaning step
    for the models `train` logs: the scores file (champion and shadow, unseen categories,
    numbers as text, blank-charge rows dropped) is byte for byte what MLflow's pyfunc `predict`
    gives."""
    import mlflow

    from predictflow.core import scoring
    from predictflow.lineage import artifacts
    from predictflow.monitoring.shadow import Agreement

    uri = f"sqlite:///{repo / 'mlflow_data' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    frame = pd.read_csv(batches["unlabelled"], dtype=str, keep_default_na=False)
    frame.loc[:40, "PaymentMethod"] = "Crypto"  # unseen: scored and counted
    frame.loc[50:90, "MonthlyCharges"] = " " + frame.loc[50:90, "MonthlyCharges"] + "0 "
    frame.loc[100:110, "tenure"] = "5"
    frame.loc[100:110, "TotalCharges"] = " "  # blank charges at tenure > 0: dropped
    messy = tmp_path / "messy.csv"
    frame.to_csv(messy, index=False)

    client = repo_client(repo)
    fast = {ref: artifacts.load_verified(client, ref) for ref in (CHAMPION, CHALLENGER)}
    assert all(isinstance(m, artifacts.ProbaModel) for m in fast.values())
    # the pipeline minus its cleaning step: the rows reaching it are typed by the contract
    assert [name for name, _ in fast[CHAMPION].estimator.steps] == ["features", "classifier"]
    pyfunc = {ref: mlflow.pyfunc.load_model(ref) for ref in (CHAMPION, CHALLENGER)}
    outputs = []
    for models in (fast, pyfunc):
        out = tmp_path / f"scores-{len(outputs)}.csv"
        report = scoring.score_csv(
            models[CHAMPION], messy, out, 0.5, 400, False, models[CHALLENGER], Agreement()
        )
        assert report.clean.unseen_categories and report.rows_scored == 1500 - 11
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_other_flavours_keep_pyfunc(tmp_path: Path) -> None:
    """A model `train` did not log (a custom PythonModel, or scikit-learn's default `predict`)
    is scored through pyfunc as before."""
    import mlflow
    from sklearn.linear_model import LogisticRegression

    from predictflow.lineage import artifacts

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context: object, model_input: pd.DataFrame) -> np.ndarray:
            return np.full(len(model_input), 0.5)

    mlflow.pyfunc.save_model(tmp_path / "custom", python_model=Constant())
    plain = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    mlflow.sklearn.save_model(plain, tmp_path / "predict")
    for name in ("custom", "predict"):
        loaded = artifacts.load_local(tmp_path / name)
        assert isinstance(loaded, mlflow.pyfunc.PyFuncModel), name


def test_shadow_equal_to_the_champion_is_refused(
    repo: Path, batches: dict[str, Path], tmp_path: Path
) -> None:
    out, itself = tmp_path / "scores.csv", "models:/churn-predictor/1"
    result = shadow_score(repo, batches["unlabelled"], out, shadow=itself, check=False)
    assert_one_line_error(result, "--shadow models:/churn-predictor/1", "version 1", "champion")
    assert list(tmp_path.iterdir()) == []


def test_shadow_naming_the_champions_own_run_is_refused(
    repo: Path, batches: dict[str, Path], tmp_path: Path
) -> None:
    """`runs:/<run>/model` of the run that logged the champion is the champion itself."""
    run_id = repo_client(repo).get_model_version("churn-predictor", "1").tags["run_id"]
    out, own_run = tmp_path / "scores.csv", f"runs:/{run_id}/model"
    result = shadow_score(repo, batches["unlabelled"], out, shadow=own_run, check=False)
    assert_one_line_error(result, f"--shadow runs:/{run_id}/model", "champion", "itself")
    assert list(tmp_path.iterdir()) == []


def test_predict_takes_a_bare_version_number_and_refuses_a_uri_without_one(
    repo: Path, batches: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "scores.csv"
    args = ("predict", "--input", batches["unlabelled"], "--output", out, "--json")
    facts = json.loads(predictflow(repo, *args, "--model", "2").stdout)
    assert facts["versions"] == {"champion": "2"}
    record = json.loads((tmp_path / "scores.csv.json").read_text())
    assert record["models"]["champion"]["uri"] == "models:/churn-predictor/2"
    out.unlink()
    (tmp_path / "scores.csv.json").unlink()
    result = predictflow(repo, *args, "--model", "models:/churn-predictor", check=False)
    assert_one_line_error(result, "'models:/churn-predictor'", "models:/NAME/VERSION")
    assert list(tmp_path.iterdir()) == []


def sklearn_metrics(y: np.ndarray, proba: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {
        "roc_auc": metrics.roc_auc_score(y, proba),
        "pr_auc": metrics.average_precision_score(y, proba),
        "accuracy": metrics.accuracy_score(y, predicted),
        "precision": metrics.precision_score(y, predicted),
        "recall": metrics.recall_score(y, predicted),
        "brier": metrics.brier_score_loss(y, proba),
        "churn_rate": y.mean(),
        "rows": len(y),
    }


def assert_realized(facts: dict, rows: pd.DataFrame, y: np.ndarray) -> None:
    for role, prefix in (("champion", ""), ("shadow", "shadow_")):
        expected = sklearn_metrics(
            y,
            rows[f"{prefix}churn_probability"].to_numpy(),
            rows[f"{prefix}churn_predicted"].to_numpy(),
        )
        assert {k: facts["metrics"][role][k] for k in expected} == pytest.approx(expected)


def test_evaluate_batch_with_churn_in_the_scored_file(
    repo: Path, batches: dict[str, Path], tmp_path: Path
) -> None:
    scored = tmp_path / "scored.csv"
    shadow_score(repo, batches["labelled"], scored)
    facts = json.loads(
        predictflow(repo, "evaluate-batch", "--input", scored, "--cohort", "week1", "--json").stdout
    )
    rows = pd.read_csv(scored)
    assert list(rows.columns) == [*SHADOW_COLUMNS, "Churn"]
    assert facts["rows"] == 1500
    assert_realized(facts, rows, rows["Churn"].to_numpy())

    client = repo_client(repo)
    for role, version in (("champion", "1"), ("shadow", "2")):
        run = client.get_run(facts["run_ids"][role])
        assert run.data.tags["model_version"] == version
        assert run.data.tags["cohort"] == "week1"
        assert run.data.metrics["roc_auc"] == pytest.approx(facts["metrics"][role]["roc_auc"])
        tag = json.loads(
            client.get_model_version("churn-predictor", version).tags["realized.week1"]
        )
        assert tag["run_id"] == run.info.run_id


def test_evaluate_batch_joins_labels_and_keeps_a_history(
    repo: Path, batches: dict[str, Path], tmp_path: Path
) -> None:
    scored = tmp_path / "scored.csv"
    shadow_score(repo, batches["unlabelled"], scored)
    labels = tmp_path / "late_labels.csv"
    pd.read_csv(batches["labels"], dtype=str).head(600).replace({"Yes": "1", "No": "0"}).to_csv(
        labels, index=False
    )
    facts = json.loads(
        predictflow(
            repo,
            "evaluate-batch",
            "--input",
            scored,
            "--labels",
            labels,
            "--cohort",
            "week2",
            "--json",
        ).stdout
    )
    rows = pd.read_csv(scored).merge(pd.read_csv(labels), on="customerID")
    assert facts["rows"] == 600 == len(rows)
    assert_realized(facts, rows, rows["Churn"].to_numpy())

    history = json.loads(predictflow(repo, "evaluate-batch", "--history", "--json").stdout)
    recorded = {(h["cohort"], h["version"]) for h in history["history"]}
    assert {("week2", "1"), ("week2", "2")} <= recorded
    table = predictflow(repo, "evaluate-batch", "--history").stdout
    assert "week2" in table and "roc_auc" in table


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("no-churn", ("no 'Churn' column", "--labels")),
        ("bad-label", ("'Churn'", "Yes/No (any case) or 1/0", "'maybe'")),
        ("no-join", ("no rows joined",)),
        ("gone-version", ("version 99", "no longer exists")),
        ("again", ("cohort 'again' is already recorded",)),
        ("record-no-threshold", ("edited.json", "no valid 'threshold'")),
        ("record-no-columns", ("edited.json", "no valid 'models.shadow.columns'")),
        ("other-threshold", ("churn_predicted", "threshold 0.9 of", "edited.json", "--record")),
        ("other-model", ("v2.csv", "score columns", "v1.csv.json", "--record")),
        ("dup-scored", ("dup.csv", "'customerID', line 3", "scored more than once")),
        ("cohort-newline", ("--cohort 'week\\n'", "letters")),
    ],
)
def test_evaluate_batch_errors_record_nothing(
    repo: Path, batches: dict[str, Path], tmp_path: Path, case: str, fragments: tuple[str, ...]
) -> None:
    scored = tmp_path / "scored.csv"
    shadow_score(repo, batches["unlabelled"], scored)
    labels = tmp_path / "labels.csv"
    args = ["evaluate-batch", "--input", scored, "--cohort", case]
    if case == "bad-label":
        pd.DataFrame({"customerID": ["C1", "C2"], "Churn": ["Yes", "maybe"]}).to_csv(
            labels, index=False
        )
        args += ["--labels", labels]
    if case == "no-join":
        pd.DataFrame({"customerID": ["nobody"], "Churn": ["Yes"]}).to_csv(labels, index=False)
        args += ["--labels", labels]
    if case == "gone-version":
        record = json.loads((tmp_path / "scored.csv.json").read_text())
        record["models"]["shadow"]["version"] = "99"
        (tmp_path / "edited.json").write_text(json.dumps(record))
        args += ["--labels", batches["labels"], "--record", tmp_path / "edited.json"]
    if case == "again":
        args += ["--labels", batches["labels"]]
        predictflow(repo, *args)
    edits = {
        "record-no-threshold": lambda r: r.pop("threshold"),
        "record-no-columns": lambda r: r["models"]["shadow"].pop("columns"),
        "other-threshold": lambda r: r.update(threshold=0.9),
    }
    if case in edits:
        record = json.loads((tmp_path / "scored.csv.json").read_text())
        edits[case](record)
        (tmp_path / "edited.json").write_text(json.dumps(record))
        args += ["--labels", batches["labels"], "--record", tmp_path / "edited.json"]
    if case == "other-model":  # same batch and threshold, other model, the first one's record
        for version, name in (("1", "v1.csv"), ("2", "v2.csv")):
            predictflow(
                repo,
                "predict",
                "--model",
                f"models:/churn-predictor/{version}",
                "--input",
                batches["unlabelled"],
                "--output",
                tmp_path / name,
            )
        args = ["evaluate-batch", "--input", tmp_path / "v2.csv", "--cohort", case]
        args += ["--labels", batches["labels"], "--record", tmp_path / "v1.csv.json"]
    if case == "dup-scored":  # a customer twice in the batch: which label row is whose?
        lines = batches["unlabelled"].read_text().splitlines(keepends=True)
        (tmp_path / "dup_in.csv").write_text("".join([lines[0], lines[1], lines[1], *lines[2:]]))
        shadow_score(repo, tmp_path / "dup_in.csv", tmp_path / "dup.csv")
        args = ["evaluate-batch", "--input", tmp_path / "dup.csv", "--cohort", case]
        args += ["--labels", batches["labels"]]
    if case == "cohort-newline":  # `re.match` with `$` lets a trailing newline through
        args[args.index(case)] = "week\n"
        args += ["--labels", batches["labels"]]
    before = realized_run_count(repo)
    assert_one_line_error(predictflow(repo, *args, check=False), *fragments)
    assert realized_run_count(repo) == before


def test_parse_labels_takes_0_1_yes_no_and_names_a_bad_one() -> None:
    from predictflow.base.errors import UserError
    from predictflow.monitoring.realized import parse_labels

    assert parse_labels(pd.Series(["Yes", " no", "1", "0", "YES"]), "l.csv").tolist() == [
        1,
        0,
        1,
        0,
        1,
    ]
    with pytest.raises(UserError, match=r"l.csv: column 'Churn', line 3: .*\(got ''\)"):
        parse_labels(pd.Series(["Yes", ""]), "l.csv")


def test_evaluate_batch_of_a_champion_only_file(
    repo: Path, batches: dict[str, Path], tmp_path: Path
) -> None:
    scored = tmp_path / "scored.csv"
    predictflow(
        repo, "predict", "--model", CHAMPION, "--input", batches["labelled"], "--output", scored
    )
    facts = json.loads(predictflow(repo, "evaluate-batch", "--input", scored, "--json").stdout)
    assert facts["cohort"] == evidence.file_md5(scored)[:12]
    assert list(facts["metrics"]) == ["champion"] and facts["versions"] == {"champion": "1"}
    rows = pd.read_csv(scored)
    expected = sklearn_metrics(
        rows["Churn"].to_numpy(),
        rows["churn_probability"].to_numpy(),
        rows["churn_predicted"].to_numpy(),
    )
    assert {k: facts["metrics"]["champion"][k] for k in expected} == pytest.approx(expected)


def test_predict_refuses_to_replace_a_users_file_where_the_record_goes(
    repo: Path, batches: dict[str, Path], tmp_path: Path
) -> None:
    """The record beside the output replaces only an earlier record, never a file of the user's."""
    scored = tmp_path / "scored.csv"
    mine = tmp_path / "scored.csv.json"
    mine.write_text('{"my": "notes"}\n')
    args = ("predict", "--model", CHAMPION, "--input", batches["labelled"], "--output", scored)
    assert_one_line_error(predictflow(repo, *args, check=False), str(mine), "not a predictflow")
    assert mine.read_text() == '{"my": "notes"}\n' and not scored.exists()
    mine.unlink()
    predictflow(repo, *args)  # then a rerun replaces its own record
    first = json.loads(mine.read_text())
    predictflow(repo, *args)
    assert json.loads(mine.read_text())["kind"] == first["kind"] == "predictflow.scoring"
