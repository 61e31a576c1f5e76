"""The InfoNCE family: softmax and sigmoid contrastive losses between views.

Conventions shared by the losses in this module:

- Self-supervised losses take `y_pred` of shape `(B, V, D)`, the `V >= 2` views of each
  example stacked on axis 1, and ignore `y_true` (pass `None`, or `fit(x)` without
  labels). Two-tower losses (`InfoNCELoss`, `CLIPLoss`, `SigLIPLoss`) take exactly two
  "views" `(B, 2, D)`: `[query, key]` or `[image, text]`.
- Embeddings are L2-normalised inside, so similarities are cosines `s in [-1, 1]`
  (zero vectors stay zero: their similarity to everything is 0, never NaN).
- Every loss returns one value per example, `(B,)`; Keras averages them.
- Negatives come from the batch. Under `tf.distribute` with several replicas they come
  from the global batch (`tfcontrast.distribute.gather_references`), so one replica or
  many give the same loss for the same global batch. Losses with a `queue=` use the rows
  of a `tfcontrast.layers.MemoryQueue` as negatives instead.
- Logits, log-softmax and sigmoids are computed in float32, also under mixed precision.
"""

from __future__ import annotations

import keras
from keras import ops

from tfcontrast import _checks
from tfcontrast._linalg import gram
from tfcontrast._masking import masked_logsumexp, masked_mean, others_mask, self_mask
from tfcontrast._normalization import l2_normalize
from tfcontrast.layers.queue import MemoryQueue
from tfcontrast.layers.scale import LogitScale
from tfcontrast.losses.base import ContrastiveLossBase, MetricLoss

# -- helpers ---------------------------------------------------------------------------


def _gather_views(z):
    """All-gathers views `(B, V, D)` across replicas in one collective.

    Returns `(global_views (Bg, V, D), offset)`: local example `i` is global `offset + i`.
    """
    from tfcontrast import distribute

    views, dim = z.shape[1], z.shape[2]
    flat = ops.reshape(z, (-1, views * dim))
    _, gathered, offset = distribute.gather_references(None, flat)
    return ops.reshape(gathered, (-1, views, dim)), offset


def _sample_major(z):
    """`(B, V, D) -> (B * V, D)`; row `i * V + k` is view `k` of example `i`."""
    return ops.reshape(z, (-1, z.shape[2]))


def _view_logits(z, refs, offset, scale):
    """`scale * z_i . r_j` over sample-major anchors `(B*V, Bg*V)`. With one replica the
    references are the anchors and this is a Gram matrix (one backward matmul, see
    `tfcontrast._linalg.gram`)."""
    anchors = _sample_major(z)
    if isinstance(offset, int) and offset == 0:
        return gram(anchors, scale)
    return ops.matmul(anchors, ops.transpose(_sample_major(refs))) * scale


def _view_masks(batch, ref_batch, views, offset):
    """Masks `(B*V, Bg*V)` over sample-major flattened anchors and references.

    Returns `(is_self, same_example)` as bool: `is_self` marks the anchor itself,
    `same_example` marks every view of the anchor's example (itself included).
    """
    rows = ops.arange(batch * views, dtype="int32")
    cols = ops.arange(ref_batch * views, dtype="int32")
    row_example = ops.floor_divide(rows, views) + ops.cast(offset, "int32")
    col_example = ops.floor_divide(cols, views)
    same_example = ops.equal(row_example[:, None], col_example[None, :])
    same_view = ops.equal(ops.mod(rows, views)[:, None], ops.mod(cols, views)[None, :])
    return ops.logical_and(same_example, same_view), same_example


def _diagonal(matrix, offset):
    """`matrix[i, offset + i]` for every row `i` of a `(B, Bg)` matrix."""
    hits = self_mask(ops.shape(matrix)[0], ops.shape(matrix)[1], offset)
    return ops.sum(ops.where(hits, matrix, ops.zeros_like(matrix)), axis=1), hits


def _cross_entropy_rows(logits, offset):
    """Softmax cross entropy of each row with target column `offset + row`."""
    positive, _ = _diagonal(logits, offset)
    return masked_logsumexp(logits, axis=1) - positive


def _exactly_two_views(y_pred, owner, what):
    if y_pred.shape[1] != 2:
        raise ValueError(
            f"{owner}: `y_pred` must have shape (batch, 2, dim) holding {what}; received "
            f"shape {tuple(y_pred.shape)}."
        )


def _as_stacked_pair(y_pred, owner):
    """Accepts a `(a, b)` pair of `(B, D)` tensors and stacks it to `(B, 2, D)`."""
    if isinstance(y_pred, (list, tuple)):
        if len(y_pred) != 2:
            raise ValueError(
                f"{owner}: `y_pred` given as a sequence must be a pair (a, b); received "
                f"{len(y_pred)} tensors."
            )
        a, b = (ops.convert_to_tensor(t) for t in y_pred)
        if len(a.shape) != 2 or len(b.shape) != 2:
            raise ValueError(
                f"{owner}: each tensor of the `y_pred` pair must be (batch, dim); received "
                f"shapes {tuple(a.shape)} and {tuple(b.shape)}."
            )
        if a.shape[-1] is not None and b.shape[-1] is not None and a.shape[-1] != b.shape[-1]:
            raise ValueError(
                f"{owner}: the two `y_pred` towers must have the same dim; received "
                f"{a.shape[-1]} and {b.shape[-1]}. Project them to a shared dimension."
            )
        dtype = keras.backend.result_type(a.dtype, b.dtype)
        return ops.stack([ops.cast(a, dtype), ops.cast(b, dtype)], axis=1)
    return y_pred


def _resolve_queue(queue, owner):
    if queue is None or isinstance(queue, MemoryQueue):
        return queue
    if isinstance(queue, dict):
        return keras.saving.deserialize_keras_object(queue)
    raise ValueError(
        f"{owner}: `queue` must be a tfcontrast.layers.MemoryQueue or None; received "
        f"{type(queue).__name__}."
    )


def _queue_negatives(queue, dim, owner):
    if not queue.built:
        queue.build((None, dim))
    if queue.dim != dim:
        raise ValueError(
            f"{owner}: `queue` holds rows of dimension {queue.dim}; `y_pred` has dimension {dim}."
        )
    rows, _, valid = queue.values()
    return l2_normalize(rows), valid


class _ViewLoss(ContrastiveLossBase):
    """Base of the self-supervised losses here: labels ignored, views `(B, V, D)`."""

    labels = "ignored"
    embedding_ranks = (3,)

    def __init__(self, temperature, name=None, reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = _checks.positive("temperature", temperature, type(self).__name__)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


class _QueueMixin:
    """Shared `queue=` / `update_queue=` handling for query/key losses."""

    def _init_queue(self, queue, update_queue):
        self.queue = _resolve_queue(queue, type(self).__name__)
        self.update_queue = bool(update_queue)

    def _after_loss(self, keys):
        # MoCo: the loss uses the queue as it was; the (global) keys join it afterwards.
        if self.queue is not None and self.update_queue:
            self.queue.enqueue(ops.stop_gradient(keys))

    def _queue_config(self):
        return {
            "queue": None
            if self.queue is None
            else keras.saving.serialize_keras_object(self.queue),
            "update_queue": self.update_queue,
        }


# -- NT-Xent ---------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfcontrast")
class NTXentLoss(_ViewLoss):
    """NT-Xent, the normalized temperature-scaled cross entropy of SimCLR.

    Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
    ICML 2020 (https://arxiv.org/abs/2002.05709).

    With `z` the L2-normalised views, `s(a, b) = z_a . z_b` and the `N = B * V` views of
    the batch as candidates, the loss of view `k` of example `i` against its view `l` is

        l(ik, il) = -log( exp(s(ik, il) / t) / sum_{(j, m) != (i, k)} exp(s(ik, jm) / t) )

    a `(V * B)`-way softmax with the self-similarity masked (for `V = 2`: SimCLR's
    `2N`-way softmax). With `V > 2` views every ordered pair of views is a positive pair:
    anchor `ik` averages `l(ik, il)` over its `V - 1` other views (the other views stay in
    the denominator). The per-example value is the mean over the example's `V` anchors, so
    the Keras mean over the batch equals the mean over all `V * B` anchors.

    Relation to other implementations (V = 2, same temperature): equals lightly's
    `NTXentLoss` (mean cross entropy over the `2N` rows). TF Similarity's `SimCLRLoss`
    also L2-normalises each row, but returns `loss_a + loss_b` (the cross entropies with
    view a and with view b as anchors) per example, so its value is exactly twice ours.

    Args:
        temperature: softmax temperature `t` (> 0). SimCLR uses 0.1 to 0.5.

    Example:

    ```python
    loss = tfcontrast.losses.NTXentLoss(temperature=0.1)
    views = keras.ops.stack([projector(aug1), projector(aug2)], axis=1)  # (B, 2, D)
    value = loss(None, views)
    model.compile(optimizer="adam", loss=loss)   # a model whose output is (B, V, D)
    model.fit(view_batches, epochs=10)           # no labels needed
    ```
    """

    def __init__(self, temperature: float = 0.1, name="nt_xent_loss", **kwargs):
        super().__init__(temperature=temperature, name=name, **kwargs)

    def call(self, y_true, y_pred):
        z = l2_normalize(y_pred)
        refs, offset = _gather_views(z)
        views = z.shape[1]
        logits = _view_logits(z, refs, offset, 1.0 / self.temperature)
        num_anchors = ops.shape(logits)[0]
        # The self-similarity leaves the denominator (every row keeps other candidates).
        candidates = others_mask(num_anchors, ops.shape(refs)[0] * views, offset * views)
        lse = masked_logsumexp(logits, candidates, axis=1)
        # Positives, the anchor's other views, straight from the embeddings: anchor
        # (i, k) scores sum_{l != k} z_ik . z_il = z_ik . (sum_l z_il - z_ik).
        others = ops.sum(z, axis=1, keepdims=True) - z
        positive = ops.sum(z * others, axis=-1) / (self.temperature * (views - 1))  # (B, V)
        return ops.mean(ops.reshape(lse, (-1, views)) - positive, axis=1)


# -- InfoNCE with explicit negatives ----------------------------------------------------


@keras.saving.register_keras_serializable(package="tfcontrast")
class InfoNCELoss(_QueueMixin, _ViewLoss):
    """InfoNCE between a query and its key, against a bank of negatives.

    van den Oord et al., "Representation Learning with Contrastive Predictive Coding",
    2018 (https://arxiv.org/abs/1807.03748); the queue of negatives follows MoCo, He et
    al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020.

    `y_pred` is `(B, 2, D)`: `[query, key]` per example, L2-normalised inside. For query
    `q_i`, key `k_i` and negatives `n_1..n_K`:

        L_i = -log( exp(q_i . k_i / t) / (exp(q_i . k_i / t) + sum_n exp(q_i . n / t)) )

    Negatives are the rows of `queue` that hold data (a `tfcontrast.layers.MemoryQueue`),
    or, without a queue, the keys of the other examples of the (global) batch, i.e. a
    `B`-way softmax over all keys. With `update_queue=True` the batch's keys (gathered
    across replicas, without gradient) are enqueued *after* the loss is computed with the
    old queue, as in MoCo. An empty queue leaves only the positive: the loss is 0.

    Args:
        temperature: `t` (> 0); MoCo uses 0.07 (v1) and 0.2 (v2).
        queue: optional `MemoryQueue` of negatives (its `dim` must match `D`).
        update_queue: whether each call enqueues the keys.

    Example:

    ```python
    queue = tfcontrast.layers.MemoryQueue(size=4096, dim=128)
    loss = tfcontrast.losses.InfoNCELoss(temperature=0.2, queue=queue)
    value = loss(None, keras.ops.stack([queries, momentum_keys], axis=1))
    ```
    """

    def __init__(
        self,
        temperature: float = 0.07,
        queue=None,
        update_queue: bool = True,
        name="info_nce_loss",
        **kwargs,
    ):
        super().__init__(temperature=temperature, name=name, **kwargs)
        self._init_queue(queue, update_queue)

    def call(self, y_true, y_pred):
        _exactly_two_views(y_pred, type(self).__name__, "[query, key]")
        z = l2_normalize(y_pred)
        q, k = z[:, 0], z[:, 1]
        refs, offset = _gather_views(z)
        keys = refs[:, 1]
        if self.queue is None:
            logits = ops.matmul(q, ops.transpose(keys)) / self.temperature
            return _cross_entropy_rows(logits, offset)
        negatives, valid = _queue_negatives(self.queue, z.shape[2], type(self).__name__)
        positive = ops.sum(q * k, axis=1, keepdims=True) / self.temperature
        negative = ops.matmul(q, ops.transpose(negatives)) / self.temperature
        logits = ops.concatenate([positive, negative], axis=1)
        mask = ops.concatenate(
            [
                ops.ones_like(positive, dtype="bool"),
                ops.broadcast_to(valid[None, :], ops.shape(negative)),
            ],
            axis=1,
        )
        losses = masked_logsumexp(logits, mask, axis=1) - positive[:, 0]
        self._after_loss(keys)
        return losses

    def get_config(self):
        return {**super().get_config(), **self._queue_config()}


# -- binary NCE --------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfcontrast")
class NCELoss(_QueueMixin, _ViewLoss):
    """Binary noise-contrastive estimation between views.

    Gutmann & Hyvarinen, "Noise-contrastive estimation", AISTATS 2010; the form used for
    contrastive views by Wu et al. (CVPR 2018) and CMC (Tian et al., ECCV 2020).

    Each positive pair and each negative pair is an independent logistic decision on the
    cosine similarity scaled by `1 / t`:

        L(ik) = mean_{l != k} -log sigma(s(ik, il) / t) + sum_{n} -log sigma(-s(ik, n) / t)

    For views `(B, V, D)` without a queue the negatives `n` of view `k` of example `i` are
    all views of the other examples of the (global) batch; the per-example value is the
    mean over the example's `V` views. With a `queue`, `y_pred` is `(B, 2, D)`
    `[query, key]`: the positive is the key and the negatives are the queue's valid rows;
    keys are enqueued afterwards when `update_queue=True`.

    Note the negative term is a sum, so it grows with the number of negatives (as in NCE).

    Args:
        temperature: `t` (> 0).
        queue: optional `tfcontrast.layers.MemoryQueue` of negatives.
        update_queue: whether each call enqueues the keys (queue only).

    Example:

    ```python
    loss = tfcontrast.losses.NCELoss(temperature=0.1)
    value = loss(None, views)        # views: (B, V, D)
    ```
    """

    def __init__(
        self,
        temperature: float = 0.1,
        queue=None,
        update_queue: bool = True,
        name="nce_loss",
        **kwargs,
    ):
        super().__init__(temperature=temperature, name=name, **kwargs)
        self._init_queue(queue, update_queue)

    def call(self, y_true, y_pred):
        z = l2_normalize(y_pred)
        t = self.temperature
        if self.queue is not None:
            _exactly_two_views(y_pred, type(self).__name__, "[query, key] when a queue is used")
            q, k = z[:, 0], z[:, 1]
            refs, _ = _gather_views(z)
            negatives, valid = _queue_negatives(self.queue, z.shape[2], type(self).__name__)
            positive = ops.softplus(-ops.sum(q * k, axis=1) / t)
            negative = ops.softplus(ops.matmul(q, ops.transpose(negatives)) / t)
            negative = ops.sum(negative * ops.cast(valid, "float32")[None, :], axis=1)
            losses = positive + negative
            self._after_loss(refs[:, 1])
            return losses
        refs, offset = _gather_views(z)
        batch, views = ops.shape(z)[0], z.shape[1]
        sims = _view_logits(z, refs, offset, 1.0 / t)
        is_self, same_example = _view_masks(batch, ops.shape(refs)[0], views, offset)
        positive = ops.cast(ops.logical_and(same_example, ops.logical_not(is_self)), "float32")
        negative = ops.cast(ops.logical_not(same_example), "float32")
        per_anchor = ops.sum(ops.softplus(-sims) * positive, axis=1) / float(views - 1)
        per_anchor = per_anchor + ops.sum(ops.softplus(sims) * negative, axis=1)
        return ops.mean(ops.reshape(per_anchor, (-1, views)), axis=1)

    def get_config(self):
        return {**super().get_config(), **self._queue_config()}


# -- decoupled contrastive learning ------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfcontrast")
class DCLLoss(_ViewLoss):
    """Decoupled contrastive loss: NT-Xent with the positive removed from the denominator.

    Yeh et al., "Decoupled Contrastive Learning", ECCV 2022
    (https://arxiv.org/abs/2110.06848), Eq. 6:

        L(ik, il) = -w_i * s(ik, il) / t + log sum_{j != i, m} exp(s(ik, jm) / t)

    where the sum runs over every view `m` of every *other* example `j` of the (global)
    batch (for `V = 2`: the `2(N - 1)` negatives of the paper). All views of example `i`
    are positives and none is in the denominator. With `V > 2`, anchor `ik` averages over
    its `V - 1` positives; the per-example value is the mean over the example's `V` views.
    `w_i = 1` for DCL; `DCLWLoss` uses the von Mises-Fisher weight. A batch of one
    example has no negatives: its log-sum-exp term is 0.

    Note: lightly's `DCLLoss` adds two separate log-sum-exps (same-view and cross-view
    negatives), `log A + log B`; this class follows the paper's single `log(A + B)`.

    Args:
        temperature: `t` (> 0); the paper uses 0.1 to 0.5.

    Example:

    ```python
    loss = tfcontrast.losses.DCLLoss(temperature=0.1)
    value = loss(None, views)        # views: (B, V, D)
    ```
    """

    def __init__(self, temperature: float = 0.1, name="dcl_loss", **kwargs):
        super().__init__(temperature=temperature, name=name, **kwargs)

    def _weights(self, z, refs, offset):
        """Per-(example, anchor view, positive view) weights `(B, V, V)`; 1 for DCL."""
        return None

    def call(self, y_true, y_pred):
        z = l2_normalize(y_pred)
        refs, offset = _gather_views(z)
        batch, views = ops.shape(z)[0], z.shape[1]
        logits = _view_logits(z, refs, offset, 1.0 / self.temperature)
        is_self, same_example = _view_masks(batch, ops.shape(refs)[0], views, offset)
        negative = ops.logical_not(same_example)
        has_negative = ops.any(negative, axis=1)
        lse = masked_logsumexp(logits, negative, axis=1)
        lse = ops.where(has_negative, lse, ops.zeros_like(lse))
        # Positive similarities (B, V, V): view k of example i against its view l.
        positive = ops.einsum("bkd,bld->bkl", z, z) / self.temperature
        weights = self._weights(z, refs, offset)
        if weights is not None:
            positive = positive * weights
        off_diagonal = 1.0 - ops.eye(views, dtype="float32")
        positive = ops.sum(positive * off_diagonal, axis=2) / float(views - 1)  # (B, V)
        per_anchor = ops.reshape(lse, (-1, views)) - positive
        return ops.mean(per_anchor, axis=1)


@keras.saving.register_keras_serializable(package="tfcontrast")
class DCLWLoss(DCLLoss):
    """Decoupled contrastive loss with the von Mises-Fisher weighting of the positive.

    Yeh et al., "Decoupled Contrastive Learning", ECCV 2022 (https://arxiv.org/abs/2110.06848),
    Sec. 3.3. Same as `DCLLoss`, with the positive term of the pair of views `(k, l)` of
    example `i` weighted by

        w_i = 2 - exp(s(ik, il) / sigma) / mean_j exp(s(jk, jl) / sigma)
            = 2 - N * softmax_j(s(jk, jl) / sigma)_i

    where `j` runs over the `N` examples of the (global) batch. The weights average 1
    over the batch; pairs whose views already agree more than average get a smaller
    weight (easy positives count less). The weights carry no gradient, as in the
    authors' code.

    Args:
        temperature: `t` (> 0).
        sigma: the weighting's concentration `sigma` (> 0); the paper uses 0.5.

    Example:

    ```python
    loss = tfcontrast.losses.DCLWLoss(temperature=0.1, sigma=0.5)
    value = loss(None, views)        # views: (B, V, D)
    ```
    """

    def __init__(self, temperature: float = 0.1, sigma: float = 0.5, name="dclw_loss", **kwargs):
        super().__init__(temperature=temperature, name=name, **kwargs)
        self.sigma = _checks.positive("sigma", sigma, type(self).__name__)

    def _weights(self, z, refs, offset):
        refs = ops.stop_gradient(refs)
        scores = ops.einsum("bkd,bld->bkl", refs, refs) / self.sigma  # (Bg, V, V)
        ref_batch = ops.cast(ops.shape(refs)[0], "float32")
        weights = 2.0 - ref_batch * ops.softmax(scores, axis=0)
        rows = ops.arange(ops.shape(z)[0], dtype="int32") + ops.cast(offset, "int32")
        return ops.take(weights, rows, axis=0)

    def get_config(self):
        return {**super().get_config(), "sigma": self.sigma}


# -- two towers: CLIP and SigLIP -----------------------------------------------------------


def _resolve_logit_scale(logit_scale, owner):
    if logit_scale is None or isinstance(logit_scale, LogitScale):
        return logit_scale
    if isinstance(logit_scale, dict):
        return keras.saving.deserialize_keras_object(logit_scale)
    raise ValueError(
        f"{owner}: `logit_scale` must be a tfcontrast.layers.LogitScale or None; received "
        f"{type(logit_scale).__name__}."
    )


class _TwoTowerLoss(ContrastiveLossBase):
    labels = "ignored"
    embedding_ranks = (3,)

    def __call__(self, y_true, y_pred, sample_weight=None):
        return super().__call__(
            y_true, _as_stacked_pair(y_pred, type(self).__name__), sample_weight=sample_weight
        )


@keras.saving.register_keras_serializable(package="tfcontrast")
class CLIPLoss(_TwoTowerLoss):
    """CLIP's symmetric cross entropy between two towers.

    Radford et al., "Learning Transferable Visual Models From Natural Language
    Supervision", ICML 2021 (https://arxiv.org/abs/2103.00020).

    `y_pred` is `(B, 2, D)` `[image, text]` (or call the loss with a pair
    `loss(None, (image, text))`). With L2-normalised towers and scale `s = 1 / t`:

        logits_ij = s * x_i . y_j
        L_i = ( CE(logits_i., i) + CE(logits_.i, i) ) / 2

    the mean of the image-to-text and text-to-image cross entropies of example `i`
    (against the global batch under `tf.distribute`).

    Learnable temperature: `learnable_temperature=True` (or `logit_scale=` an existing
    `tfcontrast.layers.LogitScale`) makes `s` a trainable variable, initialised at
    `1 / temperature` and clipped at `max_scale` (100 in CLIP). A `keras.losses.Loss` is
    not tracked by the model, so the variable lives in the layer `loss.logit_scale`, and
    the model must own that layer for `fit` to train it: `model.logit_scale =
    loss.logit_scale` (or call the layer, an identity, inside a functional model). The
    trained value is saved with the model's weights; `get_config` stores only how the
    scale was initialised.

    Args:
        temperature: `t` (> 0): the fixed temperature, or the initial one if learnable.
        learnable_temperature: whether to learn `s`.
        max_scale: clip of the learnable `s`.
        logit_scale: optional `LogitScale` layer to use (implies learnable).

    Example:

    ```python
    loss = tfcontrast.losses.CLIPLoss(learnable_temperature=True)
    model.logit_scale = loss.logit_scale
    model.compile(optimizer="adam", loss=loss)  # model outputs stack([img, txt], axis=1)
    ```
    """

    def __init__(
        self,
        temperature: float = 0.07,
        learnable_temperature: bool = False,
        max_scale: float = 100.0,
        logit_scale=None,
        name="clip_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        owner = type(self).__name__
        self.temperature = _checks.positive("temperature", temperature, owner)
        self.max_scale = _checks.positive("max_scale", max_scale, owner)
        self.logit_scale = _resolve_logit_scale(logit_scale, owner)
        if self.logit_scale is None and learnable_temperature:
            self.logit_scale = LogitScale(
                init_scale=1.0 / self.temperature, max_scale=self.max_scale
            )
        self.learnable_temperature = self.logit_scale is not None

    def call(self, y_true, y_pred):
        _exactly_two_views(y_pred, type(self).__name__, "[image, text]")
        z = l2_normalize(y_pred)
        refs, offset = _gather_views(z)
        scale = 1.0 / self.temperature if self.logit_scale is None else self.logit_scale.scale
        image_to_text = ops.matmul(z[:, 0], ops.transpose(refs[:, 1])) * scale
        text_to_image = ops.matmul(z[:, 1], ops.transpose(refs[:, 0])) * scale
        return 0.5 * (
            _cross_entropy_rows(image_to_text, offset) + _cross_entropy_rows(text_to_image, offset)
        )

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "learnable_temperature": self.learnable_temperature,
            "max_scale": self.max_scale,
        }


@keras.saving.register_keras_serializable(package="tfcontrast")
class SigLIPLoss(_TwoTowerLoss):
    """SigLIP's pairwise sigmoid loss between two towers.

    Zhai et al., "Sigmoid Loss for Language Image Pre-Training", ICCV 2023
    (https://arxiv.org/abs/2303.15343).

    `y_pred` is `(B, 2, D)` `[image, text]` (or a pair). With L2-normalised towers, every
    image-text pair is an independent binary decision:

        L_i = sum_j log(1 + exp(-z_ij * (s * x_i . y_j + b))),   z_ij = 1 if i == j else -1

    The paper's loss is `(1 / B) sum_i L_i`: the per-example value is the row sum `L_i`
    and Keras' mean over the batch gives exactly the paper's number. Under
    `tf.distribute`, `j` runs over the global batch.

    `s = exp(s')` and `b` are learnable by default (initialised `s = 10`, `b = -10`, as in
    the paper). Like `CLIPLoss`, they live in a `tfcontrast.layers.LogitScale` layer
    (`loss.logit_scale`) that the model must own: `model.logit_scale = loss.logit_scale`.
    With `learnable=False` they are the fixed `init_scale`, `init_bias`.

    Args:
        init_scale: initial (or fixed) `s` (> 0).
        init_bias: initial (or fixed) `b`.
        learnable: whether `s` and `b` are trainable variables.
        logit_scale: optional `LogitScale` layer (with a bias) to use.

    Example:

    ```python
    loss = tfcontrast.losses.SigLIPLoss()
    model.logit_scale = loss.logit_scale
    model.compile(optimizer="adam", loss=loss)
    ```
    """

    def __init__(
        self,
        init_scale: float = 10.0,
        init_bias: float = -10.0,
        learnable: bool = True,
        logit_scale=None,
        name="siglip_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        owner = type(self).__name__
        self.init_scale = _checks.positive("init_scale", init_scale, owner)
        self.init_bias = float(init_bias)
        self.logit_scale = _resolve_logit_scale(logit_scale, owner)
        if self.logit_scale is not None and self.logit_scale.bias is None:
            raise ValueError(f"{owner}: `logit_scale` must have a bias (init_bias=...).")
        if self.logit_scale is None and learnable:
            self.logit_scale = LogitScale(init_scale=self.init_scale, init_bias=self.init_bias)
        self.learnable = self.logit_scale is not None

    def call(self, y_true, y_pred):
        _exactly_two_views(y_pred, type(self).__name__, "[image, text]")
        z = l2_normalize(y_pred)
        refs, offset = _gather_views(z)
        if self.logit_scale is None:
            scale, bias = self.init_scale, self.init_bias
        else:
            scale = self.logit_scale.scale
            bias = ops.cast(self.logit_scale.bias, "float32")
        logits = ops.matmul(z[:, 0], ops.transpose(refs[:, 1])) * scale + bias
        _, is_pair = _diagonal(logits, offset)
        signs = ops.where(is_pair, 1.0, -1.0)
        return ops.sum(ops.softplus(-signs * logits), axis=1)

    def get_config(self):
        return {
            **super().get_config(),
            "init_scale": self.init_scale,
            "init_bias": self.init_bias,
            "learnable": self.learnable,
        }


# -- CMC -----------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfcontrast")
class MultiViewContrastiveLoss(_ViewLoss):
    """Contrastive Multiview Coding (CMC): InfoNCE between pairs of views.

    Tian, Krishnan & Isola, "Contrastive Multiview Coding", ECCV 2020
    (https://arxiv.org/abs/1906.05849).

    For views `a`, `b` of `(B, V, D)` (L2-normalised), `L(Va, Vb)` anchors view `a` of
    example `i` against view `b` of every example of the (global) batch:

        L_i(Va, Vb) = -log( exp(s(ia, ib) / t) / sum_j exp(s(ia, jb) / t) )

    and each pair of views counts both ways, `L(Va, Vb) + L(Vb, Va)`. The per-example
    value sums over the pairs of the mode:

    - `"full_graph"`: all `V (V - 1) / 2` pairs `a < b`;
    - `"core_view"`: the `V - 1` pairs `(0, b)`: view 0 is the core view.

    Args:
        temperature: `t` (> 0); CMC uses 0.07.
        mode: `"full_graph"` or `"core_view"`.

    Example:

    ```python
    loss = tfcontrast.losses.MultiViewContrastiveLoss(temperature=0.07, mode="core_view")
    value = loss(None, keras.ops.stack([luma, chroma, depth], axis=1))
    ```
    """

    MODES = ("full_graph", "core_view")

    def __init__(
        self,
        temperature: float = 0.07,
        mode: str = "full_graph",
        name="multi_view_contrastive_loss",
        **kwargs,
    ):
        super().__init__(temperature=temperature, name=name, **kwargs)
        self.mode = _checks.choice("mode", mode, self.MODES, type(self).__name__)

    def _pairs(self, views):
        if self.mode == "core_view":
            return [(0, b) for b in range(1, views)]
        return [(a, b) for a in range(views) for b in range(a + 1, views)]

    def call(self, y_true, y_pred):
        z = l2_normalize(y_pred)
        refs, offset = _gather_views(z)
        total = 0.0
        for a, b in self._pairs(z.shape[1]):
            for u, v in ((a, b), (b, a)):
                logits = ops.matmul(z[:, u], ops.transpose(refs[:, v])) / self.temperature
                total = total + _cross_entropy_rows(logits, offset)
        return total

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


# -- SupCon ----------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfcontrast")
class SupConLoss(MetricLoss):
    """Supervised contrastive loss (SupCon, the `L_out` form).

    Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020
    (https://arxiv.org/abs/2004.11362), Eq. 2.

    `y_true` holds integer labels `(B,)`; `y_pred` is `(B, D)` or views `(B, V, D)`. The
    views are flattened into `V * B` anchors that carry their example's label. With
    similarity `s` (the cosine by default), anchor `a`, its positives `P(a)` (same label,
    not `a` itself: the other views of the example and every view of same-class examples)
    and `A(a)` all references but `a`:

        L_a = -(t / t_base) * 1/|P(a)| sum_{p in P(a)} log( exp(s_ap / t) / sum_{r in A(a)} exp(s_ar / t) )

    The per-example value is the mean over the example's `V` anchors. An anchor with no
    positive contributes 0 (never NaN). References are the (global) batch, or batch plus
    memory when wrapped by cross-batch memory.

    Args:
        temperature: `t` (> 0).
        base_temperature: `t_base` (> 0); `None` means `t_base = t` (no rescaling). The
            authors' code uses `t = t_base = 0.07`.
        distance: a distance name or object; its `to_similarity` gives `s`.

    Example:

    ```python
    loss = tfcontrast.losses.SupConLoss(temperature=0.1)
    model.compile(optimizer="adam", loss=loss)
    model.fit(images, integer_labels)       # model outputs (B, D) or (B, V, D)
    ```
    """

    labels = "required"
    embedding_ranks = (2, 3)

    def __init__(
        self,
        temperature: float = 0.1,
        base_temperature: float | None = None,
        distance="cosine",
        name="supcon_loss",
        **kwargs,
    ):
        super().__init__(distance=distance, name=name, **kwargs)
        owner = type(self).__name__
        self.temperature = _checks.positive("temperature", temperature, owner)
        self.base_temperature = (
            None
            if base_temperature is None
            else _checks.positive("base_temperature", base_temperature, owner)
        )

    def call(self, y_true, y_pred):
        if len(y_pred.shape) == 2:
            return super().call(y_true, y_pred)
        views = y_pred.shape[1]
        # View-major flattening: row `k * B + i` is view k of example i, so a replica's
        # anchors are one contiguous block, which is what `references` expects.
        anchors = ops.reshape(ops.transpose(y_pred, (1, 0, 2)), (-1, y_pred.shape[2]))
        labels = ops.tile(y_true, (views,))
        per_anchor = super().call(labels, anchors)
        return ops.mean(ops.reshape(per_anchor, (views, -1)), axis=0)

    def compute(self, labels, embeddings, ref_labels, ref_embeddings, offset):
        sims = self.distance.to_similarity(self.distance(embeddings, ref_embeddings))
        logits = sims / self.temperature
        others = others_mask(ops.shape(labels)[0], ops.shape(ref_labels)[0], offset)
        positive = ops.logical_and(ops.equal(labels[:, None], ref_labels[None, :]), others)
        log_prob = logits - masked_logsumexp(logits, others, axis=1)[:, None]
        scale = 1.0 if self.base_temperature is None else self.temperature / self.base_temperature
        return -scale * masked_mean(log_prob, ops.cast(positive, "float32"), axis=1)

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "base_temperature": self.base_temperature,
        }


# -- metric --------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfcontrast")
class MutualInformationBound(keras.metrics.Metric):
    """CMC's InfoNCE lower bound on the mutual information between two views.

    Tian et al., "Contrastive Multiview Coding", ECCV 2020 (Sec. 3.5), after van den Oord
    et al. (2018): `I(v1; v2) >= log(K) - L_InfoNCE`, with `K` the number of candidates
    each anchor is scored against. Here the candidates are the `K = B` views of the
    batch (one positive, `B - 1` negatives) and `L_InfoNCE` is the in-batch InfoNCE of
    `(B, 2, D)` views averaged over both directions. The metric reports the mean of the
    per-batch bounds in nats; it cannot exceed `log(B)`.

    Args:
        temperature: `t` (> 0) of the InfoNCE scores.

    Example:

    ```python
    model.compile(optimizer="adam", loss=tfcontrast.losses.NTXentLoss(),
                  metrics=[tfcontrast.losses.MutualInformationBound(temperature=0.1)])
    ```
    """

    def __init__(self, temperature: float = 0.1, name="mutual_information_bound", dtype=None):
        super().__init__(name=name, dtype=dtype or "float32")
        self.temperature = _checks.positive("temperature", temperature, type(self).__name__)
        self.total = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
        if len(y_pred.shape) != 3 or y_pred.shape[1] != 2:
            raise ValueError(
                f"MutualInformationBound: `y_pred` must have shape (batch, 2, dim); received "
                f"shape {tuple(y_pred.shape)}."
            )
        z = l2_normalize(y_pred)
        logits = ops.matmul(z[:, 0], ops.transpose(z[:, 1])) / self.temperature
        loss = 0.5 * (
            ops.mean(_cross_entropy_rows(logits, 0))
            + ops.mean(_cross_entropy_rows(ops.transpose(logits), 0))
        )
        candidates = ops.cast(ops.shape(z)[0], "float32")
        self.total.assign(self.total + ops.log(candidates) - loss)
        self.count.assign(self.count + 1.0)

    def result(self):
        return ops.where(self.count > 0, self.total / ops.maximum(self.count, 1.0), 0.0)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


__all__ = [
    "CLIPLoss",
    "DCLLoss",
    "DCLWLoss",
    "InfoNCELoss",
    "MultiViewContrastiveLoss",
    "MutualInformationBound",
    "NCELoss",
    "NTXentLoss",
    "SigLIPLoss",
    "SupConLoss",
]
