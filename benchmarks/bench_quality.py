"""Embedding quality on real handwritten digits: every algorithm against raw pixels.

Each row trains a model from scratch through the code path of `tfcontrast train`
(`tfcontrast.models.recipes`: the algorithm's recipe, the automatic augmentation preset,
the same optimiser, schedule and epochs) and scores its served embedding on held-out
images, with cosine similarity:

- 1-NN accuracy with every training label;
- 1-NN accuracy with 10 labels per class (the label-efficient score; mean of 5 draws,
  seeds 0-4, the same draws for every row);
- a linear probe (logistic regression on the standardised embeddings, all labels);
- MAP@R of each held-out image against the training images (the ranking of all its
  same-class images: it still separates settings where a validation 1-NN is saturated);
- wall and CPU seconds of training.

Data sets: USPS (`../shared/datasets/usps.npz`, 16x16, 7,291 training and 2,007 test
images: the official test split) and scikit-learn's 8x8 digits (1,257 / 540, the split of
`tfcontrast train`). `--split val` scores on a validation split cut from the training
images instead (20%, stratified, cut with `--seed`, which also seeds the training) and
trains on the rest: every choice of the recipes is made there, never on the test split.

Supervised rows: SupCon and, through the `metric` algorithm (the loss on the projections
of two views of each image, as SupCon's), triplet (semi-hard), multi-similarity and the
proxy losses (ArcFace, CosFace, Sub-center ArcFace, NormalizedSoftmax, ProxyNCA,
ProxyAnchor, each with its defaults and its `recipe_defaults`): the same `ContrastiveModel`, recipe and epochs as
`tfcontrast train --algorithm=metric --loss=...`.

    python benchmarks/bench_quality.py                          # every row, both data sets
    python benchmarks/bench_quality.py --split val --datasets usps --rows simclr \\
        --set options.temperature=0.2 --set epochs=50           # one tuning run
    python benchmarks/bench_quality.py --quick                  # 1 epoch each, smoke

Multi-crop rows: `--set local_views=4` adds 4 local crops (`Recipe.local_views`, crops of
the library's default size and scale); `--set local_size=16 --set "local_scale=(0.3, 0.6)"`
sets their side and area fraction (`Recipe.local_size`, `Recipe.local_scale`).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import machine_info, write_json  # noqa: E402

from tfcontrast import cli  # noqa: E402
from tfcontrast.evaluation import (  # noqa: E402
    few_shot_1nn_scores,
    knn_accuracy,
    linear_probe,
    retrieval_metrics,
)
from tfcontrast.models import algorithms, recipes  # noqa: E402

USPS = HERE.parent.parent / "shared" / "datasets" / "usps.npz"
CIFAR10_SMALL = HERE.parent.parent / "shared" / "datasets" / "cifar10_small.npz"
DATASETS = {"usps": str(USPS), "digits": "digits", "cifar10_small": str(CIFAR10_SMALL)}
# Every registered algorithm that trains without labels (the supervised ones are listed
# with their losses below).
SELF_SUPERVISED = [
    name for name in algorithms.names() if not algorithms.get_class(name).needs_labels
]
# Supervised rows that run the `metric` algorithm with a loss (and its options).
# Triplet: semi-hard mining (FaceNet's remedy for the collapse hardest negatives cause
# from scratch, and the loss's default). Batch-hard is kept as the row that shows that
# collapse: on the USPS validation split (50 epochs) semi-hard reached 1-NN 0.977,
# batch-hard 0.637 on random batches, 0.599 on 10 x 8 P x K batches, and 0.781 on those
# with Hermans et al.'s soft margin and Euclidean distance
# (results/quality_val_50_epochs_triplet_*.json).
METRIC_ROWS = {
    "triplet": {"loss": "triplet", "loss_options": {"miner": "semi_hard"}},
    "triplet_batch_hard": {"loss": "triplet", "loss_options": {"miner": "batch_hard"}},
    "multi_similarity": {"loss": "multi_similarity"},
    "arcface": {"loss": "arcface"},
    "cosface": {"loss": "cosface"},
    "subcenter_arcface": {"loss": "subcenter_arcface"},
    "normalized_softmax": {"loss": "normalized_softmax"},
    "proxy_nca": {"loss": "proxy_nca"},
    "proxy_anchor": {"loss": "proxy_anchor"},
}
SUPERVISED = ["supcon", *METRIC_ROWS]
ROWS = SELF_SUPERVISED + SUPERVISED


def load(dataset: str, split: str, seed: int = 0):
    """`(x_train, y_train, x_eval, y_eval)` as `tfcontrast train` loads them."""
    train, test = cli.load_data(DATASETS[dataset], seed=seed)
    (x, y), (x_test, y_test) = train.arrays(), test.arrays()
    if split == "test":
        return x, y, x_test, y_test
    from sklearn.model_selection import train_test_split

    x, x_val, y, y_val = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return x, y, x_val, y_val


def train(row: str, recipe, x, y, seed: int):
    """A trained model whose `predict` gives the served embedding, and its note."""
    keras.utils.set_random_seed(seed)
    model, note = recipes.build_model(recipe, x.shape[1:], seed=seed, sample=x, labels=y)
    recipes.compile_model(model, recipe, len(x))
    recipes.fit(model, recipe, x, y)
    return model, note


def embed(model, recipe, images, serve=None):
    """The served embedding of `images` (or the other one, with `serve`)."""
    features = model.backbone.predict(images, verbose=0, batch_size=512)
    if (serve or recipe.serve) == "backbone":
        return features
    return np.asarray(model.projector(features, training=False))


def scores(train_emb, train_y, eval_emb, eval_y, draws: int = 5) -> dict:
    return {
        "1nn": float(knn_accuracy(train_emb, train_y, eval_emb, eval_y, k=1)),
        "knn20": float(knn_accuracy(train_emb, train_y, eval_emb, eval_y, k=20)),
        "10_labels_1nn": float(
            few_shot_1nn_scores(train_emb, train_y, eval_emb, eval_y, draws=draws).mean()
        ),
        "linear_probe": float(linear_probe(train_emb, train_y, eval_emb, eval_y)),
        # Mean average precision over each image's R same-class training images: not
        # saturated where 1-NN is (a validation split at 1-NN 0.994 has ~9 errors).
        "map_at_r": float(
            retrieval_metrics(eval_emb, eval_y, train_emb, train_y, ks=(1,))["map_at_r"]
        ),
    }


def _parse_set(items):
    """`--set key=value` pairs (`options.NAME=value` for algorithm options)."""
    overrides, options = {}, {}
    for item in items or ():
        key, _, text = item.partition("=")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        if key.startswith("options."):
            options[key[8:]] = value
        else:
            overrides[key] = value
    return overrides, options


def recipe_for(row: str, overrides: dict, options: dict):
    if row in METRIC_ROWS:
        return recipes.Recipe.for_algorithm(
            "metric", **overrides, options={**METRIC_ROWS[row], **options}
        )
    return recipes.Recipe.for_algorithm(row, **overrides, options=options)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="usps,digits")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument("--set", action="append", help="recipe override key=value")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="1 epoch per row (smoke only)")
    parser.add_argument(
        "--online_probe",
        action="store_true",
        help="train an online linear probe too and score it beside the offline one",
    )
    parser.add_argument("--out", default=None, help="JSON path (default results/quality.json)")
    args = parser.parse_args(argv)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # predict's retracing notes for each new model
    overrides, options = _parse_set(args.set)
    if args.quick:
        overrides["epochs"] = 1
    if args.online_probe:
        overrides["online_probe"] = True
    default_name = (
        "quality.json" if args.split == "test" and not args.set else "quality_scratch.json"
    )
    out = Path(args.out) if args.out else HERE / "results" / default_name
    results = {
        "benchmark": "bench_quality",
        "command": "python benchmarks/bench_quality.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine_info(),
        "split": args.split,
        "seed": args.seed,
        "rows": [],
    }
    for dataset in args.datasets.split(","):
        x, y, x_eval, y_eval = load(dataset, args.split, args.seed)
        flat = scores(x.reshape(len(x), -1), y, x_eval.reshape(len(x_eval), -1), y_eval)
        results["rows"].append({"dataset": dataset, "row": "raw_pixels", **flat})
        print(f"{dataset}: {len(x)} training / {len(x_eval)} {args.split} images; pixels {flat}")
        for row in args.rows.split(","):
            recipe = recipe_for(row, overrides, options)
            start, cpu = time.perf_counter(), time.process_time()
            model, note = train(row, recipe, x, y, args.seed)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            emb = embed(model, recipe, x), embed(model, recipe, x_eval)
            record = {
                "dataset": dataset,
                "row": row,
                "recipe": recipe.to_dict(),
                # the options the algorithm was built with, recipe defaults filled in
                "algorithm": json.loads(json.dumps(model.algorithm.get_config(), default=str)),
                "epochs": recipe.epochs_for(len(x)),
                "augmentation": note,
                "wall_seconds": round(wall, 1),
                "cpu_seconds": round(cpu, 1),
                **scores(emb[0], y, emb[1], y_eval),
            }
            if recipe.online_probe:  # the online probe on the clean backbone features
                features = (
                    emb[1]
                    if recipe.serve == "backbone"
                    else embed(model, recipe, x_eval, "backbone")
                )
                logits = keras.ops.convert_to_numpy(model.online_probe(features))
                record["online_probe"] = float(np.mean(logits.argmax(1) == y_eval))
            if args.split == "val":  # for the serve choice
                other = "projector" if recipe.serve == "backbone" else "backbone"
                record[f"{other}_scores"] = scores(
                    embed(model, recipe, x, other), y, embed(model, recipe, x_eval, other), y_eval
                )
            results["rows"].append(record)
            print(json.dumps({k: v for k, v in record.items() if k not in ("recipe", "algorithm")}))
            write_json(out, results)
    print(table(results))
    print(f"wrote {out}")


def table(results) -> str:
    """The run's rows; with `--online_probe`, the online probe beside the offline one."""
    online = any("online_probe" in r for r in results["rows"])
    header = "| data | row | epochs | CPU s | wall s | 1-NN | 10 labels/class 1-NN | linear probe |"
    lines = [header + (" online probe |" if online else ""), "|---" * (9 if online else 8) + "|"]
    for r in results["rows"]:
        line = (
            f"| {r['dataset']} | {r['row'].replace('_', ' ')} | {r.get('epochs', '')} | "
            f"{r.get('cpu_seconds', '')} | {r.get('wall_seconds', '')} | {r['1nn']:.3f} | "
            f"{r['10_labels_1nn']:.3f} | {r['linear_probe']:.3f} |"
        )
        if online:
            line += f" {r['online_probe']:.3f} |" if "online_probe" in r else "  |"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
