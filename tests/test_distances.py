"""Tests of tfcontrast.distances against independent NumPy / SciPy references."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import reference
from tests.backend_utils import value_and_grad
from tfcontrast import distances

ALL = reference.DISTANCE_NAMES


def _inputs(name, rng, b1=5, b2=6, dim=7):
    if name in reference.PROBABILITY_DISTANCES:
        return (
            rng.dirichlet(np.ones(dim), size=b1).astype("float32"),
            rng.dirichlet(np.ones(dim), size=b2).astype("float32"),
        )
    return (
        rng.normal(size=(b1, dim)).astype("float32"),
        rng.normal(size=(b2, dim)).astype("float32"),
    )


def _value_and_grads(dist, a, b):
    d, (ga, gb) = value_and_grad(dist, a, b)
    return d, ga, gb


def _self_value_and_grad(dist, a):
    d, (ga,) = value_and_grad(dist, a)
    return d, ga


def test_names_cover_the_documented_distances():
    assert sorted(distances.names()) == sorted(ALL)


@pytest.mark.parametrize("name", ALL)
def test_matches_reference(name, rng):
    a, b = _inputs(name, rng)
    got = keras.ops.convert_to_numpy(distances.get(name)(a, b))
    assert got.shape == (5, 6)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, reference.pairwise(name, a, b), rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("name", ALL)
def test_shapes_and_default_second_argument(name, rng):
    a, b = _inputs(name, rng, b1=3, b2=9, dim=4)
    dist = distances.get(name)
    assert tuple(dist(a, b).shape) == (3, 9)
    assert tuple(dist(b, a).shape) == (9, 3)
    # b=None compares a with itself.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(dist(a)), keras.ops.convert_to_numpy(dist(a, a)), atol=1e-6
    )


@pytest.mark.parametrize("name", ALL)
def test_finite_values_and_gradients_at_zero_vectors(name, rng):
    a = np.zeros((3, 5), "float32")
    b = rng.random((4, 5)).astype("float32")
    b[1] = 0.0
    dist = distances.get(name)
    d, ga, gb = _value_and_grads(dist, a, b)
    assert np.all(np.isfinite(d)), d
    assert np.all(np.isfinite(ga)) and np.all(np.isfinite(gb))
    # All zero against all zero, too.
    d, g = _self_value_and_grad(dist, np.zeros((2, 5), "float32"))
    assert np.all(np.isfinite(d)) and np.all(np.isfinite(g))


@pytest.mark.parametrize("name", ALL)
def test_finite_gradients_at_zero_distance(name, rng):
    a, _ = _inputs(name, rng, b1=4, dim=6)
    # Identical rows: zero distance between row 0 and row 1, and on the diagonal.
    a[1] = a[0]
    dist = distances.get(name)
    d, g = _self_value_and_grad(dist, a)
    assert np.all(np.isfinite(d)) and np.all(np.isfinite(g)), (d, g)
    if name != "dot":
        # A distance (or divergence) of a row to itself is zero.
        np.testing.assert_allclose(np.diag(d), 0.0, atol=2e-3)
        np.testing.assert_allclose(d[0, 1], 0.0, atol=2e-3)
        assert np.all(d >= -1e-6)


@pytest.mark.parametrize("in_batch", [True, False], ids=["in-batch", "two-sets"])
@pytest.mark.parametrize("name", ALL)
def test_gradient_matches_finite_differences(name, in_batch, rng):
    # A weighted sum with an asymmetric weight matrix: in-batch (`b` omitted) the
    # gradient comes through both arguments at once (a hand-written Gram for the
    # inner-product distances); against central differences of the NumPy reference.
    a, b = _inputs(name, rng, b1=4, b2=4, dim=3)
    if in_batch:
        b = None
    weights = rng.normal(size=(4, 4))
    dist = distances.get(name)
    args = (a,) if in_batch else (a, b)
    w = keras.ops.convert_to_tensor(weights.astype("float32"))
    _, grads = value_and_grad(lambda *x: dist(*x) * w, *args)
    expected = reference.numerical_gradient(
        lambda x: np.sum(weights * reference.pairwise(name, x, b)), a, step=1e-5
    )
    np.testing.assert_allclose(grads[0], expected, rtol=2e-3, atol=2e-4)
    if not in_batch:
        expected_b = reference.numerical_gradient(
            lambda x: np.sum(weights * reference.pairwise(name, a, x)), b, step=1e-5
        )
        np.testing.assert_allclose(grads[1], expected_b, rtol=2e-3, atol=2e-4)


def test_euclidean_gradient_is_zero_at_exactly_zero_distance():
    # sqrt'(0) is infinite; the library must cut it to 0 rather than produce NaN.
    a = np.zeros((2, 3), "float32")
    d, g = _self_value_and_grad(distances.get("euclidean"), a)
    np.testing.assert_array_equal(d, 0.0)
    np.testing.assert_array_equal(g, 0.0)


def test_cosine_of_zero_vector_is_one(rng):
    b = rng.normal(size=(3, 4)).astype("float32")
    d = keras.ops.convert_to_numpy(distances.get("cosine")(np.zeros((1, 4), "float32"), b))
    np.testing.assert_allclose(d, 1.0, atol=1e-6)
    z = keras.ops.convert_to_numpy(distances.l2_normalize(np.zeros((2, 4), "float32")))
    np.testing.assert_array_equal(z, 0.0)


def test_orientation(rng):
    """to_distance is smaller-is-closer, to_similarity larger-is-closer."""
    for name in ALL:
        a, b = _inputs(name, rng)
        dist = distances.get(name)
        assert dist.higher_is_closer == (name == "dot"), name
        m = dist(a, b)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(dist.to_distance(m)),
            reference.closeness(name, a, b),
            rtol=1e-4,
            atol=2e-5,
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(dist.to_similarity(m)),
            reference.similarity(name, a, b),
            rtol=1e-4,
            atol=2e-5,
        )


# -- get / names ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "alias, cls",
    [
        ("cosine", distances.CosineDistance),
        ("COSINE", distances.CosineDistance),
        ("dot", distances.DotProduct),
        ("inner_product", distances.DotProduct),
        ("euclidean", distances.EuclideanDistance),
        ("l2", distances.EuclideanDistance),
        ("squared_euclidean", distances.SquaredEuclideanDistance),
        ("sqeuclidean", distances.SquaredEuclideanDistance),
        ("manhattan", distances.ManhattanDistance),
        ("l1", distances.ManhattanDistance),
        ("kl", distances.KLDivergence),
        ("js", distances.JSDivergence),
        ("wasserstein", distances.WassersteinDistance),
    ],
)
def test_get_names_and_aliases(alias, cls):
    assert type(distances.get(alias)) is cls


def test_get_objects_and_config_dicts():
    obj = distances.EuclideanDistance()
    assert distances.get(obj) is obj
    for name in ALL:
        d = distances.get(name)
        config = distances.serialize(d)
        assert isinstance(config, dict)
        again = distances.get(config)
        assert type(again) is type(d) and again == d


@pytest.mark.parametrize("bad", ["cosinus", "", 3, None, ["cosine"]])
def test_get_unknown_raises_listing_names(bad):
    with pytest.raises(ValueError, match="distance") as info:
        distances.get(bad)
    for name in ALL:
        assert name in str(info.value)


def test_non_2d_input_raises(rng):
    dist = distances.get("cosine")
    with pytest.raises(ValueError, match="`a`.*2-D"):
        dist(rng.normal(size=(2, 3, 4)).astype("float32"))
    with pytest.raises(ValueError, match="`a`.*2-D"):
        dist(rng.normal(size=(4,)).astype("float32"), rng.normal(size=(2, 4)).astype("float32"))
    with pytest.raises(ValueError, match="`b`.*2-D"):
        dist(rng.normal(size=(2, 4)).astype("float32"), rng.normal(size=(4,)).astype("float32"))


def test_mismatched_dims_raise(rng):
    for name in ALL:
        with pytest.raises(ValueError, match="last dimension"):
            distances.get(name)(
                rng.normal(size=(2, 4)).astype("float32"),
                rng.normal(size=(3, 5)).astype("float32"),
            )


@pytest.mark.parametrize("name", ALL)
def test_serialization_round_trip(name, rng):
    d = distances.get(name)
    config = keras.saving.serialize_keras_object(d)
    assert config["registered_name"].startswith("tfcontrast>")
    again = keras.saving.deserialize_keras_object(config)
    assert type(again) is type(d)
    assert again.get_config() == d.get_config()
    a, b = _inputs(name, rng, b1=2, b2=3, dim=4)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(again(a, b)), keras.ops.convert_to_numpy(d(a, b))
    )


@pytest.mark.tf_only(reason="tf.function with an unknown batch dimension")
def test_works_inside_tf_function_with_unknown_batch(rng):
    a, b = _inputs("euclidean", rng)

    @tf.function(input_signature=[tf.TensorSpec((None, 7)), tf.TensorSpec((None, 7))])
    def f(x, y):
        return distances.get("euclidean")(x, y)

    np.testing.assert_allclose(
        f(a, b).numpy(), reference.pairwise("euclidean", a, b), rtol=1e-4, atol=1e-4
    )
