"""The `metric` algorithm: a supervised metric loss on the projections of every view."""

import keras
import numpy as np
import pytest

from tfcontrast import losses
from tfcontrast.models import algorithms, recipes


def _outputs(labels, views=2, dim=6):
    """Projections where every view of an image sits on its class's axis."""
    projection = np.zeros((len(labels), views, dim), "float32")
    for i, label in enumerate(labels):
        projection[i, :, label] = 1.0
    return {"projection": keras.ops.convert_to_tensor(projection)}


@pytest.mark.parametrize("loss", ["triplet", "multi_similarity", "contrastive"])
def test_each_view_carries_its_image_label(loss):
    labels = np.array([0, 1, 2, 0, 1, 2, 3, 3], "int32")
    algorithm = algorithms.get_class("metric")(loss, {"miner": "all"})
    outputs = _outputs(labels)
    aligned = float(algorithm.compute_loss(None, outputs, keras.ops.convert_to_tensor(labels)))
    # The same projections scored with labels in the wrong order (shifted by one image)
    # break the class clusters: the loss must see the difference.
    wrong = float(
        algorithm.compute_loss(None, outputs, keras.ops.convert_to_tensor(np.roll(labels, 1)))
    )
    direct = float(
        algorithm.loss(np.repeat(labels, 2), keras.ops.reshape(outputs["projection"], (-1, 6)))
    )
    assert aligned == pytest.approx(direct, abs=1e-6)
    assert wrong > aligned + 1e-3


def test_options_are_checked_and_named():
    with pytest.raises(recipes.RecipeError) as error:
        recipes.Recipe.for_algorithm("metric", options={"loss": "quadruplet"})
    assert error.value.setting == "options.loss"
    with pytest.raises(recipes.RecipeError) as error:
        recipes.Recipe.for_algorithm("metric", options={"loss_options": {"minr": "all"}})
    assert error.value.setting == "options.loss_options"
    with pytest.raises(ValueError, match="name"):
        algorithms.get_class("metric")(losses.NTXentLoss())


def test_fit_learns_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(64) % 4
    x = (rng.uniform(size=(64, 8, 8, 1)) * 0.3 + (y[:, None, None, None] / 4.0)).astype("float32")
    recipe = recipes.Recipe.for_algorithm(
        "metric",
        options={"loss": "triplet", "loss_options": {"miner": "batch_hard"}},
        backbone="small_convnet",
        epochs=3,
        batch_size=32,
    )
    model, _ = recipes.build_model(recipe, x.shape[1:])
    recipes.compile_model(model, recipe, len(x))
    history = recipes.fit(model, recipe, x, y)
    assert np.all(np.isfinite(history.history["loss"]))
    path = tmp_path / "metric.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored.algorithm.loss) is losses.TripletLoss
    assert type(restored.algorithm.loss.miner).__name__ == "BatchHardMiner"
    np.testing.assert_allclose(
        restored.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0), rtol=1e-5, atol=1e-5
    )
