"""NNCLR: nearest-neighbour selection and loss against NumPy references, its support set
through `fit`, and its argument checks."""

import types

import keras
import numpy as np
import pytest

from tests.models.test_contrastive_model import digits, make_model  # noqa: F401
from tfcontrast.layers import MemoryQueue
from tfcontrast.models import algorithms
from tfcontrast.models.algorithms.nnclr import nearest_neighbours


def normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def brute_force_neighbours(queries, support, valid):
    """For each query, the valid support row of largest cosine, normalised (a loop)."""
    out = []
    for q in queries:
        best, best_sim = None, -np.inf
        for row, ok in zip(support, valid):
            if not ok:
                continue
            sim = float(np.dot(q, row) / np.linalg.norm(q) / np.linalg.norm(row))
            if sim > best_sim:
                best, best_sim = row, sim
        out.append(normalize(q if best is None else best))
    return np.stack(out)


def test_nearest_neighbours_match_brute_force(rng):
    queries = rng.normal(size=(7, 5)).astype("float32")
    support = rng.normal(size=(20, 5)).astype("float32") * rng.uniform(0.5, 3, (20, 1))
    valid = np.arange(20) < 13
    got = keras.ops.convert_to_numpy(nearest_neighbours(queries, support, valid))
    np.testing.assert_allclose(got, brute_force_neighbours(queries, support, valid), atol=1e-6)
    all_valid = keras.ops.convert_to_numpy(nearest_neighbours(queries, support))
    expected = brute_force_neighbours(queries, support, np.ones(20, bool))
    np.testing.assert_allclose(all_valid, expected, atol=1e-6)
    # An empty support set: each query is its own neighbour.
    empty = keras.ops.convert_to_numpy(nearest_neighbours(queries, support, np.zeros(20, bool)))
    np.testing.assert_allclose(empty, normalize(queries), atol=1e-6)


def reference_loss(z, p, support, valid, t):
    """Symmetric NNCLR loss with a NumPy loop: InfoNCE of NN(z_a) against p_b."""

    def one_way(nn, pred):
        pred = normalize(pred)
        total = 0.0
        for i in range(len(nn)):
            logits = [np.dot(nn[i], pred[k]) / t for k in range(len(pred))]
            total += np.log(np.sum(np.exp(logits))) - logits[i]
        return total / len(nn)

    nn1 = brute_force_neighbours(z[:, 0], support, valid)
    nn2 = brute_force_neighbours(z[:, 1], support, valid)
    return 0.5 * (one_way(nn1, p[:, 1]) + one_way(nn2, p[:, 0]))


@pytest.mark.parametrize("training", [True, False])
def test_loss_matches_numpy_and_only_training_enqueues(rng, training):
    algo = algorithms.NNCLR(temperature=0.1, queue_size=16)
    model = types.SimpleNamespace()
    algo.build(model, 4)
    assert isinstance(model.support_set, MemoryQueue)
    model.support_set.enqueue(rng.normal(size=(10, 4)).astype("float32"))
    support, _, valid = (keras.ops.convert_to_numpy(v) for v in model.support_set.values())
    z = rng.normal(size=(6, 2, 4)).astype("float32")
    p = rng.normal(size=(6, 2, 4)).astype("float32")
    outputs = {"projection": keras.ops.convert_to_tensor(z), "prediction": p}
    loss = algo.compute_loss(model, outputs, None, training=training)
    expected = reference_loss(z, p, support, valid, 0.1)
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(loss)), expected, rtol=1e-5)
    filled = int(keras.ops.convert_to_numpy(model.support_set.filled))
    assert filled == (16 if training else 10)
    if training:  # the first view's normalised projections joined the queue
        rows = keras.ops.convert_to_numpy(model.support_set.values()[0])
        np.testing.assert_allclose(rows[10:16], normalize(z[:, 0]), atol=1e-6)


def test_fit_fills_the_support_set(digits):  # noqa: F811
    x, _ = digits
    model = make_model(algorithms.NNCLR(queue_size=48))
    model.compile(optimizer="adam")
    model.fit(x[:32], batch_size=16, epochs=1, verbose=0)
    assert int(keras.ops.convert_to_numpy(model.support_set.filled)) == 32
    rows = keras.ops.convert_to_numpy(model.support_set.values()[0])[:32]
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5)


def test_bad_arguments_name_queue_size(digits):  # noqa: F811
    x, _ = digits
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="queue_size"):
            algorithms.NNCLR(queue_size=bad)
    with pytest.raises(ValueError, match="temperature"):
        algorithms.NNCLR(temperature=0.0)
    model = make_model(algorithms.NNCLR(queue_size=8))
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"`queue_size` \(8\) must be >= the global batch size"):
        model.fit(x[:32], batch_size=16, epochs=1, verbose=0)
