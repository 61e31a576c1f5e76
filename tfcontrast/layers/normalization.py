"""`FusedBatchNormalization`: Keras' BatchNormalization on TensorFlow's fused kernel.

Keras 3 computes batch normalization as `moments` followed by
`tf.nn.batch_normalization`: several elementwise passes forward and backward. TensorFlow's
`FusedBatchNormV3` kernel (what tf.keras used) does it in one pass. On the CIFAR
ResNet-18 this makes a whole `ContrastiveModel` training step 1.3-1.5x faster on CPU
(`benchmarks/bench_fit_speed.py`).

The layer is a drop-in `keras.layers.BatchNormalization`: same weights, same config, same
results up to float rounding. It falls back to the Keras implementation on other backends
and wherever the fused kernel does not apply (masks, renorm, synchronized statistics,
ranks other than 4, channels not last, float16 inputs, no scale or no offset).
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="tfcontrast")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` using TensorFlow's fused kernel for NHWC images.

    Example:

    ```python
    x = keras.layers.Conv2D(64, 3, use_bias=False)(x)
    x = tfcontrast.layers.FusedBatchNormalization()(x)
    ```
    """

    def _can_fuse(self, inputs, mask) -> bool:
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.renorm
            and not self.synchronized
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and keras.backend.standardize_dtype(inputs.dtype) == "float32"
            and self.scale
            and self.center
        )

    def call(self, inputs, training=None, mask=None):
        if not self._can_fuse(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True
            )
            # The fused kernel returns the unbiased batch variance; Keras keeps the
            # biased one in its moving average.
            n = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], variance.dtype)
            variance = variance * (n - 1.0) / n
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
            return y
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            self.gamma,
            self.beta,
            mean=self.moving_mean,
            variance=self.moving_variance,
            epsilon=self.epsilon,
            is_training=False,
        )
        return y
