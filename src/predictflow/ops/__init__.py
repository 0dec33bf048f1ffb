"""Operations a person runs around the pipeline: `doctor`, `migrate`, `reproduce`, `tune` (with
`dvc_queue`), `report`, the raw data's restore and synthesis (`rawdata`, `synth`) and the remote
check. Each is one `predictflow` command; none imports another."""
