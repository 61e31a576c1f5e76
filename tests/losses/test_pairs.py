"""Tests of ContrastiveLoss and TripletLoss against independent NumPy references."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import reference
from tests.backend_utils import grads_wrt_weights, value_and_grad
from tfcontrast import miners
from tfcontrast.losses import ContrastiveLoss, MultiSimilarityLoss, TripletLoss

# Class 3 is a singleton: anchor 11 has no positive.
LABELS = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 0, 2, 3], dtype="int32")
DISTANCES = ("cosine", "euclidean", "squared_euclidean", "dot")
# (loss argument, reference miner name)
MINERS = [
    (None, None),
    ("all", "all"),
    ("hard", "hard"),
    ("semi_hard", "semi_hard"),
    (miners.SemiHardMiner(positives="all"), "semi_hard_all"),
    ("multi_similarity", "multi_similarity"),
]
MINER_IDS = ["none", "all", "hard", "semi_hard", "semi_hard_all", "multi_similarity"]
# ContrastiveLoss needs a distance; it rejects the dot-product similarity.
LOSS_DISTANCES = [
    (loss, d)
    for loss in ("contrastive", "triplet")
    for d in DISTANCES
    if not (loss == "contrastive" and d == "dot")
]


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _embeddings(rng, n=len(LABELS), dim=6):
    # Scaled so that Euclidean distances (~1) sit around the margins: hinges are active.
    return (0.3 * rng.normal(size=(n, dim))).astype("float32")


def _reference(loss_name, emb, labels, distance, miner, margin, soft_margin=False):
    d = reference.closeness(distance, emb)
    sim = reference.similarity(distance, emb)
    if loss_name == "contrastive":
        return reference.contrastive_loss(d, labels, margin, miner, sim)
    return reference.triplet_loss(d, labels, margin, miner or "all", sim, soft_margin)


def _make(loss_name, **kwargs):
    return ContrastiveLoss(**kwargs) if loss_name == "contrastive" else TripletLoss(**kwargs)


def _grad(loss, labels, emb):
    value, (grad,) = value_and_grad(lambda x: loss(labels, x), emb)
    return value, grad


# -- values against the references ----------------------------------------------------
@pytest.mark.parametrize("miner, ref_miner", MINERS, ids=MINER_IDS)
@pytest.mark.parametrize("loss_name, distance", LOSS_DISTANCES)
def test_matches_reference(loss_name, miner, ref_miner, distance, rng):
    emb = _embeddings(rng)
    margin = 0.7 if loss_name == "contrastive" else 0.3
    loss = _make(loss_name, margin=margin, distance=distance, miner=miner, reduction=None)
    expected = _reference(loss_name, emb, LABELS, distance, ref_miner, margin)
    got = _np(loss(LABELS, emb))
    assert got.shape == (len(LABELS),)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-5)
    # The test is informative: some anchors pay, and the singleton never pays a pull.
    assert np.count_nonzero(expected) > 0
    # Default reduction is the mean over the batch.
    mean = _make(loss_name, margin=margin, distance=distance, miner=miner)(LABELS, emb)
    assert _np(mean).shape == ()
    np.testing.assert_allclose(_np(mean), expected.mean(), rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("miner, ref_miner", MINERS[1:5], ids=MINER_IDS[1:5])
def test_triplet_soft_margin(miner, ref_miner, rng):
    emb = _embeddings(rng)
    loss = TripletLoss(soft_margin=True, distance="euclidean", miner=miner, reduction=None)
    expected = _reference("triplet", emb, LABELS, "euclidean", ref_miner, 0.2, soft_margin=True)
    np.testing.assert_allclose(_np(loss(LABELS, emb)), expected, rtol=2e-4, atol=2e-5)


def test_triplet_with_distance_weighted_miner(rng):
    emb = rng.normal(size=(12, 6)).astype("float32")
    # Two miners with the same seed draw the same negatives on their first call.
    mined = miners.DistanceWeightedMiner(seed=11)(LABELS, emb, distance="cosine")
    loss = TripletLoss(miner=miners.DistanceWeightedMiner(seed=11), reduction=None)
    got = _np(loss(LABELS, emb))
    d = reference.closeness("cosine", emb)
    pos, neg, w = _np(mined.positive), _np(mined.negative), _np(mined.weight)
    expected = np.zeros(12)
    for i in range(12):
        vals = [max(0.0, d[i, pos[i, k]] - d[i, neg[i, k]] + 0.2) for k in range(12) if w[i, k]]
        expected[i] = np.mean(vals) if vals else 0.0
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-5)


def test_defaults():
    t = TripletLoss()
    assert isinstance(t.miner, miners.SemiHardMiner) and t.distance.name == "cosine"
    assert t.margin == 0.2 and not t.soft_margin
    assert isinstance(TripletLoss(miner=None).miner, miners.BatchAllMiner)
    c = ContrastiveLoss()
    assert c.miner is None and c.distance.name == "euclidean" and c.margin == 1.0


# -- reduction, sample weights, labels shape ------------------------------------------
@pytest.mark.parametrize("loss_name", ["contrastive", "triplet"])
def test_sample_weight_and_reductions(loss_name, rng):
    emb = _embeddings(rng)
    w = rng.random(len(LABELS)).astype("float32")
    per = _reference(loss_name, emb, LABELS, "cosine", "semi_hard", 0.5)
    kw = dict(margin=0.5, distance="cosine", miner="semi_hard")
    got = _np(_make(loss_name, **kw)(LABELS, emb, sample_weight=w))
    np.testing.assert_allclose(got, np.sum(w * per) / len(LABELS), rtol=2e-4, atol=2e-5)
    got = _np(_make(loss_name, reduction="sum", **kw)(LABELS, emb, sample_weight=w))
    np.testing.assert_allclose(got, np.sum(w * per), rtol=2e-4, atol=2e-5)
    got = _np(_make(loss_name, reduction="none", **kw)(LABELS, emb, sample_weight=w))
    np.testing.assert_allclose(got, w * per, rtol=2e-4, atol=2e-5)
    # Zero weights silence anchors.
    zero = np.zeros_like(w)
    assert _np(_make(loss_name, **kw)(LABELS, emb, sample_weight=zero)) == 0.0


def test_labels_of_shape_b_by_1_are_accepted(rng):
    emb = _embeddings(rng)
    loss = TripletLoss(reduction=None)
    np.testing.assert_allclose(_np(loss(LABELS[:, None], emb)), _np(loss(LABELS, emb)), rtol=1e-6)
    # Any integer dtype.
    np.testing.assert_allclose(
        _np(loss(LABELS.astype("int64"), emb)), _np(loss(LABELS, emb)), rtol=1e-6
    )


# -- gradients and degenerate batches -------------------------------------------------
@pytest.mark.parametrize("miner, ref_miner", MINERS, ids=MINER_IDS)
@pytest.mark.parametrize("loss_name, distance", LOSS_DISTANCES)
def test_gradients_finite(loss_name, miner, ref_miner, distance, rng):
    emb = _embeddings(rng)
    emb[1] = emb[0]  # zero distance between two positives
    emb[5] = 0.0  # a zero vector
    value, grad = _grad(_make(loss_name, distance=distance, miner=miner), LABELS, emb)
    assert np.isfinite(_np(value))
    assert np.all(np.isfinite(_np(grad)))
    assert np.any(_np(grad) != 0.0)


@pytest.mark.parametrize(
    "miner",
    [
        None,
        "all",
        "hard",
        "semi_hard",
        "multi_similarity",
        miners.SemiHardMiner("all"),
        miners.DistanceWeightedMiner(seed=0),
    ],
)
@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_batch_without_positives_is_finite(miner, distance, rng):
    emb = _embeddings(rng, n=6)
    distinct = np.arange(6, dtype="int32")
    value, grad = _grad(TripletLoss(miner=miner, distance=distance), distinct, emb)
    assert _np(value) == 0.0
    assert np.all(np.isfinite(_np(grad)))
    # Contrastive: no pull term, only the (finite) push term of the reference.
    loss = ContrastiveLoss(miner=miner, distance=distance, margin=2.0, reduction=None)
    value = _np(loss(distinct, emb))
    expected = _reference(
        "contrastive", emb, distinct, distance, miner if isinstance(miner, str) else None, 2.0
    )
    if miner in (None, "all"):
        np.testing.assert_allclose(value, expected, rtol=2e-4, atol=2e-5)
    else:
        # Miners need a positive to form a pair or a triplet: nothing is mined.
        np.testing.assert_array_equal(value, 0.0)
    value, grad = _grad(ContrastiveLoss(miner=miner, distance=distance), distinct, emb)
    assert np.isfinite(_np(value)) and np.all(np.isfinite(_np(grad)))


@pytest.mark.parametrize("loss_name", ["contrastive", "triplet"])
def test_batch_without_negatives_is_finite(loss_name, rng):
    emb = _embeddings(rng, n=5)
    same = np.zeros(5, "int32")
    for miner in ("all", "hard", "semi_hard", "multi_similarity"):
        value, grad = _grad(_make(loss_name, miner=miner, distance="euclidean"), same, emb)
        assert np.isfinite(_np(value)) and np.all(np.isfinite(_np(grad)))
        if loss_name == "triplet":
            assert _np(value) == 0.0
    # Without a miner the contrastive loss still pulls positives together.
    per = _np(ContrastiveLoss(reduction=None)(same, emb))
    np.testing.assert_allclose(
        per, _reference("contrastive", emb, same, "euclidean", None, 1.0), rtol=2e-4, atol=2e-5
    )


@pytest.mark.parametrize("loss_name", ["contrastive", "triplet"])
def test_identical_embeddings_are_finite(loss_name):
    emb = np.ones((6, 4), "float32")
    labels = np.array([0, 0, 1, 1, 2, 2], "int32")
    for distance in DISTANCES[:3] if loss_name == "contrastive" else DISTANCES:
        value, grad = _grad(_make(loss_name, distance=distance), labels, emb)
        assert np.isfinite(_np(value)) and np.all(np.isfinite(_np(grad))), distance


@pytest.mark.parametrize("loss_name", ["contrastive", "triplet"])
@pytest.mark.parametrize(
    "miner",
    ["all", "hard", "semi_hard", miners.SemiHardMiner("all"), "multi_similarity"],
    ids=["all", "hard", "semi_hard", "semi_hard_all", "multi_similarity"],
)
@pytest.mark.tf_only(reason="tf.function with an unknown batch dimension")
def test_inside_tf_function_with_unknown_batch(loss_name, miner, rng):
    """Graph mode with a dynamic batch, as in `fit` with a short last batch."""
    emb = _embeddings(rng)
    loss = _make(loss_name, miner=miner, distance="cosine")

    @tf.function(
        input_signature=[tf.TensorSpec((None,), tf.int32), tf.TensorSpec((None, 6), tf.float32)]
    )
    def f(labels, embeddings):
        return loss(labels, embeddings)

    np.testing.assert_allclose(f(LABELS, emb).numpy(), _np(loss(LABELS, emb)), rtol=1e-5)
    # Another batch size through the same trace.
    np.testing.assert_allclose(
        f(LABELS[:7], emb[:7]).numpy(), _np(loss(LABELS[:7], emb[:7])), rtol=1e-5
    )


@pytest.mark.tf_only(reason="tf.function graph mode")
def test_distance_weighted_miner_in_graph(rng):
    emb = _embeddings(rng)
    loss = TripletLoss(miner=miners.DistanceWeightedMiner(seed=2))
    f = tf.function(lambda y, e: loss(y, e))
    values = [float(f(LABELS, emb)) for _ in range(3)]
    assert all(np.isfinite(values))


# -- mixed precision ------------------------------------------------------------------
@pytest.mark.parametrize(
    "policy, dtype", [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")]
)
@pytest.mark.parametrize("loss_name", ["contrastive", "triplet"])
def test_mixed_precision(policy, dtype, loss_name, rng):
    keras.mixed_precision.set_global_policy(policy)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8)])
    x = rng.normal(size=(12, 5)).astype("float32")
    loss = _make(loss_name, distance="cosine", miner="semi_hard")
    emb = model(x)
    value = loss(LABELS, emb)
    assert keras.backend.standardize_dtype(emb.dtype) == dtype
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    assert np.isfinite(_np(value))
    _, grads = grads_wrt_weights(lambda: loss(LABELS, model(x)), model.trainable_variables)
    assert all(np.all(np.isfinite(_np(g))) for g in grads)
    # Same value as the float32 reference on the (low-precision) embeddings.
    emb32 = _np(keras.ops.cast(emb, "float32"))
    expected = _reference(
        loss_name, emb32, LABELS, "cosine", "semi_hard", 1.0 if loss_name == "contrastive" else 0.2
    ).mean()
    np.testing.assert_allclose(_np(value), expected, rtol=1e-3, atol=1e-4)


def test_mixed_precision_fit(rng):
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8)])
    model.compile(optimizer="adam", loss=TripletLoss())
    x = rng.normal(size=(24, 5)).astype("float32")
    y = np.tile(np.arange(4), 6).astype("int32")
    history = model.fit(x, y, batch_size=12, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


# -- serialization --------------------------------------------------------------------
@pytest.mark.parametrize(
    "loss",
    [
        TripletLoss(),
        TripletLoss(margin=0.5, soft_margin=True, miner="hard", distance="euclidean"),
        TripletLoss(
            miner=miners.SemiHardMiner("all"),
            distance="squared_euclidean",
            reduction="sum",
            name="t",
        ),
        TripletLoss(miner=miners.MultiSimilarityMiner(0.3), distance="dot"),
        ContrastiveLoss(),
        ContrastiveLoss(margin=0.4, miner="semi_hard", distance="cosine", reduction=None),
    ],
    ids=lambda x: type(x).__name__,
)
def test_serialization_round_trip(loss, rng):
    config = keras.saving.serialize_keras_object(loss)
    assert config["registered_name"].startswith("tfcontrast>")
    again = keras.saving.deserialize_keras_object(config)
    assert type(again) is type(loss)
    assert again.get_config() == loss.get_config()
    assert type(again.distance) is type(loss.distance)
    assert type(again.miner) is type(loss.miner)
    emb = _embeddings(rng)
    np.testing.assert_allclose(_np(again(LABELS, emb)), _np(loss(LABELS, emb)), rtol=1e-6)
    # from_config / get_config directly, too.
    assert type(loss).from_config(loss.get_config()).get_config() == loss.get_config()


def test_saved_model_with_compiled_loss(tmp_path, rng):
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
    loss = TripletLoss(margin=0.3, miner=miners.SemiHardMiner("all"), distance="euclidean")
    model.compile(optimizer="adam", loss=loss)
    x = rng.normal(size=(12, 5)).astype("float32")
    model.fit(x, LABELS, batch_size=12, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    keras.saving.save_model(model, path)
    # Classes are registered: no custom_objects needed.
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.loss, TripletLoss)
    assert loaded.loss.get_config() == loss.get_config()
    np.testing.assert_allclose(
        loaded.evaluate(x, LABELS, batch_size=12, verbose=0),
        model.evaluate(x, LABELS, batch_size=12, verbose=0),
        rtol=1e-5,
    )


# -- compile / fit smoke --------------------------------------------------------------
def _blobs(rng, n, classes=4, signal=4, noise=20):
    """Classes separated in `signal` dims, buried among `noise` noisy dims."""
    centers = 3.0 * rng.normal(size=(classes, signal))
    y = np.tile(np.arange(classes), n // classes).astype("int32")
    x = np.concatenate(
        [centers[y] + 0.5 * rng.normal(size=(n, signal)), 3.0 * rng.normal(size=(n, noise))],
        axis=1,
    )
    return x.astype("float32"), y


@pytest.mark.parametrize(
    "loss, metric",
    [
        (TripletLoss(miner="semi_hard", distance="cosine"), "cosine"),
        (ContrastiveLoss(margin=1.0, distance="euclidean"), "euclidean"),
    ],
    ids=["triplet", "contrastive"],
)
def test_fit_learns_separable_data(loss, metric):
    rng = np.random.default_rng(1)
    x, y = _blobs(rng, 256)
    x_test, y_test = _blobs(np.random.default_rng(1), 512)
    x_test, y_test = x_test[256:], y_test[256:]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(8)])
    model.compile(optimizer=keras.optimizers.Adam(0.03), loss=loss)

    def evaluate():
        emb, emb_test = _np(model(x)), _np(model(x_test))
        value = float(_np(loss(y, emb)))
        return value, reference.one_nn_accuracy(emb, y, emb_test, y_test, metric)

    before_loss, before_acc = evaluate()
    model.fit(x, y, batch_size=64, epochs=20, verbose=0, shuffle=True)
    after_loss, after_acc = evaluate()
    assert after_loss < 0.7 * before_loss, (before_loss, after_loss)
    assert after_acc > before_acc + 0.2, (before_acc, after_acc)
    assert after_acc > 0.85, after_acc


# -- bad input ------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [ContrastiveLoss, TripletLoss])
def test_bad_input(cls, rng):
    emb = _embeddings(rng)
    loss = cls()
    with pytest.raises(ValueError, match="y_true.*integer"):
        loss(LABELS.astype("float32"), emb)
    with pytest.raises(ValueError, match="y_true.*shape"):
        loss(np.stack([LABELS, LABELS], axis=1), emb)
    with pytest.raises(ValueError, match="y_pred.*shape"):
        loss(LABELS, emb[:, None, :])
    with pytest.raises(ValueError, match="y_pred.*shape"):
        loss(LABELS, emb[:, 0])
    with pytest.raises(ValueError, match="y_true.*batch size"):
        loss(LABELS[:-1], emb)
    with pytest.raises(ValueError, match="y_true.*required"):
        loss(None, emb)
    for margin in (0.0, -1.0, None):
        with pytest.raises(ValueError, match="margin"):
            cls(margin=margin)
    with pytest.raises(ValueError, match="miner.*semi_hard"):
        cls(miner="semihardest")
    with pytest.raises(ValueError, match="distance.*euclidean"):
        cls(distance="euclidian")


def test_contrastive_rejects_similarities():
    # d = -<a, b> would make the pull term <a, b>^2 drive positives to orthogonality.
    with pytest.raises(ValueError, match="distance.*dot"):
        ContrastiveLoss(distance="dot")
    with pytest.raises(ValueError, match="distance"):
        ContrastiveLoss(distance="inner_product")
    # The triplet loss only uses differences d_ap - d_an, so similarities are fine.
    assert TripletLoss(distance="dot").distance.higher_is_closer


@pytest.mark.parametrize(
    "make",
    [
        lambda: TripletLoss(miner="distance_weighted"),
        lambda: TripletLoss(miner="batch_hard"),
        lambda: MultiSimilarityLoss(),
        lambda: ContrastiveLoss(),
    ],
)
def test_nan_input_gives_a_nan_loss(make):
    # Issue 23, item 3: the distance-weighted miner raised a raw "indices ... not in
    # [0, 8)" error, and the others returned a finite loss with NaN gradients.
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(8, 4)).astype("float32")
    embeddings[3, 1] = np.nan
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3], "int32")
    value = float(keras.ops.convert_to_numpy(make()(labels, embeddings)))
    assert np.isnan(value)
    clean = np.nan_to_num(embeddings)
    assert np.isfinite(float(keras.ops.convert_to_numpy(make()(labels, clean))))
