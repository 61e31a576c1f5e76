"""Normalisations (private): L2 normalisation of vectors, and standardisation of
feature columns along the batch.

L2 normalisation
----------------

`l2_normalize` (`keras.ops`, any backend, differentiable) is the one every loss, layer
and algorithm uses: `x / max(|x|, 1e-6)`, written `x * rsqrt(max(|x|^2, 1e-12))` so the
zero vector stays zero with a finite gradient (`tf.math.l2_normalize` does the same).
`l2_normalize_numpy` is its NumPy twin for the code that works on NumPy arrays
(evaluation metrics, the retrieval index, export parity reports, training monitors):
`x / max(|x|, 1e-12)`, in the input's float dtype. The twin keeps the floor that the
NumPy code has always had (on the norm, not on its square), so metric, index and parity
numbers are unchanged; the two differ only for vectors shorter than 1e-6, which no
trained embedding is, and both leave the zero vector at zero.

Standardisation
---------------

Barlow Twins batch-normalises each view before its cross-correlation. Written with
`keras.ops`, that is a mean, a centring, a variance and a product forward, and about a
dozen elementwise passes and reductions in the gradient. On TensorFlow the fused
batch-norm kernel (`FusedBatchNormV3`, the one `tfcontrast.layers.FusedBatchNormalization`
uses) does it in one op forward and one backward (README, "Self-supervised losses", has
the measured effect on Barlow Twins).

The input is first shifted by its first row. Batch normalisation ignores a constant
shift, in value and in gradient, but XLA's lowering of the fused kernel (and oneDNN's)
computes the variance as `E[x^2] - E[x]^2`, which cancels catastrophically when a
column's mean is large against its spread (a constant column of 300.7 gave NaN under
`jit_compile`). After the shift, every `|x_i - x_0| / std` is at most `2 sqrt(N)`
(Samuelson's inequality), so the cancellation costs at most about `N` float32 roundings,
the size of the error of summing the variance itself; a constant column is exactly zero
(also on the generic path, where a float32 mean of a constant is not always exact).
Subtracting one row is cheaper than subtracting the mean (no reduction).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfcontrast._linalg import _scaled

#: Floor of `|x|^2` in `l2_normalize` (the norm's floor is its square root, 1e-6).
SQUARED_NORM_FLOOR = 1e-12
#: Floor of `|x|` in `l2_normalize_numpy`.
NORM_FLOOR_NUMPY = 1e-12


def l2_normalize(x, axis=-1):
    """L2-normalises `x` along `axis` (`keras.ops`); zero vectors stay zero (no NaN)."""
    x = ops.convert_to_tensor(x)  # torch: a NumPy array times a tensor raises
    sq = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(sq, SQUARED_NORM_FLOOR))


def l2_normalize_numpy(x, axis: int = -1) -> np.ndarray:
    """`x / max(|x|, 1e-12)` along `axis` with NumPy, in `x`'s float dtype (float32
    stays float32; cast first for float64 results). Zero vectors stay zero."""
    x = np.asarray(x)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), NORM_FLOOR_NUMPY)


def standardize(x, epsilon, scale=1.0):
    """`scale * (x - mean) / sqrt(var + epsilon)` for each column of `x`, `(N, F)`.

    `mean` and `var` are the batch mean and the biased batch variance over axis 0 (the
    training-mode statistics of batch normalisation). `scale` is a number or a scalar
    tensor and is a constant to the gradient.
    """
    x = ops.convert_to_tensor(x)
    # Shifted by the first row (see the module docstring): a constant column becomes
    # exactly zero, and no later sum cancels.
    x = x - ops.stop_gradient(x[:1])
    if (
        keras.backend.backend() == "tensorflow"
        and keras.backend.standardize_dtype(x.dtype) == "float32"
    ):
        return _fused_standardize(x, epsilon, scale)
    centered = x - ops.mean(x, axis=0, keepdims=True)
    variance = ops.mean(ops.square(centered), axis=0, keepdims=True)
    return centered * _scaled(ops.rsqrt(variance + epsilon), scale)


def _fused_standardize(x, epsilon, scale):
    import tensorflow as tf

    features = tf.shape(x)[-1]
    # NHWC with one pixel per example: the kernel's per-channel statistics over N, H
    # and W are the per-column statistics over the batch. The raw op keeps `epsilon`
    # as given (`tf.nn.fused_batch_norm` raises it to at least 1.001e-5).
    y = tf.raw_ops.FusedBatchNormV3(
        x=tf.reshape(x, [-1, 1, 1, features]),
        scale=tf.fill([features], tf.stop_gradient(tf.cast(scale, x.dtype))),
        offset=tf.zeros([features], x.dtype),
        mean=tf.zeros([0], x.dtype),
        variance=tf.zeros([0], x.dtype),
        epsilon=float(epsilon),
        is_training=True,
    )[0]
    return tf.reshape(y, tf.shape(x))
