"""Decisions with uncertainty on a real pipeline: intervals and calibration in eval.json and on
the run, a model card per registered version, and the paired production gate deciding between
real registered models (a real MLflow store in a copy of the session's built repo)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from predictflow.core.evaluation import UNCERTAINTY_KEYS
from predictflow.lineage import evidence
from predictflow.lineage.tracking import METRIC_KEYS

from .conftest import assert_one_line_error, copy_built_repo, dvc, git, predictflow

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_built_repo(built_repo, tmp_path_factory.mktemp("decisions") / "repo")


def client(repo: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{repo / 'mlflow_data' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def card_text(repo: Path, version: str) -> tuple[str, str]:
    """The version's model card (found through its tag) and the tag's value."""
    c = client(repo)
    uri = c.get_model_version("churn-predictor", version).tags["model_card"]
    run_id, path = uri.removeprefix("runs:/").split("/", 1)
    return Path(c.download_artifacts(run_id, path)).read_text(encoding="utf-8"), uri


def test_evaluate_writes_intervals_calibration_and_lift_and_register_puts_them_on_the_run(
    repo: Path,
) -> None:
    scores = json.loads((repo / "metrics/eval.json").read_text())
    assert set(scores) == {*METRIC_KEYS, *UNCERTAINTY_KEYS}
    for key in ("roc_auc", "pr_auc"):
        assert scores[f"{key}_ci_low"] < scores[key] < scores[f"{key}_ci_high"]
    assert 0 < scores["brier"] < 0.25 and 0 <= scores["ece"] < 0.1
    assert scores["top_decile_lift"] > 1.5  # the top-scored tenth churns far above the average
    reliability = pd.read_csv(repo / "metrics/eval_plots/reliability.csv")
    assert list(reliability.columns) == ["bin", "mean_predicted", "fraction_churned", "rows"]
    assert reliability["rows"].sum() == lineage_rows(repo)
    (plot,) = json.loads(dvc(repo, "plots", "show", "--json").stdout)["data"][
        "Reliability (calibration)"
    ]
    drawn = plot["content"]["data"]["values"]
    assert len(drawn) == len(reliability) and {"mean_predicted", "fraction_churned"} <= set(
        drawn[0]
    )

    version = client(repo).get_model_version("churn-predictor", "1")
    run_metrics = client(repo).get_run(version.run_id).data.metrics
    assert {key: run_metrics[key] for key in scores} == scores


def lineage_rows(repo: Path) -> int:
    return len(pd.read_parquet(repo / "data/prepared/test.parquet", columns=["Churn"]))


def table_rows(card: str, header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header row is `header`."""
    lines = card.splitlines()
    start = lines.index(header)
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_a_registered_version_has_a_model_card_with_eval_jsons_numbers(repo: Path) -> None:
    card, uri = card_text(repo, "1")
    assert re.fullmatch(r"runs:/[0-9a-f]{32}/model_card/model_card\.md", uri)
    scores = json.loads((repo / "metrics/eval.json").read_text())
    metrics = {row[0]: row[1:] for row in table_rows(card, "| metric | value | 95% interval |")}
    calibration = {row[0]: row[1] for row in table_rows(card, "| metric | value |")}
    assert {k: float(v[0]) for k, v in metrics.items()} == {k: scores[k] for k in METRIC_KEYS}
    assert metrics["roc_auc"][1] == f"{scores['roc_auc_ci_low']} - {scores['roc_auc_ci_high']}"
    assert metrics["pr_auc"][1] == f"{scores['pr_auc_ci_low']} - {scores['pr_auc_ci_high']}"
    assert {k: float(v) for k, v in calibration.items()} == {
        k: scores[k] for k in ("brier", "ece", "top_decile_lift")
    }
    segments = pd.read_csv(repo / "metrics/eval_plots/segments.csv", dtype={"value": str})
    rows = table_rows(
        card, "| segment | value | rows | churn rate | mean score | roc_auc | brier |"
    )
    assert [(r[0], r[1], int(r[2]), float(r[5])) for r in rows] == list(
        segments[["segment", "value", "rows", "roc_auc"]].itertuples(index=False, name=None)
    )
    assert {r[0] for r in rows} == {"Contract", "tenure band", "SeniorCitizen"}
    prepared = json.loads((repo / "metrics/prepare.json").read_text())
    pin = evidence.pinned_md5(repo / "data/customers.csv.dvc")
    assert f"md5 `{pin}` (DVC pin)" in card
    assert f"| held-out split | {prepared['rows_test']} rows, churn rate " in card
    for heading in ("Intended use", "Known limits"):
        assert f"\n## {heading}\n" in card

    report = repo / "reports" / "cards.html"
    predictflow(repo, "report", "--output", report)
    card_path = uri.split("/", 2)[-1]  # runs:/<run id>/model_card/model_card.md: the whole path
    assert card_path == "model_card/model_card.md"
    assert f'/artifactPath/{card_path}">{card_path}</a>' in report.read_text()
    assert lineage_json(repo, "1")["model_card"] == uri
    assert f"  model card  {uri}\n" in predictflow(repo, "lineage", "1").stdout


def lineage_json(repo: Path, version: str) -> dict:
    return json.loads(predictflow(repo, "lineage", version, "--json").stdout)


def experiment(repo: Path, name: str, *settings: str) -> str:
    """Train and register a variant with `dvc exp run`, then put the workspace back."""
    args = [arg for setting in settings for arg in ("-S", setting)]
    dvc(repo, "exp", "run", *args, "--name", name)
    version = str(max(int(v.version) for v in client(repo).search_model_versions()))
    git(repo, "reset", "-q", "--hard")
    dvc(repo, "checkout", "-f", "-q")
    return version


def promote(repo: Path, version: str, margin: float, check: bool = True):
    """Promote through staging to production with `promote.margin` set to `margin`."""
    params = repo / "params.yaml"
    original = params.read_text()
    edited = re.sub(r"(?m)^  margin: .*$", f"  margin: {margin}", original)
    # a weak model must reach staging to be judged by the production gate at all
    params.write_text(edited.replace("min_roc_auc: 0.75", "min_roc_auc: 0.5"))
    try:
        predictflow(repo, "promote", version, "--to", "staging")
        return predictflow(
            repo, "promote", version, "--to", "production", "--allow-dirty", check=check
        )
    finally:
        params.write_text(original)


INTERVAL = re.compile(
    r"difference (?P<d>[-+]\d\.\d{4}), 95% paired-bootstrap interval "
    r"\[(?P<low>[-+]\d\.\d{4}), (?P<high>[-+]\d\.\d{4})\] "
    r"\(low end must be >= (?P<floor>[-+]\d\.\d{4})"
)


def interval(text: str) -> dict[str, float]:
    found = INTERVAL.search(text)
    assert found, text
    return {k: float(v) for k, v in found.groupdict().items()}


def production(repo: Path) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client(repo).get_model_version_by_alias("churn-predictor", "production").version)
    except MlflowException:  # no version holds it
        return None


def test_production_gate_compares_both_models_on_the_same_rows_with_a_paired_interval(
    repo: Path,
) -> None:
    weak = experiment(repo, "weak", "model.n_estimators=2", "model.max_depth=1")
    twin = experiment(repo, "twin", "model.subsample=0.85", "model.colsample_bytree=0.75")
    good = "1"

    # nothing in production yet: the weak model goes in unopposed
    assert "no version holds production yet" in promote(repo, weak, 0.01).stdout
    assert production(repo) == weak

    # a real improvement is accepted: the whole interval is above zero
    better = interval(promote(repo, good, 0.01).stdout)
    assert better["low"] > 0 and better["d"] > 0.01
    assert production(repo) == good

    # a challenger really worse beyond the margin is refused, with the difference and interval
    refused = promote(repo, weak, 0.01, check=False)
    line = assert_one_line_error(refused, f"version {weak} not promoted to production")
    worse = interval(line)
    assert worse["d"] < -0.01 and worse["low"] < -0.01 and worse["high"] < 0
    assert worse["floor"] == -0.01
    print(line)  # shown with -s: the README quotes such a line
    assert production(repo) == good

    # a tie within noise is decided by the rule: the interval's low end against -margin, so
    # the same evidence passes a 0.05 margin and fails a zero margin (a noise-level difference
    # either way, which the old point-AUC gate would have decided by its sign alone)
    strict = promote(repo, twin, 0.0, check=False)
    tie = interval(strict.stdout + strict.stderr)
    assert abs(tie["d"]) < 0.01 and tie["low"] < 0 < tie["high"]
    assert_one_line_error(strict, "gate 'champion/challenger' failed")
    assert production(repo) == good
    lenient = promote(repo, twin, 0.05)
    assert interval(lenient.stdout) == {**tie, "floor": -0.05}
    assert production(repo) == twin
