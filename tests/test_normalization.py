"""`tfcontrast._normalization`: the L2 normalisation (keras.ops) and its NumPy twin;
`standardize` (Barlow Twins' batch normalisation) against NumPy, on every backend; on
TensorFlow also the fused kernel against the generic form."""

import keras
import numpy as np
import pytest

from tests.backend_utils import BACKEND, value_and_grad
from tests.reference import numerical_gradient
from tfcontrast import distances
from tfcontrast._normalization import l2_normalize, l2_normalize_numpy, standardize


def np_standardize(x, epsilon, scale):
    x = x.astype(np.float64)
    centered = x - x.mean(axis=0)
    return scale * centered / np.sqrt((centered**2).mean(axis=0) + epsilon)


@pytest.mark.parametrize("scale", [1.0, 0.25, "tensor"])
def test_value_and_gradient(rng, scale):
    x = (rng.normal(size=(6, 4)) * [1.0, 3.0, 0.1, 10.0] + 2.0).astype("float32")
    s = 0.5 if scale == "tensor" else scale
    weights = rng.normal(size=(6, 4))  # an upstream gradient with no symmetry
    arg = keras.ops.convert_to_tensor(s) if scale == "tensor" else s
    upstream = keras.ops.convert_to_tensor(weights.astype("float32"))
    value, (grad,) = value_and_grad(lambda v: standardize(v, 1e-3, arg) * upstream, x)
    np.testing.assert_allclose(value, weights * np_standardize(x, 1e-3, s), rtol=1e-4, atol=1e-5)
    expected = numerical_gradient(lambda v: np.sum(weights * np_standardize(v, 1e-3, s)), x)
    np.testing.assert_allclose(grad, expected, rtol=1e-3, atol=1e-4)


def test_constant_column_is_zero():
    x = np.stack([np.full(5, 3.0), np.arange(5.0)], axis=1).astype("float32")
    value, (grad,) = value_and_grad(lambda v: standardize(v, 1e-5), x)
    np.testing.assert_allclose(value[:, 0], 0.0, atol=1e-6)
    assert np.all(np.isfinite(grad))


def _offset_columns(rng, n=250):
    """Columns whose mean is large against their spread (and one constant column):
    `E[x^2] - E[x]^2` cancels on them in float32. N is not a power of two, so the sums
    are not exact."""
    noise = rng.normal(size=(n, 5))
    return np.stack(
        [
            noise[:, 0],
            np.full(n, 300.7),
            3.0 + 1e-3 * noise[:, 2],
            20.0 + 0.02 * noise[:, 3],
            1000.0 + 5.0 * noise[:, 4],
        ],
        axis=1,
    ).astype("float32")


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "jit"])
def test_large_offsets_and_small_epsilon(rng, jit):
    # The fused kernel under XLA (and oneDNN) takes the variance as E[x^2] - E[x]^2:
    # without the shift by the first row this column set gave NaN and 10% gradient
    # errors. epsilon = 1e-8 is below the 1.001e-5 floor of tf.nn.fused_batch_norm and
    # matters for the column of spread 1e-3.
    x = _offset_columns(rng)
    weights = rng.normal(size=x.shape)
    upstream = keras.ops.convert_to_tensor(weights.astype("float32"))

    def fn(v):
        return standardize(v, 1e-8) * upstream

    if BACKEND == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=jit)
        def compiled(v):
            with tf.GradientTape() as tape:
                tape.watch(v)
                out = fn(v)
                total = tf.reduce_sum(out)
            return out, tape.gradient(total, v)

        value, grad = (t.numpy() for t in compiled(tf.constant(x)))
    elif jit:
        pytest.skip("jit_compile is TensorFlow's")
    else:
        value, (grad,) = value_and_grad(fn, x)
    expected = np_standardize(x, 1e-8, 1.0)
    np.testing.assert_allclose(value, weights * expected, atol=2e-3)
    # d/dx sum(W * xhat) = (W - mean(W) - xhat mean(W xhat)) / sqrt(var + eps)
    # (for the constant column: (W - mean(W)) / sqrt(eps), large but finite)
    x64 = x.astype(np.float64)
    std = np.sqrt(x64.var(axis=0) + 1e-8)
    closed = (weights - weights.mean(0) - expected * (weights * expected).mean(0)) / std
    scale = np.abs(closed).max(axis=0)
    np.testing.assert_allclose(grad / scale, closed / scale, atol=1e-3)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the fused kernel is TensorFlow's")
def test_fused_kernel_matches_generic_form(rng):
    x = rng.normal(size=(32, 12)).astype("float32")
    weights = rng.normal(size=(32, 12)).astype("float32")
    fused = value_and_grad(lambda v: standardize(v, 1e-5, 0.3) * weights, x)
    # float64 input takes the generic keras.ops path
    generic = value_and_grad(lambda v: standardize(v, 1e-5, 0.3) * weights, x.astype("float64"))
    np.testing.assert_allclose(fused[0], generic[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused[1][0], generic[1][0], rtol=1e-4, atol=1e-5)


# -- L2 normalisation -----------------------------------------------------------------
def test_l2_normalize_value_and_gradient(rng):
    x = rng.normal(size=(5, 3, 4)).astype("float32")
    x[1, 2] = 0.0  # a zero vector stays zero, with a finite gradient
    weights = rng.normal(size=x.shape).astype("float32")
    upstream = keras.ops.convert_to_tensor(weights)
    value, (grad,) = value_and_grad(lambda v: l2_normalize(v) * upstream, x)
    norms = np.linalg.norm(x.astype(np.float64), axis=-1, keepdims=True)
    expected = x / np.maximum(norms, 1e-6)
    np.testing.assert_allclose(value, weights * expected, rtol=1e-5, atol=1e-7)
    assert np.all(value[1, 2] == 0.0) and np.all(np.isfinite(grad))
    # d/dx sum(W * x/|x|) = (W - u (u.W)) / |x| with u = x/|x|, away from zero
    safe = np.where(norms > 0, norms, 1.0)
    unit = x / safe
    closed = (weights - unit * np.sum(unit * weights, -1, keepdims=True)) / safe
    nonzero = norms[..., 0] > 0
    np.testing.assert_allclose(grad[nonzero], closed[nonzero], rtol=1e-4, atol=1e-5)


def test_l2_normalize_axis_and_public_name():
    x = np.array([[3.0, 0.0], [4.0, 1.0]], "float32")
    out = keras.ops.convert_to_numpy(l2_normalize(x, axis=0))
    np.testing.assert_allclose(out, [[0.6, 0.0], [0.8, 1.0]], rtol=1e-6)
    assert distances.l2_normalize is l2_normalize  # one implementation


def test_l2_normalize_numpy_twin():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 5)).astype("float32")
    x[2] = 0.0
    out = l2_normalize_numpy(x)
    assert out.dtype == np.float32  # float32 stays float32; float64 stays float64
    assert l2_normalize_numpy(x.astype(np.float64)).dtype == np.float64
    # The formula the evaluation metrics and the index used before, to the bit.
    before = x / np.maximum(np.sqrt(np.sum(x * x, axis=1, keepdims=True)), 1e-12)
    np.testing.assert_array_equal(out, before)
    assert np.all(out[2] == 0.0)
    np.testing.assert_allclose(np.linalg.norm(np.delete(out, 2, 0), axis=1), 1.0, rtol=1e-6)
    centres = rng.normal(size=(2, 3, 5))  # any axis, last by default
    np.testing.assert_allclose(np.linalg.norm(l2_normalize_numpy(centres), axis=-1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(l2_normalize_numpy(centres, axis=1), axis=1), 1.0)


def test_l2_normalize_floors_differ_below_1e_6():
    """The twin floors the norm at 1e-12, `l2_normalize` its square (the norm at 1e-6):
    a vector of norm 1e-9 is a unit vector for the twin and stays short in keras.ops."""
    x = np.array([[6e-10, 8e-10]])
    np.testing.assert_allclose(l2_normalize_numpy(x), [[0.6, 0.8]], rtol=1e-12)
    short = keras.ops.convert_to_numpy(l2_normalize(x.astype("float32")))
    np.testing.assert_allclose(short, x / 1e-6, rtol=1e-5)
