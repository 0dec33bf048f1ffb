"""`make ui`'s server: MLflow's own app, with the browser defaults a model-training project wants.

MLflow 3.17's UI picks an experiment's view from the `workflowType` URL parameter, else from the
browser's last choice in localStorage, else GenAI; the `mlflow.experimentKind` tag is not read
(its flag is compiled in). On 127.0.0.1 it also opens the MLflow Assistant panel on a profile's
first visit. No server option or environment variable changes either, so this app (started with
`mlflow ui --app-name predictflow-ui`, registered under MLflow's `mlflow.app` entry point) serves
the UI's page with a few lines that set those two localStorage defaults when the browser has none.
A choice the user makes in the UI (the GenAI toggle, opening the assistant) is kept from then on.
See docs/ui.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

# localStorage keys as the UI's storage hook writes them (`<key>_v<version>`, JSON values)
BROWSER_DEFAULTS = {
    "mlflow.workflowType_v1": "machine_learning",  # the "Model training" view, not GenAI
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True,  # do not pop the assistant open
}


def defaults_script(defaults: dict[str, object] = BROWSER_DEFAULTS) -> str:
    """An inline script that sets each key the browser does not hold yet (never overwrites)."""
    values = json.dumps({key: json.dumps(value) for key, value in defaults.items()})
    return (
        "<script>try{var d=" + values + ",s=window.localStorage;"
        "for(var k in d){if(s.getItem(k)===null){s.setItem(k,d[k])}}}catch(e){}</script>"
    )


def landing_page(index: Path) -> str:
    """MLflow's index.html with the defaults script first in <head>, before the app's bundle."""
    page = index.read_text(encoding="utf-8")
    if "<head>" not in page:
        raise RuntimeError(f"{index}: no <head> to put the UI defaults in (MLflow's page changed)")
    return page.replace("<head>", "<head>" + defaults_script(), 1)


def create_app() -> FastAPI:
    """MLflow's FastAPI app (security middleware, API, static files) with its page route first."""
    from fastapi.responses import HTMLResponse
    from mlflow.server import app as flask_app
    from mlflow.server.fastapi_app import app
    from mlflow.server.handlers import STATIC_PREFIX_ENV_VAR

    page = landing_page(Path(flask_app.static_folder) / "index.html")
    prefix = os.environ.get(STATIC_PREFIX_ENV_VAR, "").rstrip("/")

    def index() -> HTMLResponse:
        return HTMLResponse(page)

    app.add_api_route(f"{prefix}/", index, methods=["GET"], include_in_schema=False)
    # before the catch-all mount of MLflow's Flask app, which would otherwise serve the page
    app.router.routes.insert(0, app.router.routes.pop())
    return app
