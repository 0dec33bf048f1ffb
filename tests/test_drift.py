"""`predictflow drift`: a batch against the exact training data of a registered version, end to end
on a real pipeline run and its real MLflow store and DVC cache."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from predictflow.lineage import evidence
from predictflow.monitoring.shift import Reservoir, psi
from predictflow.ops import synth
from tests.conftest import assert_one_line_error, dvc, predictflow

MODEL = "models:/churn-predictor@staging"  # the pipeline run moves staging; nothing is production


@pytest.fixture(scope="module")
def drift_repo(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's pipeline run: drift writes monitoring runs into its store."""
    repo = tmp_path_factory.mktemp("drift") / "repo"
    shutil.copytree(built_repo, repo, symlinks=True)
    return repo


def synth_batch(path: Path, seed: int, rows: int = 3000) -> Path:
    """Customers from the same generator as the training data, another seed: no drift."""
    synth.write_csv(path, rows=rows, seed=seed)
    return path


def drifted_batch(path: Path, seed: int = 7, rows: int = 3000) -> Path:
    """The synth generator has no shift knob: raise MonthlyCharges 40% and move four customers
    in five to month-to-month contracts."""
    frame = pd.read_csv(synth_batch(path, seed, rows), dtype=str, keep_default_na=False)
    frame["MonthlyCharges"] = (frame["MonthlyCharges"].astype(float) * 1.4).map("{:.2f}".format)
    frame.loc[frame.index % 5 != 0, "Contract"] = "Month-to-month"
    frame.to_csv(path, index=False)
    return path


def drift(repo: Path, batch: Path, *extra: str):
    return predictflow(repo, "drift", "--input", str(batch), "--model", MODEL, *extra, check=False)


def facts_of(result) -> dict:
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


@contextmanager
def moved_aside(path: Path) -> Iterator[None]:
    """Hide a file for the duration of a test, then put it back for the module's other tests."""
    hidden = path.with_name(path.name + ".hidden")
    path.rename(hidden)
    try:
        yield
    finally:
        hidden.rename(path)


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    same = psi(np.array([10.0, 20.0, 70.0]), np.array([1.0, 2.0, 7.0]))
    small = psi(np.array([50.0, 50.0]), np.array([55.0, 45.0]))
    large = psi(np.array([50.0, 50.0]), np.array([90.0, 10.0]))
    assert same == pytest.approx(0.0)
    assert 0 < small < 0.1 < large


def test_reservoir_keeps_a_bounded_seeded_sample_of_the_whole_stream() -> None:
    def sample(seed: int) -> pd.Series:
        reservoir = Reservoir(size=100, seed=seed)
        for start in range(0, 10_000, 1_000):
            reservoir.add(pd.DataFrame({"x": np.arange(start, start + 1_000)}))
        assert reservoir.rows is not None
        return reservoir.rows["x"]

    first = sample(1)
    assert len(first) == 100 and first.is_unique
    assert first.tolist() == sample(1).tolist()  # seeded
    assert first.max() > 5_000 and first.min() < 5_000  # from every part of the stream, not a head


@pytest.mark.pipeline  # runs the real stage or command as a process
@pytest.mark.parametrize("rows", ["0", "-5"])
def test_a_chunk_size_below_one_is_one_line_before_any_work(tmp_path: Path, rows: str) -> None:
    batch = tmp_path / "batch.csv"
    batch.write_text("customerID\n", encoding="utf-8")
    args = ("drift", "--input", str(batch), "--chunk-rows", rows)
    result = predictflow(tmp_path, *args, check=False)
    assert_one_line_error(result, f"--chunk-rows {rows}", "at least 1")


@pytest.mark.pipeline
def test_drifted_batch_exits_3_names_the_shifted_features_and_logs_a_monitoring_run(
    drift_repo: Path, tmp_path: Path
) -> None:
    result = drift(drift_repo, drifted_batch(tmp_path / "batch.csv"), "--json")
    facts = facts_of(result)
    assert result.returncode == 3, result.stderr
    assert facts["verdict"] == "drift"
    assert {"MonthlyCharges", "Contract"} <= set(facts["drifted"])
    assert not {"gender", "SeniorCitizen", "tenure"} & set(facts["drifted"])
    assert facts["features"]["MonthlyCharges"]["psi"] >= 0.25
    assert facts["features"]["churn_probability"]["kind"] == "score"
    assert facts["batch_rows"] == 3000

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{drift_repo / 'mlflow_data' / 'mlflow.db'}")
    run = client.get_run(facts["run_id"])
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "churn-monitoring"
    version = client.get_model_version_by_alias("churn-predictor", "staging")
    assert run.data.tags["model_version"] == str(version.version)
    assert run.data.tags["reference_data_md5"] == version.tags["data_md5"]
    assert run.data.tags["batch_md5"] == evidence.file_md5(tmp_path / "batch.csv")
    assert run.data.metrics["MonthlyCharges.psi"] == pytest.approx(
        facts["features"]["MonthlyCharges"]["psi"]
    )


@pytest.mark.pipeline
def test_batch_from_the_same_generator_exits_0_with_a_table(
    drift_repo: Path, tmp_path: Path
) -> None:
    batch = synth_batch(tmp_path / "batch.csv", seed=7)
    result = drift(drift_repo, batch)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no drift" in result.stdout
    assert "MonthlyCharges" in result.stdout and "churn_probability" in result.stdout


@pytest.mark.pipeline
def test_statistics_do_not_depend_on_the_chunk_size(drift_repo: Path, tmp_path: Path) -> None:
    """Histograms, counts and the seeded reservoir are accumulated per chunk: reading the batch
    700 rows at a time gives exactly the statistics of one read."""
    batch = drifted_batch(tmp_path / "batch.csv")
    whole = facts_of(drift(drift_repo, batch, "--json"))
    chunked = facts_of(drift(drift_repo, batch, "--json", "--chunk-rows", "700"))
    assert chunked["features"] == whole["features"]
    assert chunked["sample_rows"] == whole["sample_rows"] == 3000


@pytest.mark.pipeline
def test_reference_is_the_pinned_data_not_the_changed_workspace_file(
    drift_repo: Path, tmp_path: Path
) -> None:
    """With the workspace's file replaced by drifted customers, a batch like them still
    drifts: the reference is what the version learned from."""
    raw = drift_repo / "data" / "customers.csv"
    pinned = evidence.pinned_md5(drift_repo / "data" / "customers.csv.dvc")
    with moved_aside(raw):
        drifted_batch(raw, seed=synth.DEFAULT_SEED, rows=synth.DEFAULT_ROWS)
        result = drift(drift_repo, drifted_batch(tmp_path / "batch.csv"), "--json")
        raw.unlink()
    facts = facts_of(result)
    assert result.returncode == 3, result.stderr
    assert facts["reference_data_md5"] == pinned
    assert {"MonthlyCharges", "Contract"} <= set(facts["drifted"])


@pytest.mark.pipeline
def test_batch_missing_a_column_is_one_line(drift_repo: Path, tmp_path: Path) -> None:
    batch = synth_batch(tmp_path / "batch.csv", seed=7, rows=50)
    frame = pd.read_csv(batch, dtype=str, keep_default_na=False)
    frame.drop(columns="tenure").to_csv(batch, index=False)
    result = drift(drift_repo, batch)
    assert result.returncode == 1
    assert_one_line_error(result, str(batch), "missing required column", "tenure")


@pytest.mark.pipeline
def test_training_data_in_neither_cache_nor_remote_is_one_line(
    drift_repo: Path, tmp_path: Path
) -> None:
    pinned = evidence.pinned_md5(drift_repo / "data" / "customers.csv.dvc")
    cached = drift_repo / ".dvc" / "cache" / "files" / "md5" / pinned[:2] / pinned[2:]
    batch = synth_batch(tmp_path / "batch.csv", seed=7, rows=50)
    with moved_aside(cached):
        result = drift(drift_repo, batch)
    assert result.returncode == 1
    assert_one_line_error(result, pinned, "neither the DVC cache nor the default remote")


@pytest.mark.pipeline
def test_training_data_only_in_the_default_remote_is_read_from_there(
    drift_repo: Path, tmp_path: Path
) -> None:
    """A machine that never ran the pipeline has an empty cache: the pinned data comes from the
    remote, and the cache is left as it was. (Its own copy: the default remote is a directory
    beside the repo, and the module's copy must keep an empty one.)"""
    repo = tmp_path / "repo"
    shutil.copytree(drift_repo, repo, symlinks=True)
    pinned = evidence.pinned_md5(repo / "data" / "customers.csv.dvc")
    cached = repo / ".dvc" / "cache" / "files" / "md5" / pinned[:2] / pinned[2:]
    dvc(repo, "push", "-q", "data/customers.csv.dvc")
    cached.unlink()
    result = drift(repo, synth_batch(tmp_path / "batch.csv", seed=7, rows=500), "--json")
    assert not cached.exists()
    facts = facts_of(result)
    assert result.returncode == 0, result.stderr
    assert facts["reference_data_md5"] == pinned
    assert facts["reference_rows"] == 5634  # the train split of the 7,043 pinned rows


@pytest.mark.pipeline
def test_a_batch_too_small_to_judge_is_refused_not_called_drift(
    drift_repo: Path, tmp_path: Path
) -> None:
    """The version's own training customers read as drift when there are 50 of them: below 20
    rows per PSI bin the verdict is chance, so such a batch is refused (nothing logged); from
    the minimum on, the same customers are judged and found no different."""
    lines = (drift_repo / "data/customers.csv").read_text().splitlines(keepends=True)
    verdicts = {}
    for rows in (50, 199, 400):
        batch = tmp_path / f"own-{rows}.csv"
        batch.write_text("".join(lines[: rows + 1]))
        result = drift(drift_repo, batch, "--json")
        if rows < 200:
            assert_one_line_error(
                result, str(batch), f"{rows} scorable rows are too few", "at least 200"
            )
        else:
            verdicts[rows] = facts_of(result)["verdict"]
    assert verdicts == {400: "ok"}


@pytest.mark.pipeline
def test_a_corrupted_cache_object_is_named_or_passed_over_for_the_remote(
    drift_repo: Path, tmp_path: Path
) -> None:
    """DVC never re-checks a cache object and `dvc fetch` skips a present one, so "run dvc
    fetch" cannot help: with no good copy anywhere the corrupt file is named with what to do
    (and `doctor` finds it);
    with one in the default remote, that copy is used and the cache is left alone."""
    repo = tmp_path / "repo"
    shutil.copytree(drift_repo, repo, symlinks=True)
    pinned = evidence.pinned_md5(repo / "data" / "customers.csv.dvc")
    cached = repo / ".dvc" / "cache" / "files" / "md5" / pinned[:2] / pinned[2:]
    good = cached.read_bytes()

    def corrupt() -> None:
        cached.unlink(missing_ok=True)
        cached.write_bytes(good.replace(b"Yes", b"No", 1))  # one customer's label flipped

    corrupt()
    batch = synth_batch(tmp_path / "batch.csv", seed=7, rows=500)
    refused = drift(repo, batch)
    assert_one_line_error(
        refused, pinned, f"the DVC cache copy {cached} is corrupt", "delete it", "dvc fetch"
    )
    doctor = json.loads(predictflow(repo, "doctor", "--json", check=False).stdout)["findings"]
    (found,) = [f for f in doctor if f["check"] == "DVC cache"]
    assert found["status"] == "problem", found
    assert f"{pinned[:2]}/{pinned[2:]} (should hash to {pinned})" in found["detail"]
    cached.unlink(missing_ok=True)  # doctor's `dvc status` deletes a corrupt object it meets
    cached.write_bytes(good)  # as on the machine with a good copy, which pushes it
    dvc(repo, "push", "-q", "data/customers.csv.dvc")
    corrupt()
    result = drift(repo, batch, "--json")
    assert result.returncode == 0, result.stderr
    assert facts_of(result)["reference_data_md5"] == pinned
    assert cached.read_bytes() != good  # read only: the corrupt object is the user's to delete
