"""VICRegLoss and BarlowTwinsLoss against NumPy references written from the papers."""

import itertools

import keras
import numpy as np
import pytest

from tests.backend_utils import to_numpy, value_and_grad
from tests.reference import numerical_gradient
from tfcontrast.losses import BarlowTwinsLoss, VICRegLoss

# -- NumPy references (loops over dimensions, independent of the library) ---------------


def np_vicreg_pair(za, zb, lam, mu, nu, eps):
    n, d = za.shape
    sim = np.mean((za - zb) ** 2)

    def var_term(z):
        out = 0.0
        for j in range(d):
            col = z[:, j]
            var = np.sum((col - col.mean()) ** 2) / (n - 1)
            out += max(0.0, 1.0 - np.sqrt(var + eps))
        return out / d

    def cov_term(z):
        zc = z - z.mean(axis=0)
        total = 0.0
        for i in range(d):
            for j in range(d):
                if i != j:
                    c = np.sum(zc[:, i] * zc[:, j]) / (n - 1)
                    total += c * c
        return total / d

    return lam * sim + mu * (var_term(za) + var_term(zb)) / 2 + nu * (cov_term(za) + cov_term(zb))


def np_vicreg(y, lam=25.0, mu=25.0, nu=1.0, eps=1e-4):
    y = y.astype(np.float64)
    pairs = list(itertools.combinations(range(y.shape[1]), 2))
    return np.mean([np_vicreg_pair(y[:, i], y[:, j], lam, mu, nu, eps) for i, j in pairs])


def np_barlow_pair(za, zb, lam, eps):
    n, d = za.shape

    def bn(z):
        return (z - z.mean(axis=0)) / np.sqrt(z.var(axis=0) + eps)  # biased variance

    a, b = bn(za), bn(zb)
    total = 0.0
    for i in range(d):
        for j in range(d):
            c = np.sum(a[:, i] * b[:, j]) / n
            total += (1.0 - c) ** 2 if i == j else lam * c * c
    return total


def np_barlow(y, lam=5e-3, eps=1e-5):
    y = y.astype(np.float64)
    pairs = list(itertools.combinations(range(y.shape[1]), 2))
    return np.mean([np_barlow_pair(y[:, i], y[:, j], lam, eps) for i, j in pairs])


def _views(rng, batch=12, views=2, dim=6, scale=1.0):
    return (scale * rng.normal(size=(batch, views, dim))).astype("float32")


def _grad(loss, y):
    value, (grad,) = value_and_grad(lambda y: loss(None, y), y)
    return value, grad


# -- values ------------------------------------------------------------------------------


@pytest.mark.parametrize("views", [2, 3])
@pytest.mark.parametrize("weights", [(25.0, 25.0, 1.0), (1.0, 3.0, 0.5)])
def test_vicreg_matches_numpy(rng, views, weights):
    y = _views(rng, views=views, scale=0.4)  # std < 1: the variance hinge is active
    lam, mu, nu = weights
    loss = VICRegLoss(invariance_weight=lam, variance_weight=mu, covariance_weight=nu)
    np.testing.assert_allclose(float(loss(None, y)), np_vicreg(y, lam, mu, nu), rtol=1e-5)


@pytest.mark.parametrize("views", [2, 3])
@pytest.mark.parametrize("lam", [5e-3, 0.5])
def test_barlow_matches_numpy(rng, views, lam):
    y = _views(rng, views=views)
    y[:, 1] += y[:, 0]  # correlated views, so the diagonal term is not trivial
    loss = BarlowTwinsLoss(lambda_=lam)
    np.testing.assert_allclose(float(loss(None, y)), np_barlow(y, lam), rtol=1e-5)


def test_vicreg_per_example_values(rng):
    """Per example: its own invariance plus the batch terms; Keras' mean is the loss."""
    y = _views(rng, scale=0.5)
    per_example = to_numpy(VICRegLoss(reduction=None)(None, y))
    assert per_example.shape == (12,)
    constant = np_vicreg(y, lam=0.0)
    expected = 25.0 * np.mean((y[:, 0] - y[:, 1]).astype(np.float64) ** 2, axis=-1) + constant
    np.testing.assert_allclose(per_example, expected, rtol=1e-5)
    np.testing.assert_allclose(per_example.mean(), np_vicreg(y), rtol=1e-5)
    np.testing.assert_allclose(float(VICRegLoss()(None, y)), per_example.mean(), rtol=1e-6)


def test_barlow_per_example_values(rng):
    y = _views(rng)
    per_example = to_numpy(BarlowTwinsLoss(reduction=None)(None, y))
    assert per_example.shape == (12,)
    np.testing.assert_allclose(per_example, np.full(12, np_barlow(y)), rtol=1e-5)


def test_vicreg_constant_embeddings_closed_form():
    # Every row equal, views identical: no invariance, zero variance in every dimension
    # (std = sqrt(eps)), zero covariance.
    y = np.ones((8, 2, 5), "float32") * 3.0
    for mu, eps in [(25.0, 1e-4), (2.0, 1e-2)]:
        loss = VICRegLoss(variance_weight=mu, epsilon=eps)
        np.testing.assert_allclose(float(loss(None, y)), mu * (1.0 - np.sqrt(eps)), rtol=1e-6)


def test_barlow_decorrelated_identical_views_is_zero():
    # Columns of a Hadamard matrix orthogonal to the ones vector: zero mean, unit
    # (biased) variance, mutually uncorrelated. Identical views give C = I.
    h = np.array([[1]])
    for _ in range(3):
        h = np.block([[h, h], [h, -h]])
    z = h[:, 1:6].astype("float32")  # (8, 5)
    y = np.stack([z, z], axis=1)
    loss = BarlowTwinsLoss()
    assert abs(float(loss(None, y))) < 1e-8
    # And not zero once the views disagree.
    y2 = np.stack([z, z[:, ::-1]], axis=1)
    assert float(loss(None, y2)) > 1.0


def test_barlow_constant_embeddings():
    # Constant dimensions normalise to zero: C = 0 and the loss is D, not NaN.
    y = np.full((6, 2, 4), 2.0, "float32")
    value, grad = _grad(BarlowTwinsLoss(), y)
    np.testing.assert_allclose(float(value), 4.0, rtol=1e-6)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("cls", [VICRegLoss, BarlowTwinsLoss])
def test_permutation_invariance(rng, cls):
    y = _views(rng, views=3, scale=0.5)
    perm = rng.permutation(len(y))
    loss = cls(reduction=None)
    out, out_perm = to_numpy(loss(None, y)), to_numpy(loss(None, y[perm]))
    np.testing.assert_allclose(out[perm], out_perm, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [VICRegLoss, BarlowTwinsLoss])
@pytest.mark.parametrize("kind", ["random", "constant", "zeros"])
def test_gradients_finite(rng, cls, kind):
    y = {
        "random": _views(rng),
        "constant": np.ones((8, 2, 6), "float32"),
        "zeros": np.zeros((8, 2, 6), "float32"),
    }[kind]
    value, grad = _grad(cls(), y)
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(grad))
    if kind == "random":
        assert np.any(grad != 0)


@pytest.mark.parametrize("views", [2, 3])
@pytest.mark.parametrize("weights", [(25.0, 25.0, 1.0), (0.0, 0.0, 1.0)], ids=["paper", "cov"])
def test_vicreg_gradient_matches_finite_differences(rng, views, weights):
    # Every coordinate; "cov" keeps only the covariance term, whose gradient comes from
    # the hand-written one of `gram` (its symmetric form: a wrong factor shows).
    lam, mu, nu = weights
    y = _views(rng, batch=6, views=views, dim=4, scale=0.5)
    y[:, 1] += y[:, 0]
    loss = VICRegLoss(invariance_weight=lam, variance_weight=mu, covariance_weight=nu)
    _, grad = _grad(loss, y)
    expected = numerical_gradient(lambda v: np_vicreg(v, lam, mu, nu), y)
    np.testing.assert_allclose(grad, expected, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("cls", [VICRegLoss, BarlowTwinsLoss])
def test_mixed_precision_computes_in_float32(rng, cls):
    keras.mixed_precision.set_global_policy("mixed_float16")
    y = _views(rng).astype("float16")
    value = cls()(None, y)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    assert np.isfinite(float(value))


@pytest.mark.parametrize("cls", [VICRegLoss, BarlowTwinsLoss])
def test_fit_without_labels(rng, cls):
    x = rng.normal(size=(32, 2, 5)).astype("float32")
    model = keras.Sequential([keras.Input((2, 5)), keras.layers.Dense(4)])
    model.compile(optimizer="sgd", loss=cls())
    history = model.fit(x, epochs=2, batch_size=16, verbose=0)
    assert all(np.isfinite(history.history["loss"]))


def test_serialization_round_trip():
    for loss in [
        VICRegLoss(
            invariance_weight=10.0, variance_weight=5.0, covariance_weight=0.5, epsilon=1e-3
        ),
        BarlowTwinsLoss(lambda_=0.01, epsilon=1e-4),
    ]:
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        assert type(restored) is type(loss)
        assert restored.get_config() == loss.get_config()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: VICRegLoss(invariance_weight=-1.0), "invariance_weight"),
        (lambda: VICRegLoss(variance_weight=-0.1), "variance_weight"),
        (lambda: VICRegLoss(covariance_weight=-2.0), "covariance_weight"),
        (lambda: VICRegLoss(epsilon=0.0), "epsilon"),
        (lambda: BarlowTwinsLoss(lambda_=-1e-3), "lambda_"),
        (lambda: BarlowTwinsLoss(epsilon=-1.0), "epsilon"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("cls", [VICRegLoss, BarlowTwinsLoss])
def test_bad_shapes(rng, cls):
    with pytest.raises(ValueError, match="y_pred.*2 views"):
        cls()(None, rng.normal(size=(8, 1, 4)).astype("float32"))
    with pytest.raises(ValueError, match="y_pred"):
        cls()(None, rng.normal(size=(8, 4)).astype("float32"))


def test_labels_are_ignored(rng):
    y = _views(rng)
    labels = np.arange(12, dtype="int32")
    for loss in [VICRegLoss(), BarlowTwinsLoss()]:
        np.testing.assert_allclose(float(loss(labels, y)), float(loss(None, y)), rtol=1e-6)


@pytest.mark.parametrize(
    "batch, dim", [(12, 6), (5, 16)], ids=["cross-correlation", "gram-matrices"]
)
@pytest.mark.parametrize("views", [2, 3])
def test_barlow_value_and_gradient_both_forms(rng, batch, dim, views):
    # (5, 16): fewer rows than 3/4 of the dimensions, the N x N Gram form; (12, 6): the
    # D x D cross-correlation. Both against the NumPy loops and their finite differences.
    y = _views(rng, batch=batch, views=views, dim=dim)
    y[:, 1] += y[:, 0]
    lam = 0.3
    value, grad = _grad(BarlowTwinsLoss(lambda_=lam), y)
    np.testing.assert_allclose(float(value), np_barlow(y, lam), rtol=1e-5)
    expected = numerical_gradient(lambda v: np_barlow(v, lam), y)
    np.testing.assert_allclose(grad, expected, rtol=2e-3, atol=2e-4)
