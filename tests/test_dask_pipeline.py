"""`scale.engine: dask` end to end: the five stages under `dvc repro` on a real Dask cluster, over
a DVC-tracked folder of raw CSV parts (docs/scaling.md).

One project is built once for the module (a `LocalCluster` of 2 worker processes started inside
each stage); the tests read it or work on their own copy.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from predictflow.core.estimator import build_classifier, featurize, fit_classifier
from predictflow.core.params import load_params
from predictflow.core.schema import TARGET
from predictflow.ops.synth import write_csv

from .conftest import (
    BIN,
    assert_one_line_error,
    copy_built_repo,
    copy_project,
    cut_into_parts,
    dvc,
    free_port,
    git,
    predictflow,
    repo_client,
    run,
    stage_error_line,
    stop_process_group,
)

pytest.importorskip("distributed", reason="the [scale] extra is not installed")
pytestmark = pytest.mark.pipeline

PARTS = 3
ROWS = 6000


def use_dask(repo: Path, partitions: int = 4) -> None:
    """What a team edits to switch: `scale:` in params.yaml, and `paths.raw` in dvc.yaml when
    the raw data becomes a folder of parts."""
    params = repo / "params.yaml"
    text = params.read_text().replace("engine: local", "engine: dask")
    params.write_text(text.replace("partitions: 8", f"partitions: {partitions}"))
    pipeline = repo / "dvc.yaml"
    pipeline.write_text(
        pipeline.read_text().replace("raw: data/customers.csv", "raw: data/customers")
    )


def write_parts(folder: Path, rows: int = ROWS, parts: int = PARTS) -> list[Path]:
    """One synthetic table cut into `parts` CSV files (a header each), like monthly exports."""
    whole = folder.parent / "whole.csv"
    write_csv(whole, rows=rows, seed=11)
    written = cut_into_parts(whole, folder, parts)
    whole.unlink()
    return written


@pytest.fixture(scope="module")
def dask_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = copy_project(tmp_path_factory.mktemp("dask") / "repo")
    use_dask(repo)
    write_parts(repo / "data" / "customers")
    git(repo, "rm", "-q", "data/customers.csv.dvc")
    dvc(repo, "add", "-q", "data/customers")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "raw data as monthly parts; stages on Dask")
    dvc(repo, "repro")
    return repo


def locked(repo: Path, stage: str, path: str, kind: str = "deps") -> str:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return next(e["md5"] for e in lock["stages"][stage][kind] if e["path"] == path)


def test_the_pipeline_runs_on_dask_and_registers_a_servable_version(dask_repo: Path) -> None:
    repo = dask_repo
    raw_md5 = locked(repo, "prepare", "data/customers")
    assert raw_md5.endswith(".dir")  # DVC's md5 of the folder of parts
    for split in ("train", "test"):
        for kind in ("prepared", "features"):
            folder = repo / "data" / kind / f"{split}.parquet"
            assert sorted(p.name for p in folder.iterdir()) == [
                f"part.{i:05d}.parquet" for i in range(4)
            ]
            out_md5 = locked(
                repo,
                "prepare" if kind == "prepared" else "featurize",
                f"data/{kind}/{split}.parquet",
                "outs",
            )
            assert out_md5.endswith(".dir")

    client = repo_client(repo)
    version = client.get_model_version_by_alias("churn-predictor", "staging")
    assert version.tags["data_md5"] == raw_md5
    assert version.tags["data_path"] == "data/customers"
    train_run = client.get_run(version.run_id).data
    assert train_run.params["scale.engine"] == "dask"
    assert train_run.params["scale.partitions"] == "4"
    run_tags = train_run.tags
    assert run_tags["scale.workers"] == "2"
    assert run_tags["scale.scheduler"] == "local"
    rounds = client.get_metric_history(version.run_id, "validation_1-logloss")
    assert len(rounds) == load_params(repo / "params.yaml").model.n_estimators

    # Through `models:/`, as a client loads it: the plain scikit-learn pipeline, raw rows in.
    rows = pd.read_csv(repo / "data" / "customers" / "2026-02.csv", dtype=str).head(20)
    script = (
        "import sys, mlflow, pandas as pd; "
        f"mlflow.set_tracking_uri('sqlite:///{repo}/mlflow_data/mlflow.db'); "
        "m = mlflow.pyfunc.load_model('models:/churn-predictor@staging'); "
        "print(type(m.get_raw_model()).__name__, type(m.get_raw_model().steps[-1][1]).__name__); "
        "print(m.predict(pd.read_csv(sys.stdin, dtype=str))[:, 1].tolist())"
    )
    loaded = run([sys.executable, "-c", script], repo, stdin=rows.to_csv(index=False))
    kinds, scores = loaded.stdout.strip().splitlines()[-2:]
    assert kinds == "Pipeline XGBClassifier"
    assert len(json.loads(scores)) == 20


def test_held_out_auc_is_the_local_engines_on_the_same_rows(dask_repo: Path) -> None:
    """The local engine (one-process featurizer and XGBoost fit) on the very rows the dask
    engine split: its held-out ROC AUC is within 0.005 of the dask engine's."""
    from sklearn.metrics import roc_auc_score

    repo = dask_repo
    params = load_params(repo / "params.yaml")
    train = pd.read_parquet(repo / "data" / "prepared" / "train.parquet")
    test = pd.read_parquet(repo / "data" / "prepared" / "test.parquet")
    assert len(train) + len(test) == ROWS
    assert not set(train["customerID"]) & set(test["customerID"])
    _, x_train, x_test = featurize(train, test, params.featurize)
    classifier = build_classifier(params.model, params.base.seed)
    y_train, y_test = x_train.pop(TARGET), x_test.pop(TARGET)
    fit_classifier(classifier, x_train, y_train, x_test, y_test)
    local_auc = roc_auc_score(y_test, classifier.predict_proba(x_test)[:, 1])
    dask_auc = json.loads((repo / "metrics" / "eval.json").read_text())["roc_auc"]
    assert 0.7 < local_auc < 0.95
    assert abs(dask_auc - local_auc) <= 0.005, (local_auc, dask_auc)


def test_a_bad_value_in_one_part_is_one_line_naming_the_part(
    dask_repo: Path, tmp_path: Path
) -> None:
    repo = copy_built_repo(dask_repo, tmp_path / "repo")
    part = repo / "data" / "customers" / "2026-02.csv"
    lines = part.read_text().splitlines(keepends=True)
    fields = lines[9].split(",")
    fields[5] = "ten"  # tenure, on the file's line 10
    lines[9] = ",".join(fields)
    part.write_text("".join(lines))
    lock = (repo / "dvc.lock").read_bytes()
    before = len(repo_client(repo).search_model_versions("name = 'churn-predictor'"))

    result = dvc(repo, "repro", check=False)

    stage_error_line(
        result, "prepare", "data/customers/2026-02.csv", "'tenure'", "line 10", "'ten'"
    )
    # DVC removed the outs before the stage ran (they stay in its cache); nothing half-written
    # took their place, and the lock still names the last good run
    assert sorted(p.name for p in (repo / "data/prepared").iterdir()) == [".gitignore"]
    assert (repo / "dvc.lock").read_bytes() == lock
    assert len(repo_client(repo).search_model_versions("name = 'churn-predictor'")) == before


def test_stages_run_on_a_separate_scheduler_and_worker(dask_repo: Path, tmp_path: Path) -> None:
    """`dask scheduler` and `dask worker` processes on 127.0.0.1, the worker in another folder:
    the stages reach them through DASK_SCHEDULER_ADDRESS and start no cluster of their own."""
    repo = copy_built_repo(dask_repo, tmp_path / "repo")
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("partitions: 4", "partitions: 2"))
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    elsewhere = tmp_path / "worker"
    elsewhere.mkdir()
    common = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
    scheduler = subprocess.Popen(
        [BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        cwd=elsewhere,
        **common,
    )
    worker = subprocess.Popen(
        [BIN / "dask", "worker", address, "--nworkers", "1", "--nthreads", "2", "--no-dashboard"],
        cwd=elsewhere,
        **common,
    )
    try:
        run([sys.executable, "-m", "dvc", "repro"], repo, DASK_SCHEDULER_ADDRESS=address)
    finally:
        stop_process_group(worker)
        stop_process_group(scheduler)
    client = repo_client(repo)
    version = client.get_model_version_by_alias("churn-predictor", "staging")
    tags = client.get_run(version.run_id).data.tags
    assert tags["scale.scheduler"] == address
    assert tags["scale.workers"] == "1"  # the one `dask worker`, not a LocalCluster's two
    assert len(list((repo / "data/prepared/train.parquet").iterdir())) == 2


def test_the_production_gate_scores_the_proven_folder_of_parts(
    dask_repo: Path, tmp_path: Path
) -> None:
    """The gate hashes the held-out parts it scores as DVC does (`.dir` md5): a part changed
    behind the lock is refused; the parts the lock pins promote."""
    repo = copy_built_repo(dask_repo, tmp_path / "repo")
    git(repo, "add", "dvc.lock")
    git(repo, "commit", "-q", "-m", "seal version 1")
    part = repo / "data" / "prepared" / "test.parquet" / "part.00001.parquet"
    original = part.read_bytes()
    rows = pd.read_parquet(part)
    part.unlink()  # DVC links outs from its cache: replace the file, never write through it
    rows.iloc[: len(rows) // 2].to_parquet(part, index=False)

    refused = predictflow(repo, "promote", "1", "--to", "production", check=False)
    assert_one_line_error(refused, "data/prepared/test.parquet", "dvc.lock records")
    assert "production" not in repo_client(repo).get_model_version("churn-predictor", "1").aliases

    part.unlink()
    part.write_bytes(original)
    predictflow(repo, "promote", "1", "--to", "production", "--reason", "first on dask")
    assert "production" in repo_client(repo).get_model_version("churn-predictor", "1").aliases


def test_drift_data_diff_reproduce_and_report_take_the_folder_md5(
    dask_repo: Path, tmp_path: Path
) -> None:
    """Every door that reads a version's data accepts DVC's `.dir` md5: drift's reference is
    exactly the train split `prepare` wrote on the cluster, `data diff` compares two versions of
    the folder part by part, `reproduce` rebuilds the dask version and the report names it."""
    from predictflow.base.errors import StageError
    from predictflow.core.schema import ID
    from predictflow.monitoring.reference import load_reference

    repo = copy_built_repo(dask_repo, tmp_path / "repo")
    raw_md5 = locked(repo, "prepare", "data/customers")
    split_params = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["prepare"]
    reference = load_reference(repo, raw_md5, split_params["params"]["params.yaml"])
    prepared = pd.read_parquet(repo / "data" / "prepared" / "train.parquet")
    assert len(reference.frame) == len(prepared)
    pd.testing.assert_frame_equal(
        reference.frame.sort_values(ID).reset_index(drop=True).astype(str),
        prepared.sort_values(ID).reset_index(drop=True).astype(str),
    )

    batch = repo / "data" / "customers" / "2026-02.csv"
    drift = predictflow(repo, "drift", "--input", batch, "--model", "models:/churn-predictor/1")
    assert f"{len(prepared)} training rows (data md5 {raw_md5})" in drift.stdout

    # A second data version: one value changed in one part, a new month's part added.
    changed = pd.read_csv(batch, dtype=str)
    customer = changed.loc[4, ID]
    changed.loc[4, "MonthlyCharges"] = "999.5"
    batch.unlink()  # a DVC-added file is a link to its cache object: never write through it
    changed.to_csv(batch, index=False)
    april = tmp_path / "april.csv"
    write_csv(april, rows=120, seed=99)
    new = pd.read_csv(april, dtype=str).assign(**{ID: lambda f: "2026-04-" + f[ID]})
    new.to_csv(repo / "data" / "customers" / "2026-04.csv", index=False)
    dvc(repo, "add", "-q", "data/customers")
    git(repo, "add", "data/customers.dvc")
    git(repo, "commit", "-q", "-m", "april's part; a corrected charge")
    diff = predictflow(repo, "data", "diff", "--path", "data/customers", "HEAD~1", "HEAD", "--json")
    facts = json.loads(diff.stdout)
    assert facts["a"]["md5"] == raw_md5
    assert facts["b"]["rows"] == ROWS + 120
    assert facts["rows"]["added"] == 120
    assert facts["rows"]["removed"] == 0
    assert facts["rows"]["changed"] == 1
    assert facts["rows"]["examples"]["changed"] == [customer]
    assert facts["rows"]["changed_columns"] == {"MonthlyCharges": 1}

    rebuilt = predictflow(repo, "reproduce", "models:/churn-predictor/1", "--json")
    checks = json.loads(rebuilt.stdout)
    assert checks["matches"] is True
    assert checks["data_md5"] == raw_md5
    for stage in ("prepare", "featurize"):
        assert checks["stages"][stage] == {"matches": True, "compared": "bytes", "differing": {}}

    predictflow(repo, "report", "--output", tmp_path / "report.html")
    assert raw_md5 in (tmp_path / "report.html").read_text()

    # A manifest whose part would lead out of the temp folder: refused, no link made there.
    evil = b'[{"md5": "%s", "relpath": "../../escaped.csv"}]' % entry_md5(repo, raw_md5).encode()
    evil_md5 = hashlib.md5(evil).hexdigest()
    dvc_object(repo, f"{evil_md5}.dir").parent.mkdir(exist_ok=True)
    dvc_object(repo, f"{evil_md5}.dir").write_bytes(evil)
    with pytest.raises(StageError, match=r"its manifest names \.\./\.\./escaped\.csv"):
        load_reference(repo, f"{evil_md5}.dir", split_params["params"]["params.yaml"])
    assert not list(Path(tempfile.gettempdir()).glob("escaped.csv"))

    # A part's cache object corrupted, no remote: the part is named, nothing is read from it.
    manifest = json.loads(Path(dvc_object(repo, raw_md5)).read_text())
    entry = next(e for e in manifest if e["relpath"] == "2026-03.csv")
    damaged = dvc_object(repo, entry["md5"])
    damaged.chmod(0o644)
    damaged.write_text("customerID\n")
    with pytest.raises(StageError, match=r"training data part 2026-03.csv md5 .* is corrupt"):
        load_reference(repo, raw_md5, split_params["params"]["params.yaml"])


def entry_md5(repo: Path, dir_md5: str) -> str:
    return json.loads(dvc_object(repo, dir_md5).read_text())[0]["md5"]


def dvc_object(repo: Path, md5: str) -> Path:
    return repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
