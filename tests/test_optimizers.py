"""LARS against a NumPy reference; warm-up cosine and EMA momentum schedules."""

import math

import keras
import numpy as np
import pytest

from tfcontrast.optimizers import LARS, cosine_momentum, warmup_cosine_decay


def lars_reference(w, v, g, lr, momentum, weight_decay, eta, adapted):
    if adapted:
        g = g + weight_decay * w
        wn, gn = np.linalg.norm(w), np.linalg.norm(g)
        trust = eta * wn / gn if wn > 0 and gn > 0 else 1.0
        g = g * trust
    v = momentum * v + g
    return w - lr * v, v


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_lars_matches_numpy_over_three_steps(rng, weight_decay):
    kernel0 = rng.normal(size=(4, 3)).astype("float32")
    bias0 = rng.normal(size=(3,)).astype("float32")
    kernel, bias = keras.Variable(kernel0), keras.Variable(bias0)
    opt = LARS(learning_rate=0.5, momentum=0.9, weight_decay=weight_decay, eta=0.01)
    ref = {
        "k": (kernel0.astype(np.float64), np.zeros((4, 3))),
        "b": (bias0.astype(np.float64), np.zeros(3)),
    }
    for _ in range(3):
        gk = rng.normal(size=(4, 3)).astype("float32")
        gb = rng.normal(size=(3,)).astype("float32")
        opt.apply_gradients([(gk, kernel), (gb, bias)])
        ref["k"] = lars_reference(*ref["k"], gk, 0.5, 0.9, weight_decay, 0.01, adapted=True)
        # Biases (rank 1) get neither adaptation nor weight decay.
        ref["b"] = lars_reference(*ref["b"], gb, 0.5, 0.9, weight_decay, 0.01, adapted=False)
    np.testing.assert_allclose(kernel.numpy(), ref["k"][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bias.numpy(), ref["b"][0], rtol=1e-5, atol=1e-6)


def test_lars_zero_weights_fall_back_to_plain_sgd():
    kernel = keras.Variable(np.zeros((2, 2), "float32"))
    opt = LARS(learning_rate=0.1, momentum=0.0, eta=0.001)
    opt.apply_gradients([(np.ones((2, 2), "float32"), kernel)])
    np.testing.assert_allclose(kernel.numpy(), -0.1 * np.ones((2, 2)), rtol=1e-6)


def test_lars_trains_with_fit_and_serializes(rng):
    x = rng.normal(size=(64, 5)).astype("float32")
    y = x @ rng.normal(size=(5, 1)).astype("float32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    model.compile(optimizer=LARS(learning_rate=1.0, eta=0.02), loss="mse")
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(model.optimizer))
    assert isinstance(restored, LARS)
    assert restored.get_config()["eta"] == pytest.approx(0.02)


@pytest.mark.parametrize("arg", ["momentum", "weight_decay", "eta"])
def test_lars_rejects_negative_arguments(arg):
    with pytest.raises(ValueError, match=arg):
        LARS(**{arg: -0.1})


def test_warmup_cosine_decay_shape():
    schedule = warmup_cosine_decay(1.0, total_steps=110, warmup_steps=10)
    values = [float(schedule(step)) for step in (0, 5, 10, 60, 110)]
    expected = [0.0, 0.5, 1.0, 0.5 * (1 + math.cos(math.pi * 50 / 100)), 0.0]
    np.testing.assert_allclose(values, expected, atol=1e-6)
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine_decay(1.0, total_steps=10, warmup_steps=10)


def test_cosine_momentum_rises_from_base_to_one():
    values = [float(cosine_momentum(k, 100, base=0.996)) for k in (0, 50, 100, 200)]
    expected = [0.996, 1 - 0.004 * (math.cos(math.pi / 2) + 1) / 2, 1.0, 1.0]
    np.testing.assert_allclose(values, expected, atol=1e-7)
    assert float(cosine_momentum(10, 0, base=0.99)) == pytest.approx(0.99)
