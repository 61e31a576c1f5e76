"""Benchmark worker for lightly's losses on CPU PyTorch (run in its own venv).

Each step is the eager forward pass, `loss.backward()` into the two view tensors
(`requires_grad=True`), and clearing their gradients. `torch.set_num_threads(2)`.
"""

from __future__ import annotations

import torch
from _protocol import HPARAMS, THREADS, serve, view_data

torch.set_num_threads(THREADS)
torch.set_num_interop_threads(1)

import lightly  # noqa: E402
from lightly import loss as losses  # noqa: E402

H = HPARAMS


def _two_views(make_loss, stop_target=False):
    def build(batch, dim):
        loss_obj = make_loss()
        views = view_data(batch, dim)
        a = torch.from_numpy(views[:, 0].copy()).requires_grad_(True)
        b = torch.from_numpy(views[:, 1].copy()).requires_grad_(True)

        def run():
            value = loss_obj(a, b.detach() if stop_target else b)
            value.backward()
            a.grad = None
            b.grad = None
            return float(value.detach())

        return run

    return build


CASES = {
    "ntxent": _two_views(lambda: losses.NTXentLoss(temperature=H["ntxent_temperature"])),
    "vicreg": _two_views(
        lambda: losses.VICRegLoss(
            lambda_param=H["vicreg_lambda"],
            mu_param=H["vicreg_mu"],
            nu_param=H["vicreg_nu"],
            eps=H["vicreg_eps"],
        )
    ),
    "barlow": _two_views(lambda: losses.BarlowTwinsLoss(lambda_param=H["barlow_lambda"])),
    # NegativeCosineSimilarity(prediction, target.detach()), as SimSiam uses it.
    "negative_cosine": _two_views(lambda: losses.NegativeCosineSimilarity(), stop_target=True),
}

if __name__ == "__main__":
    serve(
        CASES,
        {"library": "lightly", "lightly": lightly.__version__, "torch": torch.__version__},
    )
