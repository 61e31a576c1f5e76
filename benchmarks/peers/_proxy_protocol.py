"""Shared data and hyper-parameters of the proxy-loss benchmark (`bench_proxy_losses.py`).

NumPy only, like `_protocol.py`: every worker (tfcontrast, pytorch-metric-learning)
imports it and builds the same labels, embeddings and proxies from the same seed.
"""

from __future__ import annotations

import math

import numpy as np
from _protocol import SEED

NUM_CLASSES = 100
#: One set of hyper-parameters for both sides. pytorch-metric-learning takes the ArcFace
#: margin in degrees (`margin_degrees`), tfcontrast in radians (`margin_radians`).
PROXY_HPARAMS = {
    "arcface_margin_radians": 0.5,
    "arcface_margin_degrees": math.degrees(0.5),
    "arcface_scale": 64.0,
    "subcenter_k": 3,
    "cosface_margin": 0.35,
    "cosface_scale": 64.0,
    "proxy_anchor_margin": 0.1,
    "proxy_anchor_alpha": 32.0,
    "proxy_nca_softmax_scale": 1.0,
    "normalized_softmax_temperature": 0.05,
}


def proxy_data(batch: int, dim: int, num_centers: int = 1, seed: int = SEED):
    """Labels `(B,)` int64 over `NUM_CLASSES` classes (every class present when
    `B >= NUM_CLASSES`), unnormalised Gaussian float32 embeddings `(B, D)` and proxies
    `(NUM_CLASSES * num_centers, D)`, row `c * num_centers + k` = sub-centre `k` of class
    `c` (the layout of both libraries). Identical in every process."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(batch) % NUM_CLASSES).astype("int64")
    x = rng.standard_normal((batch, dim)).astype("float32")
    proxies = rng.standard_normal((NUM_CLASSES * num_centers, dim)).astype("float32")
    return labels, x, proxies
