"""`make ui`'s app: the page MLflow serves, with the browser defaults set before its bundle runs.

The browser behaviour itself (landing on training runs, no assistant panel) is in
tests/test_mlflow_ui.py; these check the page text in process."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from mlflow.server import app as flask_app

from predictflow import ui_app

INDEX = Path(flask_app.static_folder) / "index.html"


def test_the_defaults_run_before_mlflows_bundle() -> None:
    page = ui_app.landing_page(INDEX)
    script = ui_app.defaults_script()
    assert page.count(script) == 1
    assert page.index(script) < page.index('<script defer="defer" src="static-files/static/js/')
    assert page.replace(script, "", 1) == INDEX.read_text(encoding="utf-8")


def test_each_default_is_stored_as_the_uis_hook_reads_it() -> None:
    """`<key>_v<version>` holding JSON, set only where the browser holds nothing yet."""
    script = ui_app.defaults_script()
    (stored,) = re.findall(r"var d=(\{.*?\}),s=", script)
    values = {key: json.loads(value) for key, value in json.loads(stored).items()}
    assert values == {
        "mlflow.workflowType_v1": "machine_learning",
        "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True,
    }
    assert "if(s.getItem(k)===null)" in script


def test_a_page_without_head_is_refused(tmp_path: Path) -> None:
    index = tmp_path / "index.html"
    index.write_text("<html><body></body></html>", encoding="utf-8")
    with pytest.raises(RuntimeError, match="no <head>"):
        ui_app.landing_page(index)
