"""Benchmark worker for tfcontrast's proxy losses (run with the tfcontrast venv's Python).

Each step is `tf.function(jit_compile=False)` around the loss's `__call__` (Keras
reduction included) and `tf.GradientTape.gradient` with respect to the embeddings and
the proxies (the `Proxies` layer's variable), as in training.
"""

from __future__ import annotations

from _proxy_protocol import PROXY_HPARAMS, proxy_data
from tfcontrast_worker import _checkout, keras, serve, tf, tfcontrast

from tfcontrast import losses

H = PROXY_HPARAMS


def _proxy(make_loss, num_centers=1):
    def build(batch, dim):
        labels, x, proxies = proxy_data(batch, dim, num_centers)
        loss_obj = make_loss(dim)
        loss_obj.proxies.set_vectors(proxies)
        variable = loss_obj.proxies.variable
        labels, x = tf.constant(labels), tf.constant(x)

        @tf.function(jit_compile=False)
        def step(y, e):
            with tf.GradientTape() as tape:
                tape.watch(e)
                value = loss_obj(y, e)
            grad_e, grad_p = tape.gradient(value, [e, variable])
            return value, grad_e, grad_p

        def run():
            value, _, grad_p = step(labels, x)
            if grad_p is None:
                raise ValueError("no gradient reached the proxies")
            return float(value)

        return run

    return build


CASES = {
    "arcface": _proxy(
        lambda d: losses.ArcFaceLoss(
            100, d, margin=H["arcface_margin_radians"], scale=H["arcface_scale"]
        )
    ),
    "cosface": _proxy(
        lambda d: losses.CosFaceLoss(100, d, margin=H["cosface_margin"], scale=H["cosface_scale"])
    ),
    "subcenter_arcface": _proxy(
        lambda d: losses.SubCenterArcFaceLoss(
            100,
            d,
            num_centers=H["subcenter_k"],
            margin=H["arcface_margin_radians"],
            scale=H["arcface_scale"],
        ),
        num_centers=H["subcenter_k"],
    ),
    "proxy_anchor": _proxy(
        lambda d: losses.ProxyAnchorLoss(
            100, d, margin=H["proxy_anchor_margin"], alpha=H["proxy_anchor_alpha"]
        )
    ),
    "proxy_nca": _proxy(
        lambda d: losses.ProxyNCALoss(100, d, softmax_scale=H["proxy_nca_softmax_scale"])
    ),
    "normalized_softmax": _proxy(
        lambda d: losses.NormalizedSoftmaxLoss(
            100, d, temperature=H["normalized_softmax_temperature"]
        )
    ),
}

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
