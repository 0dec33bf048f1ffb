"""`mlflow models serve` of `churn-predictor@production`: the REST endpoint a deployment would run.

The served model must score clean raw-layout rows exactly like the pickled pipeline DVC hashes,
ignore extra columns such as `customerID`, and reject a row missing a feature with a 4xx that
names the column. Loopback only; the server is always killed with its process group.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from predictflow.schema import FEATURES

from .conftest import BIN, child_env, free_port, stop_process_group

pytestmark = pytest.mark.slow

MODEL = "churn-predictor"
ALIAS = "production"
HOST = "127.0.0.1"
START_TIMEOUT = 120.0


def request(url: str, body: Any = None, timeout: float = 30.0) -> tuple[int, str]:
    """GET (no body) or POST JSON; the status and text of any HTTP answer, errors included."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@contextmanager
def production_alias(uri: str, version: str) -> Iterator[None]:
    """Give `version` the production alias for the test only: the session repo is shared."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.set_registered_model_alias(MODEL, ALIAS, version)
    try:
        yield
    finally:
        client.delete_registered_model_alias(MODEL, ALIAS)


@contextmanager
def served(repo: Path, uri: str, log: Path) -> Iterator[str]:
    """`mlflow models serve` on a free loopback port; yields its base URL once /ping answers."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                f"models:/{MODEL}@{ALIAS}",
                "--env-manager",
                "local",
                "-h",
                HOST,
                "-p",
                str(port),
            ],
            cwd=repo,
            env=child_env(MLFLOW_TRACKING_URI=uri),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: mlflow -> bash -> uvicorn
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if proc.poll() is not None:
                    pytest.fail(
                        f"mlflow models serve exited {proc.returncode} before answering /ping:\n"
                        + log.read_text(errors="replace")[-6000:]
                    )
                try:
                    if request(f"{base}/ping", timeout=2)[0] == 200:
                        break
                except OSError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"mlflow models serve did not answer /ping within {START_TIMEOUT:.0f} s:\n"
                        + log.read_text(errors="replace")[-6000:]
                    )
                time.sleep(0.25)
            yield base
        finally:
            stop_process_group(proc)


def plain(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts of plain Python values (no numpy scalars)."""
    return [
        {column: value.item() if hasattr(value, "item") else value for column, value in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def predictions(text: str) -> list[list[float]]:
    body = json.loads(text)
    assert set(body) == {"predictions"}, body
    return body["predictions"]


def test_production_alias_is_served_over_rest_like_the_dvc_model(
    pipeline_repo: Path, tmp_path: Path
) -> None:
    uri = f"sqlite:///{pipeline_repo / 'mlflow_data' / 'mlflow.db'}"
    prepared = pd.read_parquet(pipeline_repo / "data" / "prepared" / "test.parquet").head(5)
    rows = prepared[list(FEATURES)]
    with open(pipeline_repo / "models" / "model.pkl", "rb") as handle:
        expected = pickle.load(handle).predict_proba(rows)

    with production_alias(uri, "1"), served(pipeline_repo, uri, tmp_path / "server.log") as base:
        status, text = request(f"{base}/invocations", {"dataframe_records": plain(rows)})
        assert status == 200, text
        scores = predictions(text)
        assert len(scores) == 5
        for pair in scores:
            assert len(pair) == 2
            assert math.isclose(sum(pair), 1.0, abs_tol=1e-6)
            assert all(0.0 <= p <= 1.0 for p in pair)
        assert np.abs(np.array(scores) - expected).max() < 1e-6

        # an extra column (the raw layout's id) is ignored, not an error
        with_id = prepared[["customerID", *FEATURES]]
        status, text = request(f"{base}/invocations", {"dataframe_records": plain(with_id)})
        assert status == 200, text
        assert np.abs(np.array(predictions(text)) - expected).max() < 1e-6

        # a row without a required feature is the caller's mistake, named in the answer
        status, text = request(
            f"{base}/invocations", {"dataframe_records": plain(rows.drop(columns=["tenure"]))}
        )
        assert 400 <= status < 500, (status, text)
        # the message also lists the whole schema (which names every column): look for the verdict
        message = json.loads(text)["message"]
        assert re.search(r"missing inputs \[[^\]]*'tenure'", message), message
