"""Multi-crop: views of several sizes are encoded as groups, global views first."""

import keras
import numpy as np
import pytest
from keras import ops
from sklearn.datasets import load_digits

from tfcontrast.layers import ProjectionHead, ViewAugmenter
from tfcontrast.layers import augmentation as augmentation_lib
from tfcontrast.models import ContrastiveModel, algorithms, backbones, recipes


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return (data.images[:64] / 16.0).astype("float32")[..., None]


def _shrink(size):
    return keras.layers.Resizing(size, size)


def _model(algorithm, view_batches="joint"):
    keras.utils.set_random_seed(0)
    views = ViewAugmenter(
        [keras.layers.Identity(), keras.layers.Identity(), _shrink(4), _shrink(4), _shrink(6)]
    )
    return ContrastiveModel(
        backbones.small_convnet((None, None, 1), width=8, output_dim=16),
        projector=ProjectionHead((32,), 16),
        algorithm=algorithm,
        augmentation=views,
        view_batches=view_batches,
    )


@pytest.mark.parametrize("view_batches", ["joint", "per_view"])
def test_each_size_is_encoded_as_its_own_batch_global_views_first(digits, view_batches):
    model = _model("simclr", view_batches)
    x = digits[:16]
    groups = model.make_view_groups(x)
    assert [tuple(g.shape) for g in groups] == [
        (16, 2, 8, 8, 1),
        (16, 2, 4, 4, 1),
        (16, 1, 6, 6, 1),
    ]
    out = model(x, training=True)
    assert tuple(out["views"].shape) == (16, 2, 8, 8, 1)  # the global group
    assert tuple(out["projection"].shape) == (16, 5, 16)
    # Each group alone through the same layers (BatchNorm on that group's statistics).
    for group, (start, stop) in zip(groups, [(0, 2), (2, 4), (4, 5)]):
        _, expected = model._encode_views(group, model.backbone, model.projector, True)
        np.testing.assert_allclose(
            ops.convert_to_numpy(out["projection"][:, start:stop]),
            ops.convert_to_numpy(expected),
            rtol=1e-4,
            atol=1e-5,
        )
    with pytest.raises(ValueError, match="different sizes"):
        model.make_views(x)


@pytest.mark.parametrize("algorithm", ["dino", "swav", "simclr"])
def test_multi_crop_trains_with_fit(digits, algorithm):
    options = {"num_prototypes": 16} if algorithm in ("dino", "swav") else {}
    model = _model(algorithms.get_class(algorithm)(**options))
    model.build(digits.shape)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = [ops.convert_to_numpy(w).copy() for w in model.backbone.weights]
    history = model.fit(digits, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(
        not np.allclose(a, ops.convert_to_numpy(b)) for a, b in zip(before, model.backbone.weights)
    )
    assert model.predict(digits[:4], verbose=0).shape == (4, 16)


def test_algorithms_of_one_view_size_refuse_local_crops(digits):
    assert "dino" in algorithms.multi_crop_names() and "byol" not in algorithms.multi_crop_names()
    model = _model("vicreg")
    with pytest.raises(ValueError, match="'vicreg' takes views of one size"):
        model(digits[:4], training=True)
    with pytest.raises(recipes.RecipeError, match="takes views of one size") as error:
        recipes.Recipe.for_algorithm("byol", local_views=2)
    assert error.value.setting == "local_views"


def test_multi_crop_preset_makes_smaller_local_views(digits):
    views = augmentation_lib.multi_crop_preset(
        "glyphs", (16, 16, 1), local_views=3, local_size=7, seed=1
    )
    x = np.repeat(np.repeat(digits[:4], 2, axis=1), 2, axis=2)  # 16 x 16
    out = views(x, training=True)
    assert [tuple(v.shape) for v in out] == [(4, 16, 16, 1)] * 2 + [(4, 7, 7, 1)] * 3
    assert not np.allclose(ops.convert_to_numpy(out[2]), ops.convert_to_numpy(out[3]))
    for bad, match in [
        (dict(local_views=2, local_size=20), "larger than the images"),
        (dict(local_views=0), "`local_views`"),
        (dict(local_views=2, local_scale=(0.0, 0.4)), "`local_scale`"),
    ]:
        with pytest.raises(ValueError, match=match):
            augmentation_lib.multi_crop_preset("glyphs", (16, 16, 1), **bad)
    with pytest.raises(ValueError, match="local crops must not be larger"):
        augmentation_lib.multi_crop_augmentation(global_size=32, local_size=64)


@pytest.mark.parametrize(
    "shape, size, scale",
    [
        ((224, 224), (96, 96), (0.05, 0.4)),  # DINO's ImageNet crops
        ((65, 112), (28, 48), (0.05, 0.4)),  # its ratio of each side
        ((64, 64), (27, 27), (0.3, 0.6)),  # small images: a larger part of the view
        ((37, 37), (16, 16), (0.3, 0.6)),
        ((36, 36), (16, 16), (0.3, 0.6)),  # the ratio would give 15 px: 16
        ((28, 28), (16, 16), (0.3, 0.6)),
        ((30, 200), (16, 86), (0.3, 0.6)),  # each side on its own
        ((16, 16), (16, 16), (0.3, 0.6)),
        ((8, 8), (8, 8), (0.3, 0.6)),  # never larger than the images
    ],
)
def test_default_local_crops_never_go_below_16_px(shape, size, scale):
    assert augmentation_lib.default_local_crops(*shape) == (size, scale)
    views = augmentation_lib.multi_crop_preset("glyphs", (*shape, 1), local_views=1)
    crop = views.augmenters[-1].layers[-1]
    assert ((crop.height, crop.width), tuple(crop.scale)) == (size, scale)


def test_a_given_local_size_keeps_the_default_scale_of_the_image_size():
    for shape, scale in [((16, 16, 1), (0.3, 0.6)), ((96, 96, 1), (0.05, 0.4))]:
        views = augmentation_lib.multi_crop_preset("glyphs", shape, local_views=1, local_size=7)
        crop = views.augmenters[-1].layers[-1]
        assert ((crop.height, crop.width), tuple(crop.scale)) == ((7, 7), scale)


def test_recipe_local_views_build_a_multi_crop_model(digits):
    recipe = recipes.Recipe.for_algorithm(
        "dino", local_views=2, epochs=1, batch_size=32, options={"num_prototypes": 16}
    )
    model, note = recipes.build_model(recipe, digits.shape[1:], sample=digits)
    assert "2 global views and 2 local crops of 8x8 from 0.3-0.6 of the view" in note
    recipes.compile_model(model, recipe, len(digits))
    history = recipes.fit(model, recipe, digits)
    assert np.isfinite(history.history["loss"][0])
