"""Bare baselines: the pipeline's work in one process, without DVC, MLflow, DVCLive or parquet.

Each subcommand reuses the project's own functions (same contract, same featurizer, same
classifier, same params) and prints its phase timings as one JSON object on stdout.

    python benchmarks/bare.py pipeline --data data/customers.csv --params params.yaml
    python benchmarks/bare.py train --features-train ... --features-test ... --featurizer ...
    python benchmarks/bare.py predict --model models/model.pkl --input big.csv
    python benchmarks/bare.py reads --model models/model.pkl --input big.csv
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from pathlib import Path

STARTED = time.perf_counter()

import pandas as pd  # noqa: E402  (import time is part of what is measured)
from sklearn.model_selection import train_test_split  # noqa: E402

from predictflow.core.cleaning import clean  # noqa: E402
from predictflow.core.estimator import build_classifier, build_featurizer, fit_classifier  # noqa: E402
from predictflow.core.evaluation import classification_metrics  # noqa: E402
from predictflow.core.params import load_params  # noqa: E402
from predictflow.core.rawfile import read_raw  # noqa: E402
from predictflow.core.schema import FEATURES, TARGET  # noqa: E402
from predictflow.core.scoring import DEFAULT_CHUNK_ROWS  # noqa: E402
from predictflow.model import assemble  # noqa: E402


class Clock:
    """Phase timings: seconds since the last mark, under the phase's name."""

    def __init__(self) -> None:
        self.last = STARTED
        self.phases: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = round(now - self.last, 4)
        self.last = now


def pipeline(args: argparse.Namespace, clock: Clock) -> dict[str, object]:
    """prepare + featurize + train + evaluate, all in memory."""
    params = load_params(args.params)
    clock.mark("import")
    frame, _ = clean(read_raw(args.data), str(args.data))
    train, test = train_test_split(
        frame,
        test_size=params.prepare.test_size,
        random_state=params.base.seed,
        stratify=frame[TARGET],
    )
    train, test = train.reset_index(drop=True), test.reset_index(drop=True)
    clock.mark("prepare")
    featurizer = build_featurizer(params.featurize).fit(train)
    x_train, x_test = featurizer.transform(train), featurizer.transform(test)
    clock.mark("featurize")
    classifier = build_classifier(params.model, params.base.seed)
    fit_classifier(classifier, x_train, train[TARGET], x_test, test[TARGET])
    model = assemble(featurizer, classifier)
    clock.mark("train")
    proba = model.predict_proba(test.loc[:, list(FEATURES)])[:, 1].astype("float64")
    scores = classification_metrics(test[TARGET].to_numpy(), proba, params.evaluate.threshold)
    clock.mark("evaluate")
    return {"rows": len(frame), "roc_auc": scores["roc_auc"]}


def train_only(args: argparse.Namespace, clock: Clock) -> dict[str, object]:
    """What the `train` stage does minus tracking: read its inputs, fit, write the model."""
    params = load_params(args.params)
    clock.mark("import")
    train_set = pd.read_parquet(args.features_train)
    test_set = pd.read_parquet(args.features_test)
    with open(args.featurizer, "rb") as handle:
        featurizer = pickle.load(handle)
    clock.mark("read")
    classifier = build_classifier(params.model, params.base.seed)
    fit_classifier(
        classifier,
        train_set.drop(columns=[TARGET]),
        train_set[TARGET],
        test_set.drop(columns=[TARGET]),
        test_set[TARGET],
    )
    clock.mark("fit")
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "model.pkl", "wb") as handle:
        pickle.dump(assemble(featurizer, classifier), handle, protocol=5)
    clock.mark("write")
    return {"rows": len(train_set)}


def predict(args: argparse.Namespace, clock: Clock) -> dict[str, object]:
    """Load the pickled pipeline, clean the whole CSV leniently, predict_proba: no output file."""
    with open(args.model, "rb") as handle:
        model = pickle.load(handle)
    clock.mark("load")
    rows, _ = clean(
        read_raw(args.input), str(args.input), strict_categories=False, require_target=False
    )
    clock.mark("clean")
    proba = model.predict_proba(rows.loc[:, list(FEATURES)])[:, 1]
    clock.mark("predict")
    return {"rows": len(rows), "mean_proba": round(float(proba.mean()), 6)}


def reads(args: argparse.Namespace, clock: Clock) -> dict[str, object]:
    """What `predictflow drift` does to a batch minus the statistics: the same chunked reads,
    lenient cleaning and scoring (the score is one of the compared columns)."""
    with open(args.model, "rb") as handle:
        model = pickle.load(handle)
    clock.mark("load")
    rows = 0
    for chunk in read_raw(args.input, chunksize=DEFAULT_CHUNK_ROWS):
        frame, _ = clean(chunk, str(args.input), strict_categories=False, require_target=False)
        model.predict_proba(frame.loc[:, list(FEATURES)])
        rows += len(frame)
    clock.mark("read_clean_score")
    return {"rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pipe = commands.add_parser("pipeline", help="prepare + featurize + train + evaluate")
    pipe.add_argument("--data", type=Path, required=True)
    pipe.add_argument("--params", type=Path, default=Path("params.yaml"))
    pipe.set_defaults(func=pipeline)
    train = commands.add_parser("train", help="the train stage's work without tracking")
    train.add_argument("--features-train", type=Path, required=True)
    train.add_argument("--features-test", type=Path, required=True)
    train.add_argument("--featurizer", type=Path, required=True)
    train.add_argument("--params", type=Path, default=Path("params.yaml"))
    train.set_defaults(func=train_only)
    score = commands.add_parser("predict", help="batch scoring with predict_proba")
    score.add_argument("--model", type=Path, required=True)
    score.add_argument("--input", type=Path, required=True)
    score.set_defaults(func=predict)
    scan = commands.add_parser("reads", help="drift's chunked reads and scoring, no statistics")
    scan.add_argument("--model", type=Path, required=True)
    scan.add_argument("--input", type=Path, required=True)
    scan.set_defaults(func=reads)
    args = parser.parse_args(argv)
    clock = Clock()
    facts = args.func(args, clock)
    facts["phases"] = clock.phases
    json.dump(facts, sys.stdout)
    print()


if __name__ == "__main__":
    main()
