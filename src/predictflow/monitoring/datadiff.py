"""`predictflow data diff A B`: what changed inside the raw table between two data versions.

`dvc diff` says a file changed; this says which customers were added, removed or edited, which
columns came or went, and how each column's distribution moved. A version is named by a git
revision (the `.dvc` pin at that commit), a DVC md5, or a registered model version (the data its
lineage records). Both files are read from the DVC cache or the default remote by md5, through
`reference.pinned_data`: never from git or the workspace file, so what is compared is exactly what
was pinned. Rows are matched with a pandas merge on `customerID`; the shift statistics are
drift's (PSI with KS or chi-square), so a shift means the same thing in both commands.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

from predictflow.base.errors import StageError
from predictflow.core import paths, rawfile
from predictflow.core.params import DriftParams
from predictflow.core.schema import ID
from predictflow.lineage import evidence
from predictflow.monitoring import shift
from predictflow.monitoring.reference import pinned_data

if TYPE_CHECKING:
    import pyarrow as pa
    from mlflow import MlflowClient

RAW_DATA = paths.RAW_DATA.as_posix()
MD5 = re.compile(r"[0-9a-f]{32}")
EXAMPLES = 5  # ids shown per kind of change: enough to look one up, short enough to read
A, B = "@A", "@B"  # each version's row positions in the key merge
MAX_CATEGORIES = 1000  # a text column with more distinct values (free text, ids) gets no test


@dataclass(frozen=True)
class DataVersion:
    """One side of the diff: what the user wrote, how it was read, and the md5 it names."""

    spec: str
    kind: str  # "git", "md5" or "model"
    md5: str
    commit: str | None = None  # the revision's commit, for kind "git"
    version: int | None = None  # the registered version, for kind "model"

    def label(self) -> str:
        """How the report names it: what the user wrote, and what that resolved to."""
        if self.commit:
            return f"{self.spec} (commit {self.commit[:12]}, md5 {self.md5})"
        if self.version is not None:
            return f"{self.spec} (version {self.version}, md5 {self.md5})"
        return self.spec  # an md5 already

    def as_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "kind": self.kind,
            "md5": self.md5,
            "commit": self.commit,
            "version": self.version,
        }


def resolve(
    spec: str,
    workspace: Path,
    data: str = RAW_DATA,
    client: Callable[[], MlflowClient] | None = None,
) -> DataVersion:
    """The data md5 `spec` names: a `models:/` URI, 32 hex digits, or a git revision.

    `client` is called only for a model URI, so a diff of two commits never starts MLflow.
    """
    if spec.startswith("models:/"):
        if client is None:
            raise StageError(f"{spec}: no model registry to look the version up in")
        return _model_version(spec, client(), data)
    if MD5.fullmatch(spec):
        return DataVersion(spec, "md5", spec)
    return _git_version(spec, workspace, data)


def _git_version(rev: str, workspace: Path, data: str) -> DataVersion:
    """The md5 `<data>.dvc` pins at `rev` (git holds only the pin, never the data)."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args], cwd=workspace, capture_output=True, text=True, check=False
        )

    found = git("rev-parse", "--verify", "-q", "--end-of-options", f"{rev}^{{commit}}")
    if found.returncode != 0:
        raise StageError(
            f"{rev!r}: not a git revision, a DVC md5 (32 hex digits) or a models:/ URI"
        )
    commit = found.stdout.strip()
    pin = f"{data}.dvc"
    shown = git("show", f"{commit}:./{pin}")
    if shown.returncode != 0:
        raise StageError(f"{rev!r} (commit {commit[:12]}): has no {pin}; DVC tracked no data there")
    source = f"{pin} at {rev}"
    try:
        md5 = evidence.pin_md5(yaml.safe_load(shown.stdout), source)
    except yaml.YAMLError:
        raise StageError(f"{source}: not a readable .dvc file") from None
    return DataVersion(rev, "git", md5, commit=commit)


def _model_version(uri: str, client: MlflowClient, data: str = RAW_DATA) -> DataVersion:
    """The data a registered version learned from: its `data_md5` tag, else the raw-data dep
    of `prepare` in the dvc.lock logged at registration; for another `data` path (`--path`),
    that path's md5 in the logged dvc.lock."""
    from predictflow.lineage import provenance, registry

    version = registry.resolve(client, uri)
    wanted = Path(data).as_posix()  # `./x` and `x` are one path
    if wanted != RAW_DATA:
        stages = provenance.recorded_stages(client, version.run_id)
        md5 = next(
            (
                m
                for stage in stages.values()
                for group in ("deps", "outs")
                for path, m in stage.get(group, {}).items()
                if path == wanted and m
            ),
            None,
        )
        if not md5:
            raise StageError(
                f"{uri} (version {version.version}): its logged dvc.lock records no {wanted}; "
                "--path must name a file of its pipeline"
            )
        return DataVersion(uri, "model", md5, version=int(version.version))
    md5 = version.tags.get("data_md5")
    if not md5:
        deps = provenance.recorded_stages(client, version.run_id).get("prepare", {}).get("deps", {})
        md5 = next((m for path, m in deps.items() if path.endswith(".csv") and m), None)
    if not md5:
        raise StageError(
            f"{uri} (version {version.version}): no data lineage (no data_md5 tag, no logged "
            "dvc.lock); its data version is unknown"
        )
    return DataVersion(uri, "model", md5, version=int(version.version))


def read_version(
    workspace: Path, version: DataVersion, data: str = RAW_DATA
) -> tuple[pd.DataFrame, pa.Schema]:
    """The table with `version.md5`, from the DVC cache or the default remote, typed by
    pyarrow's inference (the schema compared) with the key read as text.

    Text columns with few distinct values arrive dictionary-encoded (pandas categoricals): at
    1M rows that is a tenth of the memory of strings, and comparing codes is fast."""
    import pyarrow as pa
    from pyarrow import csv

    what = f"data version {version.spec}:"
    with pinned_data(workspace, version.md5, what, name=Path(data).name) as path:
        options = csv.ConvertOptions(
            column_types={ID: pa.string()},
            auto_dict_encode=True,
            auto_dict_max_cardinality=MAX_CATEGORIES,
        )
        files = rawfile.raw_parts(path) if path.is_dir() else [path]
        tables = [
            _read_csv(file, options, version.label() + _part_label(path, file)) for file in files
        ]
        try:  # a folder's parts are one table: a column int in one part, float in another, is float
            table = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise StageError(f"{version.label()}: its parts are not one table ({err})") from None
        del tables
    if ID not in table.column_names:
        raise StageError(f"{version.label()}: no {ID} column; rows cannot be matched")
    schema = table.schema
    frame = table.to_pandas(split_blocks=True, self_destruct=True)  # frees the table as it goes
    del table
    duplicated = frame[ID][frame[ID].duplicated(keep=False)]
    if len(duplicated):
        raise StageError(
            f"{version.label()}: column {ID}: {duplicated.nunique()} value(s) on more than one row "
            f"(e.g. {duplicated.iloc[0]!r}); rows cannot be matched by key"
        )
    return frame, schema


def _part_label(root: Path, file: Path) -> str:
    return f" part {file.relative_to(root).as_posix()}" if file != root else ""


def _read_csv(path: Path, options: Any, label: str) -> pa.Table:
    """One file or part as a table; a parquet part keeps its own types, its key as text."""
    import pyarrow as pa
    from pyarrow import csv

    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            if ID in table.column_names:
                at = table.column_names.index(ID)
                table = table.set_column(at, ID, table[ID].cast(pa.string()))
            return table
        return csv.read_csv(path, convert_options=options)
    except (pa.ArrowInvalid, OSError) as err:
        problem = " ".join(str(err).split())
        if not problem.isprintable():  # a binary file's bytes, echoed by the parser
            problem = "binary content, not text"
        kind = "parquet file" if path.suffix.lower() == ".parquet" else "CSV"
        raise StageError(f"{label}: not a well-formed {kind} ({problem})") from None


def schema_changes(a: pa.Schema, b: pa.Schema) -> dict[str, Any]:
    """Columns added, removed, and whose inferred type differs (e.g. int64 -> double)."""
    a_types, b_types = _types(a), _types(b)
    return {
        "added": [c for c in b_types if c not in a_types],
        "removed": [c for c in a_types if c not in b_types],
        "dtype_changed": {
            c: {"a": a_types[c], "b": b_types[c]}
            for c in a_types
            if c in b_types and a_types[c] != b_types[c]
        },
    }


def _types(schema: pa.Schema) -> dict[str, str]:
    """Column -> type name; dictionary encoding is how we read text, not a type of the data."""
    import pyarrow as pa

    return {
        f.name: str(f.type.value_type if pa.types.is_dictionary(f.type) else f.type) for f in schema
    }


def _differs(left: pd.Series, right: pd.Series) -> np.ndarray:
    """Row-wise "not the same value" of two aligned columns; two missing values are the same.
    A column whose type changed is compared as numbers if it is numeric on both sides (int 1
    equals float 1.0), else as text."""
    if isinstance(left.dtype, pd.CategoricalDtype) and isinstance(right.dtype, pd.CategoricalDtype):
        # codes over the union of both sides' categories; a missing value is -1 on both
        union = left.cat.categories.union(right.cat.categories)
        codes = [s.cat.set_categories(union).cat.codes.to_numpy() for s in (left, right)]
        return codes[0] != codes[1]
    if left.dtype != right.dtype:
        kind = "float64" if _is_numeric(left) and _is_numeric(right) else "string"
        left, right = left.astype(kind), right.astype(kind)
    both_missing = left.isna().to_numpy() & right.isna().to_numpy()
    equal = left.eq(right).fillna(False).to_numpy(dtype=bool)
    return ~(equal | both_missing)


def row_changes(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, Any]:
    """Rows added, removed and changed by key, and how often each shared column changed.

    An inner merge of the keys and row positions only (unsorted: an outer merge sorts 1M
    string keys, 5x slower); rows left out on one side are the added or removed ones. Each
    shared column is then compared on its own, so memory holds two aligned columns at a time,
    not a joined copy of both tables. Keys are unique (`read_version` refuses duplicates).
    """
    both = pd.merge(
        pd.DataFrame({ID: a[ID], A: np.arange(len(a))}),
        pd.DataFrame({ID: b[ID], B: np.arange(len(b))}),
        on=ID,
        how="inner",
        sort=False,
    )
    at_a, at_b = both[A].to_numpy(dtype="int64"), both[B].to_numpy(dtype="int64")
    changed_any = np.zeros(len(both), dtype=bool)
    per_column: dict[str, int] = {}
    for column in (c for c in a.columns if c != ID and c in b.columns):
        mask = _differs(
            a[column].iloc[at_a].reset_index(drop=True), b[column].iloc[at_b].reset_index(drop=True)
        )
        changed_any |= mask
        if count := int(mask.sum()):
            per_column[column] = count
    removed, added = np.ones(len(a), dtype=bool), np.ones(len(b), dtype=bool)
    removed[at_a], added[at_b] = False, False
    changed_ids = both[ID][changed_any]

    def first(ids: pd.Series) -> list[str]:
        return ids.sort_values().head(EXAMPLES).tolist()

    return {
        "added": int(added.sum()),
        "removed": int(removed.sum()),
        "changed": len(changed_ids),
        "unchanged": len(both) - len(changed_ids),
        "changed_columns": dict(sorted(per_column.items(), key=lambda kv: (-kv[1], kv[0]))),
        "examples": {
            "added": first(b[ID][added]),
            "removed": first(a[ID][removed]),
            "changed": first(changed_ids),
        },
    }


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def column_shifts(
    a: pd.DataFrame, b: pd.DataFrame, params: DriftParams, seed: int
) -> dict[str, dict[str, Any]]:
    """Per shared column, B against A with drift's statistics and thresholds (A is the
    reference: its quantiles bin the numbers, its categories are the "seen" ones). As in
    drift, PSI counts every row and the KS test takes a seeded sample of B's values
    (drift's `sample_rows`): at a million rows any difference is "significant", and the full
    test costs seconds per column."""
    rng = np.random.default_rng(seed)
    shifts: dict[str, dict[str, Any]] = {}
    for column in (c for c in a.columns if c != ID and c in b.columns):
        left, right = a[column], b[column]
        missing = {"missing_a": int(left.isna().sum()), "missing_b": int(right.isna().sum())}
        if _is_numeric(left) and _is_numeric(right):
            ref = left.dropna().to_numpy(dtype="float64")
            new = right.dropna().to_numpy(dtype="float64")
            if len(ref) == 0 or len(new) == 0:
                shifts[column] = {"kind": "numeric", **missing, "status": "skipped"}
                continue
            edges = shift.inner_edges(ref, params.bins)
            sample = (
                new
                if len(new) <= params.sample_rows
                else rng.choice(new, params.sample_rows, replace=False)
            )
            values = {
                "kind": "numeric",
                **shift.numeric_shift(ref, shift.bin_counts(new, edges), edges, sample),
                "mean_a": float(ref.mean()),
                "mean_b": float(new.mean()),
            }
        else:
            ref_counts = _counts(left)
            new_counts = _counts(right)
            if len(ref_counts.keys() | new_counts.keys()) > MAX_CATEGORIES:
                shifts[column] = {"kind": "text", **missing, "status": "skipped"}
                continue
            values = {
                "kind": "categorical",
                **shift.categorical_shift(ref_counts, new_counts, len(b)),
            }
        shifts[column] = {**values, **missing, "status": shift.shift_status(values, params)}
    return shifts


def _counts(series: pd.Series) -> dict[str, int]:
    """Rows per value as text, a missing value counted as the empty string (as the CSV has it)."""
    counts: dict[str, int] = {}
    for value, count in series.value_counts(dropna=False).items():
        if count:  # a categorical lists its unused categories with 0
            key = "" if pd.isna(value) else str(value)
            counts[key] = counts.get(key, 0) + int(count)
    return counts


def diff(
    workspace: Path,
    a: DataVersion,
    b: DataVersion,
    params: DriftParams,
    seed: int,
    data: str = RAW_DATA,
) -> dict[str, Any]:
    """The whole report as plain JSON-able data (`seed`: the KS sample's, `base.seed`;
    `data`: the tracked path, whose suffix says CSV or parquet)."""
    frame_a, schema_a = read_version(workspace, a, data)
    frame_b, schema_b = read_version(workspace, b, data)
    shifts = column_shifts(frame_a, frame_b, params, seed)
    return {
        "key": ID,
        "a": {**a.as_dict(), "label": a.label(), "rows": len(frame_a)},
        "b": {**b.as_dict(), "label": b.label(), "rows": len(frame_b)},
        "rows": row_changes(frame_a, frame_b),
        "schema": schema_changes(schema_a, schema_b),
        "columns": shifts,
        "shifted": sorted(c for c, s in shifts.items() if s["status"] == "drift"),
        "warned": sorted(c for c, s in shifts.items() if s["status"] == "warn"),
        "thresholds": params.model_dump(),
    }


def render(facts: dict[str, Any]) -> str:
    """The report as a few lines and a table for a person."""
    rows, schema = facts["rows"], facts["schema"]
    lines = [
        f"A  {facts['a']['label']}: {facts['a']['rows']} rows",
        f"B  {facts['b']['label']}: {facts['b']['rows']} rows",
        "",
        f"rows by {facts['key']}: {rows['added']} added, {rows['removed']} removed, "
        f"{rows['changed']} changed, {rows['unchanged']} unchanged",
    ]
    if rows["changed_columns"]:
        top = ", ".join(f"{c} {n}" for c, n in list(rows["changed_columns"].items())[:8])
        lines.append(f"changed most often: {top}")
    for kind in ("added", "removed", "changed"):
        if rows["examples"][kind]:
            lines.append(f"  e.g. {kind}: {', '.join(map(str, rows['examples'][kind]))}")
    notes = [f"columns added: {', '.join(schema['added'])}"] if schema["added"] else []
    notes += [f"columns removed: {', '.join(schema['removed'])}"] if schema["removed"] else []
    notes += [f"{c} {t['a']} -> {t['b']}" for c, t in schema["dtype_changed"].items()]
    lines += ["", f"schema: {'; '.join(notes) if notes else 'unchanged'}", ""]
    lines.append(f"{'column':<18} {'kind':<11} {'PSI':>7} {'test':>5} {'p-value':>9}  status")
    for name, c in facts["columns"].items():
        if c["status"] == "skipped":
            lines.append(f"{name:<18} {c['kind']:<11} {'-':>7} {'-':>5} {'-':>9}  skipped")
            continue
        lines.append(
            f"{name:<18} {c['kind']:<11} {c['psi']:>7.3f} {c['test']:>5} {c['p_value']:>9.2g}"
            f"  {c['status']}"
        )
    shifted = ", ".join(facts["shifted"]) or "none"
    lines.append(f"shifted beyond the drift thresholds (B against A): {shifted}")
    return "\n".join(lines)
