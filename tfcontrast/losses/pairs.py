"""Pair and triplet losses: the classic metric-learning objectives.

All take integer labels `y_true` `(B,)` and embeddings `y_pred` `(B, D)`, a
`distance` (name or `tfcontrast.distances.Distance`) and, where they mine, a `miner`
(name or `tfcontrast.miners.Miner`). They return one value per anchor.
"""

from __future__ import annotations

import keras
from keras import ops

from tfcontrast import _checks
from tfcontrast import miners as miners_lib
from tfcontrast._masking import masked_mean, pair_masks
from tfcontrast.losses.base import MetricLoss


class MiningLoss(MetricLoss):
    """A metric loss that lets a miner choose its pairs or triplets.

    `mine` returns the anchor-to-reference distances (smaller is closer) together with
    the miner's result, or with all valid pairs when there is no miner.

    Labels may be integer classes `(B,)` or multi-hot rows `(B, C)` (multi-label data):
    two examples are then positives when they share at least one label, negatives when
    they share none (`tfcontrast._masking.pair_masks`).
    """

    multi_label = True

    def __init__(self, distance="cosine", miner=None, **kwargs):
        super().__init__(distance=distance, **kwargs)
        self.miner = miners_lib.get(miner)

    def mine(self, labels, embeddings, ref_labels, ref_embeddings, offset):
        matrix = self.distance(embeddings, ref_embeddings)
        positive, negative = pair_masks(labels, ref_labels, offset)
        if self.miner is None:
            mined = miners_lib.PairMask(positive, negative)
        else:
            mined = self.miner.mine(
                matrix, positive, negative, self.distance, embedding_dim=embeddings.shape[-1]
            )
        return matrix, mined

    def mined_pairs(self, labels, embeddings, ref_labels, ref_embeddings, offset):
        """Like `mine`, with triplets flattened to the pairs they use."""
        matrix, mined = self.mine(labels, embeddings, ref_labels, ref_embeddings, offset)
        if isinstance(mined, miners_lib.Triplets):
            mined = miners_lib.triplets_to_pairs(mined, ops.shape(matrix)[1])
        return matrix, mined

    def get_config(self):
        config = super().get_config()
        config["miner"] = miners_lib.serialize(self.miner)
        return config


@keras.saving.register_keras_serializable(package="tfcontrast")
class ContrastiveLoss(MiningLoss):
    """Pair-margin contrastive loss (Hadsell, Chopra & LeCun, CVPR 2006).

    For anchor `i` with positives `P(i)` and negatives `N(i)` (mined pairs when a miner
    is given):

        L_i = mean_{p in P(i)} d(i, p)^2 + mean_{n in N(i)} max(0, margin - d(i, n))^2

    Positives are pulled together, negatives pushed at least `margin` apart. A missing
    positive or negative set contributes 0. `d` must be a distance: similarities such as
    `"dot"` are rejected (`d = -s` would make `d^2` pull positives to `s = 0`).

    Args:
        margin: the distance beyond which negatives cost nothing (> 0).
        distance: a distance name or object (default `"euclidean"`).
        miner: optional miner name or object choosing the pairs.

    Example:

    ```python
    model.compile(optimizer="adam",
                  loss=tfcontrast.losses.ContrastiveLoss(margin=1.0))
    ```
    """

    def __init__(
        self,
        margin: float = 1.0,
        distance="euclidean",
        miner=None,
        name="contrastive_loss",
        **kwargs,
    ):
        super().__init__(distance=distance, miner=miner, name=name, **kwargs)
        self.margin = _checks.positive("margin", margin, type(self).__name__)
        if self.distance.higher_is_closer:
            # With a similarity s the "distance" is -s, and d^2 = s^2 would pull
            # positives towards orthogonality instead of together.
            raise ValueError(
                f"{type(self).__name__}: `distance` must be a distance (smaller is closer), "
                f"not the similarity {self.distance.name!r}; use 'cosine', or 'euclidean' "
                "on L2-normalised embeddings."
            )

    def compute(self, labels, embeddings, ref_labels, ref_embeddings, offset):
        matrix, pairs = self.mined_pairs(labels, embeddings, ref_labels, ref_embeddings, offset)
        d = self.distance.to_distance(matrix)
        pull = masked_mean(ops.square(d), pairs.positive)
        push = masked_mean(ops.square(ops.relu(self.margin - d)), pairs.negative)
        return pull + push

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="tfcontrast")
class TripletLoss(MiningLoss):
    """Triplet margin loss with a miner (Weinberger & Saul 2009; Schroff et al. 2015).

    For each mined triplet (anchor `a`, positive `p`, negative `n`):

        l = max(0, d(a, p) - d(a, n) + margin)        (margin form)
        l = log(1 + exp(d(a, p) - d(a, n)))            (soft_margin=True, Hermans et al.)

    and `L_a` is the mean over the triplets mined for anchor `a` (0 if it has none).

    Args:
        margin: the margin (> 0); ignored with `soft_margin=True`.
        soft_margin: use the smooth soft-plus form instead of the hinge.
        miner: `"semi_hard"` (default), `"hard"` (batch-hard), `"all"` (batch-all,
            every valid triplet, `O(B M^2)` memory) or a `tfcontrast.miners.Miner`.
        distance: a distance name or object (default `"cosine"`).

    Batch-hard mining from scratch with the hinge can stall at `loss == margin` (all
    embeddings collapse together); Hermans et al. pair it with `soft_margin=True` and
    `distance="euclidean"`, which trains reliably.

    Example:

    ```python
    model.compile(optimizer="adam",
                  loss=tfcontrast.losses.TripletLoss(miner="semi_hard"))
    model.fit(images, integer_labels, batch_size=128)
    ```
    """

    def __init__(
        self,
        margin: float = 0.2,
        soft_margin: bool = False,
        miner="semi_hard",
        distance="cosine",
        name="triplet_loss",
        **kwargs,
    ):
        if miner is None:
            miner = "all"
        super().__init__(distance=distance, miner=miner, name=name, **kwargs)
        self.margin = _checks.positive("margin", margin, type(self).__name__)
        self.soft_margin = bool(soft_margin)

    def _hinge(self, gap):
        if self.soft_margin:
            return ops.softplus(gap)
        return ops.relu(gap + self.margin)

    def compute(self, labels, embeddings, ref_labels, ref_embeddings, offset):
        matrix, mined = self.mine(labels, embeddings, ref_labels, ref_embeddings, offset)
        d = self.distance.to_distance(matrix)
        if isinstance(mined, miners_lib.Triplets):
            d_ap = ops.take_along_axis(d, mined.positive, axis=1)
            d_an = ops.take_along_axis(d, mined.negative, axis=1)
            return masked_mean(self._hinge(d_ap - d_an), mined.weight, axis=1)
        # Pairs: every mined positive with every mined negative, (B, M, M).
        valid = mined.positive[:, :, None] * mined.negative[:, None, :]
        losses = self._hinge(d[:, :, None] - d[:, None, :])
        return masked_mean(
            ops.reshape(losses, (ops.shape(d)[0], -1)), ops.reshape(valid, (ops.shape(d)[0], -1))
        )

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "soft_margin": self.soft_margin}
