"""ContrastiveModel: every algorithm through fit, serving, momentum, queue, saving, errors."""

import logging

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from tfcontrast.layers import PredictionHead, ProjectionHead
from tfcontrast.models import ContrastiveModel, algorithms, backbones

ALGORITHMS = ["simclr", "supcon", "moco_v2", "moco_v3", "byol", "simsiam", "vicreg", "barlow_twins"]


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    return x[:128], data.target[:128].astype("int32")


def augmentation():
    return keras.Sequential(
        [
            keras.layers.RandomTranslation(0.15, 0.15, fill_mode="constant"),
            keras.layers.GaussianNoise(0.1),
        ]
    )


def noisy_views(images, noise, seed):
    """Two ready-made views `(B, 2, H, W, C)`: the images and a noisy copy."""
    rng = np.random.default_rng(seed)
    return np.stack([images, images + noise * rng.normal(size=images.shape)], 1).astype("float32")


def make_model(algorithm, **kwargs):
    keras.utils.set_random_seed(0)
    algo = algorithms.get(algorithm)
    if isinstance(algo, algorithms.MoCoV2):
        algo = algorithms.MoCoV2(queue_size=64)
    return ContrastiveModel(
        backbones.small_convnet((8, 8, 1), width=8, output_dim=16),
        projector=ProjectionHead((32,), 16),
        predictor=PredictionHead(32, 16) if algo.uses_predictor else None,
        algorithm=algo,
        augmentation=kwargs.pop("augmentation", augmentation()),
        **kwargs,
    )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_trains_with_fit(algorithm, digits):
    x, y = digits
    model = make_model(algorithm)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(x, y if algorithm == "supcon" else None, batch_size=32, epochs=2, verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 2 and np.all(np.isfinite(losses))
    embeddings = model.predict(x[:5], verbose=0)
    np.testing.assert_allclose(
        embeddings, model.backbone.predict(x[:5], verbose=0), rtol=1e-5, atol=1e-5
    )


def test_call_serves_backbone_or_projector(digits):
    x, _ = digits
    model = make_model("simclr")
    np_ = keras.ops.convert_to_numpy
    features = np_(model.backbone(x[:4]))
    np.testing.assert_allclose(np_(model(x[:4])), features, rtol=1e-6)
    served = make_model("simclr", serve="projector")
    np.testing.assert_allclose(
        np_(served(x[:4])), np_(served.projector(served.backbone(x[:4]))), rtol=1e-5, atol=1e-6
    )


def test_training_on_ready_made_views_without_augmentation(digits):
    x, _ = digits
    views = noisy_views(x, 0.05, seed=0)
    model = make_model("simclr", augmentation=None)
    model.compile(optimizer="adam")
    history = model.fit(views, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    outputs = model(views[:4], training=True)
    assert tuple(outputs["projection"].shape) == (4, 2, 16)


@pytest.mark.parametrize("algorithm", ["simclr", "simsiam"])
def test_view_batches_set_the_batchnorm_batch(algorithm, digits):
    # Training-mode BatchNorm makes a sample's output depend on its batch: "joint" must
    # equal the heads on all B * V images at once, "per_view" the heads on each view's
    # B images alone, and the two must differ.
    x, _ = digits
    views = noisy_views(x[:16], 0.3, seed=0)
    np_ = keras.ops.convert_to_numpy

    def heads(model, images):
        z = model.projector(model.backbone(images, training=True), training=True)
        p = model.predictor(z, training=True) if model.predictor is not None else None
        return np_(z), None if p is None else np_(p)

    got = {}
    for mode in ("joint", "per_view"):
        model = make_model(algorithm, augmentation=None, view_batches=mode)
        out = model(views, training=True)
        got[mode] = np_(out["projection"])
        if mode == "joint":
            z, p = heads(model, views.reshape((32, 8, 8, 1)))
            expected_z = z.reshape((16, 2, -1))
            expected_p = None if p is None else p.reshape((16, 2, -1))
        else:
            parts = [heads(model, views[:, v]) for v in range(2)]
            expected_z = np.stack([z for z, _ in parts], 1)
            expected_p = None if parts[0][1] is None else np.stack([p for _, p in parts], 1)
        np.testing.assert_allclose(got[mode], expected_z, rtol=1e-4, atol=1e-5)
        if expected_p is not None:
            np.testing.assert_allclose(np_(out["prediction"]), expected_p, rtol=1e-4, atol=1e-5)
    assert not np.allclose(got["joint"], got["per_view"], atol=1e-3)


@pytest.mark.parametrize("mode", ["joint", "per_view"])
def test_target_normalises_with_batch_statistics_in_training(mode, digits):
    # As in the reference BYOL and MoCo code, the momentum encoder's BatchNorm uses the
    # batch's statistics in training steps (per view batch); evaluation uses the moving
    # statistics. At the first step the target is a copy of the online network, so its
    # training projection equals the online one computed the same way.
    x, _ = digits
    views = noisy_views(x[:16], 0.3, seed=1) * 3.0 + 1.0  # far from BatchNorm's init stats
    model = make_model("byol", augmentation=None, view_batches=mode)
    model.build(views.shape)
    got = keras.ops.convert_to_numpy(model.target_outputs(views, training=True))
    assert not any(v.trainable for v in model.target_backbone.weights)

    def online(images, training):
        features = model.backbone(images, training=training)
        return keras.ops.convert_to_numpy(model.projector(features, training=training))

    if mode == "joint":
        expected = online(views.reshape((32, 8, 8, 1)), True).reshape((16, 2, -1))
    else:
        expected = np.stack([online(views[:, v], True) for v in range(2)], 1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # Evaluation: moving statistics, the same whatever the view batches.
    frozen = keras.ops.convert_to_numpy(model.target_outputs(views, training=False))

    def target(images):
        features = model.target_backbone(images, training=False)
        return keras.ops.convert_to_numpy(model.target_projector(features, training=False))

    np.testing.assert_allclose(
        frozen, target(views.reshape((32, 8, 8, 1))).reshape((16, 2, -1)), rtol=1e-4, atol=1e-5
    )
    assert not np.allclose(frozen, got, atol=1e-2)


def test_configs_without_view_batches_load_as_joint():
    config = make_model("simclr").get_config()
    del config["view_batches"]
    assert ContrastiveModel.from_config(config).view_batches == "joint"


@pytest.mark.tf_only
def test_per_view_needs_a_known_number_of_views():
    import tensorflow as tf

    model = make_model("simclr", augmentation=None, view_batches="per_view")
    model.build((None, 2, 8, 8, 1))
    spec = tf.TensorSpec((None, None, 8, 8, 1), tf.float32)
    with pytest.raises(ValueError, match="view_batches"):
        tf.function(lambda v: model(v, training=True)["projection"]).get_concrete_function(spec)


def test_per_view_batches_train_and_round_trip(tmp_path, digits):
    x, _ = digits
    model = make_model("byol", view_batches="per_view")
    model.compile(optimizer="adam")
    history = model.fit(x[:64], batch_size=32, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    path = tmp_path / "per_view.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.view_batches == "per_view"
    np.testing.assert_allclose(
        restored.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0), rtol=1e-5, atol=1e-5
    )


def test_byol_target_is_an_exponential_moving_average(digits):
    x, _ = digits
    model = make_model("byol")
    model.algorithm.momentum_base = model.algorithm.momentum_final = 0.75
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.build(x.shape)
    pairs = [
        (t, o) for t, o in zip(model.target_backbone.weights, model.backbone.weights) if o.trainable
    ]
    assert pairs and all(not t.trainable for t, _ in pairs)
    # At the first step the target becomes a copy of the online network.
    online_start = [o.numpy().copy() for _, o in pairs]
    model.fit(x[:32], batch_size=32, epochs=1, verbose=0)
    for (t, _), o_start in zip(pairs, online_start):
        np.testing.assert_allclose(t.numpy(), o_start, rtol=1e-6, atol=1e-7)
    for _ in range(2):
        target_old = [t.numpy().copy() for t, _ in pairs]
        online_old = [o.numpy().copy() for _, o in pairs]
        model.fit(x[:32], batch_size=32, epochs=1, verbose=0)
        # One step: the EMA runs on the online weights from before the gradient update.
        for (t, _), t_old, o_old in zip(pairs, target_old, online_old):
            np.testing.assert_allclose(t.numpy(), 0.75 * t_old + 0.25 * o_old, rtol=1e-4, atol=1e-6)
    assert any(not np.allclose(o.numpy(), t.numpy()) for t, o in pairs)


def test_moco_v2_enqueues_keys(digits):
    x, _ = digits
    model = make_model("moco_v2")
    model.compile(optimizer="adam")
    model.fit(x[:32], batch_size=16, epochs=1, verbose=0)
    valid = np.asarray(model.queue.valid_mask())
    assert valid.sum() == 32
    keys = np.asarray(model.queue.values()[0])[valid.astype(bool)]
    assert np.all(np.isfinite(keys)) and np.abs(keys).sum() > 0


def test_keras_round_trip_restores_outputs_and_targets(tmp_path, digits):
    x, _ = digits
    model = make_model("byol")
    model.compile(optimizer="adam")
    model.fit(x[:64], batch_size=32, epochs=1, verbose=0)
    path = tmp_path / "byol.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, ContrastiveModel)
    assert restored.algorithm.name == "byol"
    np.testing.assert_allclose(
        restored.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0), rtol=1e-5, atol=1e-5
    )
    for a, b in zip(restored.target_backbone.weights, model.target_backbone.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


@pytest.mark.parametrize("algorithm", ["moco_v2", "moco_v3", "byol"])
def test_validation_and_evaluate_leave_training_state_alone(algorithm, digits):
    x, _ = digits
    views = noisy_views(x[:32], 0.1, seed=1)

    def trained(validate):
        model = make_model(algorithm)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        model.fit(
            x[:64],
            batch_size=32,
            epochs=2,
            verbose=0,
            # Unshuffled: on the torch backend, iterating the validation data draws from
            # the RNG that shuffles the next epoch's training batches.
            shuffle=False,
            validation_data=(views,) if validate else None,
        )
        return model

    plain, validated = trained(False), trained(True)
    assert int(keras.ops.convert_to_numpy(validated.momentum_step)) == 4  # 2 epochs x 2 steps
    for a, b in zip(plain.weights, validated.weights):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), err_msg=a.path
        )
    state = [keras.ops.convert_to_numpy(w).copy() for w in validated.weights]
    validated.evaluate(views, batch_size=16, verbose=0)
    for before, w in zip(state, validated.weights):
        np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(w), err_msg=w.path)


def test_augmentation_by_preset_name(tmp_path, digits):
    x, _ = digits
    model = make_model("simclr", augmentation="auto")
    assert model.augmentation is None and model.augmentation_preset == "auto"
    model.compile(optimizer="adam")
    model.fit(x[:64], batch_size=32, epochs=1, verbose=0)
    # Built for (8, 8, 1): the glyph preset, a layer of the model.
    assert model.augmentation.augmenters[0].name == "glyph_augmentation"
    views = np.asarray(model.make_views(x[:4]))
    assert views.shape == (4, 2, 8, 8, 1) and not np.allclose(views[:, 0], views[:, 1])
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert restored.get_config()["augmentation"] == "auto"
    np.testing.assert_allclose(
        restored.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match="unknown `augmentation` preset 'sepia'"):
        make_model("simclr", augmentation="sepia")


class _StopAfter(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("simulated crash")


def test_backup_and_restore_resumes_to_the_same_loss(tmp_path, digits):
    x, _ = digits
    views = np.stack([x, x[::-1]], axis=1)[:64]

    def run(callbacks, epochs=3):
        keras.utils.set_random_seed(1)
        model = make_model("moco_v2", augmentation=None)
        model.compile(optimizer=keras.optimizers.SGD(0.05))
        return model.fit(
            views, batch_size=32, epochs=epochs, verbose=0, shuffle=False, callbacks=callbacks
        ).history["loss"]

    uninterrupted = run([])
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="simulated crash"):
        run([backup, _StopAfter(2)])
    resumed = run([keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    assert len(resumed) == 1  # only the epoch that was lost is run again
    np.testing.assert_allclose(resumed[0], uninterrupted[2], rtol=1e-4)


def test_supcon_without_labels_raises(digits):
    x, _ = digits
    model = make_model("supcon")
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="needs labels"):
        model.fit(x[:32], batch_size=32, epochs=1, verbose=0)


@pytest.mark.parametrize("labels", [[0.2, 0.7, 1.2, 0.0], ["a", "b", "a", "b"]])
def test_supcon_refuses_labels_that_are_not_integers(digits, labels):
    x, _ = digits
    model = make_model("supcon")
    model.compile(optimizer="adam")
    y = np.resize(np.asarray(labels), len(x))
    with pytest.raises(ValueError, match="`y` must hold integer class labels"):
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    # Whole-valued floats are labels written as floats: accepted.
    model.fit(x, np.arange(len(x)) % 3 * 1.0, batch_size=32, epochs=1, verbose=0)


def test_missing_predictor_is_built_and_logged(caplog):
    with caplog.at_level(logging.INFO, logger="tfcontrast"):
        model = ContrastiveModel(
            backbones.small_convnet((8, 8, 1), width=8, output_dim=16),
            projector=ProjectionHead((32,), 16),
            algorithm="simsiam",
        )
    assert isinstance(model.predictor, PredictionHead)
    assert "needs a predictor" in caplog.text


def test_bad_inputs_raise_naming_the_argument(digits):
    x, _ = digits
    with pytest.raises(ValueError, match="algorithm"):
        ContrastiveModel(backbones.small_convnet((8, 8, 1)), algorithm="nope")
    with pytest.raises(ValueError, match="serve"):
        ContrastiveModel(backbones.small_convnet((8, 8, 1)), serve="head")
    with pytest.raises(ValueError, match="view_batches"):
        ContrastiveModel(backbones.small_convnet((8, 8, 1)), view_batches="mixed")
    feature_map = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3)])
    model = ContrastiveModel(feature_map, projector=ProjectionHead((8,), 4))
    with pytest.raises(ValueError, match="backbone"):
        model.build((None, 8, 8, 1))
    shapes = [keras.layers.Resizing(8, 8), keras.layers.Resizing(6, 6)]
    model = make_model("vicreg", augmentation=shapes)
    with pytest.raises(ValueError, match="'vicreg' takes views of one size.*Multi-crop works"):
        model(x[:4], training=True)
    with pytest.raises(ValueError, match="loss"):
        make_model("simclr").compile(optimizer="adam", loss="mse")
