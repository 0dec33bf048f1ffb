"""Costs we keep low on purpose: autolog's per-round curves reach the store in one write, and
the sweep's queue workers wait for each other's OpenMP threads without spinning.

A real SQLite store and a real XGBoost fit under MLflow's autolog; the only thing added is a
counter around `MlflowClient.log_batch`, which still writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from xgboost import XGBClassifier

from predictflow.lineage import training
from predictflow.ops import tune

pytestmark = pytest.mark.unit

ROUNDS = 60


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One fresh SQLite store for the module (creating its tables takes seconds)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)  # conftest's mlflow_uris_restored puts the default back
    mlflow.set_experiment("cost")
    training.enable_autolog("xgboost")
    yield uri
    mlflow.xgboost.autolog(disable=True)


def _fit_counting(
    monkeypatch: pytest.MonkeyPatch, around: AbstractContextManager[None]
) -> tuple[str, list[int]]:
    """Fit ROUNDS rounds with two eval sets; return the run id and the size of each log_batch."""
    writes: list[int] = []
    log_batch = MlflowClient.log_batch

    def counted(self: MlflowClient, run_id: str, metrics=(), *args, **kwargs):  # type: ignore[no-untyped-def]
        writes.append(len(metrics))
        return log_batch(self, run_id, metrics, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", counted)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] + rng.normal(size=300) > 0).astype(int)
    model = XGBClassifier(n_estimators=ROUNDS, max_depth=2, n_jobs=1)
    with mlflow.start_run() as run, around:
        model.fit(x, y, eval_set=[(x[:200], y[:200]), (x[200:], y[200:])], verbose=False)
    return run.info.run_id, [n for n in writes if n]


def test_autolog_writes_every_round_in_one_batch(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, writes = _fit_counting(monkeypatch, training.lean_autolog())
    assert writes == [2 * ROUNDS]  # both curves, every round, one write
    client = MlflowClient(store)
    for key in ("validation_0-logloss", "validation_1-logloss"):
        history = client.get_metric_history(run_id, key)
        assert sorted(m.step for m in history) == list(range(ROUNDS))
    assert "max_depth" not in client.get_run(run_id).data.params  # autolog's params stay out


def test_plain_autolog_writes_more_than_once(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: without `lean_autolog` the first round is written on its own (so the test
    above measures the change, not a quiet fit)."""
    _, writes = _fit_counting(monkeypatch, nullcontext())
    assert len(writes) >= 2
    assert sum(writes) == 2 * ROUNDS


def test_sweep_workers_wait_passively_unless_the_user_chose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    env = tune.worker_env("run1", "grid")
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert (env[tune.SWEEP_RUN_ENV], env[tune.SWEEP_NAME_ENV]) == ("run1", "grid")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert tune.worker_env("run1", "grid")["OMP_WAIT_POLICY"] == "ACTIVE"


def test_yaml_is_parsed_by_ruamels_c_parser_with_the_same_values() -> None:
    """DVC reads dvc.yaml, dvc.lock and params.yaml with `YAML(typ="safe")` (as
    `dvc_yaml.read_yaml` does) dozens of times per `dvc exp run`: 60 parses, over a third of DVC's
    own time in pure Python. ruamel.yaml 0.19 no longer installs its C parser itself, so the
    project does; a re-lock that drops it fails here. The values stay DVC's YAML 1.2 ones."""
    from ruamel.yaml import YAML
    from ruamel.yaml.main import CParser

    from predictflow.base.dvc_yaml import read_yaml

    assert CParser is not None
    assert YAML(typ="safe").Parser is CParser
    text = "a: 010\nb: 5e-2\nc: yes\nd: 1:30\ne: [1, 2.5, ~]\n"
    assert read_yaml(text) == YAML(typ="safe", pure=True).load(text)
    assert read_yaml(text) == {"a": 10, "b": 0.05, "c": "yes", "d": "1:30", "e": [1, 2.5, None]}
