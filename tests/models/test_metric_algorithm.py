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


@pytest.mark.parametrize("loss", ["arcface", "proxy_anchor"])
def test_proxy_losses_learn_their_proxies_on_the_model(tmp_path, loss):
    rng = np.random.default_rng(1)
    y = np.arange(48) % 3
    x = rng.uniform(size=(48, 8, 8, 1)).astype("float32")
    recipe = recipes.Recipe.for_algorithm(
        "metric", options={"loss": loss}, backbone="small_convnet", epochs=2, batch_size=16
    )
    model, _ = recipes.build_model(recipe, x.shape[1:], labels=y)  # 3 classes counted
    model.build(x.shape)
    assert model.proxies.vectors.shape == (3, recipe.projection_dim)
    assert model.algorithm.loss.proxies is model.proxies
    start = keras.ops.convert_to_numpy(model.proxies.vectors)
    recipes.compile_model(model, recipe, len(x))
    recipes.fit(model, recipe, x, y)
    trained = keras.ops.convert_to_numpy(model.proxies.vectors)
    assert not np.allclose(start, trained)
    path = tmp_path / "proxies.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored.proxies.vectors), trained, rtol=1e-6
    )
    assert restored.algorithm.loss.proxies is restored.proxies


def test_proxy_losses_need_the_number_of_classes():
    recipe = recipes.Recipe.for_algorithm("metric", options={"loss": "arcface"})
    model, _ = recipes.build_model(recipe, (8, 8, 1))  # no labels to count them from
    with pytest.raises(algorithms.OptionError, match="num_classes"):
        model.build((None, 8, 8, 1))
