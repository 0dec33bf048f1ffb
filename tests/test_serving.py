"""The registered model through every door: `mlflow.pyfunc`, `mlflow models serve`, `predict`.

The served model must score raw-layout rows as a CSV reader gives them (blank `TotalCharges` at
tenure 0, numbers as text, stray spaces) exactly like `evaluate` scored the same customers,
ignore extra columns such as `customerID`, and reject a row missing a feature with a message
that names the column. Loopback only; the server is always killed with its process group.
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

from predictflow.core.schema import FEATURES

from .conftest import (
    BIN,
    assert_one_line_error,
    child_env,
    free_port,
    predictflow,
    stop_process_group,
)

pytestmark = pytest.mark.pipeline

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


def raw_rows_of_test_customers(repo: Path, path: Path) -> pd.Series:
    """Write rows of held-out customers exactly as the raw file has them (blank `TotalCharges`
    at tenure 0 included) with stray spaces added; return `evaluate`'s score for each, in order.
    """
    scored = pd.read_parquet(repo / "data" / "predictions" / "test.parquet")
    raw = pd.read_csv(repo / "data" / "customers.csv", dtype=str, keep_default_na=False)
    held_out = raw[raw["customerID"].isin(scored["customerID"])]
    new = held_out[held_out["tenure"] == "0"].head(3)
    assert len(new) and (new["TotalCharges"] == "").all(), "the data has no tenure-0 customer"
    rows = pd.concat([new, held_out[held_out["tenure"] != "0"].head(7)])
    rows["gender"] = " " + rows["gender"] + " "
    rows["tenure"] = rows["tenure"] + " "
    rows.loc[rows["tenure"] == "0 ", "TotalCharges"] = " "  # the public IBM file's blank
    rows.to_csv(path, index=False)
    return scored.set_index("customerID").loc[rows["customerID"], "churn_probability"]


def test_every_door_scores_raw_rows_like_evaluate(pipeline_repo: Path, tmp_path: Path) -> None:
    import mlflow

    uri = f"sqlite:///{pipeline_repo / 'mlflow_data' / 'mlflow.db'}"
    rows = tmp_path / "new_customers.csv"
    expected = raw_rows_of_test_customers(pipeline_repo, rows).to_numpy()
    as_read = pd.read_csv(rows)  # the blank makes pandas read TotalCharges (and tenure) as text
    assert not pd.api.types.is_numeric_dtype(as_read["TotalCharges"])
    as_text = pd.read_csv(rows, dtype=str)
    model_uri = f"models:/{MODEL}@{ALIAS}"

    with production_alias(uri, "1"):
        mlflow.set_tracking_uri(uri)
        model = mlflow.pyfunc.load_model(model_uri)
        for frame in (as_read, as_text):
            np.testing.assert_array_equal(model.predict(frame)[:, 1], expected)
        with pytest.raises(mlflow.exceptions.MlflowException, match=r"missing inputs.*'tenure'"):
            model.predict(as_read.drop(columns=["tenure"]))

        out = tmp_path / "scores.csv"
        predictflow(pipeline_repo, "predict", "--model", model_uri, "--input", str(rows),
                    "--output", str(out))  # fmt: skip
        np.testing.assert_array_equal(pd.read_csv(out)["churn_probability"], expected)
        as_read.drop(columns=["tenure"]).to_csv(tmp_path / "no_tenure.csv", index=False)
        missing = predictflow(pipeline_repo, "predict", "--model", model_uri,
                              "--input", str(tmp_path / "no_tenure.csv"),
                              "--output", str(tmp_path / "none.csv"), check=False)  # fmt: skip
        assert_one_line_error(missing, "missing required column", "tenure")

        with served(pipeline_repo, uri, tmp_path / "server.log") as base:
            # what a client sends: pandas' own JSON of the file as read (blank -> null) or as text
            bodies = {
                "dataframe_split": json.loads(as_read.to_json(orient="split", index=False)),
                "dataframe_records": json.loads(as_text.to_json(orient="records")),
            }
            for key, body in bodies.items():
                status, text = request(f"{base}/invocations", {key: body})
                assert status == 200, (key, text)
                np.testing.assert_array_equal(np.array(predictions(text))[:, 1], expected)
            no_tenure = json.loads(as_text.drop(columns=["tenure"]).to_json(orient="records"))
            status, text = request(f"{base}/invocations", {"dataframe_records": no_tenure})
            assert 400 <= status < 500, (status, text)
            assert re.search(r"missing inputs \[[^\]]*'tenure'", json.loads(text)["message"])
