"""Benchmark worker for TensorFlow Similarity 0.17.1 (run in its own venv with
`TF_USE_LEGACY_KERAS=1`, TF 2.21 + tf-keras).

Each step is `tf.function(jit_compile=False)` around the loss object's `__call__` with
its default reduction (`AUTO`, i.e. mean over the batch outside a distribution
strategy; this works with tf-keras 2.21) and `tf.GradientTape.gradient` with respect to
the embeddings. TF Similarity's `"cosine"` distance is `1 - <a, b>` and expects
L2-normalised inputs (its `L2Embedding` layer); the step includes that
`tf.math.l2_normalize`, the work tfcontrast's cosine distance does inside the loss.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import contextlib  # noqa: E402
import io  # noqa: E402

import tensorflow as tf  # noqa: E402
from _protocol import HPARAMS, THREADS, serve, supervised_data, view_data  # noqa: E402
from _tf_graphs import exporter  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(1)

with contextlib.redirect_stdout(io.StringIO()):  # it prints an nmslib hint on import
    import tensorflow_similarity as tfsim
    from tensorflow_similarity import losses

H = HPARAMS


def _supervised(make_loss, normalize=True):
    def build(batch, dim):
        loss_obj = make_loss()
        labels, x = supervised_data(batch, dim)
        labels, x = tf.constant(labels), tf.constant(x)

        @tf.function(jit_compile=False)
        def step(y, e):
            with tf.GradientTape() as tape:
                tape.watch(e)
                z = tf.math.l2_normalize(e, axis=1) if normalize else e
                value = loss_obj(y, z)
            return value, tape.gradient(value, e)

        def run():
            value, _ = step(labels, x)
            return float(value)

        run.graph = exporter(step, labels, x)
        return run

    return build


def _two_views(make_loss, stop_target=False):
    def build(batch, dim):
        loss_obj = make_loss()
        views = view_data(batch, dim)
        a, b = tf.constant(views[:, 0]), tf.constant(views[:, 1])

        @tf.function(jit_compile=False)
        def step(za, zb):
            with tf.GradientTape() as tape:
                tape.watch([za, zb])
                if stop_target:
                    # SimSiamLoss(projector, predictor): view a is the prediction,
                    # view b the (stop-gradient) target, as on the other sides.
                    value = loss_obj(tf.stop_gradient(zb), za)
                else:
                    value = loss_obj(za, zb)
                value = tf.reduce_mean(value)  # VicReg's default reduction is NONE
            return value, tape.gradient(value, [za, zb], unconnected_gradients="zero")

        def run():
            value, _ = step(a, b)
            return float(value)

        return run

    return build


CASES = {
    "triplet_hard": _supervised(
        lambda: losses.TripletLoss(
            distance="cosine",
            positive_mining_strategy="hard",
            negative_mining_strategy="hard",
            margin=H["triplet_margin"],
        )
    ),
    "triplet_semi_hard": _supervised(
        lambda: losses.TripletLoss(
            distance="cosine",
            positive_mining_strategy="hard",
            negative_mining_strategy="semi-hard",
            margin=H["triplet_margin"],
        )
    ),
    "pn": _supervised(
        lambda: losses.PNLoss(
            distance="cosine",
            positive_mining_strategy="hard",
            negative_mining_strategy="semi-hard",
            margin=H["triplet_margin"],
        )
    ),
    "multi_similarity": _supervised(
        lambda: losses.MultiSimilarityLoss(
            distance="cosine",
            alpha=H["ms_alpha"],
            beta=H["ms_beta"],
            epsilon=H["ms_epsilon"],
            lmda=H["ms_lmda"],
            center=1.0,
        )
    ),
    "circle": _supervised(
        lambda: losses.CircleLoss(
            distance="cosine", gamma=H["circle_gamma"], margin=H["circle_margin"]
        )
    ),
    "soft_nearest_neighbor": _supervised(
        lambda: losses.SoftNearestNeighborLoss(distance="sql2", temperature=H["snn_temperature"]),
        normalize=False,
    ),
    "simclr": _two_views(lambda: losses.SimCLRLoss(temperature=H["ntxent_temperature"])),
    "vicreg": _two_views(
        lambda: losses.VicReg(
            std_const=H["vicreg_eps"],
            lambda_=H["vicreg_lambda"],
            mu=H["vicreg_mu"],
            nu=H["vicreg_nu"],
        )
    ),
    "barlow": _two_views(lambda: losses.Barlow(lambda_=H["barlow_lambda"])),
    "simsiam": _two_views(lambda: losses.SimSiamLoss(), stop_target=True),
}

if __name__ == "__main__":
    import tf_keras

    serve(
        CASES,
        {
            "library": "tensorflow_similarity",
            "tensorflow_similarity": tfsim.__version__,
            "tensorflow": tf.__version__,
            "tf_keras": tf_keras.__version__,
        },
    )
