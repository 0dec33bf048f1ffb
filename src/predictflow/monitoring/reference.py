"""The exact training rows of a registered version, rebuilt from its lineage.

Its `data_md5` tag names the raw file in the DVC cache (or the default remote), never git or the
workspace file; the data contract cleans it and `data.split` (the function `prepare` runs) splits
it with the `base.seed` and `prepare.test_size` its dvc.lock recorded; only the train part is kept.
`drift` compares a batch with it and `data diff` compares two versions' data.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from predictflow.base.errors import StageError
from predictflow.core import data, partitioned
from predictflow.core.cleaning import clean
from predictflow.core.params import PrepareParams
from predictflow.core.rawfile import raw_parts, read_raw
from predictflow.lineage import evidence


@dataclass(frozen=True)
class Reference:
    """The cleaned train split a version learned from, and where it came from."""

    frame: pd.DataFrame
    data_md5: str
    seed: int
    test_size: float


@contextmanager
def pinned_data(
    workspace: Path, data_md5: str, what: str = "training data", name: str = "customers.csv"
) -> Iterator[Path]:
    """The raw data with `data_md5`: from the local DVC cache, else the default remote. A `.dir`
    md5 (a DVC-tracked folder of parts) gives a temp folder of its parts.

    Read only: what is fetched from the remote goes to a temp dir, never into the workspace.
    Every copy is hashed before it is used: a corrupted cache object (DVC never re-checks one,
    and `dvc fetch` skips it as present) is passed over for the remote's copy, and named when
    there is none. `what` names the data in the error (`predictflow data diff` reads any data
    version here). A single file is yielded under a path ending in `name`'s suffix, so a
    reader can tell a parquet file from a CSV (a cache object has no suffix).
    """
    from dvc.repo import Repo

    with Repo(str(workspace)) as repo, tempfile.TemporaryDirectory(prefix="predictflow-") as tmp:
        fetch = _Objects(repo, Path(tmp))
        if not data_md5.endswith(".dir"):
            got = fetch.verified(data_md5, what, name)
            if got.suffix.lower() != Path(name).suffix.lower():
                named = Path(tmp) / "named" / name
                named.parent.mkdir()
                named.symlink_to(got.absolute())
                got = named
            yield got
            return
        manifest = fetch.verified(data_md5, what, "manifest.dir")
        folder = Path(tmp) / "parts"
        for entry in json.loads(manifest.read_text(encoding="utf-8")):
            relpath = Path(entry["relpath"])
            if relpath.is_absolute() or ".." in relpath.parts:  # never a link outside `folder`
                raise StageError(f"{what} md5 {data_md5}: its manifest names {relpath}")
            part = folder / relpath
            part.parent.mkdir(parents=True, exist_ok=True)
            got = fetch.verified(entry["md5"], f"{what} part {entry['relpath']}", part.name)
            part.symlink_to(got.absolute())  # a cache object is read in place, never copied
        yield folder


class _Objects:
    """DVC objects by md5, each hashed before use: the cache's copy, else the default remote's
    (downloaded into `tmp`)."""

    def __init__(self, repo: Any, tmp: Path) -> None:
        self.repo, self.tmp, self._odb = repo, tmp, None

    def remote(self) -> Any:
        from dvc.config import NoRemoteError

        if self._odb is None:
            try:
                self._odb = self.repo.cloud.get_remote_odb()
            except NoRemoteError:
                self._odb = False
        return self._odb or None

    def verified(self, md5: str, what: str, name: str) -> Path:
        content = md5.removesuffix(".dir")  # a manifest hashes to its md5 without the suffix
        cached = Path(self.repo.cache.local.oid_to_path(md5))
        corrupt = None
        if cached.is_file():
            actual = evidence.file_md5(cached)
            if actual == content:
                return cached
            corrupt = (
                f"{what} md5 {md5}: the DVC cache copy {cached} is corrupt (its content "
                f"hashes to {actual}) and the default remote has no copy: delete it, then "
                "`dvc fetch` gets a good copy once one is pushed (`dvc fetch` skips a present "
                "object, corrupt or not)"
            )
        odb = self.remote()
        remote_path = odb.oid_to_path(md5) if odb is not None else None
        if odb is None or not odb.fs.exists(remote_path):
            raise StageError(
                corrupt
                or f"{what} md5 {md5} is in neither the DVC cache nor the default "
                "remote; run `dvc push` on the machine that added it or trained on it"
            )
        local = self.tmp / "remote" / md5 / name
        local.parent.mkdir(parents=True)
        odb.fs.get_file(remote_path, str(local))
        if evidence.file_md5(local) != content:
            raise StageError(
                f"{what} md5 {md5}: the default remote's copy is corrupt too"
                if corrupt
                else f"{what} md5 {md5}: the default remote's copy is corrupt; "
                "`dvc push` a good copy from the machine that added it"
            )
        return local


def load_reference(
    workspace: Path, data_md5: str, split_params: dict[str, Any], data_path: str | None = None
) -> Reference:
    """Clean and split the pinned data exactly as `prepare` did for this version: the local
    engine's stratified split, or under `scale.engine: dask` the seeded hash of the customer id
    over every part (`hash_split_train_rows`).

    `split_params` are the `prepare` stage's params from the dvc.lock logged at registration;
    `data_path` (the version's `data_path` tag) tells a parquet raw file from a CSV.
    """
    try:
        seed, test_size = int(split_params["base.seed"]), float(split_params["prepare.test_size"])
    except KeyError as err:
        raise StageError(
            f"the dvc.lock logged with this version records no {err.args[0]} for `prepare`; "
            "cannot rebuild its split"
        ) from None
    engine = (split_params.get("scale") or {}).get("engine", "local")
    source = f"training data md5 {data_md5}"
    name = Path(data_path).name if data_path else "customers.csv"
    with pinned_data(workspace, data_md5, name=name) as path:
        if engine == "dask":
            train = hash_split_train_rows(path, test_size, seed, source)
            return Reference(train, data_md5, seed, test_size)
        frame = pd.concat(  # the parts in name order, as `prepare` concatenated them
            [
                clean(read_raw(part), _shown(source, path, part), whole_file=part == path)[0]
                for part in raw_parts(path)
            ],
            ignore_index=True,
        )
    train, _ = data.split(frame, PrepareParams(test_size=test_size), seed, source)
    return Reference(train, data_md5, seed, test_size)


def hash_split_train_rows(raw: Path, test_size: float, seed: int, source: str) -> pd.DataFrame:
    """The train split `prepare` wrote on the cluster (`partitioned.prepare`), rebuilt in one
    process from the raw file or folder: every part cleaned under the same contract, then the
    held-out customers dropped by the same seeded hash. Messages name a part under `source`."""
    kept = []
    for part in raw_parts(raw):
        shown = source if part == raw else f"{source} part {part.relative_to(raw).as_posix()}"
        frame, _ = partitioned.clean_part(str(part), shown, test_size, seed)
        kept.append(frame[~frame[partitioned.HELD_OUT]].drop(columns=[partitioned.HELD_OUT]))
    return pd.concat(kept, ignore_index=True)


def _shown(source: str, raw: Path, part: Path) -> str:
    return source if part == raw else f"{source} part {part.relative_to(raw).as_posix()}"
