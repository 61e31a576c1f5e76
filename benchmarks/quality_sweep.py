"""One SimCLR tuning run on a validation split: the sweep behind the recipes' defaults.

Trains a `ContrastiveModel` on 80% of a data set's training images and scores the backbone
and projector outputs on the other 20% (stratified, seed 0): cosine 1-NN with every
label and 1-NN with 10 labels per class (mean of 5 draws). The test split is never read.
Each run appends one JSON line to `results/quality_sweep.jsonl`.

The model is the recipe's (`ContrastiveModel`, `ProjectionHead((hidden,), proj)`, warm-up
cosine Adam); what it varies beyond `bench_quality.py --set` are the ranges of the glyph
augmentation, so that the preset's defaults could be chosen.

    python benchmarks/quality_sweep.py --aug glyph --temp 0.5 --epochs 50
    python benchmarks/quality_sweep.py --aug glyph --backbone cifar_resnet18 --width 16 \\
        --rot 15 --shear 15 --zoom 0.8 1.2 --shift 0.15 --epochs 50
    python benchmarks/quality_sweep.py --data digits --aug digits --epochs 200
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from tfcontrast.evaluation import few_shot_1nn_scores, knn_accuracy  # noqa: E402
from tfcontrast.layers import PredictionHead, ProjectionHead  # noqa: E402
from tfcontrast.layers import augmentation as A  # noqa: E402
from tfcontrast.models import ContrastiveModel, algorithms, backbones  # noqa: E402
from tfcontrast.optimizers import warmup_cosine_decay  # noqa: E402

HERE = Path(__file__).resolve().parent
USPS = HERE.parent.parent / "shared" / "datasets" / "usps.npz"


def load(name):
    """Training images of the data set, cut 80/20 into (train, validation)."""
    if name == "usps":
        with np.load(USPS) as d:
            x, y = d["x_train"].astype("float32") / 255.0, d["y_train"]
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x, y = (digits.images / 16.0).astype("float32")[..., None], digits.target
        # The training part of `tfcontrast train`'s split (its held-out 30% is not read).
        x, _, y, _ = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    return train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)


def augmentation(args, size):
    if args.aug == "digits":
        return A.digits_augmentation(size, seed=0)
    layers = []
    if args.aug == "glyphcrop":
        layers.append(A.RandomResizedCrop(size, size, scale=(0.6, 1.0), ratio=(0.8, 1.25), seed=3))
    layers += [
        A.RandomAffine(args.rot, args.shear, tuple(args.zoom), args.shift, seed=0),
        A.ColorJitter(0.3, 0.3, 0.0, 0.0, p=0.8, seed=1),
        A.RandomGaussianNoise(0.05, p=0.5, seed=2),
    ]
    return keras.Sequential(layers)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="usps", choices=("usps", "digits"))
    p.add_argument("--algorithm", default="simclr")
    p.add_argument("--aug", default="glyph", choices=("glyph", "glyphcrop", "digits"))
    p.add_argument("--temp", type=float, default=None)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--wd", type=float, default=0.0)
    p.add_argument("--backbone", default="small_convnet")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--out", type=int, default=128, help="small_convnet's feature width")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--proj", type=int, default=64)
    p.add_argument("--rot", type=float, default=10)
    p.add_argument("--shear", type=float, default=10)
    p.add_argument("--zoom", type=float, nargs=2, default=(0.85, 1.1))
    p.add_argument("--shift", type=float, default=0.1)
    p.add_argument("--tag", default="")
    p.add_argument("--results", default=str(HERE / "results" / "quality_sweep.jsonl"))
    a = p.parse_args()
    keras.utils.set_random_seed(0)
    xt, xv, yt, yv = load(a.data)
    kw = {} if a.temp is None else {"temperature": a.temp}
    algo = type(algorithms.get(a.algorithm))(**kw)
    extra = {"output_dim": a.out} if a.backbone == "small_convnet" else {}
    model = ContrastiveModel(
        backbones.get(a.backbone, xt.shape[1:], width=a.width, **extra),
        projector=ProjectionHead((a.hidden,), a.proj),
        predictor=PredictionHead(a.hidden, a.proj) if algo.uses_predictor else None,
        algorithm=algo,
        augmentation=augmentation(a, xt.shape[1]),
    )
    steps = -(-len(xt) // a.batch) * a.epochs
    schedule = warmup_cosine_decay(a.lr, steps, warmup_steps=steps // 20)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=a.wd))
    start, cpu = time.time(), time.process_time()
    model.fit(xt, yt if algo.needs_labels else None, batch_size=a.batch, epochs=a.epochs, verbose=0)
    res = {"args": vars(a), "wall": round(time.time() - start, 1)}
    res["cpu"] = round(time.process_time() - cpu, 1)

    def score(ft, fv, name):
        res[name] = {
            "1nn": round(float(knn_accuracy(ft, yt, fv, yv, k=1)), 4),
            "10shot": round(float(few_shot_1nn_scores(ft, yt, fv, yv, draws=5).mean()), 4),
        }

    score(xt.reshape(len(xt), -1), xv.reshape(len(xv), -1), "pixels")
    ft = model.backbone.predict(xt, verbose=0, batch_size=512)
    fv = model.backbone.predict(xv, verbose=0, batch_size=512)
    score(ft, fv, "backbone")
    score(np.asarray(model.projector(ft)), np.asarray(model.projector(fv)), "projector")
    print(json.dumps(res))
    with open(a.results, "a") as f:
        f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
