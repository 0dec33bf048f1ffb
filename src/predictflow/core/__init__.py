"""The pipeline core: data to data, no store. The data contract (`schema`), reading (`rawfile`) and
cleaning (`cleaning`) raw files under it, params, the split (`data`), the estimator, evaluation,
chunked scoring, atomic file writes (`io`) and the pipeline's paths. Stage scripts build on this
and on `predictflow.lineage`; nothing here talks to MLflow."""
