"""Masked reductions and label masks shared by miners and losses (private).

Masks may be bool or float (nonzero = in the mask). Bool masks are used as they are;
pass them where the caller has them, it saves a cast and a comparison over the matrix.
"""

from __future__ import annotations

import keras
from keras import ops


def self_mask(batch, num_refs, offset):
    """Boolean `(B, M)` mask of anchor `i` being reference `offset + i`."""
    return ops.equal(ops.arange(batch)[:, None] + offset, ops.arange(num_refs)[None, :])


def pair_masks(labels, ref_labels, offset=0):
    """Positive and negative masks `(B, M)` as float32.

    Positive: same label, not the anchor itself (anchor `i` is reference `offset + i`;
    `offset=None` when anchors and references are disjoint). Negative: different label.
    """
    same = ops.equal(labels[:, None], ref_labels[None, :])
    if offset is None:
        positive = ops.cast(same, "float32")
    else:
        is_self = self_mask(ops.shape(labels)[0], ops.shape(ref_labels)[0], offset)
        positive = ops.cast(ops.logical_and(same, ops.logical_not(is_self)), "float32")
    negative = ops.cast(ops.logical_not(same), "float32")
    return positive, negative


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


def masked_logsumexp(values, mask, axis=-1):
    """`log sum exp(values)` over `mask`; a large negative number where it is empty."""
    # A scalar fill broadcasts inside `where`: no (B, M) tensor of -1e9 to build.
    return ops.logsumexp(ops.where(_as_bool(mask), values, -1e9), axis=axis)
