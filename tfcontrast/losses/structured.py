"""Structured pair losses: every anchor weighs all its positives and negatives at once.

`NPairLoss`, `LiftedStructureLoss`, `CircleLoss`, `MultiSimilarityLoss` and
`SoftNearestNeighborLoss` compare each anchor with all the references of the batch (the
global batch under `tf.distribute`, or batch + memory with `CrossBatchMemory`) through
masked log-sum-exps, so a whole row of pairs contributes to one smooth per-anchor value.

All take integer labels `y_true` `(B,)` and embeddings `y_pred` `(B, D)`, a `distance`
(name or `tfcontrast.distances.Distance`) and, except `SoftNearestNeighborLoss`, a
`miner`. They return one value per anchor; an anchor without a positive or a negative
(or without mined ones) gets 0, never NaN.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from tfcontrast import _checks
from tfcontrast._masking import masked_log_ratio, masked_logsumexp, masked_mean, others_mask
from tfcontrast.losses.base import MetricLoss
from tfcontrast.losses.pairs import MiningLoss


def _has_any(mask):
    """`(B,)` float32: 1 where row `i` of `mask` holds at least one pair."""
    return ops.cast(ops.max(mask, axis=1) > 0, "float32")


def _log1p_sum_exp(values, mask):
    """`log(1 + sum_{mask} exp(values))` per row; 0 where the mask is empty."""
    return ops.softplus(masked_logsumexp(values, mask))


@keras.saving.register_keras_serializable(package="tfcontrast")
class NPairLoss(MiningLoss):
    """Multi-class N-pair loss (Sohn, NeurIPS 2016), generalised to any labelled batch.

    With similarities `s` (larger is closer; inner products by default, as in the paper),
    anchor `a`, its positives `P(a)` and negatives `N(a)`:

        L_a = mean_{p in P(a)} log(1 + sum_{n in N(a)} exp(s_an - s_ap))
              + l2_reg * ||x_a||^2

    For a batch of N pairs from N classes (one positive per anchor) the first term is the
    paper's N-pair-mc loss, a softmax cross-entropy that picks the positive among the
    other classes. The optional L2 term is the paper's embedding-norm regulariser
    (averaged over the batch it is `l2_reg * mean ||x||^2`; the paper uses 0.002); it
    applies to every anchor. Without it an anchor lacking a positive or a negative
    contributes 0.

    Reference: K. Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss
    Objective", NeurIPS 2016.

    Args:
        l2_reg: weight of the squared-norm regulariser (>= 0, default 0).
        distance: a distance name or object (default `"dot"`).
        miner: optional miner name or object choosing the pairs (default: all pairs).

    Example:

    ```python
    model.compile(optimizer="adam", loss=tfcontrast.losses.NPairLoss(l2_reg=0.002))
    ```
    """

    def __init__(
        self, l2_reg: float = 0.0, distance="dot", miner=None, name="npair_loss", **kwargs
    ):
        super().__init__(distance=distance, miner=miner, name=name, **kwargs)
        self.l2_reg = _checks.non_negative("l2_reg", l2_reg, type(self).__name__)

    def compute(self, labels, embeddings, ref_labels, ref_embeddings, offset):
        matrix, pairs = self.mined_pairs(labels, embeddings, ref_labels, ref_embeddings, offset)
        s = self.distance.to_similarity(matrix)
        lse_neg = masked_logsumexp(s, pairs.negative)  # (B,)
        per_positive = ops.softplus(lse_neg[:, None] - s)
        loss = masked_mean(per_positive, pairs.positive) * _has_any(pairs.negative)
        if self.l2_reg > 0.0:
            loss = loss + self.l2_reg * ops.sum(ops.square(embeddings), axis=-1)
        return loss

    def get_config(self):
        return {**super().get_config(), "l2_reg": self.l2_reg}


@keras.saving.register_keras_serializable(package="tfcontrast")
class LiftedStructureLoss(MiningLoss):
    """Generalised lifted structure loss (Hermans et al. 2017, after Oh Song et al. 2016).

    With distances `d` (smaller is closer), anchor `a`, positives `P(a)`, negatives
    `N(a)`:

        L_a = max(0, log sum_{p in P(a)} exp(d_ap - pos_margin)
                     + log sum_{n in N(a)} exp(margin - d_an))

    This is the per-anchor "generalised lifted embedding" form of Hermans, Beyer & Leibe
    (eq. 5), also `GeneralizedLiftedStructureLoss` in pytorch-metric-learning: a smooth
    version of "the farthest positive must be closer than the closest negative by
    `margin`". It differs from the pair form of Oh Song et al. (their eq. 4, a squared
    hinge per positive pair over the negatives of both ends), which needs
    reference-to-reference distances and so does not fit anchors-versus-references.
    An anchor without a positive or a negative contributes 0.

    References: H. Oh Song, Y. Xiang, S. Jegelka, S. Savarese, "Deep Metric Learning via
    Lifted Structured Feature Embedding", CVPR 2016. A. Hermans, L. Beyer, B. Leibe,
    "In Defense of the Triplet Loss for Person Re-Identification", arXiv:1703.07737.

    Args:
        margin: the negative margin (> 0, default 1.0).
        pos_margin: distance below which positives are pulled less (>= 0, default 0).
        distance: a distance name or object (default `"euclidean"`, as in the paper).
        miner: optional miner name or object choosing the pairs (default: all pairs).

    Example:

    ```python
    model.compile(optimizer="adam",
                  loss=tfcontrast.losses.LiftedStructureLoss(margin=1.0))
    ```
    """

    def __init__(
        self,
        margin: float = 1.0,
        pos_margin: float = 0.0,
        distance="euclidean",
        miner=None,
        name="lifted_structure_loss",
        **kwargs,
    ):
        super().__init__(distance=distance, miner=miner, name=name, **kwargs)
        self.margin = _checks.positive("margin", margin, type(self).__name__)
        self.pos_margin = _checks.non_negative("pos_margin", pos_margin, type(self).__name__)

    def compute(self, labels, embeddings, ref_labels, ref_embeddings, offset):
        matrix, pairs = self.mined_pairs(labels, embeddings, ref_labels, ref_embeddings, offset)
        d = self.distance.to_distance(matrix)
        pull = masked_logsumexp(d - self.pos_margin, pairs.positive)
        push = masked_logsumexp(self.margin - d, pairs.negative)
        valid = _has_any(pairs.positive) * _has_any(pairs.negative)
        return ops.relu(pull + push) * valid

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "pos_margin": self.pos_margin}


@keras.saving.register_keras_serializable(package="tfcontrast")
class CircleLoss(MiningLoss):
    """Circle loss (Sun et al., CVPR 2020), class-level labels, as in the paper.

    With similarities `s` (larger is closer; the cosine similarity with the default
    `distance="cosine"`), anchor `a`, positives `P(a)`, negatives `N(a)`:

        alpha_p = max(0, 1 + margin - s_p)        delta_p = 1 - margin
        alpha_n = max(0, s_n + margin)            delta_n = margin
        L_a = softplus( logsumexp_{n in N(a)} gamma * alpha_n * (s_n - delta_n)
                      + logsumexp_{p in P(a)} -gamma * alpha_p * (s_p - delta_p) )

    i.e. `log(1 + sum_n sum_p exp(gamma (alpha_n (s_n - delta_n) - alpha_p (s_p -
    delta_p))))`, the paper's eq. (6). As in the authors' reference code, the weights
    `alpha_p`, `alpha_n` are held constant in the gradient (stop-gradient). The margins
    assume similarities in `[-1, 1]`: use `"cosine"`, or `"dot"` on L2-normalised
    embeddings. An anchor without a positive or a negative contributes 0.

    The paper uses `margin=0.25, gamma=256` (face recognition, re-identification) and
    `margin=0.4, gamma=80` (fine-grained retrieval, TensorFlow Similarity's default).

    Reference: Y. Sun et al., "Circle Loss: A Unified Perspective of Pair Similarity
    Optimization", CVPR 2020.

    Args:
        margin: the relaxation `m` (> 0, default 0.25).
        gamma: the scale (> 0, default 256).
        distance: a distance name or object (default `"cosine"`).
        miner: optional miner name or object choosing the pairs (default: all pairs).

    Example:

    ```python
    model.compile(optimizer="adam",
                  loss=tfcontrast.losses.CircleLoss(margin=0.4, gamma=80))
    ```
    """

    def __init__(
        self,
        margin: float = 0.25,
        gamma: float = 256.0,
        distance="cosine",
        miner=None,
        name="circle_loss",
        **kwargs,
    ):
        super().__init__(distance=distance, miner=miner, name=name, **kwargs)
        self.margin = _checks.positive("margin", margin, type(self).__name__)
        self.gamma = _checks.positive("gamma", gamma, type(self).__name__)

    def compute(self, labels, embeddings, ref_labels, ref_embeddings, offset):
        matrix, pairs = self.mined_pairs(labels, embeddings, ref_labels, ref_embeddings, offset)
        s = self.distance.to_similarity(matrix)
        m = self.margin
        alpha_p = ops.stop_gradient(ops.relu(1.0 + m - s))
        alpha_n = ops.stop_gradient(ops.relu(s + m))
        logit_p = -self.gamma * alpha_p * (s - (1.0 - m))
        logit_n = self.gamma * alpha_n * (s - m)
        total = masked_logsumexp(logit_n, pairs.negative) + masked_logsumexp(
            logit_p, pairs.positive
        )
        valid = _has_any(pairs.positive) * _has_any(pairs.negative)
        return ops.softplus(total) * valid

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="tfcontrast")
class MultiSimilarityLoss(MiningLoss):
    """Multi-similarity loss with pair mining (Wang et al., CVPR 2019).

    With similarities `s` (larger is closer; the cosine similarity with the default
    `distance="cosine"`), anchor `a` and its *mined* positives `P(a)` and negatives `N(a)`:

        L_a = 1/alpha * log(1 + sum_{p in P(a)} exp(-alpha (s_ap - lmda)))
            + 1/beta  * log(1 + sum_{n in N(a)} exp( beta (s_an - lmda)))

    The default miner is `MultiSimilarityMiner(epsilon=0.1)` (the paper's pair mining:
    keep negatives with `s_an + epsilon > min_p s_ap` and positives with
    `s_ap - epsilon < max_n s_an`); `miner=None` uses every pair. As in the authors'
    code and TensorFlow Similarity, an anchor with no mined positive or no mined negative
    contributes 0.

    Defaults `alpha=2, beta=50, lmda=0.5` follow pytorch-metric-learning; the paper
    reports `alpha=2, beta=50, lambda=1` and the authors' code `alpha=2, beta=40,
    lambda=0.5` (TensorFlow Similarity's default).

    Reference: X. Wang, X. Han, W. Huang, D. Dong, M. R. Scott, "Multi-Similarity Loss
    with General Pair Weighting for Deep Metric Learning", CVPR 2019.

    Args:
        alpha: scale of the positive term (> 0, default 2).
        beta: scale of the negative term (> 0, default 50).
        lmda: the similarity threshold `lambda` (default 0.5). With a distance other than
            cosine, similarity is `-distance` (or the dot product), so `lmda` is in those
            units.
        distance: a distance name or object (default `"cosine"`).
        miner: miner name or object (default `"multi_similarity"`); `None` for all pairs.

    Example:

    ```python
    from tfcontrast import losses, miners
    loss = losses.MultiSimilarityLoss(alpha=2.0, beta=40.0, lmda=0.5,
                                      miner=miners.MultiSimilarityMiner(epsilon=0.1))
    model.compile(optimizer="adam", loss=loss)
    ```
    """

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 50.0,
        lmda: float = 0.5,
        distance="cosine",
        miner="multi_similarity",
        name="multi_similarity_loss",
        **kwargs,
    ):
        super().__init__(distance=distance, miner=miner, name=name, **kwargs)
        owner = type(self).__name__
        self.alpha = _checks.positive("alpha", alpha, owner)
        self.beta = _checks.positive("beta", beta, owner)
        if lmda is None or not math.isfinite(float(lmda)):
            raise ValueError(f"{owner}: `lmda` must be a finite number; received lmda={lmda!r}.")
        self.lmda = float(lmda)

    def compute(self, labels, embeddings, ref_labels, ref_embeddings, offset):
        matrix, pairs = self.mined_pairs(labels, embeddings, ref_labels, ref_embeddings, offset)
        s = self.distance.to_similarity(matrix)
        pull = _log1p_sum_exp(-self.alpha * (s - self.lmda), pairs.positive) / self.alpha
        push = _log1p_sum_exp(self.beta * (s - self.lmda), pairs.negative) / self.beta
        valid = _has_any(pairs.positive) * _has_any(pairs.negative)
        return (pull + push) * valid

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta, "lmda": self.lmda}


@keras.saving.register_keras_serializable(package="tfcontrast")
class SoftNearestNeighborLoss(MetricLoss):
    """Soft nearest neighbour loss (Frosst, Papernot & Hinton, ICML 2019).

    With distances `d` (smaller is closer; squared Euclidean by default, as in the paper)
    and temperature `T`, for anchor `i`:

        L_i = -log( sum_{j != i, y_j = y_i} exp(-d_ij / T)
                    / sum_{k != i} exp(-d_ik / T) )

    computed as `log sum_{k != i} - log sum_{positives}` from one exponential of the
    matrix (no `eps` inside the log), shifted by each row's max where the plain sums
    would over- or underflow. Where the positives of a row lie so far below its largest
    term that their sum underflows (small temperatures), they are summed again with their own
    shift, so the value and gradient stay accurate
    (`tfcontrast._masking.masked_log_ratio`). An anchor without a positive contributes
    0; one without a negative gets 0 by construction.

    Temperature: fixed (`learnable_temperature=False`) or learnable. A learnable
    temperature is kept as `log_temperature`, a trainable float32 `keras.Variable` of the
    loss, so `T = exp(log_temperature)` stays positive. Keras' `fit` only updates the
    variables its model tracks, and a loss is not tracked: to learn `T`, have the model
    own the variable, e.g. in a subclassed model
    `self.snn = SoftNearestNeighborLoss(learnable_temperature=True)` and
    `self.snn_log_temperature = self.snn.log_temperature` in `__init__`, then
    `compile(loss=self.snn)`; or add `loss.trainable_variables` to a custom training
    loop. (Assigning it to an already built functional model also trains it, but that
    model's `.keras` file then no longer reloads.) `get_config` records the current `T`.

    Reference: N. Frosst, N. Papernot, G. Hinton, "Analyzing and Improving
    Representations with the Soft Nearest Neighbor Loss", ICML 2019.

    Args:
        temperature: `T` (> 0, default 1), the initial value when learnable.
        learnable_temperature: learn `T` (see above).
        distance: a distance name or object (default `"squared_euclidean"`).

    Example:

    ```python
    model.compile(optimizer="adam",
                  loss=tfcontrast.losses.SoftNearestNeighborLoss(temperature=10.0))
    ```
    """

    def __init__(
        self,
        temperature: float = 1.0,
        learnable_temperature: bool = False,
        distance="squared_euclidean",
        name="soft_nearest_neighbor_loss",
        **kwargs,
    ):
        super().__init__(distance=distance, name=name, **kwargs)
        self._initial_temperature = _checks.positive(
            "temperature", temperature, type(self).__name__
        )
        self.learnable_temperature = bool(learnable_temperature)
        self.log_temperature = None
        if self.learnable_temperature:
            self.log_temperature = keras.Variable(
                math.log(self._initial_temperature),
                dtype="float32",
                trainable=True,
                name="log_temperature",
            )

    @property
    def trainable_variables(self) -> list:
        """`[log_temperature]` when the temperature is learnable, else `[]`."""
        return [self.log_temperature] if self.learnable_temperature else []

    @property
    def temperature(self):
        """The current temperature (a tensor when learnable, else a float)."""
        if self.learnable_temperature:
            return ops.exp(self.log_temperature)
        return self._initial_temperature

    def compute(self, labels, embeddings, ref_labels, ref_embeddings, offset):
        distances = self.distance.to_distance(self.distance(embeddings, ref_embeddings))
        # Bool masks end to end: no float casts and comparisons over the (B, M) matrix.
        positive = ops.equal(labels[:, None], ref_labels[None, :])
        others = None  # disjoint references: every one is in the denominator
        if offset is not None:
            others = others_mask(ops.shape(labels)[0], ops.shape(ref_labels)[0], offset)
            positive = ops.logical_and(positive, others)
        # -log(softmax mass on the positives), one exponential for both sums; 0 for an
        # anchor without a positive.
        # The logits are `-d / T`: a fixed `-1 / T` scales inside the hand-written
        # gradient (no pass over the matrix), a learnable one the distances.
        return masked_log_ratio(distances, positive, others, axis=1, scale=-1.0 / self.temperature)

    def get_config(self):
        temperature = self._initial_temperature
        if self.learnable_temperature:
            temperature = float(math.exp(float(ops.convert_to_numpy(self.log_temperature))))
        return {
            **super().get_config(),
            "temperature": temperature,
            "learnable_temperature": self.learnable_temperature,
        }
