"""Bad input, crashes and concurrency lose nothing and register nothing wrong.

The module works on its own copy of the session's built project; each test puts back what it changed
(`git checkout` + `dvc checkout`), so later tests see a clean, fully reproduced repo.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from predictflow.lineage import evidence

from .conftest import (
    BIN,
    assert_one_line_error,
    child_env,
    copy_built_repo,
    copy_project,
    dvc,
    git,
    predictflow,
    repo_client,
    run,
)

pytestmark = pytest.mark.pipeline


def all_runs(repo: Path) -> list:
    c = repo_client(repo)
    experiment = c.get_experiment_by_name("churn-prediction")
    return c.search_runs([experiment.experiment_id], run_view_type=3)  # all lifecycle stages


def versions(repo: Path) -> list[str]:
    return sorted(
        str(v.version) for v in repo_client(repo).search_model_versions("name = 'churn-predictor'")
    )


def registry_state(repo: Path) -> tuple:
    c = repo_client(repo)
    return tuple(
        (str(v.version), tuple(sorted(c.get_model_version("churn-predictor", v.version).aliases)))
        for v in c.search_model_versions("name = 'churn-predictor'")
    )


def restore(repo: Path) -> None:
    git(repo, "reset", "-q", "--hard")
    dvc(repo, "checkout", "-f", "-q")


@pytest.fixture(scope="module")
def repo(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_built_repo(built_repo, tmp_path_factory.mktemp("reliability") / "repo")


@pytest.fixture
def clean(repo: Path):
    yield repo
    restore(repo)
    assert "up to date" in dvc(repo, "status").stdout


RAW = "data/customers.csv"


def _rewrite(repo: Path, edit) -> None:
    path = repo / RAW
    text = path.read_text()
    path.unlink()  # a DVC-tracked file may be a link into the cache: never write through it
    path.write_bytes(edit(text) if callable(edit) else edit)


def _line(n: int, column: str, value: str):
    """Replace `column` on file line `n` (header is line 1)."""

    def edit(text: str) -> bytes:
        lines = text.splitlines()
        header = lines[0].split(",")
        cells = lines[n - 1].split(",")
        cells[header.index(column)] = value
        lines[n - 1] = ",".join(cells)
        return ("\n".join(lines) + "\n").encode()

    return edit


BAD_DATA = [
    pytest.param(b"", f"{RAW}: file is empty", id="empty-file"),
    pytest.param(lambda t: t.splitlines()[0].encode() + b"\n", "no data rows", id="header-only"),
    pytest.param(
        lambda t: t.replace(",tenure,", ",months,", 1).encode(),
        "missing required column(s): tenure",
        id="missing-column",
    ),
    pytest.param(
        _line(5, "Churn", "Maybe"),
        "column 'Churn', line 5: must be Yes or No (got 'Maybe')",
        id="churn-value",
    ),
    pytest.param(
        _line(7, "MonthlyCharges", "abc"),
        "column 'MonthlyCharges', line 7: not a number (got 'abc')",
        id="non-numeric",
    ),
    pytest.param(_line(4, "tenure", "-3"), "column 'tenure', line 4", id="negative-tenure"),
    pytest.param(
        _line(6, "Contract", "Three year"),
        "column 'Contract', line 6: not one of",
        id="unseen-category",
    ),
    pytest.param(
        lambda t: (
            t.splitlines()[0] + "\n" + t.splitlines()[1] + "\n" + t.splitlines()[1] + "\n"
        ).encode(),
        "duplicated customer id",
        id="duplicated-id",
    ),
    pytest.param(
        lambda t: t.replace(",Yes\n", ",No\n").encode(), "only one class present", id="single-class"
    ),
    pytest.param(
        lambda t: t.replace(",", ";").encode(), "it looks ';'-delimited", id="wrong-delimiter"
    ),
    pytest.param(lambda t: t.encode("utf-16"), "binary data", id="wrong-encoding"),
    pytest.param(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40, "binary data", id="garbage"),
]


@pytest.mark.parametrize(("edit", "message"), BAD_DATA)
def test_bad_raw_data_stops_the_pipeline_with_one_line(clean, edit, message) -> None:
    repo = clean
    runs_before, registry_before = len(all_runs(repo)), registry_state(repo)
    _rewrite(repo, edit)
    result = dvc(repo, "repro", check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("prepare: error:")]
    assert len(errors) == 1, result.stderr
    assert message in errors[0]
    assert "Traceback" not in result.stderr
    assert not list((repo / "data").rglob("*.tmp")) and not list((repo / "metrics").rglob("*.tmp"))
    assert len(all_runs(repo)) == runs_before
    assert registry_state(repo) == registry_before


BAD_PARAMS = [
    pytest.param(
        "model:\n",
        "model:\n  maxdepth: 3\n",
        "params.yaml: model.maxdepth: unknown key",
        id="unknown-key",
    ),
    pytest.param(
        "max_depth: 4",
        "max_depth: four",
        "params.yaml: model.max_depth: Input should be a valid integer",
        id="wrong-type",
    ),
    pytest.param(
        "max_depth: 4",
        "max_depth: 0",
        "params.yaml: model.max_depth: Input should be greater than or equal to 1",
        id="max-depth-0",
    ),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD_PARAMS)
def test_bad_params_stop_before_any_run_starts(clean, old, new, message) -> None:
    repo = clean
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace(old, new, 1))
    runs_before, registry_before = len(all_runs(repo)), registry_state(repo)
    result = dvc(repo, "repro", check=False)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(all_runs(repo)) == runs_before
    assert registry_state(repo) == registry_before


BAD_SCORING = [
    pytest.param(b"", "file is empty", id="empty"),
    pytest.param(lambda t: t.splitlines()[0].encode() + b"\n", "no data rows", id="header-only"),
    pytest.param(
        lambda t: t.replace(",MonthlyCharges,", ",Monthly,", 1).encode(),
        "missing required column(s): MonthlyCharges",
        id="missing-column",
    ),
    pytest.param(
        _line(3, "MonthlyCharges", "abc"), "line 3: not a number (got 'abc')", id="non-numeric"
    ),
    pytest.param(
        lambda t: t.replace(",", "\t").encode(), "it looks '\\t'-delimited", id="wrong-delimiter"
    ),
    pytest.param(b"\x00\x01\x02garbage" * 100, "binary data", id="garbage"),
]


@pytest.mark.parametrize(("edit", "message"), BAD_SCORING)
def test_bad_scoring_input_is_one_line_and_writes_nothing(repo, tmp_path, edit, message) -> None:
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    text = (repo / RAW).read_text()
    head = "\n".join(text.splitlines()[:30]) + "\n"
    source.write_bytes(edit(head) if callable(edit) else edit)
    result = predictflow(
        repo,
        "predict",
        "--model",
        "models:/churn-predictor/1",
        "--input",
        source,
        "--output",
        out,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("predictflow: error: ")
    assert message in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def _force_train(repo: Path, rounds: int = 30) -> None:
    """A params change that makes `train` run (and, with a new round count, a new model)."""
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("n_estimators: 200", f"n_estimators: {rounds}", 1))


def _integrity(repo: Path) -> str:
    with sqlite3.connect(repo / "mlflow_data" / "mlflow.db") as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


@pytest.mark.parametrize("point", ["train:fit", "train:logged"])
def test_sigkill_in_train_leaves_nothing_half_done(clean, point) -> None:
    repo = clean
    _force_train(repo)
    registry_before = registry_state(repo)
    killed = run([sys.executable, "-m", "dvc", "repro"], repo, check=False, PREDICTFLOW_FAULT=point)
    assert killed.returncode != 0
    assert _integrity(repo) == "ok"
    stuck = [r for r in all_runs(repo) if r.info.status == "RUNNING"]
    assert len(stuck) == 1
    assert registry_state(repo) == registry_before
    status = dvc(repo, "status").stdout
    assert "train" in status and "changed" in status

    doctor = predictflow(repo, "doctor", "--json", check=False)
    findings = {f["check"]: f for f in json.loads(doctor.stdout)["findings"]}
    assert doctor.returncode == 1
    assert findings["stuck runs"]["status"] == "problem"
    assert stuck[0].info.run_id in findings["stuck runs"]["detail"]
    assert findings["registered versions"]["status"] == "ok"

    dvc(repo, "repro")  # the next run reaps the orphan and completes
    assert repo_client(repo).get_run(stuck[0].info.run_id).info.status == "KILLED"
    assert "up to date" in dvc(repo, "status").stdout
    model_md5 = evidence.file_md5(repo / "models/model.pkl")
    assert len(repo_client(repo).search_model_versions(f"tags.model_md5 = '{model_md5}'")) == 1


def test_sigkill_after_registration_is_completed_by_the_next_repro(clean) -> None:
    repo = clean
    _force_train(repo, rounds=40)  # a model no earlier test registered
    before = versions(repo)
    killed = run(
        [sys.executable, "-m", "dvc", "repro"],
        repo,
        check=False,
        PREDICTFLOW_FAULT="register:created",
    )
    assert killed.returncode != 0
    created = versions(repo)
    assert len(created) == len(before) + 1  # the version exists; its artifact is complete
    assert "register" in dvc(repo, "status").stdout
    findings = json.loads(predictflow(repo, "doctor", "--json", check=False).stdout)["findings"]
    assert {f["check"]: f["status"] for f in findings}["registered versions"] == "ok"
    dvc(repo, "repro")
    assert versions(repo) == created  # idempotent: no second version for the same model
    assert _integrity(repo) == "ok"


def test_doctor_fix_marks_orphaned_runs_killed(clean) -> None:
    repo = clean
    _force_train(repo)
    run([sys.executable, "-m", "dvc", "repro"], repo, check=False, PREDICTFLOW_FAULT="train:fit")
    (stuck,) = [r for r in all_runs(repo) if r.info.status == "RUNNING"]
    fixed = predictflow(repo, "doctor", "--fix", check=False)
    assert "FIXED    stuck runs" in fixed.stdout
    assert repo_client(repo).get_run(stuck.info.run_id).info.status == "KILLED"


def _copy_store(repo: Path, tmp_path: Path) -> Path:
    """A project sharing `repo`'s code but with its own copy of the store, to break it."""
    other = tmp_path / "repo"
    git(tmp_path, "clone", "-q", str(repo), str(other))
    (other / "mlflow_data").mkdir()
    db = other / "mlflow_data" / "mlflow.db"
    db.write_bytes((repo / "mlflow_data" / "mlflow.db").read_bytes())
    return db


def test_doctor_finds_a_corrupt_store_and_moves_it_aside(repo: Path, tmp_path: Path) -> None:
    db = _copy_store(repo, tmp_path)
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # the header's tail and the schema page
    db.write_bytes(bytes(data))
    result = predictflow(db.parent.parent, "doctor", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "PROBLEM  tracking store" in result.stdout and "is corrupt" in result.stdout
    assert "predictflow doctor --fix moves it aside" in result.stdout
    fixed = predictflow(db.parent.parent, "doctor", "--fix", check=False)
    assert "FIXED    tracking store" in fixed.stdout
    assert not db.exists() and len(list(db.parent.glob("mlflow.db.corrupt-*"))) == 1


def test_doctor_finds_an_outdated_schema(repo: Path, tmp_path: Path) -> None:
    db = _copy_store(repo, tmp_path)
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'a1b2c3d4e5f6'")
    result = predictflow(db.parent.parent, "doctor", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "PROBLEM  store schema" in result.stdout
    assert "has schema a1b2c3d4e5f6" in result.stdout
    assert f"mlflow db upgrade sqlite:///{db}" in result.stdout


def test_doctor_finds_credentials_committed_to_git(repo: Path, tmp_path: Path) -> None:
    other = tmp_path / "repo"
    git(tmp_path, "clone", "-q", str(repo), str(other))
    config = other / ".dvc" / "config"
    config.write_text(config.read_text() + "    access_key_id = AKIAEXAMPLEEXAMPLE\n")
    findings = json.loads(predictflow(other, "doctor", "--json", check=False).stdout)["findings"]
    secrets = next(f for f in findings if f["check"] == "secrets")
    assert secrets["status"] == "problem"
    assert "access_key_id" in secrets["detail"] and "--local" in secrets["fix"]


def test_concurrent_registers_of_one_model_make_one_version(clean) -> None:
    repo = clean
    c = repo_client(repo)
    model_md5 = c.get_model_version("churn-predictor", "1").tags["model_md5"]
    for version in versions(repo):
        c.delete_model_version("churn-predictor", version)
    procs = [
        subprocess.Popen(
            [sys.executable, "stages/register.py"],
            cwd=repo,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    matching = c.search_model_versions(
        f"name = 'churn-predictor' and tags.model_md5 = '{model_md5}'"
    )
    assert len(matching) == 1
    logs = " ".join(err for _, err in outputs)
    assert "registered version" in logs and "already registered as version" in logs


def test_racing_promotions_one_wins_and_the_trail_stays_consistent(clean) -> None:
    repo = clean
    (staging,) = [v for v, aliases in registry_state(repo) if "staging" in aliases]
    git(repo, "commit", "-q", "--allow-empty", "-m", "seal")
    procs = [
        subprocess.Popen(
            [
                BIN / "predictflow",
                "promote",
                staging,
                "--to",
                "production",
                "--reason",
                f"racer {i}",
                "--allow-dirty",
            ],
            cwd=repo,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    moved = [out for out, _ in outputs if "-> production" in out]
    assert len(moved) == 1, outputs
    loser_out, loser_err = next(o for o in outputs if "-> production" not in o[0])
    assert ("already holds production" in loser_out) or ("production moved" in loser_err)
    view = json.loads(predictflow(repo, "lineage", staging, "--json").stdout)
    assert "production" in view["aliases"]
    assert [e["to"] for e in view["promotions"]] == ["staging", "production"]  # repro, racer
    repo_client(repo).delete_registered_model_alias("churn-predictor", "production")


def test_tune_runs_the_grid_on_the_queue_into_one_store(clean, tmp_path: Path) -> None:
    """Two experiments on DVC's queue at once (two workers: the most that run side by side on
    two cores), both logging to the same SQLite store; a grid of two keys."""
    repo = clean
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "tune:\n  jobs: 2\n  metric: roc_auc\n  grid:\n"
        "    model.max_depth: [2, 3]\n    model.n_estimators: [10]\n"
    )
    result = predictflow(repo, "tune", "--spec", spec, "--name", "grid", "--json")
    facts = json.loads(result.stdout)
    assert facts["experiments"] == 2 and facts["failed"] == [] and facts["mlflow_runs"] == 2
    assert sorted(facts["runs"]) == sorted(r["experiment"] for r in facts["ranking"])
    assert all(facts["runs"].values())  # every point maps to the MLflow run of its model
    ranking = facts["ranking"]
    assert [r["roc_auc"] for r in ranking] == sorted((r["roc_auc"] for r in ranking), reverse=True)
    assert facts["apply"] == f"dvc exp apply {ranking[0]['experiment']}"

    c = repo_client(repo)
    children = c.search_runs(
        [c.get_experiment_by_name("churn-prediction").experiment_id],
        f"tags.mlflow.parentRunId = '{facts['parent_run']}'",
    )
    shown = {r["experiment"]: r for r in ranking}
    assert len(children) == 2
    for child in children:
        name = child.data.tags["dvc_exp_name"]
        assert child.info.status == "FINISHED"
        assert child.data.metrics["roc_auc"] == pytest.approx(shown[name]["roc_auc"], abs=1e-6)
        depth = int(child.data.params["model.max_depth"])
        assert depth == shown[name]["model.max_depth"]
        rounds = int(child.data.params["model.n_estimators"])
        history = c.get_metric_history(child.info.run_id, "validation_1-logloss")
        assert len(history) == rounds  # no metric lost to a locked database
    assert not list((repo / ".dvc" / "tmp").rglob("mlflow.db"))


@pytest.fixture(scope="module")
def tune_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project that was never run: a refused spec must not need, or make, a store."""
    return copy_project(tmp_path_factory.mktemp("tune") / "repo")


SPEC_HEAD = "tune:\n  jobs: 2\n  metric: roc_auc\n  grid:\n"
BAD_GRIDS = [
    pytest.param(
        "    model.max_depth: [0, 3]\n",
        "tune.grid: model.max_depth: Input should be greater than or equal to 1 (got 0)",
        id="out-of-range",
    ),
    pytest.param(
        "    model.learning_rate: [0.1, 1.5]\n",
        "tune.grid: model.learning_rate: Input should be less than or equal to 1 (got 1.5)",
        id="out-of-range-float",
    ),
    pytest.param(
        "    model.maxdepth: [3]\n",
        "tune.grid: model.maxdepth: unknown key (typo?",
        id="unknown-key",
    ),
    pytest.param(
        "    max_depth: [3]\n",
        "tune.grid.max_depth: not a params.yaml key (section.key)",
        id="not-a-dotted-key",
    ),
    pytest.param(
        "    trainer.max_depth: [3]\n",
        "tune.grid.trainer.max_depth: not a params.yaml key (section.key)",
        id="unknown-section",
    ),
    pytest.param(
        "    model.max_depth: [3.5]\n",
        "tune.grid: model.max_depth: Input should be a valid integer (got 3.5)",
        id="wrong-type-float-for-int",
    ),
    pytest.param(
        "    model.learning_rate: [fast]\n",
        "tune.grid: model.learning_rate: Input should be a valid number (got 'fast')",
        id="wrong-type-str-for-float",
    ),
    pytest.param(
        "    model.max_depth: 3\n",
        "tune.grid.model.max_depth: Input should be a valid list (got 3)",
        id="not-a-list",
    ),
    pytest.param(
        "    model.max_depth: [[3, 4]]\n",
        "tune.grid.model.max_depth.0: Input should be a number or a string (got [3, 4])",
        id="nested-list",
    ),
    pytest.param(
        "    model.max_depth: [~]\n",
        "tune.grid.model.max_depth.0: Input should be a number or a string (got None)",
        id="null",
    ),
    pytest.param(
        "    model.max_depth: []\n",
        "tune.grid.model.max_depth: List should have at least 1 item after validation, not 0",
        id="empty-list",
    ),
    pytest.param("    {}\n", "tune.grid: Dictionary should have at least 1 item", id="empty-grid"),
    pytest.param(
        "    model.reg_lambda: [1.0, .inf]\n",
        "tune.grid.model.reg_lambda.1: Input should be a finite number (got inf)",
        id="inf",
    ),
    pytest.param(
        "    model.learning_rate: [.nan]\n",
        "tune.grid.model.learning_rate.0: Input should be a finite number (got nan)",
        id="nan",
    ),
    pytest.param(
        "    model.max_depth: [3]\n    model.max_depth: [4]\n",
        'not valid YAML at line 6: found duplicate key "model.max_depth"',
        id="duplicate-key",
    ),
    pytest.param(
        "    model.max_depth: [3\n",
        "not valid YAML at line 6",
        id="invalid-yaml",
    ),
]


@pytest.mark.parametrize(("grid", "fragment"), BAD_GRIDS)
def test_tune_refuses_an_invalid_grid_before_queueing(
    tune_repo: Path, tmp_path: Path, grid: str, fragment: str
) -> None:
    """Every spec mistake is one line naming the spec, the key and the value, before anything
    is queued or any MLflow run (or store) is made."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_HEAD + grid, encoding="utf-8")

    result = predictflow(tune_repo, "tune", "--spec", spec, check=False)

    line = assert_one_line_error(result, f"{spec}: ", fragment)
    assert line.startswith(f"predictflow: error: {spec}: "), line
    assert result.returncode == 1
    assert "Queued" not in dvc(tune_repo, "queue", "status").stdout
    assert not (tune_repo / "mlflow_data").exists()


BAD_SPECS = [
    pytest.param(
        "tune:\n  jobs: 2\n  metric: log_loss\n  grid:\n    model.max_depth: [3]\n",
        "tune.metric: Input should be 'roc_auc', 'pr_auc', 'accuracy', 'precision', 'recall' "
        "or 'f1' (got 'log_loss')",
        id="metric-lower-is-better",
    ),
    pytest.param(
        "tune:\n  jobs: 0\n  metric: roc_auc\n  grid:\n    model.max_depth: [3]\n",
        "tune.jobs: Input should be greater than or equal to 1 (got 0)",
        id="jobs-0",
    ),
    pytest.param(
        "tune:\n  jobs: 2\n  metric: roc_auc\n",
        "tune.grid: missing key",
        id="no-grid",
    ),
    pytest.param(
        "tune:\n  jobs: 2\n  metric: roc_auc\n  grids: {}\n",
        "tune.grids: unknown key (typo?",
        id="misspelt-grid",
    ),
    pytest.param("model:\n  max_depth: 3\n", "expected a `tune:` section", id="no-tune-section"),
]


@pytest.mark.parametrize(("text", "fragment"), BAD_SPECS)
def test_tune_refuses_an_invalid_spec_with_one_line(
    tune_repo: Path, tmp_path: Path, text: str, fragment: str
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text, encoding="utf-8")

    result = predictflow(tune_repo, "tune", "--spec", spec, check=False)

    line = assert_one_line_error(result, fragment)
    assert line.startswith(f"predictflow: error: {spec}: "), line
    assert not (tune_repo / "mlflow_data").exists()


def test_tune_refuses_a_missing_spec_with_one_line(tune_repo: Path, tmp_path: Path) -> None:
    spec = tmp_path / "nope.yaml"

    result = predictflow(tune_repo, "tune", "--spec", spec, check=False)

    assert_one_line_error(result, f"{spec}: file not found")
    assert not (tune_repo / "mlflow_data").exists()


def test_tune_timeout_is_one_line_and_stops_the_queue_workers(
    built_repo: Path, tmp_path: Path
) -> None:
    """A sweep past its --timeout: one line, and no worker left running (or hanging) on."""
    repo = copy_built_repo(built_repo, tmp_path / "repo")  # experiments that run, not fail
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_HEAD + "    model.max_depth: [2, 3]\n    model.n_estimators: [10]\n")
    result = predictflow(repo, "tune", "--spec", spec, "--timeout", "1", check=False)
    assert_one_line_error(result, "sweep not finished after 1 s", "workers were stopped")
    status = dvc(repo, "queue", "status").stdout
    assert "Worker status: 0 active, 0 idle" in status, status
    assert not [line for line in status.splitlines() if line.endswith("Running")], status


def test_tune_ends_the_runs_of_stages_that_were_killed(built_repo: Path, tmp_path: Path) -> None:
    """A stage killed mid-fit cannot end its own MLflow run: the sweep marks it KILLED, so no
    child of a finished sweep shows as running in the MLflow UI for ever."""
    repo = copy_built_repo(built_repo, tmp_path / "repo")
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_HEAD + "    model.max_depth: [2, 3]\n    model.n_estimators: [10]\n")
    tune = [BIN / "predictflow", "tune", "--spec", spec]
    result = run(tune, repo, check=False, PREDICTFLOW_FAULT="train:fit")
    assert result.returncode != 0, result.stdout
    client = repo_client(repo)
    experiment = client.get_experiment_by_name("churn-prediction")
    sweep = client.search_runs([experiment.experiment_id], "tags.`predictflow.sweep` != ''")
    (parent,) = [r for r in sweep if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in sweep if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2  # each train started its run before it was killed
    assert {child.info.status for child in children} == {"KILLED"}
    assert parent.info.status == "FAILED"
