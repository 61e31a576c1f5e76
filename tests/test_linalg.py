"""The hand-written-gradient helpers (`_gradients`, `_linalg`) against closed forms in
NumPy, on every backend."""

import keras
import numpy as np
import pytest

from tests.backend_utils import value_and_grad
from tfcontrast._gradients import custom_gradient
from tfcontrast._linalg import gram


def _weights(rng, n, symmetric):
    w = rng.normal(size=(n, n))
    return (w + w.T) / 2 if symmetric else w


def _tensor(w):
    return keras.ops.convert_to_tensor(w.astype("float32"))


@pytest.mark.parametrize("symmetric", [False, True], ids=["general", "symmetric"])
@pytest.mark.parametrize("scale", [1.0, -2.0, "tensor"])
def test_gram_value_and_gradient(rng, scale, symmetric):
    # f(G) = sum(W * G) with G = s x x^T: df/dx = s (W + W^T) x.
    x = rng.normal(size=(5, 3)).astype("float32")
    s = 0.7 if scale == "tensor" else scale
    w = _weights(rng, 5, symmetric)
    value, (grad,) = value_and_grad(
        lambda v: (
            gram(v, keras.ops.convert_to_tensor(s) if scale == "tensor" else s, symmetric)
            * _tensor(w)
        ),
        x,
    )
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(value, w * (s * x64 @ x64.T), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, s * (w + w.T) @ x64, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("symmetric", [False, True], ids=["general", "symmetric"])
def test_gram_of_columns_value_and_gradient(rng, symmetric):
    # f(C) = sum(W * C) with C = s x^T x: df/dx = s x (W + W^T).
    x = rng.normal(size=(6, 4)).astype("float32")
    s = 0.25
    w = _weights(rng, 4, symmetric)
    value, (grad,) = value_and_grad(lambda v: gram(v, s, symmetric, columns=True) * _tensor(w), x)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(value, w * (s * x64.T @ x64), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, s * x64 @ (w + w.T), rtol=1e-5, atol=1e-5)


def test_the_symmetric_promise_matters(rng):
    # With an asymmetric upstream the symmetric shortcut is wrong: the general form is
    # not a shortcut in disguise.
    x = rng.normal(size=(4, 3)).astype("float32")
    w = _tensor(rng.normal(size=(4, 4)))
    _, (general,) = value_and_grad(lambda v: gram(v) * w, x)
    _, (shortcut,) = value_and_grad(lambda v: gram(v, symmetric=True) * w, x)
    assert not np.allclose(general, shortcut, atol=1e-3)


def test_custom_gradient_passes_the_upstream_gradient(rng):
    # A deliberately wrong "gradient" (3 x upstream, not 2 x): the result shows that the
    # hand-written function ran and received the upstream weights on this backend.
    @custom_gradient
    def square(x):
        return x * x, lambda upstream: 3.0 * x * upstream

    x = rng.normal(size=(4,)).astype("float32")
    w = rng.uniform(0.5, 2.0, size=4)
    value, (grad,) = value_and_grad(lambda v: square(v) * _tensor(w), x)
    np.testing.assert_allclose(value, w * x**2, rtol=1e-6)
    np.testing.assert_allclose(grad, 3.0 * x * w, rtol=1e-6)
