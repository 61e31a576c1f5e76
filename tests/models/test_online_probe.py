"""The online linear probe: trained from labels behind a stop-gradient, never served."""

import keras
import numpy as np
import pytest
from keras import ops
from sklearn.datasets import load_digits

from tfcontrast.layers import ProjectionHead, augmentation
from tfcontrast.models import ContrastiveModel, backbones, recipes


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return (data.images[:192] / 16.0).astype("float32")[..., None], data.target[:192]


def _model(probe, algorithm="simclr"):
    keras.utils.set_random_seed(0)
    augment = keras.Sequential([keras.layers.GaussianNoise(0.05, seed=1)])
    model = ContrastiveModel(
        backbones.small_convnet((8, 8, 1), width=8, output_dim=16),
        projector=ProjectionHead((32,), 16),
        algorithm=algorithm,
        augmentation=augment,
        online_probe_classes=10 if probe else None,
    )
    model.build((None, 8, 8, 1))
    return model


def _numpy(weights):
    return [ops.convert_to_numpy(w) for w in weights]


def test_the_probe_moves_no_other_weight_and_learns(digits):
    x, y = digits
    plain, probed = _model(False), _model(True)
    # The same starting weights (the probe is built last, after every other layer).
    for a, b in zip(plain.backbone.weights, probed.backbone.weights):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
    start = _numpy(probed.online_probe.weights)
    histories = []
    for model, labels in ((plain, None), (probed, y)):
        keras.utils.set_random_seed(3)
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        histories.append(model.fit(x, labels, batch_size=64, epochs=10, shuffle=False, verbose=0))
    # The backbone and heads follow the same trajectory with and without the probe.
    for a, b in zip(
        plain.backbone.weights + plain.projector.weights,
        probed.backbone.weights + probed.projector.weights,
    ):
        np.testing.assert_allclose(
            ops.convert_to_numpy(a), ops.convert_to_numpy(b), rtol=1e-4, atol=1e-5, err_msg=a.path
        )
    assert any(not np.allclose(a, b) for a, b in zip(start, _numpy(probed.online_probe.weights)))
    accuracy = histories[1].history["online_probe_accuracy"]
    assert "online_probe_accuracy" not in histories[0].history
    assert accuracy[-1] > accuracy[0] and accuracy[-1] > 0.3  # chance is 0.1
    # Not served: the embedding is the backbone's features.
    np.testing.assert_allclose(
        probed.predict(x[:8], verbose=0), ops.convert_to_numpy(probed.backbone(x[:8])), atol=1e-5
    )


def test_evaluate_reports_the_probe_and_changes_nothing(digits):
    x, y = digits
    model = _model(True)
    model.compile(optimizer="adam")
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    before = _numpy(model.weights)
    views = np.stack([x, x], axis=1)
    result = model.evaluate(views, y, batch_size=64, verbose=0, return_dict=True)
    logits = ops.convert_to_numpy(model.online_probe(model.backbone(x)))
    assert result["online_probe_accuracy"] == pytest.approx(
        np.mean(logits.argmax(1) == y), abs=1e-6
    )
    for a, b in zip(before, _numpy(model.weights)):
        np.testing.assert_array_equal(a, b)


def test_probe_is_saved_and_checked(digits, tmp_path):
    x, y = digits
    model = _model(True)
    model.compile(optimizer="adam")
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    features = ops.convert_to_numpy(model.backbone(x[:8]))
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored.online_probe(features)),
        ops.convert_to_numpy(model.online_probe(features)),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="online_probe_classes"):
        _model(False).__class__(model.backbone, online_probe_classes=1)
    recipe = recipes.Recipe.for_algorithm("vicreg", online_probe=True, epochs=1, batch_size=64)
    with pytest.raises(recipes.RecipeError, match="needs the labels"):
        recipes.build_model(recipe, x.shape[1:])
    built, _ = recipes.build_model(recipe, x.shape[1:], labels=y)
    recipes.compile_model(built, recipe, len(x))
    history = recipes.fit(built, recipe, x, y)
    assert "online_probe_accuracy" in history.history


def test_under_multi_crop_the_probe_sees_the_global_views_only(digits):
    # It classifies whole images, as solo-learn's online classifier sees the large crops.
    x, _ = digits
    keras.utils.set_random_seed(0)
    model = ContrastiveModel(
        backbones.small_convnet((None, None, 1), width=8, output_dim=16),
        projector=ProjectionHead((32,), 16),
        algorithm="simclr",
        augmentation=augmentation.multi_crop_preset(
            "glyphs", (8, 8, 1), local_views=3, local_size=4, seed=0
        ),
        online_probe_classes=10,
    )
    outputs = model(x[:16], training=True)
    assert tuple(outputs["features"].shape) == (16, 5, 16)  # 2 global + 3 local views
    np.testing.assert_allclose(
        ops.convert_to_numpy(outputs["probe_logits"]),
        ops.convert_to_numpy(model.online_probe(outputs["features"][:, :2])),
        atol=1e-5,
    )
