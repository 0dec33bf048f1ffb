"""The rows a production gate may score: the held-out split `dvc.lock` pins, proven by hashing
the very bytes that are scored, and held out from both versions (each version's own recorded
split is that one). Whatever else sits at the path, or a version trained beside another split
(another seed, test size or data), is refused: its training rows may be among the gate's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from predictflow.base.errors import UserError
from predictflow.core import paths
from predictflow.lineage import evidence

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


class HeldOutRefused(UserError):
    """The gate's rows are not proven, or a version was not held out from them; nothing changed."""


@dataclass(frozen=True)
class ProvenSplit:
    """The evaluation split as `dvc.lock` pins it, read from bytes whose md5 was checked."""

    path: str  # as dvc.lock names it
    md5: str
    params: dict[str, object]  # the `prepare` params the lock hashed (base.seed, test_size)
    parts: tuple[bytes, ...]  # the file's bytes, or each parquet part's in name order

    def rows(self) -> pd.DataFrame:
        """The split's rows, parsed from the very bytes whose md5 was checked."""
        import io

        import pandas as pd

        frames = [pd.read_parquet(io.BytesIO(part)) for part in self.parts]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def proven_split(workspace: Path, split: str = paths.PREPARED_TEST.as_posix()) -> ProvenSplit:
    """The held-out split whose md5 the workspace's `dvc.lock` records, verified by hashing the
    very bytes the gate then scores. Whatever else sits at that path (a split another seed made,
    left by `git checkout` without `dvc checkout`) is refused."""
    stages = evidence.load_lock(workspace)
    locked = evidence.locked_out_md5(stages, split)
    if locked is None:
        raise HeldOutRefused(
            f"dvc.lock records no {split}, so the gate has no proven held-out rows: run "
            "`dvc repro` first"
        )
    try:
        parts, actual = _read_hashed(workspace / split)
    except OSError as err:
        raise HeldOutRefused(
            f"{split}: cannot read it ({err.strerror}); run `dvc checkout {split}` first"
        ) from None
    if actual != locked:
        raise HeldOutRefused(
            f"{split} has md5 {actual} but dvc.lock records {locked}: these are not the "
            f"held-out rows the lock pins; run `dvc checkout {split}` (or `dvc repro`) and "
            "promote again"
        )
    owner = next((s for s in stages.values() if split in s.outs), None)
    return ProvenSplit(split, locked, dict(owner.params) if owner else {}, parts)


def _read_hashed(path: Path) -> tuple[tuple[bytes, ...], str]:
    """A file's bytes and md5; or a folder's files (the dask engine's parquet parts) in name
    order and DVC's `.dir` md5 of exactly those bytes (its own `Tree`, as `dvc.lock` computes
    it), so what is scored is what was hashed, whatever changes on disk meanwhile."""
    import hashlib

    if not path.is_dir():
        data = path.read_bytes()
        return (data,), hashlib.md5(data).hexdigest()
    files = sorted(p for p in path.rglob("*") if p.is_file())
    parts = [file.read_bytes() for file in files]
    entries = [
        (file.relative_to(path).parts, len(data), hashlib.md5(data).hexdigest())
        for file, data in zip(files, parts, strict=True)
    ]
    return tuple(parts), evidence.dir_md5(entries)


def _describe_split(md5: str, params: dict[str, object]) -> str:
    settings = ", ".join(f"{k} {v}" for k, v in sorted(params.items()))
    return f"{md5[:12]}" + (f" ({settings})" if settings else "")


def split_gate(client: MlflowClient, version: ModelVersion, split: ProvenSplit) -> None:
    """Refuse a version whose own recorded held-out split is not `split`: trained from another
    split (another seed, test size or data), its training rows may be among the gate's rows,
    and its score on them proves nothing. Read from the `dvc.lock` logged with its run."""
    from predictflow.lineage import provenance

    number = str(version.version)
    recorded = provenance.recorded_stages(client, version.run_id)
    owner = next((s for s in recorded.values() if split.path in s["outs"]), None)
    if owner is None:
        raise HeldOutRefused(
            f"version {number} records no held-out split (its run {version.run_id} has no "
            f"{provenance.RECORDED_LOCK} naming {split.path}), so it cannot be judged on proven "
            "rows; register it again with `dvc repro`"
        )
    theirs = owner["outs"][split.path]
    if theirs != split.md5:
        raise HeldOutRefused(
            f"version {number} was trained beside held-out split "
            f"{_describe_split(theirs, owner['params'])}, not the one dvc.lock pins "
            f"({_describe_split(split.md5, split.params)}): its training rows may be among "
            "the gate's rows, so the comparison proves nothing; retrain it on this split, or "
            "promote from the commit whose dvc.lock pins its split"
        )
