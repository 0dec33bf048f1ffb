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


@pytest.mark.parametrize("share", [0.12, 0.3])
def test_rare_categories_are_grouped_on_dask_as_in_one_process(
    tmp_path: Path, share: float
) -> None:
    """`featurize.min_category_share` > 0 under dask: the encoder is fitted on a skeleton whose
    categories are rare exactly where the split's counts (a Dask reduction) make them rare, so
    it is the encoder a one-process fit on the whole split gives."""
    import numpy as np

    from predictflow.core import on_dask
    from predictflow.core.partitioned import write_parts
    from predictflow.core.schema import NUMERIC_FEATURES

    params = load_params(REPO / "params.yaml")
    params = params.model_copy(
        update={"featurize": params.featurize.model_copy(update={"min_category_share": share})}
    )
    raw = tmp_path / "customers.csv"
    write_csv(raw, rows=3000, seed=5)
    train, _ = clean(read_raw(raw), str(raw))
    local = build_featurizer(params.featurize).fit(train)
    rare = [r for r in local.named_transformers_["cat"].infrequent_categories_ if r is not None]
    assert rare, "the share must make some category rare, or this checks nothing"

    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        parts = tmp_path / "train.parquet"
        write_parts(dd.from_pandas(train, npartitions=3), parts)
        on_cluster = on_dask.fit_featurizer(client, parts, params.featurize)

    ours, theirs = on_cluster.named_transformers_["cat"], local.named_transformers_["cat"]
    for mine, wanted in zip(ours.categories_, theirs.categories_, strict=True):
        assert mine.tolist() == wanted.tolist()
    for mine, wanted in zip(
        ours.infrequent_categories_, theirs.infrequent_categories_, strict=True
    ):
        assert (mine is None and wanted is None) or mine.tolist() == wanted.tolist()
    a, b = on_cluster.transform(train), local.transform(train)
    assert list(a.columns) == list(b.columns)
    categorical = [c for c in a.columns if c.startswith("cat__")]
    assert (a[categorical].to_numpy() == b[categorical].to_numpy()).all()
    numeric = [f"num__{c}" for c in NUMERIC_FEATURES]
    assert np.allclose(a[numeric].to_numpy(), b[numeric].to_numpy())
    assert len(categorical) + len(numeric) == a.shape[1]


@pytest.mark.parametrize(
    ("counts", "rows", "share"),
    [
        ({"a": {"x": 95, "y": 5}}, 100, 0.1),  # one common, one rare
        ({"a": {k: 10 for k in "abcdefghij"}}, 100, 0.2),  # every category rare
        ({"a": {"x": 50, "y": 50}, "b": {"p": 97, "q": 2, "r": 1}}, 100, 0.05),
        ({"a": {"x": 30, "y": 30, "z": 40}}, 100, 0.3),  # exactly at the share: common
    ],
)
def test_a_skeleton_keeps_every_categorys_verdict(counts: dict, rows: int, share: float) -> None:
    """The skeleton `fitted_on_counts` builds: as many rows as `rare_skeleton_rows` says, and a
    category is rare there (scikit-learn's `count < share * rows`) exactly when it is in the
    split; the encoder it fits is checked against the same verdicts."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    from predictflow.core.estimator import fitted_on_counts, rare_skeleton_rows

    def encoder() -> OneHotEncoder:
        return OneHotEncoder(min_frequency=share, handle_unknown="infrequent_if_exist")

    assert rare_skeleton_rows(counts, rows, share) is not None
    head = pd.DataFrame({column: [next(iter(found))] for column, found in counts.items()})
    featurizer = ColumnTransformer([("cat", encoder(), list(counts))])
    skeleton_fit = fitted_on_counts(featurizer, head, counts, rows, share).named_transformers_[
        "cat"
    ]
    for at, (column, found) in enumerate(counts.items()):
        expanded = pd.DataFrame({column: [k for k, n in found.items() for _ in range(n)]})
        full = encoder().fit(expanded)  # the whole split, in one process
        wanted, got = full.infrequent_categories_[0], skeleton_fit.infrequent_categories_[at]
        assert (wanted is None and got is None) or wanted.tolist() == got.tolist()
        assert full.categories_[0].tolist() == skeleton_fit.categories_[at].tolist()
