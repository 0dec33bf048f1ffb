"""`make bench`: PredictFlow's costs as ratios against a bare baseline measured in the same run.

Everything runs in throw-away git repositories made from this working tree (MLflow store, DVC
cache and data inside them, `MLFLOW_TRACKING_URI` unset), with the real `dvc repro`, the real
stage commands and the real `predictflow predict`. Each figure is a median over `--repeats`
(min and max shown) of ours and of a bare one-process baseline, run alternately so that load
from anything else on the machine hits both sides alike.

    python -m benchmarks.run                           # the full run (10-18 min on 2 cores)
    python -m benchmarks.run --quick --out /tmp/b.md   # 2,000 rows, 1 repeat, no install
    python -m benchmarks.run --scale-only --sizes 5000000 --json five.json --budget 1e9
    python -m benchmarks.run --report-only raw.json --extra-scale five.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from benchmarks import measure, report
from benchmarks.tracking_share import analyse
from predictflow import lineage

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
DEFAULT_ROWS = 7043  # the pinned data set (`predictflow data ensure`)
LEAKY_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_EXPERIMENT_ID",
    "DVC_ROOT",
    "DVC_EXP_NAME",
    "DVC_STAGE",
    "VIRTUAL_ENV",
    "PYTHONPATH",
)
STAGES = ("prepare", "featurize", "train", "evaluate", "register")


@dataclass
class Series:
    """Repeated measurements of one command: wall seconds and peak RSS."""

    seconds: list[float] = field(default_factory=list)
    peak_rss: list[int] = field(default_factory=list)

    def add(self, m: measure.Measurement) -> None:
        self.seconds.append(round(m.seconds, 3))
        self.peak_rss.append(m.peak_rss)

    def summary(self) -> dict[str, float]:
        return {
            "median": round(statistics.median(self.seconds), 3),
            "min": min(self.seconds),
            "max": max(self.seconds),
            "n": len(self.seconds),
            "peak_rss": max(self.peak_rss),
        }


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.started = time.monotonic()
        self.results: dict[str, object] = {"skipped": {}}
        self.project = work / "project"
        self.rows_csv: dict[int, Path] = {}

    # -- helpers --------------------------------------------------------------------------
    def log(self, message: str) -> None:
        print(f"[bench {self.elapsed():6.0f}s] {message}", file=sys.stderr, flush=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def has_time(self, needed: float) -> bool:
        return self.elapsed() + needed <= self.args.budget

    def env(self, repo: Path | None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENV}
        env.update(
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            GIT_AUTHOR_NAME="PredictFlow Bench",
            GIT_AUTHOR_EMAIL="bench@predictflow.invalid",
            GIT_COMMITTER_NAME="PredictFlow Bench",
            GIT_COMMITTER_EMAIL="bench@predictflow.invalid",
            DVC_NO_ANALYTICS="1",
        )
        if repo is not None:  # the repo's own code, not the editable install's
            env["PYTHONPATH"] = str(repo / "src")
        env.update(extra)
        return env

    def run(self, argv: list[str | Path], cwd: Path, **kwargs) -> measure.Measurement:
        return measure.run([str(a) for a in argv], cwd, self.env(cwd), **kwargs)

    def git(self, repo: Path, *args: str) -> None:
        self.run(["git", *args], repo)

    # -- set-up ---------------------------------------------------------------------------
    def copy_project(self) -> None:
        """This working tree's files (what git tracks or would track) as a new git repo."""
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout.decode()
        for name in filter(None, listed.split("\0")):
            source = REPO / name
            if source.is_file():
                target = self.project / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        self.git(self.project, "init", "-q", "-b", "main")
        self.git(self.project, "add", "-A")
        self.git(self.project, "commit", "-q", "-m", "benchmark copy")
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        self.results["project"] = {"commit": commit, "dirty": bool(dirty)}

    def csv(self, rows: int) -> Path:
        """A synthetic raw file of `rows` customers (generated once per run)."""
        if rows not in self.rows_csv:
            path = self.work / "data" / f"customers-{rows}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.run(
                [BIN / "predictflow", "data", "synth", "--rows", rows, "--out", path], self.project
            )
            self.rows_csv[rows] = path
        return self.rows_csv[rows]

    def repo_for(self, rows: int) -> Path:
        """A clone of the project whose pinned data has `rows` customers, committed."""
        repo = self.work / f"rows-{rows}"
        if repo.exists():
            return repo
        self.run(["git", "clone", "-q", self.project, repo], self.work)
        if rows == DEFAULT_ROWS:
            self.run([BIN / "predictflow", "data", "ensure"], repo)
        else:
            shutil.copyfile(self.csv(rows), repo / "data" / "customers.csv")
            self.run([BIN / "dvc", "add", "-q", "data/customers.csv"], repo)
            self.git(repo, "commit", "-q", "-am", f"data: {rows} synthetic customers")
        return repo

    # -- figures 1 and 3: the pipeline against the bare script ----------------------------
    def pipeline_vs_bare(self, rows: int, repeats: int, warm_up: bool) -> dict[str, object]:
        repo = self.repo_for(rows)
        self.log(f"pipeline vs bare at {rows:,} rows ({repeats} repeat(s))")
        first = None
        if warm_up:  # creates the MLflow store and registers once; timed but not in the median
            first = self.run([BIN / "dvc", "repro"], repo, poll=True)
        ours, bare = Series(), Series()
        runs, phases = [], []
        for _ in range(repeats):
            command = ["repro", "-f"] if warm_up or ours.seconds else ["repro"]
            m = self.run([BIN / "dvc", *command], repo, poll=True)
            ours.add(m)
            runs.append(m)
            b = self.run(
                [BIN / "python", BENCH / "bare.py", "pipeline", "--data", "data/customers.csv"],
                repo,
            )
            bare.add(b)
            phases.append(json.loads(b.stdout.strip().splitlines()[-1]))
        middle = sorted(range(len(runs)), key=lambda i: runs[i].seconds)[len(runs) // 2]
        stages = {
            name: {
                "seconds": round(runs[middle].stages[name].seconds, 3),
                "peak_rss": runs[middle].stages[name].peak_rss,
            }
            for name in STAGES
            if name in runs[middle].stages
        }
        return {
            "rows": rows,
            "ours": ours.summary(),
            "bare": bare.summary(),
            "ratio": round(ours.summary()["median"] / bare.summary()["median"], 3),
            "first_run_seconds": round(first.seconds, 3) if first else None,
            "stages": stages,
            "stages_run_seconds": round(runs[middle].seconds, 3),
            "bare_phases": phases[
                sorted(range(len(phases)), key=lambda i: bare.seconds[i])[len(phases) // 2]
            ]["phases"],
            "repo": str(repo),
        }

    # -- figure 2 -------------------------------------------------------------------------
    def noop(self, repo: Path, repeats: int) -> dict[str, object]:
        self.log("no-op dvc repro vs dvc status")
        status = self.run([BIN / "dvc", "status"], repo)
        if "up to date" not in status.stdout:
            raise RuntimeError(f"the pipeline is not up to date for the no-op figure:\n{status}")
        ours, base = Series(), Series()
        for _ in range(max(repeats, 5)):
            ours.add(self.run([BIN / "dvc", "repro"], repo))
            base.add(self.run([BIN / "dvc", "status"], repo))
        return {
            "ours": ours.summary(),
            "bare": base.summary(),
            "ratio": round(ours.summary()["median"] / base.summary()["median"], 3),
        }

    # -- figure 4 -------------------------------------------------------------------------
    def scoring(self, repo: Path, sizes: list[int], repeats: int) -> dict[str, object]:
        out = {}
        for rows in sizes:
            self.log(f"batch scoring {rows:,} rows")
            source = self.csv(rows)
            ours, bare = Series(), Series()
            for _ in range(repeats):
                ours.add(
                    self.run(
                        [
                            BIN / "predictflow",
                            "predict",
                            "--model",
                            "models:/churn-predictor@staging",
                            "--input",
                            source,
                            "--output",
                            self.work / "scores.csv",
                            "--json",
                        ],
                        repo,
                    )
                )
                bare.add(
                    self.run(
                        [
                            BIN / "python",
                            BENCH / "bare.py",
                            "predict",
                            "--model",
                            "models/model.pkl",
                            "--input",
                            source,
                        ],
                        repo,
                    )
                )
            o, b = ours.summary(), bare.summary()
            out[str(rows)] = {
                "rows": rows,
                "ours": o,
                "bare": b,
                "ours_rows_per_s": round(rows / o["median"]),
                "bare_rows_per_s": round(rows / b["median"]),
                "ratio": round(b["median"] / o["median"], 3),
            }
        return out

    # -- figure 5 -------------------------------------------------------------------------
    @staticmethod
    def train_argv(repo: Path) -> list[str]:
        """The train stage's command from dvc.yaml, without its leading `python`."""
        stage_cmd = lineage.read_pipeline(repo)["stages"]["train"]["cmd"]
        argv = shlex.split(stage_cmd)
        if argv[0] != "python":
            raise RuntimeError(f"unexpected train command: {stage_cmd}")
        return argv[1:]

    def tracking(self, repo: Path, rows: int) -> dict[str, object]:
        self.log(f"train stage under cProfile at {rows:,} rows")
        profile = self.work / "train.prof"
        argv = self.train_argv(repo)
        m = self.run([BIN / "python", "-m", "cProfile", "-o", profile, *argv], repo)
        result: dict[str, object] = {"rows": rows, "wall_seconds": round(m.seconds, 3)}
        result.update(analyse(profile))
        return result

    def differential(self, repo: Path, rows: int) -> dict[str, object]:
        """The train stage command against a bare script doing its reads, fit and pickle."""
        self.log(f"train stage vs bare train at {rows:,} rows")
        argv = self.train_argv(repo)
        stages, bares = Series(), Series()
        for _ in range(2):
            stages.add(self.run([BIN / "python", *argv], repo))
            bare = self.run(
                [
                    BIN / "python",
                    BENCH / "bare.py",
                    "train",
                    "--features-train",
                    "data/features/train.parquet",
                    "--features-test",
                    "data/features/test.parquet",
                    "--featurizer",
                    "models/featurizer.pkl",
                ],
                repo,
            )
            bares.add(bare)
        stage_s, bare_s = stages.summary()["median"], bares.summary()["median"]
        return {
            "stage": stages.summary(),
            "bare": bares.summary(),
            "stage_seconds": stage_s,
            "bare_seconds": bare_s,
            "share": round(1 - bare_s / stage_s, 4),
        }

    # -- figure 6 and the install lever ---------------------------------------------------
    def fresh_clone(self) -> dict[str, object]:
        self.log("fresh clone: make install + make repro (new .venv)")
        clone = self.work / "fresh"
        self.run(["git", "clone", "-q", self.project, clone], self.work)
        # nothing of this venv: make creates its own from the system Python
        path = os.pathsep.join(
            p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != BIN
        )
        # an empty uv cache, so the install downloads every wheel as a first install does
        env = self.env(None, PATH=path, UV_CACHE_DIR=str(self.work / "uv-cache"))
        install = measure.run(["make", "install"], clone, env)
        repro = measure.run(["make", "repro"], clone, env)
        result = {
            "install_seconds": round(install.seconds, 3),
            "repro_seconds": round(repro.seconds, 3),
            "total_seconds": round(install.seconds + repro.seconds, 3),
            "venv_mb": round(_du(clone / ".venv") / 1e6),
        }
        if self.args.levers and self.has_time(240):
            result["pip"] = self.pip_install(clone, env)
        return result

    def pip_install(self, clone: Path, env: dict[str, str]) -> dict[str, object]:
        """The install lever's baseline: the same pinned set with pip alone, into a new venv."""
        self.log("install lever: pip install")
        python = shutil.which("python3.11", path=env["PATH"]) or sys.executable
        venv = self.work / "pip-venv"
        started = time.perf_counter()
        measure.run([python, "-m", "venv", venv], clone, env)
        measure.run(
            [venv / "bin" / "pip", "install", "-q", "-c", "constraints.txt", "-e", ".[dev]"],
            clone,
            env,
        )
        seconds = time.perf_counter() - started
        shutil.rmtree(venv)
        return {"seconds": round(seconds, 3)}

    # -- levers ---------------------------------------------------------------------------
    def levers(self, rows: int) -> dict[str, object]:
        self.log(f"levers at {rows:,} rows")
        m = self.run(
            [BIN / "python", BENCH / "levers.py", "--data", self.csv(rows), "--work", self.work],
            self.project,
            timeout=1200,
        )
        return json.loads(m.stdout.strip().splitlines()[-1])

    # -- the whole run --------------------------------------------------------------------
    def scale_only(self) -> dict[str, object]:
        """Only pipeline vs bare at `--sizes`, one cold run each (for sizes too big for `bench`)."""
        self.results["machine"] = machine()
        self.results["load_before"] = os.getloadavg()
        self.copy_project()
        self.results["scale"] = {
            str(rows): self.pipeline_vs_bare(rows, 1, warm_up=False) for rows in self.args.sizes
        }
        self.results["load_after"] = os.getloadavg()
        self.results["bench_seconds"] = round(self.elapsed(), 1)
        self.results["argv"] = sys.argv[1:]
        self.results["finished"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return self.results

    def main(self) -> dict[str, object]:
        args = self.args
        self.results["machine"] = machine()
        self.results["load_before"] = os.getloadavg()
        self.copy_project()
        default_rows = args.default_rows
        scale: dict[str, object] = {}
        fig1 = self.pipeline_vs_bare(default_rows, args.repeats, warm_up=not args.quick)
        scale[str(default_rows)] = fig1
        self.results["figure1"] = fig1
        self.results["figure2"] = self.noop(self.repo_for(default_rows), args.repeats)
        for rows in args.sizes:
            if str(rows) in scale:
                continue
            big = rows >= 1_000_000
            if rows > args.big_rows and not self.has_time(rows / 1e6 * 300):
                self.results["skipped"][f"scale {rows:,}"] = "time budget"
                continue
            # above the default size: one warm-up and two repeats; from 1M rows: one cold run
            repeats = 1 if big else min(args.repeats, 2)
            scale[str(rows)] = self.pipeline_vs_bare(
                rows, repeats, warm_up=not big and not args.quick
            )
        self.results["scale"] = scale
        big_rows = max(int(r) for r in scale if int(r) <= args.big_rows)
        big_repo = self.repo_for(big_rows)
        self.results["figure3"] = scale[str(big_rows)]
        self.results["figure4"] = self.scoring(
            big_repo, args.score_sizes, 1 if args.quick else args.score_repeats
        )
        self.results["figure5"] = self.tracking(big_repo, big_rows)
        if args.quick or args.no_install:
            self.results["skipped"]["figure6"] = "--quick" if args.quick else "--no-install"
        else:
            self.results["figure6"] = self.fresh_clone()
        if not args.quick and args.levers and self.has_time(150):
            self.results["levers"] = self.levers(args.lever_rows)
        elif not args.quick:
            self.results["skipped"]["levers"] = "time budget" if args.levers else "--no-levers"
        # figure 5 cross-check without a profiler: last, as it is the first thing to drop
        if not args.quick and args.differential and self.has_time(big_rows / 1e6 * 240):
            self.results["figure5"]["differential"] = self.differential(big_repo, big_rows)
        elif not args.quick and args.differential:
            self.results["skipped"]["figure 5 cross-check"] = "time budget"
        self.results["load_after"] = os.getloadavg()
        self.results["bench_seconds"] = round(self.elapsed(), 1)
        self.results["argv"] = sys.argv[1:]
        self.results["finished"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return self.results


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = next(
            int(line.split()[1]) * 1024
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem = 0
    versions = {}
    for package in (
        "dvc",
        "dvclive",
        "mlflow",
        "xgboost-cpu",
        "xgboost",
        "scikit-learn",
        "pandas",
        "numpy",
        "pyarrow",
    ):
        with contextlib.suppress(PackageNotFoundError):
            versions[package] = version(package)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def load_extra(args: argparse.Namespace) -> list[dict]:
    """Scale points measured by separate `--scale-only` runs (each with its own bare runs)."""
    extra = []
    for path in args.extra_scale:
        raw = json.loads(path.read_text())
        for point in raw["scale"].values():
            extra.append({**point, "finished": raw.get("finished"), "argv": raw.get("argv")})
    return extra


def parse_sizes(text: str) -> list[int]:
    return sorted({int(float(part)) for part in text.split(",") if part.strip()})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=None,
        help="rows for the scale figure, comma-separated (default 7043,100000,1000000)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="repeats for small sizes (default 3)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2,000 rows, 1 repeat, no fresh-clone install, no levers",
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument(
        "--plot", type=Path, default=None, help="PNG (default benchmark_scaling.png beside --out)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="raw results (default benchmarks.json in the tmp dir)",
    )
    parser.add_argument("--no-install", action="store_true", help="skip figure 6 (fresh clone)")
    parser.add_argument("--no-levers", dest="levers", action="store_false", help="skip levers")
    parser.add_argument("--lever-rows", type=int, default=100_000)
    parser.add_argument(
        "--differential",
        action="store_true",
        help="figure 5 cross-check: train stage vs bare train, twice each (~3 min at 1M rows; "
        "only meaningful on an otherwise idle machine)",
    )
    parser.add_argument(
        "--also",
        type=Path,
        action="append",
        default=[],
        metavar="RAW_JSON",
        help="with --report-only: raw results of other full runs, shown as run-to-run variation",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=1140.0,
        help="seconds; optional parts (levers, uv, sizes above 1M) are skipped past it",
    )
    parser.add_argument(
        "--scale-only",
        action="store_true",
        help="only pipeline vs bare at --sizes (one cold run each); writes --json, no report",
    )
    parser.add_argument(
        "--extra-scale",
        type=Path,
        action="append",
        default=None,
        help="raw JSON of a --scale-only run: its points join the scale table and plot "
        "(default: benchmarks/results/scale-*.json; none with --quick)",
    )
    parser.add_argument(
        "--report-only",
        type=Path,
        default=None,
        metavar="RAW_JSON",
        help="rewrite --out/--plot from the raw results of an earlier run (no measuring)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary repositories")
    parser.add_argument("--workdir", type=Path, default=None)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.default_rows = 2000
        args.sizes = args.sizes or [2000]
        args.repeats = args.repeats or 1
        args.score_sizes = [1000, 2000]
        args.big_rows = max(args.sizes)
        args.score_repeats = 1
    else:
        args.default_rows = DEFAULT_ROWS
        args.sizes = args.sizes or [DEFAULT_ROWS, 100_000, 1_000_000]
        args.repeats = args.repeats or 3
        args.score_sizes = [100_000, 1_000_000]
        args.big_rows = min(1_000_000, max(args.sizes))
        args.score_repeats = 1
    args.plot = args.plot or args.out.with_name("benchmark_scaling.png")
    if args.extra_scale is None:
        args.extra_scale = [] if args.quick else sorted(BENCH.glob("results/scale-*.json"))
    if args.report_only:
        results = json.loads(args.report_only.read_text())
        others = [json.loads(path.read_text()) for path in args.also]
        report.write(
            results,
            args.out,
            args.plot,
            quick=args.quick,
            extra=load_extra(args),
            others=others,
            source="python -m benchmarks.run " + " ".join(argv or sys.argv[1:]),
        )
        print(f"wrote {args.out} and {args.plot}", file=sys.stderr)
        return
    work = Path(tempfile.mkdtemp(prefix="predictflow-bench-", dir=args.workdir))
    bench = Bench(args, work)
    try:
        results = bench.scale_only() if args.scale_only else bench.main()
        raw = args.json or work.parent / f"{work.name}.json"
        raw.write_text(json.dumps(results, indent=2, default=str) + "\n")
        if args.scale_only:
            bench.log(f"raw results: {raw}")
            return
        report.write(results, args.out, args.plot, quick=args.quick, extra=load_extra(args))
        bench.log(f"wrote {args.out} and {args.plot} (raw results: {raw})")
    finally:
        if args.keep:
            bench.log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
