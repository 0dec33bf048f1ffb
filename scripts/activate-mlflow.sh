# predictflow: after `source .venv/bin/activate`, MLflow's own entry points (Python `models:/`
# URIs, `mlflow ui`/`server`, `mlflow models serve`) use the project's store, as the pipeline does.
# Appended to .venv/bin/activate by `make install`; `deactivate` undoes it. A URI the user set wins.
if [ -z "${MLFLOW_TRACKING_URI:-}" ]; then
    # `pwd -P`: the resolved path, the one `predictflow` compares against (tracking.default_uri).
    _PREDICTFLOW_STORE="sqlite:///$(cd "$VIRTUAL_ENV/.." && pwd -P)/mlflow_data/mlflow.db"
    export MLFLOW_TRACKING_URI="$_PREDICTFLOW_STORE"
    export MLFLOW_BACKEND_STORE_URI="$_PREDICTFLOW_STORE"  # what `mlflow ui`/`server` read
fi
