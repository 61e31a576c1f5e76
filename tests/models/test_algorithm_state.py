"""NNCLR, DINO and SwAV through `fit`: training moves their state, evaluation and
validation leave it alone, and a saved model restores it (every backend)."""

import keras
import numpy as np
import pytest

from tests.models.test_contrastive_model import digits, make_model, noisy_views  # noqa: F401
from tfcontrast.models import ContrastiveModel, algorithms

# Small heads and state so that the tests stay fast.
SMALL = {
    "nnclr": lambda: algorithms.NNCLR(queue_size=48),
    "dino": lambda: algorithms.DINO(num_prototypes=32),
    "swav": lambda: algorithms.SwAV(num_prototypes=16, freeze_prototypes_steps=1),
}


def small_model(name):
    return make_model(SMALL[name]())


def weights(model):
    """Every weight, in order (online, target, state), as NumPy."""
    return [(w.path, keras.ops.convert_to_numpy(w).copy()) for w in model.weights]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_fit_then_evaluate_and_validation_leave_state_alone(name, digits):  # noqa: F811
    x, _ = digits
    views = noisy_views(x[:32], 0.1, seed=1)

    def trained(validate):
        model = small_model(name)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        history = model.fit(
            x[:64],
            batch_size=32,
            epochs=1,  # 2 steps: the state moves, the queue / centre / counter with it
            verbose=0,
            shuffle=False,  # see test_contrastive_model: torch's RNG and validation
            validation_data=(views,) if validate else None,
        )
        assert np.all(np.isfinite(history.history["loss"]))
        return model

    plain, validated = trained(False), trained(True)
    for (path, a), (_, b) in zip(weights(plain), weights(validated)):
        np.testing.assert_array_equal(a, b, err_msg=path)
    before = weights(validated)
    validated.evaluate(views, batch_size=16, verbose=0)
    for (path, a), (_, b) in zip(before, weights(validated)):
        np.testing.assert_array_equal(a, b, err_msg=path)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_save_and_load_restore_every_weight(name, digits, tmp_path):  # noqa: F811
    x, _ = digits
    model = small_model(name)
    model.compile(optimizer="adam")
    model.fit(x[:64], batch_size=32, epochs=1, verbose=0)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, ContrastiveModel) and restored.algorithm.name == name
    assert restored.algorithm.get_config() == model.algorithm.get_config()
    assert len(restored.weights) == len(model.weights)
    for (where, a), (_, b) in zip(weights(model), weights(restored)):
        np.testing.assert_allclose(b, a, rtol=1e-6, err_msg=where)
    np.testing.assert_allclose(
        restored.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0), rtol=1e-5, atol=1e-5
    )


def test_cross_batch_memory_is_model_state_written_in_training_only(digits, tmp_path):  # noqa: F811
    from tfcontrast.losses import CrossBatchMemory, MultiSimilarityLoss

    x, y = digits
    views = noisy_views(x[:32], 0.1, seed=1)

    def trained(validate):
        model = make_model(algorithms.Metric(CrossBatchMemory(MultiSimilarityLoss(), 48)))
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        model.fit(
            x[:64],
            y[:64],
            batch_size=32,
            epochs=1,
            verbose=0,
            shuffle=False,
            validation_data=(views, y[:32]) if validate else None,
        )
        return model

    plain, validated = trained(False), trained(True)
    memory = plain.cross_batch_memory
    assert int(keras.ops.convert_to_numpy(memory.filled)) == 48  # 2 steps of 2 x 32 views
    for (path, a), (_, b) in zip(weights(plain), weights(validated)):
        np.testing.assert_array_equal(a, b, err_msg=path)
    before = weights(validated)
    validated.evaluate(views, y[:32], batch_size=16, verbose=0)
    for (path, a), (_, b) in zip(before, weights(validated)):
        np.testing.assert_array_equal(a, b, err_msg=path)

    path = tmp_path / "xbm.keras"
    plain.save(path)
    restored = keras.saving.load_model(path).cross_batch_memory
    for name in ("buffer", "labels", "filled", "pointer"):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(getattr(restored, name)),
            keras.ops.convert_to_numpy(getattr(memory, name)),
            err_msg=name,
        )
