"""Lineage and the registry: what ran on which data, registered, promoted and allowed.

`evidence` reads the facts (git, `dvc.lock`, `.dvc` pins, content hashes); `tracking` and
`training` record them in MLflow; `registry`, `registry_read`, `promotion`, `heldout`, `releases`
and `access` register, read, gate and guard versions (`registry_read` through one `reader`
interface over `store_sql`, `store_rest` and `store_client`); `stage` and `exp_claim` are the
shell every stage script runs in."""
