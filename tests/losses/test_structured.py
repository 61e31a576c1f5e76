"""Tests of the structured pair losses against independent NumPy loop references."""

import math

import keras
import numpy as np
import pytest

from tests.backend_utils import grads_wrt_weights, value_and_grad
from tfcontrast import losses, miners

# -- independent NumPy references ------------------------------------------------------


def np_distance(name, a, b):
    """Pairwise matrix as the named distance defines it (float64)."""
    out = np.zeros((len(a), len(b)))
    for i in range(len(a)):
        for j in range(len(b)):
            x, y = a[i].astype(np.float64), b[j].astype(np.float64)
            if name == "cosine":
                nx, ny = np.linalg.norm(x), np.linalg.norm(y)
                cos = 0.0 if nx == 0 or ny == 0 else x @ y / (nx * ny)
                out[i, j] = 1.0 - cos
            elif name == "dot":
                out[i, j] = x @ y
            elif name == "euclidean":
                out[i, j] = np.sqrt(np.sum((x - y) ** 2))
            elif name == "squared_euclidean":
                out[i, j] = np.sum((x - y) ** 2)
            elif name == "manhattan":
                out[i, j] = np.sum(np.abs(x - y))
            else:
                raise KeyError(name)
    return out


def np_similarity(name, a, b):
    m = np_distance(name, a, b)
    if name == "cosine":
        return 1.0 - m
    if name == "dot":
        return m
    return -m


def np_dist(name, a, b):
    m = np_distance(name, a, b)
    return -m if name == "dot" else m


def split(labels, ref_labels, i, self_index):
    """Positive and negative reference indices of anchor `i`."""
    pos = [j for j in range(len(ref_labels)) if ref_labels[j] == labels[i] and j != self_index]
    neg = [j for j in range(len(ref_labels)) if ref_labels[j] != labels[i]]
    return pos, neg


def lse(xs):
    xs = np.asarray(xs, dtype=np.float64)
    top = xs.max()
    return top + math.log(np.sum(np.exp(xs - top)))


def ref_npair(labels, emb, distance, l2_reg=0.0):
    s = np_similarity(distance, emb, emb)
    out = []
    for i in range(len(labels)):
        pos, neg = split(labels, labels, i, i)
        value = 0.0
        if pos and neg:
            terms = [math.log1p(sum(math.exp(s[i, n] - s[i, p]) for n in neg)) for p in pos]
            value = float(np.mean(terms))
        out.append(value + l2_reg * float(np.sum(emb[i].astype(np.float64) ** 2)))
    return np.array(out)


def ref_lifted(labels, emb, distance, margin=1.0, pos_margin=0.0):
    d = np_dist(distance, emb, emb)
    out = []
    for i in range(len(labels)):
        pos, neg = split(labels, labels, i, i)
        if not pos or not neg:
            out.append(0.0)
            continue
        value = lse([d[i, p] - pos_margin for p in pos]) + lse([margin - d[i, n] for n in neg])
        out.append(max(0.0, value))
    return np.array(out)


def ref_circle_from_sets(s_pos, s_neg, margin, gamma):
    if not s_pos or not s_neg:
        return 0.0
    # log(1 + sum_n sum_p exp(gamma (alpha_n (s_n - m) - alpha_p (s_p - (1 - m)))))
    logits = []
    for sp in s_pos:
        for sn in s_neg:
            a_p = max(0.0, 1 + margin - sp)
            a_n = max(0.0, sn + margin)
            logits.append(gamma * (a_n * (sn - margin) - a_p * (sp - (1 - margin))))
    z = lse(logits)
    return z + math.log1p(math.exp(-z)) if z > 0 else math.log1p(math.exp(z))


def ref_circle(labels, emb, distance, margin=0.25, gamma=256.0):
    s = np_similarity(distance, emb, emb)
    out = []
    for i in range(len(labels)):
        pos, neg = split(labels, labels, i, i)
        out.append(
            ref_circle_from_sets([s[i, p] for p in pos], [s[i, n] for n in neg], margin, gamma)
        )
    return np.array(out)


def ms_mined(s_row, pos, neg, epsilon):
    if not pos or not neg:
        return [], []
    min_pos = min(s_row[p] for p in pos)
    max_neg = max(s_row[n] for n in neg)
    return (
        [p for p in pos if s_row[p] - epsilon < max_neg],
        [n for n in neg if s_row[n] + epsilon > min_pos],
    )


def ref_ms(
    labels,
    emb,
    distance,
    alpha=2.0,
    beta=50.0,
    lmda=0.5,
    epsilon=0.1,
    ref_labels=None,
    ref_emb=None,
):
    disjoint = ref_emb is not None
    ref_labels = labels if ref_labels is None else ref_labels
    ref_emb = emb if ref_emb is None else ref_emb
    s = np_similarity(distance, emb, ref_emb)
    out = []
    for i in range(len(labels)):
        pos, neg = split(labels, ref_labels, i, None if disjoint else i)
        if epsilon is not None:
            pos, neg = ms_mined(s[i], pos, neg, epsilon)
        if not pos or not neg:
            out.append(0.0)
            continue
        p = math.log1p(sum(math.exp(-alpha * (s[i, j] - lmda)) for j in pos)) / alpha
        n = math.log1p(sum(math.exp(beta * (s[i, j] - lmda)) for j in neg)) / beta
        out.append(p + n)
    return np.array(out)


def ref_snn(labels, emb, distance, temperature=1.0, ref_labels=None, ref_emb=None):
    disjoint = ref_emb is not None
    ref_labels = labels if ref_labels is None else ref_labels
    ref_emb = emb if ref_emb is None else ref_emb
    d = np_dist(distance, emb, ref_emb)
    out = []
    for i in range(len(labels)):
        self_index = None if disjoint else i
        num = [j for j in range(len(ref_labels)) if ref_labels[j] == labels[i] and j != self_index]
        den = [k for k in range(len(ref_labels)) if k != self_index]
        if not num:
            out.append(0.0)
            continue
        top = max(-d[i, k] / temperature for k in den)
        s_num = sum(math.exp(-d[i, j] / temperature - top) for j in num)
        s_den = sum(math.exp(-d[i, k] / temperature - top) for k in den)
        out.append(-math.log(s_num / s_den))
    return np.array(out)


# -- helpers ------------------------------------------------------------------------


def batch(rng, n=12, dim=6, classes=4, scale=1.0):
    labels = rng.integers(0, classes, size=n).astype("int32")
    emb = (rng.normal(size=(n, dim)) * scale).astype("float32")
    return labels, emb


def per_anchor(loss, labels, emb):
    loss.reduction = None
    return keras.ops.convert_to_numpy(loss(labels, emb))


ALL = {
    "npair": lambda d: losses.NPairLoss(distance=d),
    "lifted": lambda d: losses.LiftedStructureLoss(distance=d),
    "circle": lambda d: losses.CircleLoss(distance=d, margin=0.4, gamma=80.0),
    "ms": lambda d: losses.MultiSimilarityLoss(distance=d),
    "snn": lambda d: losses.SoftNearestNeighborLoss(distance=d),
}
DISTANCES = ["cosine", "dot", "euclidean", "squared_euclidean"]


# -- values against the references ---------------------------------------------------


@pytest.mark.parametrize("distance", DISTANCES + ["manhattan"])
def test_npair_matches_reference(rng, distance):
    labels, emb = batch(rng, scale=0.5)
    got = per_anchor(losses.NPairLoss(distance=distance, l2_reg=0.01), labels, emb)
    np.testing.assert_allclose(got, ref_npair(labels, emb, distance, 0.01), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("distance", DISTANCES)
def test_lifted_matches_reference(rng, distance):
    labels, emb = batch(rng, scale=0.5)
    loss = losses.LiftedStructureLoss(margin=1.5, pos_margin=0.1, distance=distance)
    got = per_anchor(loss, labels, emb)
    np.testing.assert_allclose(
        got, ref_lifted(labels, emb, distance, 1.5, 0.1), rtol=1e-4, atol=1e-4
    )
    assert np.any(got > 0)


@pytest.mark.parametrize("distance", ["cosine", "dot"])
@pytest.mark.parametrize("margin,gamma", [(0.25, 256.0), (0.4, 80.0), (0.3, 2.0)])
def test_circle_matches_reference(rng, distance, margin, gamma):
    labels, emb = batch(rng)
    if distance == "dot":  # similarities in [-1, 1], as the circle margins assume
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    loss = losses.CircleLoss(margin=margin, gamma=gamma, distance=distance)
    got = per_anchor(loss, labels, emb)
    want = ref_circle(labels, emb, distance, margin, gamma)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    assert np.any(want > 0)


@pytest.mark.parametrize("distance", DISTANCES)
def test_multi_similarity_matches_reference(rng, distance):
    labels, emb = batch(rng, scale=0.3)
    # In similarity units of the distance: cosine in [-1, 1], others unbounded.
    lmda = 0.5 if distance == "cosine" else -0.5
    loss = losses.MultiSimilarityLoss(alpha=2.0, beta=10.0, lmda=lmda, distance=distance)
    got = per_anchor(loss, labels, emb)
    want = ref_ms(labels, emb, distance, 2.0, 10.0, lmda, epsilon=0.1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert np.any(want > 0)


def test_multi_similarity_without_miner_uses_all_pairs(rng):
    labels, emb = batch(rng)
    loss = losses.MultiSimilarityLoss(miner=None)
    got = per_anchor(loss, labels, emb)
    want = ref_ms(labels, emb, "cosine", epsilon=None)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    mined = ref_ms(labels, emb, "cosine", epsilon=0.1)
    assert not np.allclose(want, mined)  # the miner makes a difference on this batch


def test_multi_similarity_miner_epsilon_is_used(rng):
    labels, emb = batch(rng)
    loss = losses.MultiSimilarityLoss(miner=miners.MultiSimilarityMiner(epsilon=0.3))
    got = per_anchor(loss, labels, emb)
    np.testing.assert_allclose(
        got, ref_ms(labels, emb, "cosine", epsilon=0.3), rtol=1e-4, atol=1e-4
    )


def test_circle_with_multi_similarity_miner(rng):
    labels, emb = batch(rng)
    loss = losses.CircleLoss(margin=0.4, gamma=80.0, miner="multi_similarity")
    got = per_anchor(loss, labels, emb)
    s = np_similarity("cosine", emb, emb)
    want = []
    for i in range(len(labels)):
        pos, neg = ms_mined(s[i], *split(labels, labels, i, i), 0.1)
        want.append(ref_circle_from_sets([s[i, p] for p in pos], [s[i, n] for n in neg], 0.4, 80.0))
    np.testing.assert_allclose(got, np.array(want), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("distance", DISTANCES + ["manhattan"])
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_soft_nearest_neighbor_matches_reference(rng, distance, temperature):
    labels, emb = batch(rng, scale=0.5)
    loss = losses.SoftNearestNeighborLoss(temperature=temperature, distance=distance)
    got = per_anchor(loss, labels, emb)
    np.testing.assert_allclose(
        got, ref_snn(labels, emb, distance, temperature), rtol=1e-4, atol=1e-4
    )


def test_soft_nearest_neighbor_exact_at_small_temperature(rng):
    # T = 0.01: logits span thousands, so under one shared shift some anchors' positives
    # underflow float32 (the unshifted or singly shifted ratio gives log(0)). Reference:
    # each sum with its own max, in float64.
    labels, emb = batch(rng, n=16, classes=4)
    t = 0.01
    got = per_anchor(losses.SoftNearestNeighborLoss(temperature=t), labels, emb)
    d = np_dist("squared_euclidean", emb, emb).astype(np.float64)
    want = []
    for i in range(len(labels)):
        num = [-d[i, j] / t for j in range(len(labels)) if labels[j] == labels[i] and j != i]
        den = [-d[i, k] / t for k in range(len(labels)) if k != i]
        if not num:
            want.append(0.0)
            continue
        want.append(
            max(den)
            + math.log(sum(math.exp(v - max(den)) for v in den))
            - max(num)
            - math.log(sum(math.exp(v - max(num)) for v in num))
        )
    want = np.array(want)
    assert want.max() > 100.0  # some anchor's positives are far below its nearest other
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    value, grad = _grad(losses.SoftNearestNeighborLoss(temperature=t), labels, emb)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("t, scale", [(1e-9, 1.0), (1.0, 1e4)])
def test_soft_nearest_neighbor_finite_when_logits_pass_the_mask_fill(rng, t, scale):
    # Issue 23, item 2: once d / T passed 1e9 (the masked entries' fill), the loss was inf
    # (NaN gradient) where its float64 value is finite. Reference: float64 log-sum-exps.
    labels, emb = batch(rng, n=12, classes=3)
    emb = emb * scale
    got = per_anchor(losses.SoftNearestNeighborLoss(temperature=t), labels, emb)
    d = np_dist("squared_euclidean", emb.astype(np.float64), emb.astype(np.float64))
    want = []
    for i in range(len(labels)):
        num = np.array(
            [-d[i, j] / t for j in range(len(labels)) if labels[j] == labels[i] and j != i]
        )
        den = np.array([-d[i, k] / t for k in range(len(labels)) if k != i])
        lse = lambda v: v.max() + np.log(np.exp(v - v.max()).sum())  # noqa: E731
        want.append(lse(den) - lse(num) if len(num) else 0.0)
    want = np.array(want)
    assert (d / t).max() > 1e9  # some logits are beyond the old fill of -1e9
    np.testing.assert_allclose(got, want, rtol=1e-4)
    value, grad = _grad(losses.SoftNearestNeighborLoss(temperature=t), labels, emb)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_disjoint_references(rng):
    """`compute` with references that do not contain the anchors (offset=None)."""
    labels, emb = batch(rng, n=6)
    ref_labels, ref_emb = batch(rng, n=10)
    ms = losses.MultiSimilarityLoss(beta=10.0)
    got = ms.compute(labels, emb, ref_labels, ref_emb, None)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(got),
        ref_ms(labels, emb, "cosine", beta=10.0, ref_labels=ref_labels, ref_emb=ref_emb),
        rtol=1e-4,
        atol=1e-4,
    )
    snn = losses.SoftNearestNeighborLoss()
    got = snn.compute(labels, emb, ref_labels, ref_emb, None)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(got),
        ref_snn(labels, emb, "squared_euclidean", ref_labels=ref_labels, ref_emb=ref_emb),
        rtol=1e-4,
        atol=1e-4,
    )


def test_scalar_reduction_is_the_mean(rng):
    labels, emb = batch(rng)
    value = float(losses.SoftNearestNeighborLoss()(labels, emb))
    assert value == pytest.approx(ref_snn(labels, emb, "squared_euclidean").mean(), rel=1e-4)


# -- robustness -----------------------------------------------------------------------


def _grad(loss, labels, emb):
    value, (grad,) = value_and_grad(lambda x: loss(labels, x), emb)
    return value, grad


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("distance", DISTANCES)
def test_gradients_finite_with_zero_and_duplicate_rows(rng, name, distance):
    labels, emb = batch(rng, n=10)
    emb[0] = 0.0
    emb[3] = emb[2]
    labels[3] = labels[2]
    emb[5] = emb[4]
    labels[5] = (labels[4] + 1) % 4  # duplicate embedding, different class
    value, grad = _grad(ALL[name](distance), labels, emb)
    assert np.isfinite(value)
    assert np.all(np.isfinite(grad))
    assert np.any(grad != 0)


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("case", ["single_class", "all_distinct"])
def test_no_positive_or_no_negative_gives_zero(rng, name, case):
    n = 8
    labels = np.zeros(n, "int32") if case == "single_class" else np.arange(n, dtype="int32")
    emb = rng.normal(size=(n, 5)).astype("float32")
    loss = ALL[name]("cosine")
    got = per_anchor(loss, labels, emb)
    np.testing.assert_allclose(got, np.zeros(n), atol=1e-6)
    loss.reduction = "sum_over_batch_size"
    value, grad = _grad(loss, labels, emb)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("case", ["single_class", "all_distinct"])
def test_multi_similarity_without_miner_zero_without_both_sets(rng, case):
    n = 6
    labels = np.zeros(n, "int32") if case == "single_class" else np.arange(n, dtype="int32")
    emb = rng.normal(size=(n, 5)).astype("float32")
    got = per_anchor(losses.MultiSimilarityLoss(miner=None), labels, emb)
    np.testing.assert_allclose(got, np.zeros(n), atol=1e-6)


def test_large_scales_stay_finite(rng):
    labels, emb = batch(rng, n=16, classes=3)
    emb_far = emb * 100.0
    cases = [
        (losses.CircleLoss(margin=0.25, gamma=256.0), emb),
        (losses.CircleLoss(margin=0.25, gamma=256.0, distance="dot"), emb_far),
        (losses.MultiSimilarityLoss(beta=50.0, miner=None), emb),
        (losses.MultiSimilarityLoss(beta=50.0, distance="dot", miner=None), emb_far),
        (losses.SoftNearestNeighborLoss(temperature=1e-3), emb_far),
        (losses.NPairLoss(), emb_far),
        (losses.LiftedStructureLoss(), emb_far),
    ]
    for loss, x in cases:
        value, grad = _grad(loss, labels, x)
        assert np.isfinite(value), loss.name
        assert np.all(np.isfinite(grad)), loss.name


def test_mixed_precision_computes_in_float32(rng):
    keras.mixed_precision.set_global_policy("mixed_float16")
    labels, emb = batch(rng)
    for make in ALL.values():
        loss = make("cosine")
        value = loss(labels, emb.astype("float16"))
        assert keras.backend.standardize_dtype(value.dtype) == "float32"
        assert np.isfinite(float(value))


# -- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    "loss",
    [
        losses.NPairLoss(l2_reg=0.002, distance="cosine", miner="hard"),
        losses.LiftedStructureLoss(margin=0.7, pos_margin=0.1),
        losses.CircleLoss(margin=0.4, gamma=80.0, miner="multi_similarity"),
        losses.MultiSimilarityLoss(
            alpha=2.0, beta=40.0, lmda=0.5, miner=miners.MultiSimilarityMiner(epsilon=0.2)
        ),
        losses.MultiSimilarityLoss(miner=None, distance="euclidean"),
        losses.SoftNearestNeighborLoss(temperature=2.0, learnable_temperature=True),
    ],
    ids=lambda loss: loss.name,
)
def test_serialization_round_trip(rng, loss):
    labels, emb = batch(rng)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    np.testing.assert_allclose(float(restored(labels, emb)), float(loss(labels, emb)), rtol=1e-5)


@pytest.mark.parametrize(
    "make,arg",
    [
        (lambda: losses.NPairLoss(l2_reg=-1.0), "l2_reg"),
        (lambda: losses.LiftedStructureLoss(margin=0.0), "margin"),
        (lambda: losses.LiftedStructureLoss(pos_margin=-0.1), "pos_margin"),
        (lambda: losses.CircleLoss(margin=-0.25), "margin"),
        (lambda: losses.CircleLoss(gamma=0.0), "gamma"),
        (lambda: losses.MultiSimilarityLoss(alpha=0.0), "alpha"),
        (lambda: losses.MultiSimilarityLoss(beta=-50.0), "beta"),
        (lambda: losses.MultiSimilarityLoss(lmda=float("nan")), "lmda"),
        (lambda: losses.SoftNearestNeighborLoss(temperature=0.0), "temperature"),
        (lambda: losses.CircleLoss(distance="nope"), "distance"),
        (lambda: losses.MultiSimilarityLoss(miner="nope"), "miner"),
    ],
)
def test_bad_parameters_raise(make, arg):
    with pytest.raises(ValueError, match=f"`{arg}`"):
        make()


def test_bad_labels_raise(rng):
    _, emb = batch(rng)
    with pytest.raises(ValueError, match="y_true"):
        losses.CircleLoss()(np.zeros(12, "float32"), emb)


# -- training -------------------------------------------------------------------------


def _separable(rng, n=64, classes=4, dim=8):
    centers = rng.normal(size=(classes, dim)) * 3.0
    labels = np.repeat(np.arange(classes), n // classes).astype("int32")
    x = (centers[labels] + rng.normal(size=(n, dim))).astype("float32")
    return x, labels


def _model(dim=8):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((dim,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(8)]
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: losses.MultiSimilarityLoss(alpha=2.0, beta=40.0, lmda=0.5),
        lambda: losses.CircleLoss(margin=0.4, gamma=80.0),
    ],
    ids=["multi_similarity", "circle"],
)
def test_fit_decreases_loss(rng, make):
    x, y = _separable(rng)
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=make())
    history = model.fit(x, y, batch_size=32, epochs=6, shuffle=True, verbose=0)
    loss_values = history.history["loss"]
    assert all(np.isfinite(loss_values))
    assert loss_values[-1] < loss_values[0]


def test_saved_model_with_loss_reloads(rng, tmp_path):
    x, y = _separable(rng)
    model = _model()
    loss = losses.MultiSimilarityLoss(beta=40.0, miner=miners.MultiSimilarityMiner(0.2))
    model.compile(optimizer="adam", loss=loss)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    path = tmp_path / "ms.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored.loss, losses.MultiSimilarityLoss)
    assert restored.loss.get_config() == loss.get_config()
    np.testing.assert_allclose(
        restored.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )


def test_learnable_temperature_is_trained_when_the_model_owns_it(rng):
    x, y = _separable(rng)

    class Embedder(keras.Model):
        def __init__(self):
            super().__init__()
            self.body = _model()
            self.snn = losses.SoftNearestNeighborLoss(temperature=5.0, learnable_temperature=True)
            self.snn_log_temperature = self.snn.log_temperature

        def call(self, inputs):
            return self.body(inputs)

    model = Embedder()
    assert any(v is model.snn.log_temperature for v in model.trainable_variables)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=model.snn)
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    assert float(model.snn.temperature) != pytest.approx(5.0)
    # The learned temperature is what get_config records.
    assert model.snn.get_config()["temperature"] == pytest.approx(float(model.snn.temperature))


def test_learnable_temperature_gradient(rng):
    labels, emb = batch(rng)
    loss = losses.SoftNearestNeighborLoss(temperature=2.0, learnable_temperature=True)
    assert loss.trainable_variables == [loss.log_temperature]
    value, (grad,) = grads_wrt_weights(lambda: loss(labels, emb), loss.trainable_variables)
    assert np.isfinite(float(grad)) and float(grad) != 0.0
    np.testing.assert_allclose(
        float(value), ref_snn(labels, emb, "squared_euclidean", 2.0).mean(), rtol=1e-4
    )
    assert losses.SoftNearestNeighborLoss().trainable_variables == []
