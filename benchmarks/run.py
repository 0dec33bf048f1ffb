"""`make bench`: PredictFlow against the script a user would otherwise write, in the same run.

Everything runs in throw-away git repositories made from this working tree (own MLflow store,
DVC cache and data), with the real `dvc`, stage commands and `predictflow` CLI. Ours and the
baseline run alternately, so load from anything else on the machine hits both sides alike;
figures are medians of `--repeats` where cheap, one run where not (1M rows, `tune`).

    python -m benchmarks.run                                   # full run (~15-20 min on 2 cores)
    python -m benchmarks.run --quick --out /tmp/b.md           # 7,043 rows, 1 repeat, no tune
    python -m benchmarks.run --quick --only peer,lineage --repo BUILT_REPO   # what the test runs
    python -m benchmarks.run --scale-only --sizes 5000000 --json five.json   # points past 20 min
    python -m benchmarks.run --report-only raw.json            # re-render docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

from benchmarks import measure, report
from predictflow.lineage import evidence
from tests.conftest import child_env, copy_project  # one copy of the sandbox helpers

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
DEFAULT_ROWS = 7043  # the pinned data set (`predictflow data ensure`)
STAGES = ("prepare", "featurize", "train", "evaluate", "register")
MODEL = ("--model", "models:/churn-predictor@staging")  # the version `dvc repro` registered
FIGURES = ("cold", "noop", "iteration", "lineage", "tune", "scale", "scoring", "tracking", "drift")


def summary(runs: list[measure.Measurement]) -> dict[str, float]:
    """Median (min, max) seconds and the largest peak RSS of repeated runs."""
    seconds = [round(m.seconds, 3) for m in runs]
    return {
        "median": round(statistics.median(seconds), 3),
        "min": min(seconds),
        "max": max(seconds),
        "n": len(seconds),
        "peak_rss": max(m.peak_rss for m in runs),
    }


def stage_times(m: measure.Measurement) -> dict[str, dict[str, float]]:
    """Per stage process: lifetime and peak RSS, as the poller saw them."""
    return {
        name: {"seconds": round(s.seconds, 3), "peak_rss": s.peak_rss}
        for name, s in m.stages.items()
        if name in STAGES
    }


def middle(runs: list[measure.Measurement]) -> measure.Measurement:
    return sorted(runs, key=lambda m: m.seconds)[len(runs) // 2]


def last_json(m: measure.Measurement) -> dict:
    return json.loads(m.stdout.strip().splitlines()[-1])


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.started = time.monotonic()
        self.results: dict = {"skipped": {}, "machine": machine(), "load_before": os.getloadavg()}
        self.project: Path | None = None
        self.csvs: dict[int, Path] = {}
        self.iterations = 0

    def log(self, message: str) -> None:
        print(f"[bench {time.monotonic() - self.started:6.0f}s] {message}", file=sys.stderr)

    def run(self, argv: list, cwd: Path, **kwargs) -> measure.Measurement:
        env = child_env(PYTHONPATH=str(cwd / "src"))  # the copy's own code
        return measure.run([str(a) for a in argv], cwd, env, **kwargs)

    def bare(self, repo: Path, *args: object) -> measure.Measurement:
        """`benchmarks/bare.py ARGS`: the same work in one process, no tracking."""
        return self.run([BIN / "python", BENCH / "bare.py", *args], repo)

    def wanted(self, figure: str) -> bool:
        if self.args.only and figure not in self.args.only:
            return False
        if figure == "tune" and self.args.quick and "tune" not in (self.args.only or ()):
            self.results["skipped"]["tune"] = "--quick (12 queued experiments)"
            return False
        return True

    # -- repositories ---------------------------------------------------------------------
    def source(self) -> Path:
        if self.project is None:
            self.project = copy_project(self.work / "project")
        return self.project

    def csv(self, rows: int) -> Path:
        """A synthetic raw file of `rows` customers, made once per run."""
        if rows not in self.csvs:
            path = self.work / "data" / f"customers-{rows}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.run(
                [BIN / "predictflow", "data", "synth", "--rows", rows, "--out", path, "--force"],
                REPO,
            )
            self.csvs[rows] = path
        return self.csvs[rows]

    def repo_for(self, rows: int) -> Path:
        """A clone of the project whose pinned data has `rows` customers, committed."""
        if rows == self.args.default_rows and self.args.repo:
            return self.args.repo
        repo = self.work / f"rows-{rows}"
        if repo.exists():
            return repo
        self.run(["git", "clone", "-q", self.source(), repo], self.work)
        if rows == DEFAULT_ROWS:
            self.run([BIN / "predictflow", "data", "ensure"], repo)
        else:
            shutil.copyfile(self.csv(rows), repo / "data" / "customers.csv")
            self.run([BIN / "dvc", "add", "-q", "data/customers.csv"], repo)
            self.run(["git", "commit", "-q", "-am", f"data: {rows} rows"], repo)
        return repo

    def built(self, rows: int) -> Path:
        """`repo_for(rows)` after one `dvc repro` (store created, version registered)."""
        repo = self.repo_for(rows)
        if not (repo / "models" / "model.pkl").exists():
            self.log(f"warm-up dvc repro at {rows:,} rows")
            self.results.setdefault("warm_up", {})[str(rows)] = round(
                self.run([BIN / "dvc", "repro"], repo).seconds, 3
            )
        return repo

    # -- the peer and the figures measured against it -------------------------------------
    def peer(self, repo: Path) -> measure.Measurement:
        store = self.work / f"peer-store-{time.monotonic_ns()}"  # a new store, as the first run
        store.mkdir()
        try:
            return self.run([BIN / "python", BENCH / "peer.py", "--store", store], repo)
        finally:
            shutil.rmtree(store, ignore_errors=True)

    def against_peer(self) -> None:
        """Peer, cold `dvc repro -f`, bare script, and one `dvc exp run` iteration, alternated."""
        repo = self.built(self.args.default_rows)
        peers, colds, bares, iterations = [], [], [], []
        for _ in range(self.args.repeats):
            self.log("peer / cold dvc repro -f / bare script / iteration")
            peers.append(self.peer(repo))
            if self.wanted("cold"):
                colds.append(self.run([BIN / "dvc", "repro", "-f"], repo, poll=True))
                bares.append(self.bare(repo, "pipeline", "--data", "data/customers.csv"))
            if self.wanted("iteration"):
                iterations.append(self.iteration(repo))
        self.results["peer"] = {**summary(peers), "facts": last_json(middle(peers))}
        if colds:
            self.results["cold"] = {
                "rows": self.args.default_rows,
                "ours": summary(colds),
                "bare": summary(bares),
                "stages": stage_times(middle(colds)),
                "bare_phases": last_json(middle(bares))["phases"],
            }
        if iterations:
            self.results["iteration"] = {
                "ours": summary(iterations),
                "stages": stage_times(middle(iterations)),
            }
        if self.wanted("iteration"):  # back to the committed params for what follows
            self.run(["git", "checkout", "--", "params.yaml", "dvc.lock"], repo)
            self.run([BIN / "dvc", "repro"], repo)

    def iteration(self, repo: Path) -> measure.Measurement:
        """A new `n_estimators` each time, so train, evaluate and register all run."""
        self.iterations += 1
        n = yaml.safe_load((repo / "params.yaml").read_text())["model"]["n_estimators"]
        value = n + self.iterations
        return self.run(
            [BIN / "dvc", "exp", "run", "-S", f"model.n_estimators={value}"], repo, poll=True
        )

    def versus(self, key: str, ours: list[str], base: list[str]) -> None:
        """Two cheap read-only commands on the built repo, alternately, `--repeats` times."""
        repo = self.built(self.args.default_rows)
        self.log(f"{' '.join(ours)} vs {' '.join(base)}")
        runs = [
            (self.run([BIN / ours[0], *ours[1:]], repo), self.run([BIN / base[0], *base[1:]], repo))
            for _ in range(self.args.repeats)
        ]
        self.results[key] = {
            "ours": summary([o for o, _ in runs]),
            "bare": summary([b for _, b in runs]),
        }

    def tune(self) -> None:
        repo = self.built(self.args.default_rows)
        self.log("predictflow tune (the grid in params.yaml)")
        m = self.run([BIN / "predictflow", "tune", "--json"], repo, timeout=3600)
        facts = json.loads(m.stdout)
        self.results["tune"] = {"ours": summary([m]), "points": facts["experiments"]}

    # -- at scale -------------------------------------------------------------------------
    def scale(self, rows: int) -> dict:
        """Cold `dvc repro` (store created, version registered) against the bare script."""
        repo = self.repo_for(rows)
        self.log(f"dvc repro vs bare script at {rows:,} rows")
        ours = self.run([BIN / "dvc", "repro"], repo, poll=True)
        bare = self.bare(repo, "pipeline", "--data", "data/customers.csv")
        return {
            "rows": rows,
            "ours": summary([ours]),
            "bare": summary([bare]),
            "stages": stage_times(ours),
            "bare_phases": last_json(bare)["phases"],
        }

    def scoring(self, repo: Path) -> None:
        out = {}
        for rows in self.args.score_sizes:
            self.log(f"batch scoring {rows:,} rows")
            source = self.csv(rows)
            output = self.work / "scores.csv"
            ours = self.run(
                [
                    BIN / "predictflow",
                    "predict",
                    *MODEL,
                    "--input",
                    source,
                    "--output",
                    output,
                    "--json",
                ],
                repo,
            )
            bare = self.bare(repo, "predict", "--model", "models/model.pkl", "--input", source)
            out[str(rows)] = {"rows": rows, "ours": summary([ours]), "bare": summary([bare])}
        self.results["scoring"] = out

    def tracking(self, repo: Path, rows: int) -> None:
        """The `train` stage command (dvc.yaml's) against bare.py's reads, fit and pickle."""
        self.log(f"train stage vs bare train at {rows:,} rows")
        argv = shlex.split(evidence.read_pipeline(repo)["stages"]["train"]["cmd"])  # rendered
        stage = self.run([BIN / "python", *argv[1:]], repo)
        given = dict(itertools.pairwise(argv))  # the stage's own input paths
        inputs = ("--features-train", "--features-test", "--featurizer")
        bare = self.bare(repo, "train", *(x for flag in inputs for x in (flag, given[flag])))
        self.results["tracking"] = {"rows": rows, "ours": summary([stage]), "bare": summary([bare])}

    def drift(self, repo: Path, rows: int) -> None:
        """`predictflow drift` on a batch of `rows` against the same reads without statistics."""
        self.log(f"predictflow drift vs bare reads at {rows:,} rows")
        source = self.csv(rows)
        argv = [BIN / "predictflow", "drift", "--input", source, *MODEL, "--json"]
        ours = self.run(argv, repo, check=False)
        if ours.returncode not in (0, 3):  # 3: ran fine and found drift
            raise RuntimeError(
                f"predictflow drift exited {ours.returncode}:\n{ours.stderr[-3000:]}"
            )
        bare = self.bare(repo, "reads", "--model", "models/model.pkl", "--input", source)
        self.results["drift"] = {"rows": rows, "ours": summary([ours]), "bare": summary([bare])}

    def fresh_clone(self) -> None:
        self.log("fresh clone: make install + make repro (new .venv, empty uv cache)")
        clone = self.work / "fresh"
        self.run(["git", "clone", "-q", self.source(), clone], self.work)
        path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != BIN)
        env = child_env(PATH=path, UV_CACHE_DIR=str(self.work / "uv-cache"))
        install = measure.run(["make", "install"], clone, env)
        repro = measure.run(["make", "repro"], clone, env)
        self.results["fresh"] = {"install": install.seconds, "repro": repro.seconds}

    # -- the whole run --------------------------------------------------------------------
    def main(self) -> dict:
        args = self.args
        self.results["project_commit"] = self.run(["git", "rev-parse", "HEAD"], REPO).stdout.strip()
        if self.wanted("peer") or self.wanted("cold") or self.wanted("iteration"):
            self.against_peer()
        if self.wanted("noop"):
            self.versus("noop", ["dvc", "repro"], ["dvc", "status"])
        if self.wanted("lineage"):
            self.versus("lineage", ["predictflow", "lineage"], ["dvc", "exp", "show"])
        if self.wanted("tune"):
            self.tune()
        big = args.big_rows
        if any(self.wanted(f) for f in ("scale", "scoring", "tracking", "drift")):
            cold = self.results.get("cold")  # the default size is measured already
            self.results["scale"] = {
                str(r): cold if cold and r == args.default_rows else self.scale(r)
                for r in args.sizes
            }
            repo = self.repo_for(big)
            if self.wanted("scoring"):
                self.scoring(repo)
            if self.wanted("tracking"):
                self.tracking(repo, big)
            if self.wanted("drift"):
                self.drift(repo, big)
        if args.quick or args.no_install or args.only:
            self.results["skipped"]["fresh clone"] = "--quick, --only or --no-install"
        else:
            self.fresh_clone()
        return self.finish()

    def scale_only(self) -> dict:
        self.results["scale"] = {str(r): self.scale(r) for r in self.args.sizes}
        return self.finish()

    def finish(self) -> dict:
        self.results["load_after"] = os.getloadavg()
        self.results["bench_seconds"] = round(time.monotonic() - self.started, 1)
        self.results["argv"] = sys.argv[1:]
        self.results["finished"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return self.results


def machine() -> dict:
    cpus = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((c.split(":", 1)[1].strip() for c in cpus if c.startswith("model name")), "?")
    names = ("dvc", "mlflow", "xgboost-cpu", "scikit-learn", "pandas", "pyarrow")
    versions = {}
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            versions[name] = version(name)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
    }


def parse_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="7,043 rows only, 1 repeat, no tune")
    parser.add_argument(
        "--only",
        type=parse_list,
        default=None,
        help=f"comma-separated subset of: peer,{','.join(FIGURES)}",
    )
    parser.add_argument(
        "--repo", type=Path, help="a built project repo to use for the small figures"
    )
    parser.add_argument("--sizes", type=lambda t: [int(float(s)) for s in parse_list(t)])
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (1 with --quick)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--json", type=Path, help="raw results (default: beside the work dir)")
    parser.add_argument("--no-install", action="store_true", help="skip the fresh-clone figure")
    parser.add_argument("--scale-only", action="store_true", help="only `--sizes`, raw JSON")
    parser.add_argument(
        "--extra-scale",
        type=Path,
        action="append",
        default=None,
        help="raw JSON of --scale-only runs (default benchmarks/results/scale-*)",
    )
    parser.add_argument("--report-only", type=Path, metavar="RAW_JSON")
    parser.add_argument(
        "--merge",
        type=Path,
        action="append",
        default=[],
        help="with --report-only: raw JSON "
        "of another run whose figures replace this one's (a 1M-row run apart from --quick)",
    )
    parser.add_argument(
        "--workdir", type=Path, help="where the temporary repositories go (created if missing)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary repositories")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.default_rows = DEFAULT_ROWS  # the pinned data set: fixed costs dominate at this size
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.sizes = args.sizes or ([DEFAULT_ROWS] if args.quick else [1_000_000])
    args.big_rows = max(args.sizes)
    args.score_sizes = [1000, 2000] if args.quick else [100_000, 1_000_000]
    args.repo = args.repo.resolve() if args.repo else None
    if args.extra_scale is None:
        args.extra_scale = [] if args.quick else sorted(BENCH.glob("results/scale-*.json"))
    extra = [json.loads(p.read_text()) for p in args.extra_scale]
    dask_run = BENCH / "results" / "dask-engines.json"  # `python -m benchmarks.scale_dask`
    dask = json.loads(dask_run.read_text()) if dask_run.exists() and not args.quick else None
    if args.report_only:
        results = json.loads(args.report_only.read_text())
        for path in args.merge:  # a separate run's figures replace this run's
            other = json.loads(path.read_text())
            if "tune" in results and "iteration" in other:  # tune keeps its own run's baseline
                results["tune"].setdefault("iteration", results["iteration"]["ours"]["median"])
            merged = [key for key in ("peer", *FIGURES) if key in other]
            results |= {key: other[key] for key in merged if key != "scale"}
            results["scale"] = {**results.get("scale", {}), **other.get("scale", {})}
            facts = {k: other.get(k) for k in ("argv", "finished", "bench_seconds", "load_before")}
            results.setdefault("merged", []).append({**facts, "figures": merged, "raw": str(path)})
        report.write(results, args.out, extra, dask)
        return
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="predictflow-bench-", dir=args.workdir))
    bench = Bench(args, work)
    raw = args.json or work.parent / f"{work.name}.json"
    try:
        try:
            results = bench.scale_only() if args.scale_only else bench.main()
        finally:  # what was measured survives a failure (`--report-only` renders it)
            raw.write_text(json.dumps(bench.results, indent=2, default=str) + "\n")
        if not args.scale_only:
            report.write(results, args.out, extra, dask)
        bench.log(f"raw results: {raw}; report: {args.out}")
    finally:
        if args.keep:
            bench.log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
