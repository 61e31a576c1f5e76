"""Recipes: defaults in three layers, checks that name the setting, and the model built."""

import warnings

import keras
import numpy as np
import pytest

from tfcontrast.models import algorithms, recipes


def test_defaults_come_in_three_layers():
    base = recipes.Recipe()
    # The algorithm's own defaults override the field defaults ...
    moco = recipes.Recipe.for_algorithm("moco_v2")
    assert moco.options == algorithms.get("moco_v2").recipe_defaults["options"]
    assert moco.batch_size == base.batch_size
    # ... and what the user sets overrides both; options merge key by key.
    mine = recipes.Recipe.for_algorithm(
        "moco_v2", batch_size=64, learning_rate=None, options={"temperature": 0.5}
    )
    assert mine.batch_size == 64 and mine.learning_rate == base.learning_rate
    assert mine.options["temperature"] == 0.5
    assert mine.options["queue_size"] == moco.options["queue_size"]


@pytest.mark.parametrize("name", algorithms.names())
def test_every_algorithm_has_a_valid_recipe(name):
    recipe = recipes.Recipe.for_algorithm(name)
    model, note = recipes.build_model(recipe, (8, 8, 1))
    assert note.startswith("augmentation: glyphs")
    assert model.algorithm.name == name
    out = model(np.zeros((3, 8, 8, 1), "float32"))
    width = model.projector.output_dim if recipe.serve == "projector" else None
    assert out.shape[0] == 3 and (width is None or out.shape[1] == width)


def test_backbone_follows_the_image_size():
    assert recipes.choose_backbone((8, 8, 1))[0] == "small_convnet"
    assert recipes.choose_backbone((16, 16, 1))[0] == "cifar_resnet18"
    assert recipes.choose_backbone((32, 24, 3))[0] == "cifar_resnet18"
    recipe = recipes.Recipe.for_algorithm("simclr")
    small, note = recipes.build_model(recipe, (8, 8, 1))
    assert small.backbone.name == "small_convnet" and "backbone: small_convnet" in note
    large, _ = recipes.build_model(recipe, (16, 16, 1))
    assert large.backbone.name == "cifar_resnet18"
    # The recipe's width for the chosen backbone: 8 * 8 = 64 features from the ResNet.
    assert large.backbone.output_shape[-1] == 8 * recipes.RECIPE_WIDTHS["cifar_resnet18"]
    wide, _ = recipes.build_model(recipe.replace(width=16), (16, 16, 1))
    assert wide.backbone.output_shape[-1] == 8 * 16


def test_epochs_follow_the_step_budget_within_bounds():
    recipe = recipes.Recipe(batch_size=100, steps=1000, min_epochs=5, max_epochs=50)
    assert recipe.epochs_for(1000) == 50  # 10 steps an epoch: 100 epochs, capped at 50
    assert recipe.epochs_for(10_000) == 10  # 100 steps an epoch
    assert recipe.epochs_for(1_000_000) == 5  # 10,000 steps an epoch: at least 5 epochs
    assert recipe.replace(epochs=3).epochs_for(1000) == 3


def test_epochs_of_a_chosen_length_are_not_bounded_as_passes():
    recipe = recipes.Recipe(batch_size=100, steps=1000, min_epochs=5, max_epochs=50)
    assert recipe.epoch_steps(1_000_000) == 10_000
    # 300-step epochs: round(1000 / 300) = 3, below min_epochs (which bounds passes).
    assert recipe.replace(steps_per_epoch=300).epoch_steps(1_000_000) == 300
    assert recipe.replace(steps_per_epoch=300).epochs_for(1_000_000) == 3
    assert recipe.replace(steps_per_epoch=5000).epochs_for(10) == 1
    assert recipe.replace(steps_per_epoch=300, epochs=7).epochs_for(10) == 7
    with pytest.raises(recipes.RecipeError, match="steps_per_epoch") as error:
        recipe.replace(steps_per_epoch=0)
    assert error.value.setting == "steps_per_epoch"


def test_array_epochs_of_a_chosen_length_take_the_next_batches(monkeypatch):
    # 50 images in batches of 10 are 5 batches; 3 epochs of 2 steps need 6. Keras' array
    # adapter would run dry in the third epoch; recipes.fit streams the arrays instead.
    recipe = recipes.Recipe.for_algorithm(
        "simclr",
        epochs=3,
        steps_per_epoch=2,
        batch_size=10,
        backbone="small_convnet",
        width=4,
        augmentation="none",
    )
    x = np.random.default_rng(0).uniform(size=(50, 8, 8, 1)).astype("float32")
    model, _ = recipes.build_model(recipe, x.shape[1:])
    recipes.compile_model(model, recipe, len(x))
    seen = []
    real_fit = type(model).fit

    def spy(self, x=None, y=None, **kwargs):
        seen.append(kwargs["steps_per_epoch"])
        return real_fit(self, x, y, **kwargs)

    monkeypatch.setattr(type(model), "fit", spy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = recipes.fit(model, recipe, x)
    assert seen == [2] and len(history.history["loss"]) == 3
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 6
    assert not [w for w in caught if "ran out of data" in str(w.message)]


@pytest.mark.parametrize(
    "make, setting, match",
    [
        (lambda: recipes.Recipe.for_algorithm("nope"), "algorithm", "Unknown `algorithm`"),
        (
            lambda: recipes.Recipe.for_algorithm("byol", options={"temperature": 0.1}),
            "options.temperature",
            "option 'temperature'",
        ),
        (lambda: recipes.Recipe.for_algorithm("simclr", backbone="vgg"), "backbone", "vgg"),
        (
            lambda: recipes.Recipe.for_algorithm("simclr", augmentation="sepia"),
            "augmentation",
            "sepia",
        ),
        (lambda: recipes.Recipe.for_algorithm("simclr", epochs=0), "epochs", "`epochs`"),
        (lambda: recipes.Recipe.for_algorithm("simclr", width=0), "width", "`width`"),
        (
            lambda: recipes.Recipe.for_algorithm("simclr", learning_rate=-1.0),
            "learning_rate",
            "`learning_rate`",
        ),
        (lambda: recipes.Recipe.for_algorithm("simclr", serve="head"), "serve", "`serve`"),
        (lambda: recipes.Recipe.for_algorithm("simclr", colour=True), "colour", "unknown setting"),
    ],
)
def test_bad_settings_name_the_setting(make, setting, match):
    with pytest.raises(recipes.RecipeError, match=match) as error:
        make()
    assert error.value.setting == setting


def test_compile_and_fit_follow_the_recipe():
    recipe = recipes.Recipe.for_algorithm("simclr", epochs=2, batch_size=16, steps=10)
    x = np.random.default_rng(0).uniform(size=(40, 8, 8, 1)).astype("float32")
    model, _ = recipes.build_model(recipe, x.shape[1:])
    recipes.compile_model(model, recipe, len(x))
    history = recipes.fit(model, recipe, x, np.zeros(40, "int32"))
    assert len(history.history["loss"]) == 2
    steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    assert steps == 2 * 3  # ceil(40 / 16) steps an epoch
    # The warm-up cosine schedule spans exactly those steps: it has decayed to ~0.
    final = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert final < 0.1 * recipe.learning_rate


def test_optimizer_schedule_spans_the_run():
    recipe = recipes.Recipe.for_algorithm("simclr", epochs=4, batch_size=10, weight_decay=0.01)
    opt = recipes.optimizer(recipe, 35)  # 4 steps an epoch, 16 steps in all
    assert isinstance(opt, keras.optimizers.AdamW) and opt.weight_decay == 0.01
    schedule = opt._learning_rate
    peak = max(float(keras.ops.convert_to_numpy(schedule(step))) for step in range(17))
    assert abs(peak - recipe.learning_rate) < 1e-6
    assert float(keras.ops.convert_to_numpy(schedule(16))) < 0.1 * recipe.learning_rate
    # A run of one step (fewer images than a batch, one epoch) has no room for warm-up.
    single = recipes.optimizer(recipe.replace(epochs=1, batch_size=64), 35)._learning_rate
    assert abs(float(keras.ops.convert_to_numpy(single(0))) - recipe.learning_rate) < 1e-6


@pytest.mark.parametrize(
    "settings, setting",
    [
        ({"backbone": "small_convnet", "weights": "imagenet"}, "weights"),
        ({"backbone": "ResNet50", "width": 16}, "width"),
        ({"unfreeze_after": 2}, "unfreeze_after"),
        ({"backbone": "ResNet51"}, "backbone"),
    ],
)
def test_backbone_settings_are_checked(settings, setting):
    with pytest.raises(recipes.RecipeError) as error:
        recipes.Recipe.for_algorithm("simclr", **settings)
    assert error.value.setting == setting


def _weights(layer):
    return [np.array(w) for w in layer.get_weights()]


@pytest.mark.parametrize("unfreeze_after", [None, 1])
def test_frozen_backbone_trains_the_heads_then_everything(unfreeze_after):
    x = (np.random.default_rng(0).uniform(size=(64, 8, 8, 1))).astype("float32")
    recipe = recipes.Recipe.for_algorithm(
        "simclr",
        backbone="small_convnet",
        epochs=2,
        batch_size=32,
        freeze_backbone=True,
        unfreeze_after=unfreeze_after,
    )
    model, note = recipes.build_model(recipe, x.shape[1:])
    assert "backbone frozen" in note
    model.build(x.shape)
    recipes.compile_model(model, recipe, len(x))
    backbone, projector = _weights(model.backbone), _weights(model.projector)
    assert backbone and projector
    history = recipes.fit(model, recipe, x)
    assert not all(np.allclose(a, b) for a, b in zip(projector, _weights(model.projector)))
    backbone_moved = not all(np.allclose(a, b) for a, b in zip(backbone, _weights(model.backbone)))
    assert backbone_moved == (unfreeze_after is not None)
    assert history.epoch[-1] == 1  # the last stage ends at the run's last epoch


@pytest.mark.parametrize(
    "settings, setting, match",
    [
        ({"per_class": 4}, "classes_per_batch", "need both"),
        ({"classes_per_batch": 3}, "per_class", "need both"),
        ({"classes_per_batch": 3, "per_class": 4, "batch_size": 16}, "batch_size", "= 12"),
        ({"classes_per_batch": 1, "per_class": 4}, "classes_per_batch", ">= 2"),
        ({"classes_per_batch": 3, "per_class": 0}, "per_class", ">= 1"),
    ],
)
def test_class_batches_are_checked(settings, setting, match):
    with pytest.raises(recipes.RecipeError, match=match) as error:
        recipes.Recipe.for_algorithm("metric", **settings)
    assert error.value.setting == setting
    with pytest.raises(recipes.RecipeError, match="need labels"):
        recipes.Recipe.for_algorithm("simclr", classes_per_batch=3, per_class=4)


def test_class_batches_feed_p_classes_of_k_images(monkeypatch):
    recipe = recipes.Recipe.for_algorithm(
        "metric", classes_per_batch=3, per_class=4, epochs=2, backbone="small_convnet"
    )
    assert recipe.batch_size == 12  # P x K unless set
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(50, 8, 8, 1)).astype("float32")
    y = np.arange(50) % 5
    model, _ = recipes.build_model(recipe, x.shape[1:], labels=y)
    recipes.compile_model(model, recipe, len(x))
    seen = []
    real_fit = type(model).fit

    def spy(self, x=None, y=None, **kwargs):
        seen.append((x, y, kwargs))
        return real_fit(self, x, y, **kwargs)

    monkeypatch.setattr(type(model), "fit", spy)
    recipes.fit(model, recipe, x, y)
    ((data, labels, kwargs),) = seen
    assert labels is None and kwargs["steps_per_epoch"] == 5  # ceil(50 / 12)
    for images, batch_labels in data.take(3).as_numpy_iterator():
        assert images.shape == (12, 8, 8, 1)
        classes, counts = np.unique(batch_labels, return_counts=True)
        assert len(classes) == 3 and (counts == 4).all()
        # each image is one of x's, with its own label
        for image, label in zip(images, batch_labels):
            row = np.flatnonzero(np.abs(x - image).reshape(50, -1).max(axis=1) < 1e-6)
            assert len(row) == 1 and y[row[0]] == label
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 2 * 5


@pytest.mark.parametrize(
    "loss, loss_options, expected",
    [
        # ProxyAnchor: its authors' 100x proxy learning rate and the recipe's alpha 16
        ("proxy_anchor", {}, {"lr_multiplier": 100.0, "alpha": 16.0}),
        # the user's options win, one at a time
        ("proxy_anchor", {"lr_multiplier": 3.0}, {"lr_multiplier": 3.0, "alpha": 16.0}),
        ("proxy_anchor", {"alpha": 32.0}, {"lr_multiplier": 100.0, "alpha": 32.0}),
        ("arcface", {}, {"lr_multiplier": 1.0}),
    ],
)
def test_proxy_losses_train_with_their_recipe_defaults(loss, loss_options, expected):
    options = {"loss": loss, **({"loss_options": loss_options} if loss_options else {})}
    recipe = recipes.Recipe.for_algorithm("metric", options=options, backbone="small_convnet")
    model, _ = recipes.build_model(recipe, (8, 8, 1), labels=np.arange(10))
    model.build((None, 8, 8, 1))
    assert model.proxies.lr_multiplier == expected["lr_multiplier"]
    if "alpha" in expected:
        assert model.algorithm.loss.alpha == expected["alpha"]
    # The algorithm's config carries them: a reloaded model trains the same way.
    saved = model.algorithm.get_config().get("loss_options", {})
    assert saved.get("lr_multiplier", 1.0) == expected["lr_multiplier"]
    assert saved.get("alpha") == expected.get("alpha")


def test_local_crops_take_the_recipes_size_and_scale():
    recipe = recipes.Recipe.for_algorithm(
        "dino",
        local_views=2,
        local_size=16,
        local_scale=["0.3", "0.6"],  # as from the CLI
    )
    assert recipe.local_scale == (0.3, 0.6)
    model, note = recipes.build_model(recipe, (16, 16, 1))
    crop = model.augmentation.augmenters[-1].layers[-1]
    assert (crop.height, crop.width) == (16, 16) and tuple(crop.scale) == (0.3, 0.6)
    assert "2 local crops of 16x16 from 0.3-0.6 of the view" in note
    defaults = recipe.replace(local_size=None, local_scale=None)
    for side, size, scale in [(16, 16, (0.3, 0.6)), (112, 48, (0.05, 0.4))]:
        default, _ = recipes.build_model(defaults, (side, side, 1))
        crop = default.augmentation.augmenters[-1].layers[-1]
        assert (crop.height, crop.width, tuple(crop.scale)) == (size, size, scale)


@pytest.mark.parametrize(
    "settings, setting, match",
    [
        ({"local_size": 8}, "local_size", "needs `local_views`"),
        ({"local_views": 2, "local_size": 1}, "local_size", ">= 2"),
        ({"local_views": 2, "local_scale": (0.6, 0.3)}, "local_scale", "0 < min <= max <= 1"),
        ({"local_views": 2, "local_scale": ("a", "b")}, "local_scale", "two fractions"),
    ],
)
def test_local_crop_settings_are_checked(settings, setting, match):
    with pytest.raises(recipes.RecipeError, match=match) as error:
        recipes.Recipe.for_algorithm("dino", **settings)
    assert error.value.setting == setting


def test_local_crops_larger_than_the_images_name_local_size():
    recipe = recipes.Recipe.for_algorithm("dino", local_views=2, local_size=24)
    with pytest.raises(recipes.RecipeError, match="larger than the images") as error:
        recipes.build_model(recipe, (16, 16, 1))
    assert error.value.setting == "local_size"
