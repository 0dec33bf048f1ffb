"""The raw data file: restore it to its `.dvc` pin, or write a synthetic set beside it.

Only a missing file is restored. A file that differs from the pin may be the user's own work
(edited, or their real data not yet `dvc add`ed), so it is never replaced.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from predictflow.base.errors import StageError
from predictflow.core import io, paths
from predictflow.lineage import evidence
from predictflow.ops import synth

log = logging.getLogger(__name__)

RAW_DATA = paths.RAW_DATA  # the path dvc.yaml's prepare stage reads


def ensure(root: Path, data: Path) -> str:
    """Make `data` match its `.dvc` pin: keep it, `dvc pull` it or regenerate it; return how."""
    dvc_file = data.with_name(data.name + ".dvc")
    pinned = evidence.pinned_md5(root / dvc_file)
    path = root / data
    if os.path.lexists(path):
        _check_pinned(path, data, dvc_file, pinned)
        return "present"
    pull = subprocess.run(
        [sys.executable, "-m", "dvc", "pull", "-q", str(dvc_file)],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if os.path.lexists(path):  # whatever pull left, it is checked, never replaced
        _check_pinned(path, data, dvc_file, pinned)
        return "pulled"
    log.debug("dvc pull exited %d: %s", pull.returncode, pull.stderr.strip())
    log.info("default DVC remote does not have md5 %s; bootstrapping from the generator", pinned)
    with io.atomic_path(path) as temp:  # renamed into place only if its md5 is the pin
        synth.write_csv(temp)
        actual = evidence.file_md5(temp)
        if actual != pinned:
            raise StageError(
                f"{data}: regenerated md5 {actual} does not match the pin {pinned} in "
                f"{dvc_file}, and the default DVC remote does not have it; nothing was written: "
                "run `dvc pull` with access to the remote that holds it"
            )
    return "generated"


def _check_pinned(path: Path, data: Path, dvc_file: Path, pinned: str) -> None:
    """Refuse, with what differs and what to do, a raw file whose bytes are not the pin."""
    if not path.exists():
        raise StageError(
            f"{data}: a symlink to {os.readlink(path)}, which does not exist; remove the link, "
            "then run `predictflow data ensure` again"
        )
    if not path.is_file():
        raise StageError(
            f"{data}: not a regular file, but {dvc_file} pins a file (md5 {pinned}); move it "
            "away, then run `predictflow data ensure` again"
        )
    try:
        actual = evidence.file_md5(path)
    except OSError as err:
        raise StageError(f"{data}: cannot read it ({err.strerror})") from None
    if actual != pinned:
        raise StageError(
            f"{data}: md5 {actual} differs from md5 {pinned} pinned in {dvc_file}; "
            f"nothing was changed: `dvc add {data}` adopts your file, "
            f"`dvc checkout --force {data}` drops it for the pinned version"
        )


def write_synthetic(out: Path, rows: int, seed: int, force: bool = False) -> dict[str, object]:
    """Write `rows` synthetic customers to `out`, refusing to replace any existing file (a
    DVC-tracked one named as such) unless `force`; return the facts (path, rows, seed, md5).

    Synthetic rows carry no mark of their own (the file must stay in the raw layout, byte for
    byte), so an existing file cannot be told from a user's: only --force replaces one.
    """
    io.check_output(out)
    if not force:
        io.check_untracked(
            {out: "synthetic rows"}, "write them elsewhere, or pass --force to replace it"
        )
        if out.exists() or out.is_symlink():
            raise StageError(
                f"{out}: exists; synthetic rows would replace it: write them elsewhere, or "
                "pass --force to replace it"
            )
    try:
        synth.write_csv(out, rows=rows, seed=seed)
    except ValueError as err:  # synth's own argument checks
        raise StageError(str(err)) from None
    return {"path": str(out), "rows": rows, "seed": seed, "md5": evidence.file_md5(out)}
