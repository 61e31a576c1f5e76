"""FusedBatchNormalization matches keras.layers.BatchNormalization."""

import keras
import numpy as np
import pytest

from tests.backend_utils import to_numpy, value_and_grad
from tfcontrast.layers import FusedBatchNormalization


def pair(**kwargs):
    """A fused and a plain layer with the same (non-trivial) scale and offset."""
    fused, plain = FusedBatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)
    for layer in (fused, plain):
        layer.build((None, 5, 5, 3))
        layer.gamma.assign(np.array([0.5, 1.5, 2.0], "float32"))
        layer.beta.assign(np.array([0.1, -0.2, 0.3], "float32"))
    return fused, plain


def test_training_outputs_moving_statistics_and_inference_match(rng):
    fused, plain = pair(momentum=0.9)
    for _ in range(3):
        x = (3.0 + 2.0 * rng.normal(size=(8, 5, 5, 3))).astype("float32")
        np.testing.assert_allclose(
            to_numpy(fused(x, training=True)),
            to_numpy(plain(x, training=True)),
            rtol=1e-4,
            atol=1e-5,
        )
    np.testing.assert_allclose(fused.moving_mean.numpy(), plain.moving_mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(
        fused.moving_variance.numpy(), plain.moving_variance.numpy(), rtol=1e-5
    )
    x = rng.normal(size=(4, 5, 5, 3)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(fused(x, training=False)),
        to_numpy(plain(x, training=False)),
        rtol=1e-5,
        atol=1e-5,
    )


def test_gradients_match(rng):
    fused, plain = pair()
    x = rng.normal(size=(6, 5, 5, 3)).astype("float32")
    weights = rng.normal(size=(6, 5, 5, 3)).astype("float32")

    def loss_of(layer):
        return lambda inputs: keras.ops.sum(
            keras.ops.multiply(layer(inputs, training=True), weights)
        )

    value_f, (grad_f,) = value_and_grad(loss_of(fused), x)
    value_p, (grad_p,) = value_and_grad(loss_of(plain), x)
    np.testing.assert_allclose(value_f, value_p, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grad_f, grad_p, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("kwargs", [{"center": False}, {"renorm": True}, {"axis": 1}])
def test_falls_back_where_the_kernel_does_not_apply(rng, kwargs):
    fused, plain = FusedBatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)
    x = rng.normal(size=(4, 5, 5, 3)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(fused(x, training=True)),
        to_numpy(plain(x, training=True)),
        rtol=1e-5,
        atol=1e-5,
    )


def test_serializes_as_itself():
    layer = FusedBatchNormalization(momentum=0.8)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, FusedBatchNormalization) and restored.momentum == 0.8
