"""Benchmark worker for pytorch-metric-learning's proxy losses on CPU PyTorch (own venv).

Each step is the eager forward pass of the loss module (its default reducer: the mean,
or ProxyAnchor's divisor reducer), `loss.backward()` into the embeddings
(`requires_grad=True`) and the loss's class weights / proxies (its `Parameter`), and
clearing both gradients, as in training. The weights are set to the shared proxies;
pml keeps them as `W` `(D, C)` for the margin losses and NormalizedSoftmax, and as
`proxies` `(C, D)` for ProxyAnchor and ProxyNCA. `torch.set_num_threads(2)`.
"""

from __future__ import annotations

import torch
from _protocol import THREADS, serve
from _proxy_protocol import NUM_CLASSES, PROXY_HPARAMS, proxy_data

torch.set_num_threads(THREADS)
torch.set_num_interop_threads(1)

import pytorch_metric_learning  # noqa: E402
from pytorch_metric_learning import losses  # noqa: E402

H = PROXY_HPARAMS


def _proxy(make_loss, num_centers=1):
    def build(batch, dim):
        labels, x, proxies = proxy_data(batch, dim, num_centers)
        loss_obj = make_loss(dim)
        (weights,) = list(loss_obj.parameters())
        with torch.no_grad():
            shared = torch.from_numpy(proxies)
            weights.copy_(shared.t() if tuple(weights.shape) == (dim, len(proxies)) else shared)
        y = torch.from_numpy(labels)
        e = torch.from_numpy(x).requires_grad_(True)

        def run():
            value = loss_obj(e, y)
            value.backward()
            if weights.grad is None:
                raise ValueError("no gradient reached the proxies")
            e.grad = None
            weights.grad = None
            return float(value.detach())

        return run

    return build


C = NUM_CLASSES
CASES = {
    "arcface": _proxy(
        lambda d: losses.ArcFaceLoss(
            C, d, margin=H["arcface_margin_degrees"], scale=H["arcface_scale"]
        )
    ),
    "cosface": _proxy(
        lambda d: losses.CosFaceLoss(C, d, margin=H["cosface_margin"], scale=H["cosface_scale"])
    ),
    "subcenter_arcface": _proxy(
        lambda d: losses.SubCenterArcFaceLoss(
            num_classes=C,
            embedding_size=d,
            margin=H["arcface_margin_degrees"],
            scale=H["arcface_scale"],
            sub_centers=H["subcenter_k"],
        ),
        num_centers=H["subcenter_k"],
    ),
    "proxy_anchor": _proxy(
        lambda d: losses.ProxyAnchorLoss(
            C, d, margin=H["proxy_anchor_margin"], alpha=H["proxy_anchor_alpha"]
        )
    ),
    "proxy_nca": _proxy(
        lambda d: losses.ProxyNCALoss(C, d, softmax_scale=H["proxy_nca_softmax_scale"])
    ),
    "normalized_softmax": _proxy(
        lambda d: losses.NormalizedSoftmaxLoss(
            C, d, temperature=H["normalized_softmax_temperature"]
        )
    ),
}

if __name__ == "__main__":
    serve(
        CASES,
        {
            "library": "pytorch-metric-learning",
            "pytorch_metric_learning": pytorch_metric_learning.__version__,
            "torch": torch.__version__,
        },
    )
