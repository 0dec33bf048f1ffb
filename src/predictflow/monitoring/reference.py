"""The exact training rows of a registered version, rebuilt from its lineage.

Its `data_md5` tag names the raw file in the DVC cache (or the default remote), never git or the
workspace file; the data contract cleans it and `data.split` (the function `prepare` runs) splits
it with the `base.seed` and `prepare.test_size` its dvc.lock recorded; only the train part is kept.
`drift` compares a batch with it and `data diff` compares two versions' data.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from predictflow.base.errors import StageError
from predictflow.core import data
from predictflow.core.cleaning import clean
from predictflow.core.params import PrepareParams
from predictflow.core.rawfile import read_raw
from predictflow.lineage import evidence

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class Reference:
    """The cleaned train split a version learned from, and where it came from."""

    frame: pd.DataFrame
    data_md5: str
    seed: int
    test_size: float


@contextmanager
def pinned_data(workspace: Path, data_md5: str, what: str = "training data") -> Iterator[Path]:
    """The raw file with `data_md5`: from the local DVC cache, else the default remote.

    Read only: a file fetched from the remote goes to a temp dir, never into the workspace.
    Every copy is hashed before it is used: a corrupted cache object (DVC never re-checks one,
    and `dvc fetch` skips it as present) is passed over for the remote's copy, and named when
    there is none. `what` names the file in the error (`predictflow data diff` reads any data
    version here).
    """
    from dvc.config import NoRemoteError
    from dvc.repo import Repo

    with Repo(str(workspace)) as repo:
        cached = Path(repo.cache.local.oid_to_path(data_md5))
        corrupt = None
        if cached.is_file():
            actual = evidence.file_md5(cached)
            if actual == data_md5:
                yield cached
                return
            corrupt = (
                f"{what} md5 {data_md5}: the DVC cache copy {cached} is corrupt (its content "
                f"hashes to {actual}) and the default remote has no copy: delete it, then "
                "`dvc fetch` gets a good copy once one is pushed (`dvc fetch` skips a present "
                "object, corrupt or not)"
            )
        try:
            odb = repo.cloud.get_remote_odb()
        except NoRemoteError:
            odb = None
        remote_path = odb.oid_to_path(data_md5) if odb is not None else None
        if odb is None or not odb.fs.exists(remote_path):
            raise StageError(
                corrupt
                or f"{what} md5 {data_md5} is in neither the DVC cache nor the default "
                "remote; run `dvc push` on the machine that added it or trained on it"
            )
        with tempfile.TemporaryDirectory(prefix="predictflow-drift-") as tmp:
            local = Path(tmp) / "customers.csv"
            odb.fs.get_file(remote_path, str(local))
            if evidence.file_md5(local) != data_md5:
                raise StageError(
                    f"{what} md5 {data_md5}: the default remote's copy is corrupt too"
                    if corrupt
                    else f"{what} md5 {data_md5}: the default remote's copy is corrupt; "
                    "`dvc push` a good copy from the machine that added it"
                )
            yield local


def load_reference(workspace: Path, data_md5: str, split_params: dict[str, Any]) -> Reference:
    """Clean and split the pinned data exactly as `prepare` did for this version.

    `split_params` are the `prepare` stage's params from the dvc.lock logged at registration.
    """
    try:
        seed, test_size = int(split_params["base.seed"]), float(split_params["prepare.test_size"])
    except KeyError as err:
        raise StageError(
            f"the dvc.lock logged with this version records no {err.args[0]} for `prepare`; "
            "cannot rebuild its split"
        ) from None
    source = f"training data md5 {data_md5}"
    with pinned_data(workspace, data_md5) as path:
        frame, _ = clean(read_raw(path), source)
    train, _ = data.split(frame, PrepareParams(test_size=test_size), seed, source)
    return Reference(train, data_md5, seed, test_size)
