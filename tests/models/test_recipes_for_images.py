"""Recipes that follow the images: the kind's method and settings, pretrained weights first
for photos, an earlier run's backbone, and a time budget counted from timed steps."""

import os

import keras
import numpy as np
import pytest

from tfcontrast import _keras_compat
from tfcontrast.models import backbones, recipes


def _gray(n=64, side=16):
    return np.random.default_rng(0).uniform(size=(n, side, side, 1)).astype("float32")


def _photos(n=64, side=32):
    return np.random.default_rng(1).uniform(size=(n, side, side, 3)).astype("float32")


def test_the_kind_of_images_picks_the_method_and_the_user_still_wins():
    glyphs, why = recipes.for_images(_gray())
    assert glyphs.algorithm == recipes.IMAGE_KINDS["glyphs"].algorithm
    assert "glyphs" in why and recipes.IMAGE_KINDS["glyphs"].reason in why
    photos, why = recipes.for_images(_photos())
    kind = recipes.IMAGE_KINDS["small_natural"]
    assert photos.algorithm == kind.algorithm and kind.reason in why
    for key, value in kind.settings.items():  # the kind's settings over the field defaults
        assert getattr(photos, key) == value, key
    for key, value in kind.options.items():  # and its method's options
        assert photos.options[key] == value, key
    # A user's option wins over the kind's.
    assert recipes.for_images(_photos(), options={"temperature": 0.7})[0].options == {
        **kind.options,
        "temperature": 0.7,
    }
    # Gray images stored with 3 channels are glyphs, not photos.
    assert recipes.for_images(np.repeat(_gray(side=32), 3, -1))[0].algorithm == glyphs.algorithm
    # A named method and a set value win over the kind's.
    mine, why = recipes.for_images(_photos(), "byol", width=4, batch_size=32)
    assert (mine.algorithm, mine.width, mine.batch_size) == ("byol", 4, 32)
    assert mine.options == recipes.Recipe.for_algorithm("byol").options  # none of SimCLR's
    assert "their recipe" not in why  # the method was not the kind's choice
    assert mine.backbone == "cifar_resnet18"  # resolved: "auto" is gone


def _write_application_weights(path):
    """An EfficientNetV2B0 (no top) with random weights saved where Keras' loader reads
    them, and one of its kernels to recognise them by."""
    network = keras.applications.EfficientNetV2B0(
        include_top=False, weights=None, input_shape=(64, 64, 3), pooling="avg"
    )
    kernel = network.get_layer("stem_conv").get_weights()[0] + 0.5  # not an initial value
    network.get_layer("stem_conv").set_weights([kernel])
    network.save_weights(path) if path.endswith(".weights.h5") else network.save(path)
    return kernel


def _stem_kernel(model):
    application = model.backbone.layers[-1]
    return application.get_layer("stem_conv").get_weights()[0]


@pytest.mark.tf_only(reason="a legacy .h5 file as Keras caches ImageNet weights")
def test_photos_take_pretrained_weights_from_keras_cache_and_train_heads_first(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(_keras_compat, "keras_home", lambda: str(tmp_path))
    photos = _photos(n=40, side=64)
    offline, why = recipes.for_images(photos)
    assert offline.backbone == "cifar_resnet18" and offline.weights is None
    assert "no ImageNet weights at hand" in why and backbones.PRETRAINED_FILE in why
    os.makedirs(tmp_path / "models")
    cached = str(tmp_path / "models" / backbones.PRETRAINED_FILE)
    kernel = _write_application_weights(cached)
    recipe, why = recipes.for_images(photos, epochs=10)
    assert (recipe.backbone, recipe.weights) == (backbones.PRETRAINED, cached)
    assert "Keras' cache" in why and "heads train first" in why
    assert recipe.freeze_backbone and recipe.unfreeze_after == 2  # a fifth of 10 epochs
    model, _ = recipes.build_model(recipe, photos.shape[1:], sample=photos)
    np.testing.assert_allclose(_stem_kernel(model), kernel)
    assert not model.backbone.trainable
    # Small photos and glyphs train from scratch even with the weights at hand.
    assert recipes.for_images(_photos(side=32))[0].weights is None
    assert recipes.for_images(_gray(side=64))[0].weights is None


def test_a_weights_file_given_with_auto_backbone(tmp_path, monkeypatch):
    monkeypatch.setattr(_keras_compat, "keras_home", lambda: str(tmp_path))  # empty cache
    path = str(tmp_path / "mine.weights.h5")
    kernel = _write_application_weights(path)
    photos = _photos(n=40, side=64)
    recipe, why = recipes.for_images(photos, weights=path, epochs=3)
    assert recipe.weights == path and "the file given" in why
    model, _ = recipes.build_model(recipe, photos.shape[1:], sample=photos)
    np.testing.assert_allclose(_stem_kernel(model), kernel)
    # Images the pretrained backbone is not chosen for: the weights are refused by name.
    with pytest.raises(recipes.RecipeError) as error:
        recipes.for_images(_photos(side=32), weights=path)
    assert error.value.setting == "weights" and "64 px" in str(error.value)


def _trained_run(run_dir, x):
    recipe = recipes.Recipe.for_algorithm("simclr", backbone="small_convnet", width=8, epochs=1)
    model, _ = recipes.build_model(recipe, x.shape[1:])
    recipes.compile_model(model, recipe, len(x))
    recipes.fit(model, recipe, x)
    os.makedirs(run_dir)
    model.save(os.path.join(run_dir, "model.keras"))
    return model


def test_an_earlier_runs_backbone_is_reused_with_its_weights(tmp_path):
    x = _gray(side=8)
    earlier = _trained_run(tmp_path / "run", x)
    for name in (str(tmp_path / "run"), str(tmp_path / "run" / "model.keras")):
        recipe = recipes.Recipe.for_algorithm("supcon", backbone=name, epochs=1, batch_size=32)
        model, _ = recipes.build_model(recipe, x.shape[1:])
        for mine, theirs in zip(model.backbone.get_weights(), earlier.backbone.get_weights()):
            np.testing.assert_array_equal(mine, theirs)
    # It fine-tunes: the weights move with the new loss.
    y = np.arange(len(x)) % 4
    recipes.compile_model(model, recipe, len(x))
    recipes.fit(model, recipe, x, y)
    moved = [
        not np.allclose(a, b)
        for a, b in zip(model.backbone.get_weights(), earlier.backbone.get_weights())
    ]
    assert any(moved)


@pytest.mark.parametrize(
    "backbone, shape, match",
    [
        ("run", (16, 16, 1), "takes images of shape 8x8x1; the data's are 16x16x1"),
        ("run", (8, 8, 3), "the data's are 8x8x3"),
        ("empty", (8, 8, 1), "directory without model.keras"),
        ("missing.keras", (8, 8, 1), "no saved model there"),
        ("junk.keras", (8, 8, 1), "cannot be read as a Keras model"),
    ],
)
def test_a_saved_backbone_that_does_not_fit_is_named(tmp_path, backbone, shape, match):
    _trained_run(tmp_path / "run", _gray(side=8))
    os.makedirs(tmp_path / "empty")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    recipe_or_error = None
    with pytest.raises(recipes.RecipeError, match=match) as error:
        recipe_or_error = recipes.Recipe.for_algorithm("simclr", backbone=str(tmp_path / backbone))
        recipes.build_model(recipe_or_error, shape)
    assert error.value.setting == "backbone"


class FakeClock:
    """Seconds that advance by `step` at each reading."""

    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def test_a_time_budget_sets_the_epochs_that_fit():
    x = _gray(n=100, side=8)
    recipe = recipes.Recipe.for_algorithm(
        "vicreg", backbone="small_convnet", batch_size=32, time_budget=1.0
    )
    fitted, note = recipes.within_budget(recipe, x, clock=FakeClock(0.5))
    # Each reading 0.5 s on: a step of 0.5 s, the first (tracing) too. 4 steps an epoch.
    usable = recipes.BUDGET_MARGIN * 60 - 0.5
    assert fitted.epochs == int(usable // (0.5 * 4)) and fitted.time_budget is None
    assert "500 ms" in note and f"{fitted.epochs} epoch(s) of 4 steps" in note
    # However short the budget, one epoch.
    tiny = recipes.within_budget(recipe.replace(time_budget=0.001), x, clock=FakeClock(0.5))
    assert tiny[0].epochs == 1
    assert recipes.within_budget(recipe.replace(time_budget=None), x) == (
        recipe.replace(time_budget=None),
        "",
    )


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"time_budget": 0}, "positive number of minutes"),
        ({"time_budget": -2.0}, "positive number of minutes"),
        ({"time_budget": float("nan")}, "positive number of minutes"),
        ({"time_budget": True}, "positive number of minutes"),
        ({"time_budget": 5, "epochs": 3}, "contradicts `epochs`"),
    ],
)
def test_bad_time_budgets_are_named(settings, match):
    with pytest.raises(recipes.RecipeError, match=match) as error:
        recipes.Recipe.for_algorithm("simclr", **settings)
    assert error.value.setting == "time_budget"


@pytest.mark.parametrize("side, backbone", [(8, "small_convnet"), (16, "cifar_resnet18")])
def test_digits_train_exactly_the_recipe_they_had(side, backbone):
    # Issue 35: the photo recipe must not change the digits' (scikit-learn's 8x8, USPS's
    # 16x16): the same VICReg recipe, with "auto" resolved as build_model resolved it.
    recipe, _ = recipes.for_images(_gray(side=side))
    assert recipe == recipes.Recipe.for_algorithm("vicreg").replace(backbone=backbone)
