"""Redundancy-reduction losses: VICReg and Barlow Twins.

Both take `y_pred` of shape `(B, V, D)` (`V >= 2` views stacked on axis 1) and ignore
labels (`y_true` may be `None`). With more than two views the two-view loss is averaged
over every pair of views.

Per-example output. Both objectives are built on *batch statistics* (variances,
covariances, cross-correlations), while Keras wants one value per example so that it
can reduce, weight and scale under `tf.distribute`. The per-example value is the part
of the loss that belongs to one example (VICReg's invariance term) plus the batch term
added as the same constant to every example, so that the mean over the batch of the
per-example values equals the batch loss exactly.

Global batch. The statistics are computed on the global batch, gathered across replicas
by `tfcontrast.distribute.gather_references` (the local batch with one replica). Under a
strategy with `R` replicas Keras multiplies each replica's mean by `1 / R` and sums the
gradients of the replicas. The all-gather's gradient sums the upstream gradients of all
replicas, so each replica's embeddings receive `R * (1 / R) = 1` times the gradient of
the global statistic term: one replica or many give the same loss and gradients for the
same global batch, with no extra scaling here.
"""

from __future__ import annotations

import itertools

import keras
from keras import ops

from tfcontrast import _checks
from tfcontrast._gradients import custom_gradient
from tfcontrast._linalg import gram
from tfcontrast._normalization import standardize
from tfcontrast.losses.base import ContrastiveLossBase


def _global_views(y_pred):
    """The views of the global batch, `(B_global, V, D)` (local batch on one replica)."""
    from tfcontrast import distribute

    _, gathered, _ = distribute.gather_references(None, y_pred)
    return gathered


def _view_pairs(num_views: int):
    return list(itertools.combinations(range(num_views), 2))


def _broadcast_to_batch(value, y_pred):
    """`(B,)` copies of the scalar `value`: every example carries the batch term."""
    return ops.broadcast_to(value, ops.shape(y_pred)[:1])


def _off_diagonal_mask(y_pred):
    """`(D, D)` float mask, 1 off the diagonal."""
    dim = y_pred.shape[-1]
    if dim is None:
        dim = ops.shape(y_pred)[-1]
    return 1.0 - ops.eye(dim, dtype="float32")


def _num_views(y_pred, owner: str) -> int:
    num_views = y_pred.shape[1]
    if num_views is None:
        raise ValueError(
            f"{owner}: the number of views (axis 1 of `y_pred`) must be known statically; "
            f"received shape {tuple(y_pred.shape)}."
        )
    return int(num_views)


@keras.saving.register_keras_serializable(package="tfcontrast")
class VICRegLoss(ContrastiveLossBase):
    """Variance-Invariance-Covariance Regularization (Bardes, Ponce & LeCun, ICLR 2022).

    For two views `Z, Z'` of a batch of `N` embeddings of dimension `D`:

        s(Z, Z') = 1/N sum_b 1/D ||z_b - z'_b||^2                       (invariance)
        v(Z)     = 1/D sum_j max(0, 1 - sqrt(Var(z_.j) + epsilon))      (variance)
        c(Z)     = 1/D sum_{i != j} C(Z)_ij^2                            (covariance)
        L(Z, Z') = lambda s(Z, Z') + mu (v(Z) + v(Z')) / 2 + nu (c(Z) + c(Z'))

    with `Var` and `C(Z) = 1/(N-1) sum_b (z_b - mean)(z_b - mean)^T` the unbiased batch
    variance and covariance (the authors' code: variance averaged over the two views,
    covariance summed). With `V > 2` views, `L` is averaged over the `V (V - 1) / 2`
    pairs of views.

    The per-example value of example `b` is `lambda s_b` (its own invariance) plus the
    variance and covariance terms as a constant, so Keras' mean over the batch is `L`.
    Under `tf.distribute` the variance and covariance are statistics of the global batch
    (see the module docstring).

    Args:
        invariance_weight: `lambda`, weight of the invariance (MSE) term (>= 0).
        variance_weight: `mu`, weight of the variance hinge (>= 0).
        covariance_weight: `nu`, weight of the covariance penalty (>= 0).
        epsilon: added to the variance inside the square root (> 0); keeps the
            gradient finite when a dimension collapses to a constant.

    A weight of 0 switches its term off (the paper's ablations).

    Example:

    ```python
    loss = tfcontrast.losses.VICRegLoss()
    views = keras.ops.stack([projector(view_a), projector(view_b)], axis=1)  # (B, 2, D)
    value = loss(None, views)
    ```
    """

    labels = "ignored"
    embedding_ranks = (3,)

    def __init__(
        self,
        invariance_weight: float = 25.0,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
        epsilon: float = 1e-4,
        name: str = "vicreg_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        owner = type(self).__name__
        self.invariance_weight = _checks.non_negative("invariance_weight", invariance_weight, owner)
        self.variance_weight = _checks.non_negative("variance_weight", variance_weight, owner)
        self.covariance_weight = _checks.non_negative("covariance_weight", covariance_weight, owner)
        self.epsilon = _checks.positive("epsilon", epsilon, owner)

    def call(self, y_true, y_pred):
        num_views = _num_views(y_pred, type(self).__name__)
        pairs = _view_pairs(num_views)
        dim = ops.cast(ops.shape(y_pred)[-1], "float32")

        # Invariance: per example, averaged over pairs of views. The views are split
        # once (one op, and one op in the gradient) rather than sliced per pair.
        local_views = ops.unstack(y_pred, num=num_views, axis=1)
        invariance = 0.0
        for i, j in pairs:
            invariance += ops.mean(ops.square(local_views[i] - local_views[j]), axis=-1)
        invariance = invariance / len(pairs)

        # Variance and covariance: statistics of the (global) batch, per view. Every view
        # sits in V - 1 of the pairs, so averaging the pair losses weighs the views
        # equally: mean_v v(Z_v) and 2 mean_v c(Z_v).
        views = _global_views(y_pred)
        count = ops.cast(ops.shape(views)[0], "float32")
        centered = views - ops.mean(views, axis=0, keepdims=True)
        # Unbiased, as in the paper; a batch of one gives zero variance, not NaN.
        denom = ops.maximum(count - 1.0, 1.0)
        variance = ops.sum(ops.square(centered), axis=0) / denom  # (V, D)
        std = ops.sqrt(variance + self.epsilon)
        variance_term = ops.mean(ops.relu(1.0 - std))  # mean over views and dimensions

        off_mask = _off_diagonal_mask(y_pred)
        off_diagonal = 0.0
        for view in ops.unstack(centered, num=num_views, axis=1):
            # C = X^T X / (N - 1), (D, D); the loss depends on it through C_ij^2 under a
            # symmetric mask, so its gradient is symmetric (see `gram`).
            cov = gram(view, 1.0 / denom, symmetric=True, columns=True)
            # Masked rather than "total minus diagonal": no cancellation in float32.
            off_diagonal += ops.sum(ops.square(cov) * off_mask)
        covariance_term = 2.0 * off_diagonal / (num_views * dim)

        batch_term = self.variance_weight * variance_term + self.covariance_weight * covariance_term
        return self.invariance_weight * invariance + _broadcast_to_batch(batch_term, y_pred)

    def get_config(self):
        return {
            **super().get_config(),
            "invariance_weight": self.invariance_weight,
            "variance_weight": self.variance_weight,
            "covariance_weight": self.covariance_weight,
            "epsilon": self.epsilon,
        }


def _objective(diagonal, squares, lambda_):
    """`sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2` from the diagonal of `C` and
    `squares = ||C||_F^2` (the off-diagonal sum as `||C||_F^2 - sum_i C_ii^2`, no mask)."""
    on = ops.sum(ops.square(1.0 - diagonal))
    return on + lambda_ * (squares - ops.sum(ops.square(diagonal)))


def _cross_correlation_loss(a, b, lambda_):
    """Barlow Twins' `sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2` for `C = a^T b`.

    The gradient is written by hand: with `G = dL/dC` (`2 lambda C_ij` off the
    diagonal, `2 (C_ii - 1)` on it), `dL/da = b G^T` and `dL/db = a G`, two matmuls and
    a few `D x D` passes where automatic differentiation also transposes an `N x D`
    gradient and sends the diagonal and the squares back separately.
    """

    @custom_gradient
    def forward(a, b):
        corr = ops.matmul(ops.transpose(a), b)  # (D, D)
        diagonal = ops.diagonal(corr)
        value = _objective(diagonal, ops.sum(ops.square(corr)), lambda_)

        def grad(upstream):
            upstream = 2.0 * upstream
            on_diagonal = upstream * ((1.0 - lambda_) * diagonal - 1.0)
            g = (lambda_ * upstream) * corr + ops.diag(on_diagonal)
            return ops.matmul(b, ops.transpose(g)), ops.matmul(a, g)

        return value, grad

    return forward(a, b)


@keras.saving.register_keras_serializable(package="tfcontrast")
class BarlowTwinsLoss(ContrastiveLossBase):
    """Barlow Twins redundancy reduction (Zbontar et al., ICML 2021).

    Each view is batch-normalised along the batch, `zhat = (z - mean) / sqrt(Var + eps)`
    with the biased batch variance (as the authors' `BatchNorm1d(affine=False)`), and the
    cross-correlation of two views is `C_ij = 1/N sum_b zhat^A_bi zhat^B_bj` (`D x D`,
    Pearson correlations up to `epsilon`). The loss is

        L = sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2

    With `V > 2` views, `L` is averaged over the `V (V - 1) / 2` pairs of views. The loss
    is the paper's equation (1) without the authors' optional `scale-loss` factor: scale
    it with `compile(loss_weights=...)` if wanted.

    Every example carries `L` as its per-example value, so Keras' mean over the batch is
    `L`. Under `tf.distribute` the normalisation and `C` use the global batch (see the
    module docstring). When the (global) batch has fewer than `3/4 D` rows, the
    off-diagonal sum is computed from the `N x N` Gram matrices of the views (same value,
    fewer multiply-adds: `tr(C C^T) = tr(Z_a Z_a^T Z_b Z_b^T)`).

    The cross-correlation term and the `N x N` form have hand-written gradients, so the
    loss is first-order only: nested gradient tapes and forward-mode differentiation
    are not supported.

    Args:
        lambda_: weight of the redundancy-reduction (off-diagonal) term (>= 0).
        epsilon: added to the variance before the square root (> 0); a constant
            dimension normalises to zero (no NaN).

    Example:

    ```python
    loss = tfcontrast.losses.BarlowTwinsLoss(lambda_=5e-3)
    value = loss(None, keras.ops.stack([z_a, z_b], axis=1))  # (B, 2, D)
    ```
    """

    labels = "ignored"
    embedding_ranks = (3,)

    def __init__(
        self,
        lambda_: float = 5e-3,
        epsilon: float = 1e-5,
        name: str = "barlow_twins_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        owner = type(self).__name__
        self.lambda_ = _checks.non_negative("lambda_", lambda_, owner)
        self.epsilon = _checks.positive("epsilon", epsilon, owner)

    def call(self, y_true, y_pred):
        num_views = _num_views(y_pred, type(self).__name__)
        views = _global_views(y_pred)
        batch, dim = views.shape[0], views.shape[-1]
        count = ops.cast(ops.shape(views)[0], "float32")
        # zhat / sqrt(N), so that C = Z_a^T Z_b with no division over the D x D matrix.
        # Every (view, dimension) column is standardised over the batch in one call.
        flat = ops.reshape(views, (-1, num_views * ops.shape(views)[-1]))
        normed = standardize(flat, self.epsilon, scale=ops.rsqrt(count))
        # Split once (one op, one op in the gradient) rather than slicing per pair.
        normed = ops.unstack(ops.reshape(normed, ops.shape(views)), num=num_views, axis=1)
        # ||C||_F^2 is tr(Z_a Z_a^T Z_b Z_b^T), so with fewer rows than dimensions it
        # comes from the N x N Gram matrices: 4 N^2 D multiply-adds forward and backward
        # against 3 N D^2 for C itself (3x fewer at N = 512, D = 2048).
        use_gram = batch is not None and dim is not None and 4 * batch < 3 * dim
        # sum(G_i * G_j) has the symmetric gradient G_j with respect to G_i.
        grams = [gram(z, symmetric=True) for z in normed] if use_gram else None

        total = 0.0
        pairs = _view_pairs(num_views)
        for i, j in pairs:
            if use_gram:
                diagonal = ops.sum(normed[i] * normed[j], axis=0)
                total += _objective(diagonal, ops.sum(grams[i] * grams[j]), self.lambda_)
            else:
                total += _cross_correlation_loss(normed[i], normed[j], self.lambda_)
        return _broadcast_to_batch(total / len(pairs), y_pred)

    def get_config(self):
        return {**super().get_config(), "lambda_": self.lambda_, "epsilon": self.epsilon}
