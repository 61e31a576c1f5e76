"""Shared setup of the `*_digits.py` examples: data, model, training and evaluation.

Not a recipe itself. Each `<method>_digits.py` script keeps only what is specific to its
method (the algorithm object and its settings) and calls these helpers, which do the
same thing for every method:

- data: scikit-learn's 1797 real 8x8 digits, a stratified 70/30 split (1257 / 540);
- backbone: `small_convnet` (the recipes add small heads: the papers' 2048-8192-wide
  heads are sized for ImageNet);
- training: Adam with warm-up + cosine decay, plain `fit` (labels only for SupCon);
- evaluation of the served (backbone) features on the held-out digits: kNN accuracy
  (k = 20, temperature-weighted) and 1-NN accuracy from 10 labelled images per class,
  printed beside the same numbers for raw pixels.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from tfcontrast.evaluation import few_shot_1nn_scores, knn_accuracy  # noqa: E402
from tfcontrast.models import backbones  # noqa: E402
from tfcontrast.optimizers import warmup_cosine_decay  # noqa: E402


def parse_args(
    doc: str, argv=None, epochs: int = 50, batch_size: int = 256, extra=None
) -> argparse.Namespace:
    """The flags every digits example has; `extra(parser)` adds the script's own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch_size", type=int, default=batch_size)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny subset, tiny model, one epoch (for tests)"
    )
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.batch_size = 1, min(args.batch_size, 128)
    return args


def load(args):
    """`(x_train, y_train, x_test, y_test)`: 8x8x1 float32 images in [0, 1], int32 labels."""
    keras.utils.set_random_seed(args.seed)
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int32")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=args.seed, stratify=y
    )
    if args.smoke:  # the split is shuffled and stratified: every class is still there
        x_train, y_train, x_test, y_test = x_train[:256], y_train[:256], x_test[:100], y_test[:100]
    return x_train, y_train, x_test, y_test


def backbone(args, output_dim: int = 128, input_shape=(8, 8, 1), name="small_convnet"):
    """`small_convnet` for 8x8x1 digits (narrower in smoke mode)."""
    width = 8 if args.smoke else 32
    return backbones.small_convnet(input_shape, width=width, output_dim=output_dim, name=name)


def train(model, data, args, labels: bool = False, callbacks=None):
    """Adam + warm-up/cosine schedule, plain `fit`; returns the `History`."""
    x_train, y_train, _, _ = data
    steps = -(-len(x_train) // args.batch_size) * args.epochs
    schedule = warmup_cosine_decay(args.learning_rate, steps, warmup_steps=max(1, steps // 20))
    # Smoke runs are two steps: running them eagerly is faster than tracing the step.
    model.compile(optimizer=keras.optimizers.Adam(schedule), run_eagerly=args.smoke)
    return model.fit(
        x_train,
        y_train if labels else None,
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=2 if args.smoke or args.epochs <= 5 else 0,
        callbacks=callbacks,
    )


def scores(train_emb, train_y, test_emb, test_y) -> dict:
    return {
        "knn_accuracy": knn_accuracy(train_emb, train_y, test_emb, test_y, k=20),
        "fewshot_accuracy": float(few_shot_1nn_scores(train_emb, train_y, test_emb, test_y).mean()),
    }


def evaluate(model, data, name: str, history=None) -> dict:
    """Scores `model.predict` (the served embedding) beside raw pixels and prints both.

    Returns a dict: `loss` (final training loss, from `history`), `knn_accuracy`,
    `fewshot_accuracy`, and the same two for raw pixels (`pixels_knn_accuracy`,
    `pixels_fewshot_accuracy`).
    """
    x_train, y_train, x_test, y_test = data
    flat = lambda a: a.reshape(len(a), -1)  # noqa: E731
    embed = lambda a: np.asarray(model.predict(a, batch_size=512, verbose=0))  # noqa: E731
    pixels = scores(flat(x_train), y_train, flat(x_test), y_test)
    learned = scores(embed(x_train), y_train, embed(x_test), y_test)
    print(f"{'':>14} {'kNN (k=20)':>10} {'10 labels/class 1-NN':>21}")
    print(f"{'raw pixels':>14} {pixels['knn_accuracy']:10.3f} {pixels['fewshot_accuracy']:21.3f}")
    print(f"{name:>14} {learned['knn_accuracy']:10.3f} {learned['fewshot_accuracy']:21.3f}")
    loss = None if history is None else float(history.history["loss"][-1])
    result = dict(learned, loss=loss)
    result.update({f"pixels_{k}": v for k, v in pixels.items()})
    return result
