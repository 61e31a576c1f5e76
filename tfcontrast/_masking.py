"""Masked reductions and label masks shared by miners and losses (private).

Masks may be bool or float (nonzero = in the mask). Bool masks are used as they are;
pass them where the caller has them, it saves a cast and a comparison over the matrix.
"""

from __future__ import annotations

import keras
from keras import ops

from tfcontrast._gradients import custom_gradient


def _anchor_and_reference_rows(batch, num_refs, offset):
    rows = ops.arange(batch)[:, None]
    if not (isinstance(offset, int) and offset == 0):  # one op less for in-batch refs
        rows = rows + offset
    return rows, ops.arange(num_refs)[None, :]


def self_mask(batch, num_refs, offset):
    """Boolean `(B, M)` mask of anchor `i` being reference `offset + i`."""
    return ops.equal(*_anchor_and_reference_rows(batch, num_refs, offset))


def others_mask(batch, num_refs, offset):
    """Boolean `(B, M)` mask of every reference but the anchor itself (`not self_mask`,
    in one pass over the matrix)."""
    return ops.not_equal(*_anchor_and_reference_rows(batch, num_refs, offset))


def pair_masks(labels, ref_labels, offset=0):
    """Positive and negative masks `(B, M)` as float32.

    Labels are integer classes `(B,)` / `(M,)`, or multi-hot rows `(B, C)` / `(M, C)`
    (multi-label data: an example may belong to several classes, or none).

    Positive: same label (multi-hot: at least one label in common), not the anchor itself
    (anchor `i` is reference `offset + i`; `offset=None` when anchors and references are
    disjoint). Negative: different label (multi-hot: no label in common), not the anchor
    itself.
    """
    if len(labels.shape) == 2:
        shared = ops.matmul(
            ops.cast(labels, "float32"), ops.transpose(ops.cast(ref_labels, "float32"))
        )
        same = ops.greater(shared, 0.0)
    else:
        same = ops.equal(labels[:, None], ref_labels[None, :])
    different = ops.logical_not(same)
    if offset is not None:
        not_self = ops.logical_not(
            self_mask(ops.shape(labels)[0], ops.shape(ref_labels)[0], offset)
        )
        same = ops.logical_and(same, not_self)
        different = ops.logical_and(different, not_self)
    return ops.cast(same, "float32"), ops.cast(different, "float32")


def _as_bool(mask):
    """The mask as bool: bool masks as they are, others `!= 0`."""
    if keras.backend.standardize_dtype(mask.dtype) == "bool":
        return mask
    return ops.not_equal(mask, 0)


def masked_mean(values, mask, axis=-1):
    """Mean of `values` where `mask` is 1; zero (not NaN) where the mask is empty."""
    values = ops.convert_to_tensor(values)
    mask = ops.cast(mask, values.dtype)
    total = ops.sum(values * mask, axis=axis)
    count = ops.sum(mask, axis=axis)
    return ops.where(count > 0, total / ops.maximum(count, 1.0), ops.zeros_like(total))


def masked_max(values, mask, axis=-1):
    """Max of `values` over `mask`; values outside the mask never win."""
    low = ops.stop_gradient(ops.min(values, axis=axis, keepdims=True)) - 1.0
    return ops.max(ops.where(_as_bool(mask), values, low), axis=axis)


def masked_min(values, mask, axis=-1):
    """Min of `values` over `mask`; values outside the mask never win."""
    high = ops.stop_gradient(ops.max(values, axis=axis, keepdims=True)) + 1.0
    return ops.min(ops.where(_as_bool(mask), values, high), axis=axis)


#: Fill of the entries outside a mask in `masked_logsumexp`; an empty row's result.
_EMPTY = -1e9


def _shifted_exps(x, keep, axis):
    """`(x masked, row max, exp(x - max), row sum)`: the forward pass of a masked
    log-sum-exp. The max is a constant shift (the value does not depend on it), so no
    gradient flows through it."""
    if keep is not None:
        # A scalar fill broadcasts inside `where`: no (B, M) tensor of -1e9 to build.
        x = ops.where(keep, x, _EMPTY)
    shift = ops.max(x, axis=axis, keepdims=True)
    exps = ops.exp(x - shift)
    return x, shift, exps, ops.sum(exps, axis=axis, keepdims=True)


def masked_logsumexp(values, mask=None, axis=-1):
    """`log sum exp(values)` over `mask` (all entries when `mask` is None).

    A row with an empty mask gets about `-1e9` and a zero gradient. Values must be
    above `-1e9` to count.

    The gradient is written by hand (`custom_gradient`, every backend): it is
    `softmax(values) * upstream` over the mask, and the forward pass already holds the
    exponentials (zero outside the mask), so the backward pass is one multiplication
    over the matrix where the automatic one adds a broadcast, a product with the
    exponentials and a select for the mask. The log-sum-exp losses (NT-Xent, InfoNCE,
    DCL, SupCon, N-pair, lifted, circle, multi-similarity) do much of their elementwise
    work here.
    """
    values = ops.convert_to_tensor(values)
    keep = None if mask is None else _as_bool(mask)

    @custom_gradient
    def forward(x):
        x, shift, exps, total = _shifted_exps(x, keep, axis)
        result = ops.squeeze(ops.log(total) + shift, axis=axis)

        def grad(upstream):
            # Outside the mask exps == 0 (exp(-1e9 - shift)), so no select is needed;
            # an empty row has every entry at the fill and gets no gradient.
            scale = ops.expand_dims(upstream, axis) / total
            if keep is not None:
                scale = ops.where(shift > _EMPTY / 2, scale, 0.0)
            return exps * scale

        return result, grad

    return forward(values)


#: `masked_log_ratio` uses a row's sum of exponentials as it is between these bounds,
#: and shifts it by a row max outside them. Inside, float32 keeps full precision
#: (entries that flush to zero, below 1.2e-38, are each under 1e-18 of the sum), the
#: logs stay below 47 in size, and `upstream / sum` in the gradient cannot overflow.
_TINY = 1e-20
_HUGE = 1e20


def masked_log_ratio(values, numerator, denominator=None, axis=-1, scale=1.0):
    """`log sum_{denominator} exp(s v) - log sum_{numerator} exp(s v)` per row, for
    `v = values` and `s = scale`.

    `numerator` must be a subset of `denominator` (both masks; no denominator: every
    entry). Rows with an empty numerator give 0 and a zero gradient. This is `-log` of
    the softmax mass (over the denominator) that falls on the numerator: the soft
    nearest neighbour loss.

    One exponential over the matrix serves both sums. It is taken unshifted where every
    row's denominator sum lies between `1e-20` and `1e20`: nothing overflowed, and what
    underflowed does not count. Otherwise the exponentials are shifted by each row's
    max, as in a log-sum-exp. The numerator reuses them. Where a row's numerator sum is
    below `1e-20` (its entries far below the rest of the row, e.g. at a small
    temperature), the numerator is recomputed with its own max, so the result stays
    accurate where a single exponential would give `log(0)`. Which rows have a
    numerator at all is only looked up (an `any` over the mask) when some numerator sum
    is below `1e-20`, such as a row without one. Each fallback is a `cond` over the
    whole batch: a batch in which every row has a numerator and no sum leaves the
    bounds pays for none of them. In every branch the result is float32-accurate: its
    error is a few units of rounding of the two log-sums.

    The gradient is written by hand, `s * upstream * (softmax_den - softmax_num)`, from
    the exponentials the forward pass holds. A number `scale` is applied there to the
    row factors, a pass less over the matrix than scaling `values` first; a tensor
    `scale` (a learnable temperature) multiplies `values` before, so that its own
    gradient flows. Computed in float32 (lower-precision values are cast up: the bounds
    do not exist in float16).
    """
    values = ops.convert_to_tensor(values)
    if keras.backend.standardize_dtype(values.dtype) in ("float16", "bfloat16"):
        values = ops.cast(values, "float32")
    if not isinstance(scale, (int, float)):
        values, scale = values * scale, 1.0
    num = _as_bool(numerator)
    den = None if denominator is None else _as_bool(denominator)

    @custom_gradient
    def forward(v):
        x = v if scale == 1 else v * scale
        # Entries outside a mask take a fill far below every value (not a fixed -1e9:
        # logits such as -d / T can be lower, and the fill would then dominate a row's
        # max and count in its sums), so that their exponentials are 0 under any shift.
        fill = ops.minimum(ops.min(x) - 1e3, _EMPTY)
        if den is not None:
            x = ops.where(den, x, fill)
        plain_exps = ops.exp(x)
        plain_total = ops.sum(plain_exps, axis=axis, keepdims=True)

        def unshifted():
            return plain_exps, plain_total, ops.zeros_like(plain_total)

        def shifted():
            _, shift, exps, total = _shifted_exps(x, None, axis)
            return exps, total, shift

        exact = ops.all(ops.logical_and(plain_total >= _TINY, plain_total <= _HUGE))
        exps, den_total, shift = ops.cond(exact, unshifted, shifted)
        num_exps = ops.where(num, exps, 0.0)
        num_total = ops.sum(num_exps, axis=axis, keepdims=True)

        def every_row_fine():
            return num_exps, num_total, shift, ops.ones_like(num_total, dtype="bool")

        def some_row_small():
            has_num = ops.any(num, axis=axis, keepdims=True)

            def own_shift():
                own = ops.max(ops.where(num, x, fill), axis=axis, keepdims=True)
                own_exps = ops.where(num, ops.exp(x - own), 0.0)
                return own_exps, ops.sum(own_exps, axis=axis, keepdims=True), own

            def shared_shift():
                return num_exps, num_total, shift

            lost = ops.any(ops.logical_and(has_num, num_total < _TINY))
            return (*ops.cond(lost, own_shift, shared_shift), has_num)

        fine = ops.all(num_total >= _TINY)
        num_exps, num_total, num_shift, has_num = ops.cond(fine, every_row_fine, some_row_small)
        num_total = ops.where(has_num, num_total, 1.0)
        # The shifts apart from the logs: equal shifts cancel exactly, large ones do not
        # round the logs away.
        ratio = (ops.log(den_total) - ops.log(num_total)) + (shift - num_shift)
        result = ops.squeeze(ops.where(has_num, ratio, 0.0), axis=axis)

        def grad(upstream):
            up = ops.where(has_num, ops.expand_dims(upstream, axis), 0.0)
            if scale != 1:
                up = up * scale
            return exps * (up / den_total) - num_exps * (up / num_total)

        return result, grad

    return forward(values)
