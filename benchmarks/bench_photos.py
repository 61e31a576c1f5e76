"""Photos: what `tfcontrast train` gives on real colour images for a given time, and what a
pre-trained run gives a few labelled images.

Every run is the command line itself (`tfcontrast train` in a subprocess, exports off),
on `../shared/datasets/cifar10_small.npz` (32x32 CIFAR-10 photos, 10,000 training and
2,000 test images); its `metrics.json` is read back. Scores are the run's report: cosine
1-NN with every training label, kNN (k = 20) and 1-NN with 10 labels per class (mean of
5 draws), on the held-out images, with raw pixels beside them.

- `curve`: `--time_budget=M` for each budget (minutes of training; `default` for none,
  the recipe's own steps), with the recipe the images choose and any extra flags: a
  time-to-quality curve a user can pick a budget from. `--split val` trains on 80% of the training images and scores on the other 20%
  (stratified, seed 0): every choice of the recipes is made there; `--split test` (the
  default) reports on the test split.
- `few_shot`: the supervised run on 10 labelled training images per class (drawn with
  `--seed`), with `--backbone=PRETRAINED_RUN` against the same run from scratch; each is
  scored on the held-out images with those 100 images as the gallery.

    python benchmarks/bench_photos.py curve --budgets default,5,10,20 --runs runs/photos
    python benchmarks/bench_photos.py curve --split val --budgets 6 --flags=--width=16
    python benchmarks/bench_photos.py few_shot --pretrained runs/photos/budget_default

Writes `benchmarks/results/photos_<mode>.json` (or `--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import run_header, write_json  # noqa: E402

CIFAR10_SMALL = HERE.parent.parent / "shared" / "datasets" / "cifar10_small.npz"


def validation_npz(source: Path, folder: str) -> str:
    """The training images of `source` cut 80 / 20 (stratified, seed 0) into a Keras-layout
    `.npz` whose test split is the validation part."""
    from sklearn.model_selection import train_test_split

    with np.load(source) as data:
        x, y = data["x_train"], data["y_train"]
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )
    path = os.path.join(folder, "cifar10_small_val.npz")
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_val, y_test=y_val)
    return path


def few_labels_npz(source: Path, folder: str, per_class: int, seed: int) -> str:
    """`per_class` training images of each class of `source` (drawn with `seed`), with
    `source`'s test split."""
    with np.load(source) as data:
        x, y = data["x_train"], np.asarray(data["y_train"]).reshape(-1)
        x_test, y_test = data["x_test"], data["y_test"]
    rng = np.random.default_rng(seed)
    keep = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)]
    )
    path = os.path.join(folder, f"cifar10_small_{per_class}_per_class.npz")
    np.savez(path, x_train=x[keep], y_train=y[keep], x_test=x_test, y_test=y_test)
    return path


def train(data: str, run_dir: str, flags: list[str]) -> dict:
    """One `tfcontrast train` run; its metrics, wall seconds and the lines it printed."""
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "tfcontrast",
        "train",
        f"--data={data}",
        f"--run_dir={run_dir}",
        "--export=false",
        "--verbose=0",
        *flags,
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    lines = [line for line in done.stdout.splitlines() if not line.startswith(" ")]
    return {"flags": flags, "wall_seconds": round(wall, 1), "metrics": metrics, "output": lines}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("curve", "few_shot"))
    parser.add_argument("--split", choices=("val", "test"), default="test")
    parser.add_argument("--budgets", default="5,10,20", help="curve: minutes, comma-separated")
    parser.add_argument("--flags", action="append", default=[], help="extra train flags")
    parser.add_argument("--pretrained", help="few_shot: the pre-trained run directory")
    parser.add_argument("--per_class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default=None, help="where the runs go (default: a temp dir)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    out = Path(args.out or HERE / "results" / f"photos_{args.mode}.json")
    results = {**run_header("bench_photos"), "mode": args.mode, "split": args.split, "rows": []}
    with tempfile.TemporaryDirectory() as folder:
        runs = args.runs or folder
        if args.mode == "curve":
            data = str(CIFAR10_SMALL)
            if args.split == "val":
                data = validation_npz(CIFAR10_SMALL, folder)
            for budget in args.budgets.split(","):
                # "default": no budget, the recipe's own steps (what a bare command runs).
                timed = [] if budget == "default" else [f"--time_budget={budget}"]
                flags = [*timed, f"--seed={args.seed}", *args.flags]
                row = train(data, os.path.join(runs, f"budget_{budget}"), flags)
                row["budget_minutes"] = None if budget == "default" else float(budget)
                results["rows"].append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "output"}), flush=True)
                write_json(out, results)
        else:
            if not args.pretrained:
                parser.error("few_shot needs --pretrained=RUN_DIR")
            data = few_labels_npz(CIFAR10_SMALL, folder, args.per_class, args.seed)
            base = ["--algorithm=supcon", f"--seed={args.seed}", *args.flags]
            for name, extra in (
                ("scratch", []),
                ("pretrained", [f"--backbone={os.path.abspath(args.pretrained)}"]),
            ):
                row = train(data, os.path.join(runs, f"few_shot_{name}"), base + extra)
                row["start"] = name
                results["rows"].append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "output"}), flush=True)
                write_json(out, results)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
