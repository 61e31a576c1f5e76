"""Gram matrices with a hand-written gradient (private).

Losses take inner products of a batch with itself in many places: in-batch distances,
the NT-Xent / NCE / DCL logits, VICReg's covariance, Barlow Twins' N x N form. Automatic
differentiation sees `x @ x^T` as a product of two tensors and spends two matmuls on
the backward pass (on TensorFlow also a transpose of the second factor's gradient). The
gradient of a Gram matrix needs one: for `G = s x x^T` and upstream `U = df/dG`,

    df/dx = s (U + U^T) x            (columns, `C = s x^T x`:  df/dx = s x (U + U^T)),

and `2 s U x` (`2 s x U`) when the caller knows `U` is symmetric (`f` depends on `G`
through symmetric terms such as `sum G_ij^2`), which also saves the transpose of `U`.
The scale multiplies `x` rather than the product (for rows, one pass less over the
matrix). First-order gradients only (`tfcontrast._gradients.custom_gradient`).
"""

from __future__ import annotations

from keras import ops

from tfcontrast._gradients import custom_gradient


def _scaled(x, scale):
    if isinstance(scale, (int, float)) and scale == 1:
        return x
    return x * ops.stop_gradient(ops.cast(scale, x.dtype))


def gram(x, scale=1.0, symmetric=False, columns=False):
    """`scale * x @ x^T` for `x` of shape `(B, D)`: the `(B, B)` inner products of the
    rows; with `columns=True`, `scale * x^T @ x`, the `(D, D)` products of the columns
    (a covariance or cross-correlation of centred, normalised features).

    `symmetric=True` promises that the loss's gradient with respect to the result is a
    symmetric matrix (it is not checked: the gradient would be wrong). `scale` is a
    number or a tensor; it is a constant to the gradient.
    """
    x = ops.convert_to_tensor(x)

    @custom_gradient
    def forward(x):
        scaled = _scaled(x, scale)

        def grad(upstream):
            if symmetric:
                both, factor = upstream, scaled * 2.0
            else:
                both, factor = upstream + ops.transpose(upstream), scaled
            return ops.matmul(factor, both) if columns else ops.matmul(both, factor)

        if columns:
            return ops.matmul(ops.transpose(scaled), x), grad
        return ops.matmul(scaled, ops.transpose(x)), grad

    return forward(x)
