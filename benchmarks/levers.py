"""Levers: measure what a change to the stages would win, without changing the stages.

Each lever runs the current way and the alternative on the same data in this one process and
prints one JSON object: {lever: {baseline, variant, baseline_seconds, variant_seconds, ...}}.

    python benchmarks/levers.py --data customers-200000.csv --work /tmp/dir
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from predictflow.model import build_classifier, build_featurizer, fit_classifier
from predictflow.params import load_params
from predictflow.schema import CATEGORICAL_FEATURES, CATEGORIES, FEATURES, TARGET, clean, read_raw


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, round(time.perf_counter() - started, 3)


def best_of(n: int, fn, *args, **kwargs) -> float:
    return min(timed(fn, *args, **kwargs)[1] for _ in range(n))


def auc(y, proba) -> float:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(y, proba)), 4)


def split(frame: pd.DataFrame, params) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        frame,
        test_size=params.prepare.test_size,
        random_state=params.base.seed,
        stratify=frame[TARGET],
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


def as_categorical(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.loc[:, list(FEATURES)].copy()
    for column in CATEGORICAL_FEATURES:
        out[column] = pd.Categorical(out[column], categories=list(CATEGORIES[column]))
    return out


def lever_categorical(train: pd.DataFrame, test: pd.DataFrame, params) -> dict[str, object]:
    """XGBoost native categorical splits on `category` columns vs the one-hot featurizer."""
    featurizer, t_fit = timed(build_featurizer(params.featurize).fit, train)
    (x_train, x_test), t_transform = timed(
        lambda: (featurizer.transform(train), featurizer.transform(test))
    )
    one_hot = build_classifier(params.model, params.base.seed)
    _, t_one_hot = timed(fit_classifier, one_hot, x_train, train[TARGET], x_test, test[TARGET])
    auc_one_hot = auc(test[TARGET], one_hot.predict_proba(x_test)[:, 1])

    (c_train, c_test), t_cat_prep = timed(lambda: (as_categorical(train), as_categorical(test)))
    native = build_classifier(params.model, params.base.seed)
    native.set_params(enable_categorical=True, max_cat_to_onehot=1)
    _, t_native = timed(fit_classifier, native, c_train, train[TARGET], c_test, test[TARGET])
    auc_native = auc(test[TARGET], native.predict_proba(c_test)[:, 1])

    watch_test = build_classifier(params.model, params.base.seed)
    _, t_watch_test = timed(
        watch_test.fit, x_train, train[TARGET], eval_set=[(x_test, test[TARGET])], verbose=False
    )
    with_auc = build_classifier(params.model, params.base.seed)
    with_auc.set_params(eval_metric=["logloss", "auc"])
    _, t_auc = timed(fit_classifier, with_auc, x_train, train[TARGET], x_test, test[TARGET])
    return {
        "native_categorical": {
            "baseline": "one-hot ColumnTransformer (45 float64 columns) + XGBoost",
            "variant": "pandas category columns + XGBoost enable_categorical",
            "in_use": "baseline",
            "baseline_seconds": round(t_fit + t_transform + t_one_hot, 3),
            "variant_seconds": round(t_cat_prep + t_native, 3),
            "detail": {
                "featurize_fit_s": t_fit,
                "featurize_transform_s": t_transform,
                "fit_one_hot_s": t_one_hot,
                "to_category_s": t_cat_prep,
                "fit_native_s": t_native,
                "roc_auc_one_hot": auc_one_hot,
                "roc_auc_native": auc_native,
                "features_bytes_one_hot": int(x_train.memory_usage(deep=True).sum()),
                "features_bytes_category": int(c_train.memory_usage(deep=True).sum()),
            },
        },
        "watch_split": {
            "baseline": "eval_set = train and test split every round (logloss)",
            "variant": "eval_set = test split only (train curve dropped)",
            "in_use": "baseline",
            "baseline_seconds": t_one_hot,
            "variant_seconds": t_watch_test,
        },
        "eval_metric": {
            "baseline": "eval_metric logloss + auc on both splits every round",
            "variant": "eval_metric logloss only (auc once at the end in evaluate)",
            "in_use": "variant",
            "baseline_seconds": t_auc,
            "variant_seconds": t_one_hot,
        },
    }


def lever_dtypes(frame: pd.DataFrame, work: Path) -> dict[str, object]:
    """Prepared splits as they are (strings) vs categorical columns; and CSV parsing engines."""
    path_str, path_cat = work / "prepared-str.parquet", work / "prepared-cat.parquet"
    cat = frame.copy()
    for column in CATEGORICAL_FEATURES:
        cat[column] = pd.Categorical(cat[column], categories=list(CATEGORIES[column]))
    w_str = best_of(2, frame.to_parquet, path_str, index=False)
    w_cat = best_of(2, cat.to_parquet, path_cat, index=False)
    r_str = best_of(2, pd.read_parquet, path_str)
    r_cat = best_of(2, pd.read_parquet, path_cat)
    return {
        "category_dtypes": {
            "baseline": "prepared splits with string columns (parquet)",
            "variant": "prepared splits with category columns (parquet)",
            "in_use": "baseline",
            "baseline_seconds": round(w_str + r_str, 3),
            "variant_seconds": round(w_cat + r_cat, 3),
            "detail": {
                "memory_bytes_str": int(frame.memory_usage(deep=True).sum()),
                "memory_bytes_category": int(cat.memory_usage(deep=True).sum()),
                "file_bytes_str": path_str.stat().st_size,
                "file_bytes_category": path_cat.stat().st_size,
            },
        },
    }


def lever_csv_engine(data: Path) -> dict[str, object]:
    """read_raw (pandas C parser, dtype=str) vs the pyarrow CSV engine, same string result."""
    c_engine = best_of(2, read_raw, data)
    arrow = best_of(2, pd.read_csv, data, dtype=str, keep_default_na=False, engine="pyarrow")
    return {
        "arrow_csv": {
            "baseline": "pandas C parser (read_raw, dtype=str)",
            "variant": "pandas read_csv(engine='pyarrow', dtype=str)",
            "in_use": "baseline",
            "baseline_seconds": c_engine,
            "variant_seconds": arrow,
        }
    }


def lever_intermediates(features: pd.DataFrame, work: Path) -> dict[str, object]:
    """The featurized split (one-hot float64) as parquet vs Arrow IPC (feather) vs float32."""
    out = {}
    variants = {
        "parquet": (lambda p: features.to_parquet(p, index=False), pd.read_parquet),
        "feather": (lambda p: features.to_feather(p), pd.read_feather),
        "feather_uncompressed": (
            lambda p: features.to_feather(p, compression="uncompressed"),
            pd.read_feather,
        ),
        "parquet_float32": (
            lambda p: features.astype("float32").to_parquet(p, index=False),
            pd.read_parquet,
        ),
    }
    for name, (write, read) in variants.items():
        path = work / f"features.{name}"
        w = best_of(2, write, path)
        r = best_of(2, read, path)
        out[name] = {"write_s": w, "read_s": r, "bytes": path.stat().st_size}
    return {
        "columnar_intermediates": {
            "baseline": "features as parquet (snappy), float64",
            "variant": "features as Arrow IPC (feather, lz4)",
            "in_use": "baseline",
            "baseline_seconds": round(out["parquet"]["write_s"] + out["parquet"]["read_s"], 3),
            "variant_seconds": round(out["feather"]["write_s"] + out["feather"]["read_s"], 3),
            "detail": out,
        }
    }


def python_seconds(code: list[str], cwd: Path, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, *code], cwd=cwd, check=True, capture_output=True)
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


def lever_imports(project: Path) -> dict[str, object]:
    """Process start-up: bare interpreter, each heavy import, each stage up to its argparse."""
    modules = {
        "python": "pass",
        "pandas": "import pandas",
        "sklearn (train_test_split)": "import sklearn.model_selection",
        "sklearn (featurizer)": "import predictflow.model",
        "xgboost": "import xgboost",
        "mlflow": "import mlflow",
        "dvclive": "import dvclive",
        "matplotlib.pyplot": "import matplotlib.pyplot",
    }
    imports = {name: python_seconds(["-c", code], project) for name, code in modules.items()}
    stages = {
        stage: python_seconds([f"stages/{stage}.py", "--help"], project)
        for stage in ("prepare", "featurize", "train", "evaluate", "register")
    }
    return {
        "lazy_imports": {
            "baseline": "each stage process imports at start-up (`stages/X.py --help`)",
            "variant": "floor: 5 x (interpreter + pandas)",
            "in_use": "baseline",
            "baseline_seconds": round(sum(stages.values()), 3),
            "variant_seconds": round(5 * imports["pandas"], 3),
            "detail": {"imports_s": imports, "stage_startup_s": stages},
        }
    }


def lever_mlflow(work: Path, steps: int = 200, metrics: int = 4) -> dict[str, object]:
    """Per-step metric logging (what autolog does each boosting round) vs one batch."""
    import mlflow
    from mlflow.entities import Metric
    from sklearn.linear_model import LogisticRegression

    store = work / "lever-mlflow"
    store.mkdir(exist_ok=True)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("levers", artifact_location=(store / "a").as_uri())
    names = [f"m{i}" for i in range(metrics)]

    def per_step() -> None:
        run = client.create_run(experiment)
        for step in range(steps):
            now = int(time.time() * 1000)
            client.log_batch(run.info.run_id, metrics=[Metric(n, 0.5, now, step) for n in names])

    def one_batch() -> None:
        run = client.create_run(experiment)
        now = int(time.time() * 1000)
        batch = [Metric(n, 0.5, now, step) for step in range(steps) for n in names]
        for start in range(0, len(batch), 1000):
            client.log_batch(run.info.run_id, metrics=batch[start : start + 1000])

    def asynchronous() -> None:
        run = client.create_run(experiment)
        for step in range(steps):
            now = int(time.time() * 1000)
            client.log_batch(
                run.info.run_id,
                metrics=[Metric(n, 0.5, now, step) for n in names],
                synchronous=False,
            )
        mlflow.flush_async_logging()

    per_step()  # warm the store and the code paths
    t_step, t_batch, t_async = best_of(2, per_step), best_of(2, one_batch), best_of(2, asynchronous)

    def dvclive_steps() -> None:
        from dvclive import Live

        with Live(str(work / "lever-live"), dvcyaml=False, save_dvc_exp=False) as live:
            for _ in range(steps):
                for name in names:
                    live.log_metric(name, 0.5)
                live.next_step()

    def dvclive_once() -> None:
        from dvclive import Live

        with Live(str(work / "lever-live-once"), dvcyaml=False, save_dvc_exp=False) as live:
            for name in names:
                for step in range(steps):
                    live.step = step
                    live.log_metric(name, 0.5)

    t_live, t_once = best_of(2, dvclive_steps), best_of(2, dvclive_once)

    x = np.random.default_rng(0).normal(size=(200, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))

    def log_model(pins: list[str] | None) -> None:
        with mlflow.start_run(experiment_id=experiment):
            mlflow.sklearn.log_model(
                model, name="m", serialization_format="cloudpickle", pip_requirements=pins
            )

    t_pinned = best_of(1, log_model, ["scikit-learn", "mlflow"])
    t_inferred = best_of(1, log_model, None)
    return {
        "mlflow_batch_logging": {
            "baseline": f"autolog-style: one log_batch per round ({steps} rounds x {metrics})",
            "variant": "the whole curve in one log_batch at the end",
            "in_use": "baseline",
            "baseline_seconds": t_step,
            "variant_seconds": t_batch,
            "detail": {"async_logging_s": t_async},
        },
        "dvclive_steps": {
            "baseline": f"DVCLive log_metric + next_step per round ({steps} x {metrics})",
            "variant": "each point at its step (`live.step = i`), summary written once",
            "in_use": "variant",
            "baseline_seconds": t_live,
            "variant_seconds": t_once,
        },
        "pinned_requirements": {
            "baseline": "log_model inferring pip requirements",
            "variant": "log_model with pip_requirements given (what train does)",
            "in_use": "variant",
            "baseline_seconds": t_inferred,
            "variant_seconds": t_pinned,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="raw-layout CSV")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    params = load_params(args.project / args.params)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        frame, _ = clean(read_raw(args.data), str(args.data))
        train, test = split(frame, params)
        results["rows"] = len(frame)
        results.update(lever_csv_engine(args.data))
        results.update(lever_dtypes(train, work))
        features = build_featurizer(params.featurize).fit(train).transform(train)
        features[TARGET] = train[TARGET].to_numpy()
        results.update(lever_intermediates(features, work))
        del features
        results.update(lever_categorical(train, test, params))
        results.update(lever_imports(args.project))
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        results.update(lever_mlflow(work))
    json.dump(results, sys.stdout)
    print()


if __name__ == "__main__":
    main()
