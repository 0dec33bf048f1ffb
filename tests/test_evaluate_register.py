"""`evaluate` writes files only; `register` attaches them to the train run and registers.

One iteration opens the MLflow store in `train` and `register`, not in three processes; the
run and the version still carry every fact they carried when `evaluate` logged its own part.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from predictflow.core.evaluation import UNCERTAINTY_KEYS
from predictflow.lineage import evidence
from predictflow.lineage.tracking import METRIC_KEYS

from .conftest import assert_one_line_error, repo_client, run

FIGURES = ("confusion_matrix.png", "feature_importance.png", "precision_recall.png", "roc.png")
TABLES = (
    "confusion_matrix.csv",
    "importance.csv",
    "precision_recall.csv",
    "reliability.csv",
    "roc.csv",
    "segments.csv",
)
HELD_OUT = (*METRIC_KEYS, *UNCERTAINTY_KEYS)
CURVES = ("validation_0-logloss", "validation_1-logloss")
TEST_SPLIT = "data/prepared/test.parquet"


def artifacts(c, run_id: str, path: str | None = None) -> list[str]:
    found: list[str] = []
    for item in c.list_artifacts(run_id, path):
        found += artifacts(c, run_id, item.path) if item.is_dir else [item.path]
    return found


def test_evaluate_needs_no_tracking_store_and_never_imports_mlflow(
    pipeline_repo: Path, tmp_path: Path
) -> None:
    with socket.socket() as sock:  # a port nothing listens on: any connection is refused
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    db = pipeline_repo / "mlflow_data/mlflow.db"
    store_bytes = db.read_bytes()
    out = tmp_path / "out"
    result = run(
        [
            sys.executable,
            "-X",
            "importtime",
            "stages/evaluate.py",
            "--predictions",
            out / "predictions.parquet",
            "--metrics",
            out / "eval.json",
            "--plots-dir",
            out / "plots",
            "--figures-dir",
            out / "figures",
        ],
        pipeline_repo,
        MLFLOW_TRACKING_URI=dead,
    )
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    assert not [name for name in imported if name.split(".")[0] == "mlflow"]
    assert db.read_bytes() == store_bytes
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(FIGURES)
    for name in FIGURES:
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "eval.json").read_text()) == json.loads(
        (pipeline_repo / "metrics/eval.json").read_text()
    )


def test_run_and_version_carry_every_fact_they_carried_when_evaluate_logged(
    pipeline_repo: Path,
) -> None:
    """The facts a fresh `dvc repro` left before evaluate stopped logging, kept exactly."""
    c = repo_client(pipeline_repo)
    experiment = c.get_experiment_by_name("churn-prediction")
    (run_,) = c.search_runs([experiment.experiment_id])
    run_id = run_.info.run_id
    assert run_.info.status == "FINISHED"
    assert set(run_.data.metrics) == {*HELD_OUT, *CURVES}
    evaluation = json.loads((pipeline_repo / "metrics/eval.json").read_text())
    assert {k: run_.data.metrics[k] for k in evaluation} == evaluation
    tags = {k for k in run_.data.tags if not k.startswith("mlflow.")}
    assert tags == {"data_md5", "data_path", "git_commit", "git_dirty", "model_md5"} | {
        "predictflow.host",
        "predictflow.pid",
    }
    assert sorted(artifacts(c, run_id)) == sorted(
        [
            *(f"evaluation/{name}" for name in FIGURES),
            *(f"evaluation/data/{name}" for name in TABLES),
            "lineage/dvc.lock",
            "model_card/model_card.md",
        ]
    )
    tables = Path(c.download_artifacts(run_id, "evaluation/data"))
    for name in TABLES:
        assert (tables / name).read_bytes() == (
            pipeline_repo / "metrics/eval_plots" / name
        ).read_bytes()

    test_md5 = evidence.file_md5(pipeline_repo / TEST_SPLIT)
    datasets = {
        (d.dataset.name, d.dataset.digest, d.tags[0].value) for d in run_.inputs.dataset_inputs
    }
    assert datasets == {
        (
            "data/customers.csv",
            evidence.pinned_md5(pipeline_repo / "data/customers.csv.dvc"),
            "source",
        ),
        (
            "data/prepared/train.parquet",
            evidence.file_md5(pipeline_repo / "data/prepared/train.parquet"),
            "training",
        ),
        (TEST_SPLIT, test_md5, "evaluation"),
    }
    (output,) = run_.outputs.model_outputs
    logged = {
        (m.key, m.dataset_name, m.dataset_digest)
        for m in c.get_logged_model(output.model_id).metrics
        if m.model_id == output.model_id
    }
    assert logged == {(key, TEST_SPLIT, test_md5) for key in HELD_OUT} | {
        (key, None, None) for key in CURVES
    }

    (version,) = c.search_model_versions("name = 'churn-predictor'")
    assert set(version.tags) == {
        "data_md5",
        "data_path",
        "git_commit",
        "git_dirty",
        "held_out_min_class_rows",
        "held_out_rows",
        "model_card",
        "model_md5",
        "promotion.0001",
        "run_id",
    }
    assert version.run_id == run_id


EXIT_PROBE = """
import atexit, gc, sys
from predictflow.lineage import stage

def main():
    if sys.argv[1] == "fail":
        raise stage.StageError("data/x.csv: no rows; add some")

atexit.register(lambda: print("at exit: objects frozen", gc.get_freeze_count() > 0))
stage.run("probe", main)
"""


@pytest.mark.pipeline  # runs the real stage or command as a process
def test_a_stage_skips_the_final_collection_and_still_runs_its_exit_handlers(
    tmp_path: Path,
) -> None:
    """Teardown walked every object a stage held (about 1 s after MLflow); frozen, it does not."""
    done = run([sys.executable, "-c", EXIT_PROBE, "ok"], tmp_path)
    assert done.stdout.splitlines() == ["at exit: objects frozen True"]
    failed = run([sys.executable, "-c", EXIT_PROBE, "fail"], tmp_path, check=False)
    assert_one_line_error(failed, "data/x.csv", prefix="probe")
    assert failed.stdout.splitlines() == ["at exit: objects frozen True"]
