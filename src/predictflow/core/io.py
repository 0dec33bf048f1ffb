"""Safe file output: a stage that fails half-way leaves no partial file behind, and a command
refuses an output that would replace its input or a DVC-tracked file before it does any work.
Parquet in batches, so a stage's memory does not grow with the rows it streams."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from predictflow.base.errors import StageError

if TYPE_CHECKING:
    import pandas as pd
    from dvc.repo import Repo


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temp path beside `path`; it replaces `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield an empty temp folder beside `path`; it replaces `path` (a file or a folder) only if
    the block succeeds. The old out is moved aside first and removed last, so a kill leaves
    either the old out or the new one at `path`, plus at most a hidden leftover beside it."""
    import shutil

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if target.is_dir() and not target.is_symlink():
            old = Path(
                tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old")
            )
            os.replace(target, old / target.name)
        elif os.path.lexists(target):
            os.unlink(target)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path | str, data: object) -> None:
    """Write sorted, indented JSON atomically (stable bytes for `dvc metrics diff`).

    NaN and infinity are refused (ValueError) rather than written as the non-standard `NaN`
    that other JSON readers reject; callers check their values first and say why.
    """
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def same_file(a: Path | str, b: Path | str) -> bool:
    """Whether two paths name one file however spelled (`./x`, `d/../x`, a symlink, a hard link).

    Compares identity (st_dev + st_ino, `os.path.samefile`), never strings. A path that does not
    exist yet is not an existing file.
    """
    try:
        return os.path.samefile(a, b)
    except (FileNotFoundError, NotADirectoryError):
        return False


def check_output(output: Path, *inputs: Path) -> None:
    """Refuse, before any work, an output that would replace an input or cannot be written.

    Writes nothing: writability is probed with an anonymous temp file in the nearest existing
    folder, gone when closed.
    """
    for source in inputs:
        if same_file(output, source):
            raise StageError(
                f"{output}: is the same file as the input {source}; writing it would "
                "destroy the input: give another output path"
            )
    if output.is_dir():
        raise StageError(f"{output}: is a directory; give a file path for the output")
    folder = next(p for p in output.absolute().parents if p.exists())
    if not folder.is_dir():
        raise StageError(f"{output}: cannot be created: {folder} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise StageError(
            f"{output}: cannot write in {folder} ({err.strerror}); give a writable output path"
        ) from None


def dvc_root(folder: Path) -> Path | None:
    """The DVC project `folder` lies in, found as DVC's `Repo.find_root` finds it (the nearest
    folder up to a mount point that holds a `.dvc` directory), or None outside any project.

    Looked up by hand so that a path no project can track costs no `import dvc.repo` (2 s).
    """
    for candidate in (folder, *folder.parents):
        if os.path.isdir(candidate / ".dvc"):
            return candidate
        if os.path.ismount(candidate):
            break
    return None


def dvc_trackers(paths: Iterable[Path]) -> dict[Path, str | None]:
    """For each path, the `.dvc` file or `dvc.yaml` stage whose out holds it (resolved: links
    and `..` count), or None when no DVC project tracks it.

    DVC's `Repo.find_outs_by_path` decides; its Repo is opened once per project for all the
    paths, and DVC is not imported at all when no path lies in a project.
    """
    found: dict[Path, str | None] = dict.fromkeys(paths)
    projects: dict[Path, list[Path]] = {}
    for path in found:
        folder = next(p for p in path.resolve().parents if p.is_dir())
        root = dvc_root(folder)
        if root is not None:
            projects.setdefault(root, []).append(path)
    for root, inside in projects.items():
        found |= _trackers_in(root, inside)
    return found


def _trackers_in(root: Path, paths: list[Path]) -> dict[Path, str | None]:
    """`dvc_trackers` for paths in the project at `root`: one Repo, one index for all."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    found: dict[Path, str | None] = {}
    path = paths[0]  # the one named if the project cannot be read at all
    try:
        with Repo(str(root)) as repo:
            for path in paths:
                found[path] = _tracker(repo, path)
    except DvcException as err:
        raise StageError(
            f"{path}: cannot tell whether DVC tracks it ({err}); fix the DVC project "
            "or pass --force"
        ) from None
    return found


def _tracker(repo: Repo, path: Path) -> str | None:
    from dvc.exceptions import OutputNotFoundError
    from dvc.stage import PipelineStage

    # As spelled too: with DVC's symlink cache type a tracked file resolves into the cache.
    for spelling in dict.fromkeys([str(path.resolve()), os.path.abspath(path)]):
        try:
            stage = repo.find_outs_by_path(spelling, strict=False)[0].stage
        except OutputNotFoundError:
            continue
        if isinstance(stage, PipelineStage):
            return f"{stage.relpath} stage {stage.name!r}"
        return stage.relpath  # a `.dvc` file
    return None


def check_untracked(outputs: dict[Path, str], hint: str) -> None:
    """Refuse, before any work, an output that DVC tracks (an out of `dvc.yaml` or of a `.dvc`
    file): writing it would replace data or a result DVC pins. `outputs` maps each path to
    what would be written there, `hint` says what to do instead; one DVC lookup for all."""
    for path, tracker in dvc_trackers(outputs).items():
        if tracker:
            raise StageError(
                f"{path}: tracked by DVC ({tracker}); {outputs[path]} would replace it: {hint}"
            )


def check_replaceable(path: Path, marker: str, what: str) -> None:
    """Refuse to replace an existing file unless it holds `marker`, the mark of a file we
    generated (`what` names such a file): a user's own file of that name is never replaced."""
    if not path.is_file():
        return
    try:
        with path.open("rb") as handle:
            ours = marker.encode("utf-8") in handle.read()
    except OSError as err:
        raise StageError(
            f"{path}: cannot read it ({err.strerror}); give another --output"
        ) from None
    if not ours:
        raise StageError(f"{path}: exists and is not {what}; move it away or give another --output")


def read_batches(
    path: Path | str, batch_rows: int, columns: list[str] | None = None
) -> Iterator[pd.DataFrame]:
    """A parquet file as frames of at most `batch_rows` rows, in order (Arrow's reader: only one
    batch is decoded at a time)."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as parquet:
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
            yield batch.to_pandas()


def write_batches(path: Path | str, frames: Iterable[pd.DataFrame]) -> int:
    """Write frames one after another into one parquet file; return the rows written.

    The schema is the first frame's (every frame must match it); at least one frame is needed.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for frame in frames:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
            rows += len(frame)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError(f"{path}: no frames to write")
    return rows
