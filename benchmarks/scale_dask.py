"""The Dask engine (`scale.engine: dask`) against the local engine and the peer, in one run.

Two figures per size, each project a throw-away git clone of this working tree with its own DVC
cache and MLflow store (as `benchmarks.run --scale-only` makes them):

- cold: `dvc repro` from nothing on the local engine and on the dask engine (raw data a
  `dvc add`ed folder of ~4 monthly CSV parts): wall time, the largest single process (kernel
  rusage and the poller's per-stage `VmHWM`), "stage + workers" (a stage's summed RSS, Dask
  workers included) and held-out ROC AUC from metrics/eval.json.
- iteration: after that cold run, `dvc exp run -S model.n_estimators=<N+1>` (prepare and
  featurize come from the cache) on each engine, each right after the peer script
  (benchmarks/peer.py) on the same rows, so load hits both sides of each ratio alike.

Load average (1/5/15 min) is recorded at the start and end of each figure: other work on the
machine slows what runs beside it.

    python -m benchmarks.scale_dask                                 # 1,000,000 rows, both
    python -m benchmarks.scale_dask --sizes 200000 --only iteration --workdir /tmp/bd
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from benchmarks import measure
from benchmarks.run import machine, parse_list
from tests.conftest import child_env, copy_project

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
OUT = BENCH / "results" / "dask-engines.json"
FIGURES = ("cold", "iteration")
ENGINES = ("local", "dask")
PARTS = 4  # monthly CSV parts of the raw data under the dask engine
SEED = 42
TIMEOUT = 3600.0


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class DaskBench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.started = time.monotonic()
        self.results: dict = {
            "machine": machine(),
            "load_before": load(),
            "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "sizes": {},
        }
        if args.note:
            self.results["note"] = args.note
        self._source: Path | None = None

    def log(self, message: str) -> None:
        print(f"[dask-bench {time.monotonic() - self.started:6.0f}s] {message}", file=sys.stderr)

    def run(self, argv: list, cwd: Path, **kwargs) -> measure.Measurement:
        env = child_env(PYTHONPATH=str(cwd / "src"))  # the clone's own code
        kwargs.setdefault("timeout", TIMEOUT)
        return measure.run([str(a) for a in argv], cwd, env, **kwargs)

    def wanted(self, figure: str) -> bool:
        return not self.args.only or figure in self.args.only

    # -- repositories ---------------------------------------------------------------------
    def source(self) -> Path:
        if self._source is None:
            self._source = copy_project(self.work / "project")
        return self._source

    def csv(self, rows: int) -> Path:
        path = self.work / "data" / f"customers-{rows}.csv"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            self.log(f"predictflow data synth --rows {rows:,}")
            argv = [BIN / "predictflow", "data", "synth", "--rows", rows, "--seed", SEED]
            self.run([*argv, "--out", path, "--force"], REPO)
        return path

    def clone(self, rows: int, engine: str) -> Path:
        """A clone whose raw data is the `rows` synthetic customers, committed, on `engine`."""
        repo = self.work / f"{engine}-{rows}"
        self.run(["git", "clone", "-q", self.source(), repo], self.work)
        if engine == "local":
            shutil.copyfile(self.csv(rows), repo / "data" / "customers.csv")
            self.run([BIN / "dvc", "add", "-q", "data/customers.csv"], repo)
        else:
            use_dask(repo)
            write_parts(self.csv(rows), repo / "data" / "customers", PARTS)
            self.run(["git", "rm", "-q", "data/customers.csv.dvc"], repo)
            self.run([BIN / "dvc", "add", "-q", "data/customers"], repo)
        self.run(["git", "add", "-A"], repo)
        self.run(["git", "commit", "-q", "-m", f"data: {rows} rows, {engine} engine"], repo)
        return repo

    # -- the figures ----------------------------------------------------------------------
    def peer(self, rows: int, repo: Path) -> dict:
        """benchmarks/peer.py on the same rows, with the local clone's params and code."""
        store = self.work / f"peer-store-{time.monotonic_ns()}"  # a new store, as the first run
        store.mkdir()
        try:
            argv = [BIN / "python", BENCH / "peer.py", "--data", self.csv(rows)]
            m = self.run([*argv, "--params", repo / "params.yaml", "--store", store], repo)
        finally:
            shutil.rmtree(store, ignore_errors=True)
        facts = json.loads(m.stdout.strip().splitlines()[-1])
        return {**facts_of(m), "roc_auc": facts["roc_auc"], "rows": facts["rows"]}

    def size(self, rows: int) -> dict:
        out: dict = {"rows": rows, "parts": PARTS}
        repos = {engine: self.clone(rows, engine) for engine in ENGINES}
        cold_load = load()
        colds = {}
        for engine, repo in repos.items():
            self.log(f"cold dvc repro, {engine} engine, {rows:,} rows")
            m = self.run([BIN / "dvc", "repro"], repo, poll=True)
            colds[engine] = {**facts_of(m), "roc_auc": roc_auc(repo)}
        cold = {"load_start": cold_load, "load_end": load(), **colds}
        cold["dask_over_local"] = ratios(colds["dask"], colds["local"])
        out["cold" if self.wanted("cold") else "warm_up"] = cold
        if self.wanted("iteration"):
            figure: dict = {"load_start": load()}
            for engine, repo in repos.items():
                n = yaml.safe_load((repo / "params.yaml").read_text())["model"]["n_estimators"]
                self.log(f"peer, then dvc exp run -S model.n_estimators={n + 1} ({engine})")
                peer = self.peer(rows, repos["local"])
                argv = [BIN / "dvc", "exp", "run", "-S", f"model.n_estimators={n + 1}"]
                m = self.run(argv, repo, poll=True)
                ours = {**facts_of(m), "n_estimators": n + 1, "roc_auc": roc_auc(repo)}
                figure[engine] = {
                    "ours": ours,
                    "peer": peer,
                    "ratio": round(ours["seconds"] / peer["seconds"], 3),
                    "goal": 0.8,  # the issue's: iteration <= 0.8x the peer
                }
            figure["load_end"] = load()
            out["iteration"] = figure
        return out

    def main(self) -> dict:
        commit = self.run(["git", "rev-parse", "HEAD"], REPO).stdout.strip()
        self.results["project_commit"] = commit
        dirty = self.run(["git", "status", "--porcelain"], REPO).stdout.strip()
        self.results["project_dirty"] = bool(dirty)
        for rows in self.args.sizes:
            self.results["sizes"][str(rows)] = self.size(rows)
        self.results["load_after"] = load()
        self.results["bench_seconds"] = round(time.monotonic() - self.started, 1)
        self.results["argv"] = sys.argv[1:]
        self.results["finished"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return self.results


def facts_of(m: measure.Measurement) -> dict:
    """Seconds and memory of one run; per stage too when it was polled."""
    stages = {
        name: {
            "seconds": round(s.seconds, 3),
            "peak_rss": s.peak_rss,
            "own_rss": s.own_rss,
            "tree_rss": s.tree_rss,
            "workers": s.workers,
        }
        for name, s in m.stages.items()
    }
    largest = max((s.peak_rss for s in m.stages.values()), default=0)
    facts = {"seconds": round(m.seconds, 3), "peak_rss": m.peak_rss, "load_end": load()}
    if stages:
        facts |= {"largest_stage_rss": largest, "tree_rss": m.tree_rss, "stages": stages}
    return facts


def ratios(ours: dict, base: dict) -> dict:
    keys = ("seconds", "peak_rss", "tree_rss")
    return {k: round(ours[k] / base[k], 3) for k in keys if base.get(k) and k in ours}


def roc_auc(repo: Path) -> float:
    return json.loads((repo / "metrics" / "eval.json").read_text())["roc_auc"]


def use_dask(repo: Path) -> None:
    """The switch as tests/test_dask_pipeline.py makes it: `scale:` in params.yaml, and
    `paths.raw` in dvc.yaml now that the raw data is a folder of parts."""
    params = repo / "params.yaml"
    text = params.read_text()
    assert "engine: local" in text, "params.yaml: no `engine: local` to switch"
    params.write_text(text.replace("engine: local", "engine: dask"))
    pipeline = repo / "dvc.yaml"
    text = pipeline.read_text()
    assert "raw: data/customers.csv" in text, "dvc.yaml: no `raw: data/customers.csv`"
    pipeline.write_text(text.replace("raw: data/customers.csv", "raw: data/customers"))


def write_parts(whole: Path, folder: Path, parts: int) -> None:
    """`whole` cut into `parts` CSV files of consecutive rows, a header each (monthly exports)."""
    folder.mkdir(parents=True)
    with whole.open("rb") as source:
        header = source.readline()
        lines = source.readlines()
    size = -(-len(lines) // parts)
    for number in range(parts):
        with (folder / f"2026-{number + 1:02d}.csv").open("wb") as part:
            part.write(header)
            part.writelines(lines[number * size : (number + 1) * size])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_dask", description=__doc__)
    parser.add_argument(
        "--sizes",
        type=lambda t: [int(float(s)) for s in parse_list(t)],
        default=[1_000_000],
        help="comma-separated row counts (default 1000000)",
    )
    parser.add_argument(
        "--only", type=parse_list, default=None, help=f"subset of: {','.join(FIGURES)}"
    )
    parser.add_argument("--json", type=Path, default=OUT, help=f"default {OUT.relative_to(REPO)}")
    parser.add_argument("--workdir", type=Path, help="where the temporary repositories go")
    parser.add_argument("--keep", action="store_true", help="keep the temporary repositories")
    parser.add_argument(
        "--note", help="what else ran on the machine (recorded, shown in the report)"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    unknown = set(args.only or ()) - set(FIGURES)
    if unknown:
        raise SystemExit(f"--only: unknown figure(s) {', '.join(sorted(unknown))}")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="predictflow-dask-bench-", dir=args.workdir))
    bench = DaskBench(args, work)
    try:
        try:
            bench.main()
        finally:  # what was measured survives a failure
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(bench.results, indent=2, default=str) + "\n")
        bench.log(f"raw results: {args.json}")
    finally:
        if args.keep:
            bench.log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
