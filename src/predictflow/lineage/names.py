"""The names of what the store holds: the experiments, the registered model and its ledger.

Plain constants (no imports), so the registry's guards and the release ledger name what they
protect without reaching the tracking code.
"""

EXPERIMENT = "churn-prediction"
# MLflow's UI opens an experiment by this tag; without it a new one opens on the GenAI overview.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
MODEL_NAME = "churn-predictor"
# Where `predictflow drift` logs its runs and the report reads them back.
MONITORING_EXPERIMENT = "churn-monitoring"
# The registered model whose tags are the release ledger: only a releaser may write it.
LEDGER = f"{MODEL_NAME}-releases"
