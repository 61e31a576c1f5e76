"""Benchmark worker for tfcontrast (run with the tfcontrast venv's Python).

Each step is `tf.function(jit_compile=False)` around the loss's `__call__` (Keras
reduction included) and `tf.GradientTape.gradient` with respect to the embeddings.
"""

from __future__ import annotations

import os
import subprocess

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402
from _protocol import HPARAMS, THREADS, serve, supervised_data, view_data  # noqa: E402
from _tf_graphs import exporter  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(1)

import keras  # noqa: E402

import tfcontrast  # noqa: E402
from tfcontrast import losses, miners  # noqa: E402

H = HPARAMS


def _supervised(make_loss):
    def build(batch, dim):
        loss_obj = make_loss()
        labels, x = supervised_data(batch, dim)
        labels, x = tf.constant(labels), tf.constant(x)

        @tf.function(jit_compile=False)
        def step(y, e):
            with tf.GradientTape() as tape:
                tape.watch(e)
                value = loss_obj(y, e)
            return value, tape.gradient(value, e)

        def run():
            value, _ = step(labels, x)
            return float(value)

        run.graph = exporter(step, labels, x)
        return run

    return build


def _views(make_loss, views=None):
    def build(batch, dim):
        loss_obj = make_loss()
        x = tf.constant(view_data(batch, dim))  # (B, 2, D): [view a, view b]

        @tf.function(jit_compile=False)
        def step(e):
            with tf.GradientTape() as tape:
                tape.watch(e)
                value = loss_obj(None, e)
            return value, tape.gradient(value, e)

        def run():
            value, _ = step(x)
            return float(value)

        return run

    return build


CASES = {
    "triplet_hard": _supervised(
        lambda: losses.TripletLoss(margin=H["triplet_margin"], miner="hard", distance="cosine")
    ),
    "triplet_semi_hard": _supervised(
        lambda: losses.TripletLoss(
            margin=H["triplet_margin"],
            miner=miners.SemiHardMiner(positives="hard"),
            distance="cosine",
        )
    ),
    "multi_similarity": _supervised(
        lambda: losses.MultiSimilarityLoss(
            alpha=H["ms_alpha"],
            beta=H["ms_beta"],
            lmda=H["ms_lmda"],
            miner=miners.MultiSimilarityMiner(epsilon=H["ms_epsilon"]),
            distance="cosine",
        )
    ),
    "circle": _supervised(
        lambda: losses.CircleLoss(
            margin=H["circle_margin"], gamma=H["circle_gamma"], distance="cosine"
        )
    ),
    "soft_nearest_neighbor": _supervised(
        lambda: losses.SoftNearestNeighborLoss(
            temperature=H["snn_temperature"], distance="squared_euclidean"
        )
    ),
    "ntxent": _views(lambda: losses.NTXentLoss(temperature=H["ntxent_temperature"])),
    "vicreg": _views(
        lambda: losses.VICRegLoss(
            invariance_weight=H["vicreg_lambda"],
            variance_weight=H["vicreg_mu"],
            covariance_weight=H["vicreg_nu"],
            epsilon=H["vicreg_eps"],
        )
    ),
    "barlow": _views(lambda: losses.BarlowTwinsLoss(lambda_=H["barlow_lambda"])),
    # y_pred = [prediction, target]; the target half is stop-gradient inside the loss.
    "negative_cosine": _views(lambda: losses.NegativeCosineSimilarity()),
}


def _git(path: str, *args: str) -> str:
    try:
        run = subprocess.run(["git", "-C", path, *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return run.stdout.strip() if run.returncode == 0 else ""


def _checkout() -> dict:
    """Where the imported tfcontrast lives, its git commit (None outside a repo) and
    whether its library files differ from that commit."""
    path = os.path.dirname(os.path.dirname(os.path.abspath(tfcontrast.__file__)))
    # An installed copy inside some other repository (a venv in a checkout) has no commit.
    top = _git(path, "rev-parse", "--show-toplevel")
    commit = (
        (_git(path, "rev-parse", "HEAD") or None) if top and os.path.samefile(top, path) else None
    )
    changed = bool(commit and _git(path, "status", "--porcelain", "--", "tfcontrast"))
    return {"checkout": path, "commit": commit, "library_modified": changed}


if __name__ == "__main__":
    serve(
        CASES,
        {
            "library": "tfcontrast",
            "tfcontrast": getattr(tfcontrast, "__version__", "?"),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            **_checkout(),
        },
    )
