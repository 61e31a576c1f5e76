"""NegativeCosineSimilarity (SimSiam / BYOL) against a NumPy reference."""

import keras
import numpy as np
import pytest

from tests.backend_utils import to_numpy, value_and_grad
from tests.reference import numerical_gradient
from tfcontrast.losses import NegativeCosineSimilarity


def np_negative_cosine(y):
    y = y.astype(np.float64)
    batch, entries, _ = y.shape
    half = entries // 2
    out = np.zeros(batch)
    for b in range(batch):
        for k in range(half):
            p, z = y[b, k], y[b, half + k]
            out[b] -= p @ z / (np.linalg.norm(p) * np.linalg.norm(z)) / half
    return out


@pytest.mark.parametrize("entries", [2, 4])
def test_matches_numpy(rng, entries):
    y = rng.normal(size=(10, entries, 7)).astype("float32")
    per_example = to_numpy(NegativeCosineSimilarity(reduction=None)(None, y))
    np.testing.assert_allclose(per_example, np_negative_cosine(y), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        float(NegativeCosineSimilarity()(None, y)), np_negative_cosine(y).mean(), rtol=1e-5
    )


def test_symmetric_simsiam_form(rng):
    p1, p2, z1, z2 = (rng.normal(size=(6, 5)).astype("float32") for _ in range(4))

    def d(p, z):
        return -np.mean(np.sum(p * z, -1) / np.linalg.norm(p, axis=-1) / np.linalg.norm(z, axis=-1))

    value = NegativeCosineSimilarity()(None, np.stack([p1, p2, z2, z1], axis=1))
    np.testing.assert_allclose(float(value), 0.5 * d(p1, z2) + 0.5 * d(p2, z1), rtol=1e-5)


def test_identical_vectors_give_minus_one(rng):
    x = rng.normal(size=(5, 8)).astype("float32")
    y = np.stack([x, 3.0 * x], axis=1)  # scale does not matter
    per_example = to_numpy(NegativeCosineSimilarity(reduction=None)(None, y))
    np.testing.assert_allclose(per_example, -np.ones(5), rtol=1e-6)


def test_stop_gradient_on_target(rng):
    p = rng.normal(size=(6, 4)).astype("float32")
    z = rng.normal(size=(6, 4)).astype("float32")
    _, (grad_p, grad_z) = value_and_grad(
        lambda p, z: NegativeCosineSimilarity()(None, keras.ops.stack([p, z], axis=1)), p, z
    )
    assert np.all(np.isfinite(grad_p)) and np.any(grad_p != 0)
    assert np.all(grad_z == 0)


@pytest.mark.parametrize("entries", [2, 4])
def test_gradient_matches_finite_differences(rng, entries):
    # Per-example weights make the upstream gradient differ between examples; the
    # targets are held fixed in the reference (their gradient is stopped).
    y = rng.normal(size=(5, entries, 4)).astype("float32")
    weights = rng.uniform(0.5, 2.0, size=5)
    half = entries // 2
    loss = NegativeCosineSimilarity(reduction=None)
    upstream = keras.ops.convert_to_tensor(weights.astype("float32"))
    _, (grad,) = value_and_grad(lambda v: loss(None, v) * upstream, y)

    def reference(predictions):
        full = np.concatenate([predictions, y[:, half:].astype(np.float64)], axis=1)
        return np.sum(weights * np_negative_cosine(full))

    expected = numerical_gradient(reference, y[:, :half])
    np.testing.assert_allclose(grad[:, :half], expected, rtol=1e-3, atol=1e-5)
    assert np.all(grad[:, half:] == 0)


def test_zero_vectors_are_finite():
    value, (grad,) = value_and_grad(
        lambda y: NegativeCosineSimilarity()(None, y), np.zeros((4, 2, 3), "float32")
    )
    assert float(value) == 0.0
    assert np.all(np.isfinite(grad))


def test_permutation_invariance(rng):
    y = rng.normal(size=(9, 2, 4)).astype("float32")
    perm = rng.permutation(9)
    loss = NegativeCosineSimilarity(reduction=None)
    np.testing.assert_allclose(
        to_numpy(loss(None, y))[perm], to_numpy(loss(None, y[perm])), rtol=1e-6
    )


def test_mixed_precision_computes_in_float32(rng):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    value = NegativeCosineSimilarity()(None, rng.normal(size=(4, 2, 3)).astype("float32"))
    assert keras.backend.standardize_dtype(value.dtype) == "float32"


def test_bad_shapes(rng):
    loss = NegativeCosineSimilarity()
    with pytest.raises(ValueError, match="y_pred.*even"):
        loss(None, rng.normal(size=(4, 3, 5)).astype("float32"))
    with pytest.raises(ValueError, match="y_pred"):
        loss(None, rng.normal(size=(4, 1, 5)).astype("float32"))
    with pytest.raises(ValueError, match="y_pred"):
        loss(None, rng.normal(size=(4, 5)).astype("float32"))


def test_serialization_and_fit(rng, tmp_path):
    loss = NegativeCosineSimilarity(name="ncs")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, NegativeCosineSimilarity)
    assert restored.get_config() == loss.get_config()

    x = rng.normal(size=(16, 2, 5)).astype("float32")
    model = keras.Sequential([keras.Input((2, 5)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=loss)
    history = model.fit(x, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded.loss, NegativeCosineSimilarity)
