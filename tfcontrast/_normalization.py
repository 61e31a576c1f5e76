"""Standardisation of feature columns along the batch (private).

Barlow Twins batch-normalises each view before its cross-correlation. Written with
`keras.ops`, that is a mean, a centring, a variance and a product forward, and about a
dozen elementwise passes and reductions in the gradient. On TensorFlow the fused
batch-norm kernel (`FusedBatchNormV3`, the one `tfcontrast.layers.FusedBatchNormalization`
uses) does it in one op forward and one backward. For Barlow Twins at B = 2048, D = 128
(forward and backward) that took 3.9 instead of 5.4 ms in an in-process A/B on 2 CPU
cores (2026-12-01).
"""

from __future__ import annotations

import keras
from keras import ops


def standardize(x, epsilon, scale=1.0):
    """`scale * (x - mean) / sqrt(var + epsilon)` for each column of `x`, `(N, F)`.

    `mean` and `var` are the batch mean and the biased batch variance over axis 0 (the
    training-mode statistics of batch normalisation). `scale` is a number or a scalar
    tensor and is a constant to the gradient.
    """
    x = ops.convert_to_tensor(x)
    if (
        keras.backend.backend() == "tensorflow"
        and keras.backend.standardize_dtype(x.dtype) == "float32"
    ):
        return _fused_standardize(x, epsilon, scale)
    centered = x - ops.mean(x, axis=0, keepdims=True)
    variance = ops.mean(ops.square(centered), axis=0, keepdims=True)
    scale = ops.stop_gradient(ops.cast(scale, x.dtype))
    return centered * (ops.rsqrt(variance + epsilon) * scale)


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
