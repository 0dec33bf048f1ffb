"""Reading a raw CSV file as strings (`read_raw`), every way it can be unreadable one line, and
the strict clean of a whole file, chunk by chunk (`clean_file`, what `prepare` runs), or of a
folder's parts as one table (`clean_parts`). A `.parquet` part is read as strings too, so the
same contract checks its values (its errors name the row, not a line).

Empty, binary, not UTF-8 (naming the line and bytes), not comma-separated, repeated column names,
malformed CSV: each is a `DataContractError` naming the file. Blank lines are dropped without
renumbering, so later errors keep the true line numbers.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import pandas as pd

from predictflow.base.errors import StageError
from predictflow.core.cleaning import COMPACT, check_usable, clean
from predictflow.core.schema import ID, CleanReport, DataContractError, fail

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

PART_SUFFIXES = (".csv", ".parquet")  # what a raw folder may hold


class Digesting:
    """A binary file read through `hashlib` as it is read: the md5 of exactly the bytes parsed,
    however the file at that path changes meanwhile (an atomic `mv` leaves this handle on the
    file it opened)."""

    def __init__(self, handle: BinaryIO, digest: Hash) -> None:
        self.handle, self.digest = handle, digest

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data

    def __iter__(self) -> Iterator[bytes]:  # pandas takes only what has `read` and `__iter__`
        return iter(lambda: self.read(65536), b"")


def read_raw(
    path: Path | str, chunksize: int | None = None, digest: Hash | None = None
) -> pd.DataFrame | Iterator[pd.DataFrame]:
    """Read a raw CSV as strings (no type guessing), or an iterator of chunks if `chunksize`.

    The file is opened once; with `digest`, every byte parsed is fed to it as it is read.
    """
    source = str(path)
    if source.lower().endswith(".parquet"):
        return _read_parquet(path, chunksize, digest)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed when the last chunk is read
        head = handle.read(65536)
        handle.seek(0)
    except FileNotFoundError:
        raise DataContractError(f"{source}: file not found") from None
    except IsADirectoryError:
        raise DataContractError(f"{source}: is a directory, expected a CSV file") from None
    try:
        _check_head(head, source)
    except DataContractError:
        handle.close()
        raise
    reader = Digesting(handle, digest) if digest is not None else handle
    with _as_contract_errors(source):
        frames = pd.read_csv(
            reader,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8",
            # kept so a row's index stays its record number; dropped in `_drop_blank_rows`
            skip_blank_lines=False,
            chunksize=chunksize,
        )
        if chunksize is None:
            with handle:
                return _drop_blank_rows(frames)
    return _chunks(frames, source, handle)


def _read_parquet(
    path: Path | str, chunksize: int | None, digest: Hash | None
) -> pd.DataFrame | Iterator[pd.DataFrame]:
    """A parquet part as the contract reads a CSV: every column as text (a null is a blank), the
    index its row number. The bytes are read once, hashed, and parsed from memory."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    source = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise DataContractError(f"{source}: file not found") from None
    if digest is not None:
        digest.update(data)
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as err:
        problem = " ".join(str(err).split())
        raise DataContractError(f"{source}: not a readable parquet file ({problem})") from None
    repeated = sorted({n for n in table.column_names if table.column_names.count(n) > 1})
    if repeated:
        raise DataContractError(f"{source}: duplicated column(s): {', '.join(repeated)}")
    try:
        columns = {
            name: pc.fill_null(pc.cast(column, pa.string()), "")
            for name, column in zip(table.column_names, table.columns, strict=True)
        }
    except (pa.ArrowException, OSError) as err:
        problem = " ".join(str(err).split())
        raise DataContractError(f"{source}: a column cannot be read as text ({problem})") from None
    frame = pa.table(columns).to_pandas().astype(str)  # the dtype `read_csv(dtype=str)` gives
    if chunksize is None:
        return frame
    return (frame.iloc[start : start + chunksize] for start in range(0, len(frame), chunksize))


def _check_head(head: bytes, source: str) -> None:
    """What the first 64 KiB tell: empty, binary, not UTF-8, not comma-separated, repeated
    column names."""
    if not head.strip():
        raise DataContractError(f"{source}: file is empty, expected a CSV header and rows")
    if b"\x00" in head:
        raise DataContractError(f"{source}: binary data (NUL bytes), expected UTF-8 CSV text")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not just a character cut at the 64 KiB boundary
            raise _not_utf8(source) from None
    header_line = head.splitlines()[0].decode("utf-8", errors="replace")
    if "," not in header_line:
        sniffed = next((d for d in ";\t|" if d in header_line), None)
        hint = f"; it looks {sniffed!r}-delimited" if sniffed else ""
        raise DataContractError(f"{source}: expected a comma-separated header{hint}")
    header = [name.strip() for name in next(csv.reader([header_line]))]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:  # pandas would silently rename the second one to `name.1`
        raise DataContractError(f"{source}: duplicated column(s): {', '.join(repeated)}")


@contextmanager
def _as_contract_errors(source: str) -> Iterator[None]:
    """Decoding and parsing failures are the file's fault: say so in one line."""
    try:
        yield
    except UnicodeDecodeError:
        raise _not_utf8(source) from None
    except (pd.errors.ParserError, csv.Error) as err:
        message = " ".join(str(err).split())
        raise DataContractError(f"{source}: not a well-formed CSV ({message})") from None


def _not_utf8(source: str) -> DataContractError:
    """Name the first line holding bytes that are not UTF-8, and the bytes themselves.

    pandas reports an offset into its own buffer, which means nothing to the user, so the
    file is read again line by line (a newline byte is never part of a UTF-8 sequence).
    """
    with open(source, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                bad = raw[err.start : err.end]
                shown = " ".join(f"0x{byte:02X}" for byte in bad)
                noun = "byte" if len(bad) == 1 else "bytes"
                return DataContractError(
                    f"{source}: line {number}: {noun} {shown} is not UTF-8; save the file as UTF-8"
                )
    return DataContractError(f"{source}: not UTF-8 text; save the file as UTF-8")


def _chunks(
    reader: Iterator[pd.DataFrame], source: str, handle: BinaryIO
) -> Iterator[pd.DataFrame]:
    """Chunks are parsed lazily, so their errors surface during iteration: convert them there."""
    with handle, _as_contract_errors(source):
        for chunk in reader:
            yield _drop_blank_rows(chunk)


def _drop_blank_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop empty lines without renumbering, so error messages keep the true line numbers."""
    if frame.empty:
        return frame
    return frame[(frame != "").any(axis=1)]


def check_unchanged(path: Path | str, read_md5: str) -> None:
    """Refuse when the file at `path` now is not the bytes just read: DVC hashes the path after
    the stage, and the lock (and every version's `data_md5`) would name data nobody trained on."""
    import hashlib

    with open(path, "rb") as handle:
        now = hashlib.file_digest(handle, "md5").hexdigest()
    if now != read_md5:
        raise StageError(
            f"{path}: changed while prepare read it (read md5 {read_md5}, now {now}); nothing "
            "written: run `dvc repro` again once the file is no longer being replaced"
        )


def check_parts_unchanged(raw: Path, read: list[Path]) -> None:
    """Refuse when a raw folder now holds other parts than the ones just read: DVC hashes the
    whole folder after the stage, and the lock would name a part nobody trained on."""
    if not raw.is_dir():
        return
    now = raw_parts(raw)
    if now != read:
        added, removed = sorted(set(now) - set(read)), sorted(set(read) - set(now))
        change = f"part {added[0]} was added" if added else f"part {removed[0]} was removed"
        raise StageError(
            f"{raw}: {change} while prepare read the folder; nothing written: run `dvc repro` "
            "again once the folder is complete"
        )


def clean_file(
    path: Path | str, chunk_rows: int, digest: Hash | None = None
) -> tuple[pd.DataFrame, CleanReport]:
    """The strict `clean` of a whole raw file, read and cleaned `chunk_rows` rows at a time.

    The same rows and values as `clean(read_raw(path), ...)`, held compactly: the category
    columns as pandas categoricals (`as_written` turns rows back into the `clean` layout), so
    memory stays far below that of the file's strings. Each chunk is checked as it is read
    (the first bad chunk names its error); the checks that need every row (ids unique across
    chunks, rows left, both classes) run once at the end, with the same messages.
    """
    return clean_parts([(path, digest)], chunk_rows, str(path))


def clean_parts(
    parts: list[tuple[Path | str, Hash | None]], chunk_rows: int, source: str
) -> tuple[pd.DataFrame, CleanReport]:
    """`clean_file` over the parts of one table (a raw folder's parts in name order, each with
    its digest): the rows of every part in order, each part named in its own errors, an id
    repeated in a later part named by that part and line; `source` names the whole table."""
    report = CleanReport()
    frames: list[pd.DataFrame] = []
    ids: list[pd.Series] = []
    owners: list[np.ndarray] = []  # the part number of every row read
    for number, (path, digest) in enumerate(parts):
        for chunk in read_raw(path, chunksize=chunk_rows, digest=digest):
            part, chunk_report = clean(chunk, str(path), whole_file=False)
            report.add(chunk_report)
            ids.append(chunk.rename(columns=lambda c: c.strip())[ID].str.strip())
            owners.append(np.full(len(chunk), number, dtype=np.int32))
            frames.append(part.astype(COMPACT))
    if not report.rows_read:  # no rows at all: the whole-file path says what is wrong
        first = parts[0][0]
        return clean(read_raw(first), str(first))
    all_ids, owner = pd.concat(ids), np.concatenate(owners)
    del ids, owners
    codes, _ = all_ids.factorize()  # integer codes: no Python string per id
    duplicated = pd.Series(codes).duplicated().to_numpy()
    if duplicated.any():
        at = int(duplicated.argmax())
        earlier = owner[codes == codes[at]][0] != owner[at]
        fail(
            str(parts[owner[at]][0]),
            ID,
            all_ids.index[at],
            all_ids.iloc[at],
            "duplicated customer id" + (" (in an earlier part too)" if earlier else ""),
        )
    del all_ids, codes, duplicated, owner
    result = pd.concat(frames)
    del frames
    check_usable(result, source)
    return result, report


def raw_parts(raw: Path) -> list[Path]:
    """The raw data's parts in name order: the file itself, or every CSV part in a folder
    (`dvc add data/customers`); hidden files (`.gitignore`) are not data. A path that is
    neither is returned as is, for `read_raw` to name."""
    if not raw.is_dir():
        return [raw]
    parts, other = [], []
    for path in sorted(p for p in raw.rglob("*") if p.is_file()):
        if any(piece.startswith(".") for piece in path.relative_to(raw).parts):
            continue
        (parts if path.suffix.lower() in PART_SUFFIXES else other).append(path)
    if other:
        raise DataContractError(
            f"{other[0]}: not a data part ({', '.join(PART_SUFFIXES)}); a raw folder holds only "
            "CSV or parquet parts of the same columns"
        )
    if not parts:
        raise DataContractError(f"{raw}: a folder with no CSV or parquet parts")
    return parts
