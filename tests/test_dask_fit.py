"""Scale-out on paper, checked once: `train`'s fit through `xgboost.dask` (docs/scaling.md).

The same featurizer and the same XGBoost params as `train`, fitted by a `DaskXGBClassifier` on a
small in-process `LocalCluster`, give the single-process fit's held-out ROC AUC within 0.005.
Partitions change XGBoost's quantile sketch a little, so the models differ in bytes, not in skill.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sklearn.metrics import roc_auc_score

from predictflow.core.cleaning import clean
from predictflow.core.data import split
from predictflow.core.estimator import build_classifier, build_featurizer, fit_classifier
from predictflow.core.params import load_params
from predictflow.core.rawfile import read_raw
from predictflow.core.schema import TARGET
from predictflow.ops.synth import write_csv

from .conftest import REPO

dd = pytest.importorskip("dask.dataframe", reason="the [scale] extra is not installed")
distributed = pytest.importorskip("distributed")
xgb_dask = pytest.importorskip("xgboost.dask")


def test_dask_fit_matches_the_single_process_auc(tmp_path: Path) -> None:
    params = load_params(REPO / "params.yaml")
    raw = tmp_path / "customers.csv"
    write_csv(raw, rows=4000, seed=7)
    frame, _ = clean(read_raw(raw), str(raw))
    train, test = split(frame, params.prepare, params.base.seed, str(raw))
    featurizer = build_featurizer(params.featurize).fit(train)
    x_train, x_test = featurizer.transform(train), featurizer.transform(test)
    y_train, y_test = train[TARGET], test[TARGET]

    single = build_classifier(params.model, params.base.seed)
    fit_classifier(single, x_train, y_train, x_test, y_test)
    single_auc = roc_auc_score(y_test, single.predict_proba(x_test)[:, 1])

    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        model = xgb_dask.DaskXGBClassifier(**single.get_params())
        model.client = client
        parts = {"npartitions": 2}
        dx_train, dy_train = dd.from_pandas(x_train, **parts), dd.from_pandas(y_train, **parts)
        dx_test, dy_test = dd.from_pandas(x_test, **parts), dd.from_pandas(y_test, **parts)
        model.fit(dx_train, dy_train, eval_set=[(dx_test, dy_test)], verbose=False)
        proba = model.predict_proba(dx_test).compute()[:, 1]
        curve = model.evals_result()["validation_0"]["logloss"]
    dask_auc = roc_auc_score(y_test, proba)

    assert len(curve) == params.model.n_estimators  # per-round curves, as autolog logs them
    assert 0.75 < single_auc < 0.95
    assert abs(dask_auc - single_auc) <= 0.005, (single_auc, dask_auc)


@pytest.mark.pipeline  # starts the worker processes a stage starts
def test_a_stages_cluster_listens_on_loopback_only_with_no_dashboard() -> None:
    """The LocalCluster a stage starts asks for no dashboard, and its scheduler's HTTP routes
    sit on a free loopback port: a second stage (or anything else) on Dask's default 8787 costs
    no warning, and nothing listens beyond this machine."""
    import socket
    import warnings

    from predictflow.core.cluster import cluster

    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            taken.bind(("0.0.0.0", 8787))  # what Dask's scheduler would take by default
            taken.listen()
        except OSError:
            pass  # already taken by something else: the same case
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "Port 8787 is already in use" would raise
            with cluster() as on:
                bound = on.client.run_on_scheduler(
                    lambda dask_scheduler: sorted(
                        {s.getsockname()[0] for s in dask_scheduler.http_server._sockets.values()}
                    )
                )
    assert on.address == "local" and on.workers == 2
    assert bound == ["127.0.0.1"]
