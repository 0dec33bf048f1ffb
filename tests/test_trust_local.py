"""Issue 23's local defects: each attack with its variants, on a real copy of the built pipeline.

- `MLFLOW_TRACKING_URI` in a form predictflow cannot use (plain path, `file:`, a database URI)
  gives one line naming the accepted forms, for every command and the train stage, and never
  echoes a password.
- A store that fills up or turns read-only during `train`, `drift` or `promote`: one line that
  names the errno and says what was done; no run left RUNNING, no logged model left PENDING.
- `promote ""`, a lowercase `yes` label, a re-sorted scored file: one contract, true advice.
Real `predictflow`, `dvc`, MLflow store and tmpfs mounts (root only: skipped otherwise).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from predictflow.base.errors import machine_cause
from predictflow.core.schema import DataContractError, parse_target
from predictflow.lineage import tracking

from .conftest import (
    BIN,
    assert_one_line_error,
    copy_built_repo,
    dvc,
    predictflow,
    repo_client,
    run,
    stage_error_line,
)

RAW = "data/customers.csv"
MODEL = ("--model", "models:/churn-predictor@staging")
SECRET = "s3cret-pw"


@pytest.fixture(scope="module")
def repo(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_built_repo(built_repo, tmp_path_factory.mktemp("trust-local") / "repo")


def store_state(repo: Path) -> dict[str, list]:
    """Run and logged-model statuses, read straight from the SQLite store."""
    with sqlite3.connect(repo / "mlflow_data" / "mlflow.db") as db:
        return {
            "runs": db.execute("SELECT status FROM runs").fetchall(),
            "models": db.execute("SELECT status FROM logged_models").fetchall(),
        }


def no_half_done(repo: Path) -> None:
    state = store_state(repo)
    assert ("RUNNING",) not in state["runs"], state
    assert (1,) not in state["models"], state  # LOGGED_MODEL_PENDING


# --- 1. tracking URIs predictflow cannot use ---------------------------------------------------

BAD_URIS = {
    "absolute path": "/tmp/predictflow-not-a-store",
    "relative path": "mlruns",
    "file URI": "file:///tmp/predictflow-file-store",
    "dead postgresql": f"postgresql://bob:{SECRET}@127.0.0.1:1/mlflow",
    "mysql with query": f"mysql://bob:{SECRET}@db.invalid/mlflow?password={SECRET}",
}
COMMANDS = {
    "lineage": ("lineage",),
    "predict": ("predict", *MODEL, "--input", RAW, "--output", "scores.csv"),
    "promote": ("promote", "1", "--to", "staging"),
    "doctor": ("doctor",),
    "drift": ("drift", "--input", RAW),
}


@pytest.mark.parametrize("uri", BAD_URIS.values(), ids=BAD_URIS.keys())
@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_an_unusable_tracking_uri_is_one_line_naming_the_accepted_forms(
    repo: Path, uri: str, command: tuple[str, ...]
) -> None:
    result = run([BIN / "predictflow", *command], repo, check=False, MLFLOW_TRACKING_URI=uri)
    line = assert_one_line_error(result, "MLFLOW_TRACKING_URI=", "sqlite:///", "http(s)://")
    assert SECRET not in line and "bob" not in line
    assert not (repo / "mlruns").exists() and not (repo / "scores.csv").exists()
    assert not Path("/tmp/predictflow-not-a-store").exists()


@pytest.mark.parametrize("uri", BAD_URIS.values(), ids=BAD_URIS.keys())
def test_the_train_stage_refuses_an_unusable_tracking_uri_in_one_line(repo: Path, uri: str) -> None:
    result = run([BIN / "python", "stages/train.py"], repo, check=False, MLFLOW_TRACKING_URI=uri)
    line = assert_one_line_error(result, "MLFLOW_TRACKING_URI=", "sqlite:///", prefix="train")
    assert SECRET not in line


@pytest.mark.unit
@pytest.mark.parametrize(
    "uri",
    ["sqlite:///mlflow.db", "sqlite:////abs/mlflow.db", "http://127.0.0.1:5000", "https://h/x"],
)
def test_the_forms_predictflow_uses_pass_unchanged(uri: str, tmp_path: Path) -> None:
    assert tracking.checked_uri(uri, tmp_path) == uri


@pytest.mark.unit
@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        (f"postgresql://bob:{SECRET}@db:5432/x?sslmode=require", "postgresql://db:5432/x"),
        (f"https://bob:{SECRET}@team.example/mlflow", "https://team.example/mlflow"),
        ("sqlite:////abs/mlflow.db?mode=ro", "sqlite:////abs/mlflow.db"),
    ],
)
def test_a_shown_uri_keeps_no_credentials(uri: str, shown: str) -> None:
    assert tracking.shown_uri(uri) == shown


# --- 2. a store that fills up or turns read-only -----------------------------------------------


def mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")


@contextmanager
def on_tmpfs(folder: Path, free_kib: int) -> Iterator[None]:
    """`folder`'s contents moved onto a tmpfs with about `free_kib` KiB to spare."""
    saved = folder.with_name(folder.name + ".saved")
    used = int(
        subprocess.run(["du", "-sk", folder], capture_output=True, text=True).stdout.split()[0]
    )
    folder.rename(saved)
    folder.mkdir()
    try:
        mount("-t", "tmpfs", "-o", f"size={used + free_kib}k", "tmpfs", str(folder))
        try:
            shutil.copytree(saved, folder, dirs_exist_ok=True, symlinks=True)
            yield
            shutil.copytree(folder, saved, dirs_exist_ok=True, symlinks=True)  # keep what it did
        finally:  # lazy: a connection MLflow still holds in this process keeps the old files
            subprocess.run(["umount", "-l", str(folder)], check=True)
    finally:
        folder.rmdir()
        saved.rename(folder)


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    mount("--bind", str(folder), str(folder))
    try:
        mount("-o", "remount,bind,ro", str(folder))
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _train(repo: Path):
    return dvc(repo, "repro", "-s", "-f", "train", check=False)


@pytest.mark.parametrize(
    ("where", "errno_name", "state"),
    [
        ("whole store", "ENOSPC", "full"),
        ("model artifacts", "ENOSPC", "full"),
        ("read-only artifacts", "EROFS", "read-only"),
    ],
)
def test_a_full_or_read_only_store_during_train_is_one_line_and_leaves_nothing_running(
    repo: Path, where: str, errno_name: str, state: str
) -> None:
    model_bytes = (repo / "models/model.pkl").read_bytes()
    store = repo / "mlflow_data"
    models = store / "artifacts" / "models"
    if where == "whole store":
        trap = on_tmpfs(store, free_kib=150)
    elif where == "model artifacts":
        trap = on_tmpfs(models, free_kib=64)
    else:
        trap = read_only(models)
    with trap:
        result = _train(repo)
        state_inside = store_state(repo)
    line = stage_error_line(result, "train", f"is {state}", errno_name, "marked FAILED")
    assert "dvc repro" in line
    assert ("RUNNING",) not in state_inside["runs"] and (1,) not in state_inside["models"]
    # DVC removed the stage's out before running it; nothing half-written took its place
    assert not (repo / "models/model.pkl").exists()
    dvc(repo, "checkout", "models/model.pkl")
    assert (repo / "models/model.pkl").read_bytes() == model_bytes
    no_half_done(repo)


@pytest.mark.unit
def test_machine_cause_finds_the_errno_through_wrapping_exceptions() -> None:
    try:
        try:
            raise OSError(28, "No space left on device", "/src", None, "/store/model.pkl")
        except OSError as first:
            raise RuntimeError("wrapped") from first
    except RuntimeError as err:
        assert machine_cause(err) == "ENOSPC: No space left on device: '/store/model.pkl'"
    assert machine_cause(ValueError("a bug")) is None
    assert machine_cause(OSError(2, "No such file")) is None


def fill(folder: Path) -> None:
    """Fill the file system holding `folder` to the last byte."""
    with open(folder / "filler", "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    subprocess.run(["sync"], check=False)


def in_process(repo: Path, monkeypatch, capsys, *argv: str) -> tuple[int, str]:
    """`predictflow ARGV` in this process (so a test can act at an exact step); exit and stderr."""
    from predictflow import cli

    monkeypatch.chdir(repo)
    for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT"):
        monkeypatch.delenv(name, raising=False)
    # no connection kept open between calls: the store's tmpfs is unmounted after the test
    monkeypatch.setenv("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
    with pytest.raises(SystemExit) as exited:
        cli.main(list(argv))
    return int(exited.value.code or 0), capsys.readouterr().err


def test_drift_on_a_store_that_fills_up_says_it_measured_but_did_not_record(
    repo: Path, monkeypatch, capsys
) -> None:
    from predictflow.monitoring import drift

    store = repo / "mlflow_data"
    real = drift.log_run
    monkeypatch.setattr(drift, "log_run", lambda root, facts: (fill(store), real(root, facts))[1])
    with on_tmpfs(store, free_kib=400):
        code, err = in_process(repo, monkeypatch, capsys, "drift", "--input", RAW, *MODEL)
        (store / "filler").unlink()
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert "drift measured (verdict: " in lines[0] and "not recorded" in lines[0], lines[0]
    assert "is full" in lines[0] and "run drift again" in lines[0]
    no_half_done(repo)


@pytest.fixture(scope="module")
def version_two(repo: Path) -> str:
    """A second registered version (an experiment: staging stays on version 1)."""
    dvc(repo, "exp", "run", "-S", "model.max_depth=3")
    return "2"


@pytest.mark.parametrize(
    ("when", "said", "holder"),
    [
        ("before the move", "was not promoted, staging is unchanged", "1"),
        ("after the alias moved", "staging now points to version 2", "2"),
    ],
)
def test_promote_on_a_store_that_fills_up_says_whether_the_alias_moved(
    repo: Path, version_two: str, monkeypatch, capsys, when: str, said: str, holder: str
) -> None:
    from predictflow.lineage import registry

    store = repo / "mlflow_data"
    target = "move_alias" if when == "before the move" else "mirror_stage"
    real = getattr(registry, target)

    def full_then(*args, **kwargs):
        fill(store)
        return real(*args, **kwargs)

    monkeypatch.setattr(registry, target, full_then)
    with on_tmpfs(store, free_kib=400):
        code, err = in_process(repo, monkeypatch, capsys, "promote", version_two, "--to", "staging")
        (store / "filler").unlink()
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert said in lines[0] and "is full" in lines[0], lines[0]
    staging = repo_client(repo).get_model_version_by_alias("churn-predictor", "staging")
    assert str(staging.version) == holder


def test_a_read_only_store_is_one_line_before_any_work(repo: Path) -> None:
    with read_only(repo / "mlflow_data"):
        for command in (("drift", "--input", RAW, *MODEL), ("promote", "1", "--to", "staging")):
            result = predictflow(repo, *command, check=False)
            assert_one_line_error(result, "mlflow_data")


# --- 3. promote "", labels, a re-sorted scored file --------------------------------------------


@pytest.mark.parametrize("version", ["", " ", "\t"])
@pytest.mark.parametrize("command", ["promote", "lineage"])
def test_an_empty_version_is_named_with_the_forms_accepted(
    repo: Path, version: str, command: str
) -> None:
    args = (command, version, "--to", "staging") if command == "promote" else (command, version)
    result = predictflow(repo, *args, check=False)
    assert_one_line_error(
        result, "model version is empty", "a version number (3)", "models:/NAME@ALIAS"
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    ("labels", "lenient", "strict"),
    [
        (["Yes", "No"], [1, 0], [1, 0]),
        (["yes", "NO"], [1, 0], None),
        (["1", "0"], [1, 0], None),
        (["Y", "No"], None, None),
        (["", "No"], None, None),
    ],
)
def test_one_label_contract_read_strictly_for_training_and_leniently_for_scoring(
    labels: list[str], lenient: list[int] | None, strict: list[int] | None
) -> None:
    for is_lenient, expected in ((True, lenient), (False, strict)):
        values = pd.Series(labels)
        if expected is None:
            with pytest.raises(DataContractError, match="must be Yes"):
                parse_target(values, "f.csv", lenient=is_lenient)
        else:
            assert parse_target(values, "f.csv", lenient=is_lenient).tolist() == expected


def write_batch(repo: Path, name: str, labels: dict[int, str], rows: int = 40) -> Path:
    table = list(csv.reader((repo / RAW).open(newline="")))[: rows + 1]
    for index, label in labels.items():
        table[index][-1] = label
    path = repo / name
    with path.open("w", newline="") as out:
        csv.writer(out).writerows(table)
    return path


@pytest.mark.parametrize("label", ["yes", " No ", "YES", "1"])
def test_predict_and_evaluate_batch_read_a_label_the_same_lenient_way(
    repo: Path, label: str
) -> None:
    batch = write_batch(repo, "labelled.csv", {3: label})
    predictflow(
        repo, "predict", *MODEL, "--input", batch, "--output", "labelled-scores.csv", "--force"
    )
    scored = pd.read_csv(repo / "labelled-scores.csv", dtype=str)
    scored.loc[2, "Churn"] = label  # the same spelling in the scored file
    scored.to_csv(repo / "labelled-scores.csv", index=False)
    result = predictflow(
        repo,
        "evaluate-batch",
        "--input",
        "labelled-scores.csv",
        "--cohort",
        "label-" + hashlib.md5(label.encode()).hexdigest()[:8],
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("label", ["maybe", "Y", "true"])
def test_predict_and_evaluate_batch_refuse_a_bad_label_with_the_same_rule(
    repo: Path, label: str
) -> None:
    rule = "must be Yes/No (any case) or 1/0, the lenient reading for scored batches"
    batch = write_batch(repo, "bad-label.csv", {3: label})
    refused = predictflow(
        repo, "predict", *MODEL, "--input", batch, "--output", "x.csv", check=False
    )
    assert_one_line_error(refused, rule, f"'{label}'", "line 4")
    good = write_batch(repo, "good-label.csv", {})
    predictflow(repo, "predict", *MODEL, "--input", good, "--output", "good.csv", "--force")
    scored = pd.read_csv(repo / "good.csv", dtype=str)
    scored.loc[2, "Churn"] = label
    scored.to_csv(repo / "good.csv", index=False)
    refused = predictflow(repo, "evaluate-batch", "--input", "good.csv", check=False)
    assert_one_line_error(refused, rule, f"'{label}'", "line 4")


def test_a_re_sorted_scored_file_is_evaluated_as_the_same_rows(repo: Path) -> None:
    batch = write_batch(repo, "sortable.csv", {}, rows=60)
    predictflow(repo, "predict", *MODEL, "--input", batch, "--output", "sorted.csv", "--force")
    record = (repo / "sorted.csv.json").read_text()
    original = pd.read_csv(repo / "sorted.csv", dtype=str, keep_default_na=False)

    def evaluate(frame: pd.DataFrame, name: str, check: bool = True):
        frame.to_csv(repo / f"{name}.csv", index=False)
        (repo / f"{name}.csv.json").write_text(record)
        return predictflow(
            repo,
            "evaluate-batch",
            "--input",
            f"{name}.csv",
            "--cohort",
            name,
            "--json",
            check=check,
        )

    expected = json.loads(evaluate(original, "as-written").stdout)["metrics"]
    variants = {
        "by-id": original.sort_values("customerID"),
        "reversed": original.iloc[::-1],
        "shuffled": original.sample(frac=1.0, random_state=3),
        "by-score": original.sort_values("churn_probability"),
    }
    for name, frame in variants.items():
        metrics = json.loads(evaluate(frame, name).stdout)["metrics"]
        assert metrics.keys() == expected.keys(), name
        for role, values in expected.items():  # summed in another order: equal to rounding
            assert metrics[role] == pytest.approx(values, rel=1e-12), name
    swapped = original.copy()
    swapped.loc[[0, 1], "churn_probability"] = swapped.loc[[1, 0], "churn_probability"].to_numpy()
    refused = evaluate(swapped, "swapped", check=False)
    line = assert_one_line_error(refused, "score columns differ from", "--record")
    assert "another order" not in line
    # a record from before the order-free digest: the advice names both possible causes
    record = json.dumps({k: v for k, v in json.loads(record).items() if k != "scores_rows_md5"})
    refused = evaluate(variants["by-id"], "old-record", check=False)
    assert_one_line_error(refused, "in another order", "restore the row order predict wrote")
